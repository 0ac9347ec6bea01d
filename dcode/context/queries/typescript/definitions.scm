; inherits: javascript
(abstract_class_declaration) @definition.class
(interface_declaration) @definition.interface
(type_alias_declaration) @definition.type
(enum_declaration) @definition.enum
(function_signature) @definition.function
(method_signature) @definition.method
(abstract_method_signature) @definition.method
(internal_module) @definition.namespace
(ambient_declaration) @wrapper
