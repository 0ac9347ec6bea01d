; The first statement of a body, when it is a string, documents the definition. This file's
; presence turns the rule on for a language; dcode.context.definitions.docstring_node applies it.
(block . (expression_statement [(string) (concatenated_string)]) @docstring)
