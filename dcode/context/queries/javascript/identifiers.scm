(identifier) @identifier
(property_identifier) @identifier
(shorthand_property_identifier) @identifier
