(block) @container
(class_body) @container
(constructor_body) @container
(enum_body_declarations) @container
(interface_body) @container
(program) @container
(switch_block_statement_group) @container
