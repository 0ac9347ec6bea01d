; inherits: javascript
(type_identifier) @identifier
