; Stubs: empty bodies and `assert(0 && "not implemented")` (dcode.edit.holes).
; @body: a definition body that holds statements or fields (an enum's list is replaced whole).
(compound_statement) @body
(field_declaration_list) @body
; @returns: a function whose type is not void, or that returns a pointer (`void *f()`), so an
; empty body cannot be finished code.
(function_definition type: _ @type (#not-eq? @type "void")) @returns
(function_definition type: _ declarator: (pointer_declarator)) @returns
