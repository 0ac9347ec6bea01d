(function_declaration) @definition.function
(method_declaration) @definition.method
(type_spec) @definition.type
(method_elem) @definition.method
(type_declaration) @wrapper
