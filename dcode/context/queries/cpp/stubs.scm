; inherits: c
; a namespace's body
(declaration_list) @body
; as with a pointer, a reference result (`T &f()`) counts whatever the type reads
(function_definition type: _ declarator: (reference_declarator)) @returns
