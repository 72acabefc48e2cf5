//! Bitswap messages from peers: decoding arbitrary bytes never panics; what decodes encodes to
//! bytes that decode to the same message; every block's CID is computed (never trusted).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shp_station::p2p::message::{block_cid, Message};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        let again = Message::decode(&m.encode()).expect("an encoded message decodes");
        assert_eq!(again, m, "decode(encode(m)) != m");
        for b in &m.blocks {
            if let Ok(cid) = block_cid(b) {
                assert!(cid.matches(&b.data), "a block's CID must hash its bytes");
            }
        }
    }
});
