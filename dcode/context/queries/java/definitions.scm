(class_declaration) @definition.class
(interface_declaration) @definition.interface
(enum_declaration) @definition.enum
(record_declaration) @definition.record
(annotation_type_declaration) @definition.interface
(method_declaration) @definition.method
(constructor_declaration) @definition.constructor
