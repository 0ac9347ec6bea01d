; Stubs: empty bodies and `throw new Error("not implemented")` (dcode.edit.holes).
; @body: a definition body that holds statements; any other body (`=> expr`) is replaced whole.
(statement_block) @body
(class_body) @body
; @returns: a function that declares a result, so an empty body cannot be finished code.
; JavaScript declares no result type: any function may be meant to return something.
[
  (function_declaration)
  (generator_function_declaration)
  (method_definition)
] @returns
