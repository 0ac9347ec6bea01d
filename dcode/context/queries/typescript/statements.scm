; inherits: javascript
(enum_body) @container
(interface_body) @container
