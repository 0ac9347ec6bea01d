(extern_crate_declaration) @import
(mod_item) @import
(use_declaration) @import
