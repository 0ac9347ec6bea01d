(block) @container
(declaration_list) @container
(source_file) @container
