/// A packet header.
pub struct Header {
    pub len: usize,
}

/// Parse the one-byte header at the start of `bytes`.
pub fn parse_header(bytes: &[u8]) -> Header {
    Header { len: bytes[0] as usize }
}
