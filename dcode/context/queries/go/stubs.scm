; Stubs: empty bodies and `panic("not implemented")` (dcode.edit.holes).
; @body: a definition body that holds statements, fields or methods.
(block) @body
(field_declaration_list) @body
(interface_type) @body
; @returns: a function with a result list, so an empty body cannot be finished code.
[
  (function_declaration result: _)
  (method_declaration result: _)
] @returns
