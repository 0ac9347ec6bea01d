(function_declaration) @definition.function
(generator_function_declaration) @definition.function
(class_declaration) @definition.class
(method_definition) @definition.method
; only when its value is a function or a class
(variable_declarator) @definition.function
(export_statement) @wrapper
(lexical_declaration) @wrapper
(variable_declaration) @wrapper
