; inherits: c
(class_specifier) @definition.class
(namespace_definition) @definition.namespace
; only method declarations inside a class
(field_declaration) @definition.method
(alias_declaration) @definition.type
(template_declaration) @wrapper
