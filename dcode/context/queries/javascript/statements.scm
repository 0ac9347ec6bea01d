(class_body) @container
(program) @container
(statement_block) @container
(switch_case) @container
(switch_default) @container
