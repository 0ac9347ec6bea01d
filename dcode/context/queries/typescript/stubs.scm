; Stubs: empty bodies and `throw new Error("not implemented")` (dcode.edit.holes).
; Not inherited from JavaScript, where every function counts as returning something.
; @body: a definition body that holds statements; any other body (`=> expr`) is replaced whole.
(statement_block) @body
(class_body) @body
(interface_body) @body
(enum_body) @body
; @returns: a function that declares a result, so an empty body cannot be finished code: one
; without a return type annotation, or one annotated with something other than void or never.
[
  (function_declaration !return_type)
  (generator_function_declaration !return_type)
  (method_definition !return_type)
] @returns
(([
  (function_declaration return_type: _ @type)
  (generator_function_declaration return_type: _ @type)
  (method_definition return_type: _ @type)
] @returns)
 (#not-match? @type "^[: \t]*(void|Promise<void>|never)$"))
