; Stubs: empty bodies, `todo!()`, `unimplemented!()` (dcode.edit.holes).
; @body: a definition body that holds statements or items.
(block) @body
(declaration_list) @body
(field_declaration_list) @body
(enum_variant_list) @body
; @returns: a function that declares a result other than `()`, so an empty body cannot be
; finished code.
(function_item return_type: _ @type (#not-eq? @type "()")) @returns
