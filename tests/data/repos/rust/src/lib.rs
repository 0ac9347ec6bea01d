mod parser;

use parser::parse_header;

pub struct Packet {
    pub len: usize,
}

impl Packet {
    pub fn decode(bytes: &[u8]) -> Packet {
        let header = parse_header(bytes);
        Packet { len: header.len }
    }

    pub fn checksum(&self) -> u32 {
        todo!()
    }
}
