(identifier) @identifier
(type_identifier) @identifier
(field_identifier) @identifier
