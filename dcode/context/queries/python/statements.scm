(block) @container
(module) @container
