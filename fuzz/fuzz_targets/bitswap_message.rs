//! Bitswap messages from peers: decoding arbitrary bytes never panics; what decodes encodes to
//! bytes that decode to the same message; every block's CID is computed (never trusted). The same
//! bytes are also read as a sealed frame (shp's zstd variant): unsealing never panics, never
//! yields more than the message limit, and what it yields is decoded the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shp_station::p2p::message::{block_cid, seal, unseal, Message, MAX_MESSAGE};

fn check(data: &[u8]) {
    if let Ok(m) = Message::decode(data) {
        let again = Message::decode(&m.encode()).expect("an encoded message decodes");
        assert_eq!(again, m, "decode(encode(m)) != m");
        for b in &m.blocks {
            if let Ok(cid) = block_cid(b) {
                assert!(cid.matches(&b.data), "a block's CID must hash its bytes");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Ok(inner) = unseal(data) {
        assert!(inner.len() <= MAX_MESSAGE, "unsealed past the limit");
        check(&inner);
        let (frame, _) = seal(&inner, true, 1);
        assert_eq!(unseal(&frame).expect("a sealed frame unseals"), inner);
    }
});
