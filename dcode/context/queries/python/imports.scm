(future_import_statement) @import
(import_from_statement) @import
(import_statement) @import
