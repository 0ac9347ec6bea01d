; Stubs: empty bodies and `throw new UnsupportedOperationException()` (dcode.edit.holes).
; @body: a definition body that holds statements or members.
(block) @body
(constructor_body) @body
(class_body) @body
(interface_body) @body
(enum_body) @body
(annotation_type_body) @body
; @returns: a method whose type is not void, so an empty body cannot be finished code.
(method_declaration type: _ @type (#not-eq? @type "void")) @returns
