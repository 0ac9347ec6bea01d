(block) @container
(default_case) @container
(expression_case) @container
(source_file) @container
(statement_list) @container
(type_case) @container
