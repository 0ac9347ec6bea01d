; inherits: c
(namespace_identifier) @identifier
