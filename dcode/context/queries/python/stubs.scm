; Stubs (dcode.edit.holes). Python's are told by their statements (`pass`, `...`, `raise
; NotImplementedError`), so no `@returns` patterns here: an empty body is a syntax error anyway.
; @body: a definition body that holds statements.
(block) @body
