(function_definition) @definition.function
(struct_specifier) @definition.struct
(union_specifier) @definition.union
(enum_specifier) @definition.enum
(type_definition) @definition.type
; only prototypes (with a function declarator)
(declaration) @definition.function
(preproc_function_def) @definition.macro
(preproc_def) @definition.macro
