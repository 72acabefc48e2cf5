//! CIDs in text and binary form: what parses prints and serialises back to the same CID, and
//! the canonical forms (lower-case base32, minimal bytes, base58btc CIDv0) come back byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shp_core::cid::Cid;

fuzz_target!(|data: &[u8]| {
    if let Ok((c, used)) = Cid::read_bytes(data) {
        assert_eq!(&c.to_bytes()[..], &data[..used], "binary CID is not canonical");
    }
    if let Ok(c) = Cid::from_bytes(data) {
        assert_eq!(&c.to_bytes()[..], data, "from_bytes accepted a non-canonical CID");
        assert_eq!(c.to_string().parse::<Cid>().expect("printed CID must parse"), c);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(c) = s.parse::<Cid>() {
            let text = c.to_string();
            assert_eq!(text.parse::<Cid>().expect("printed CID must parse"), c);
            assert_eq!(Cid::from_bytes(&c.to_bytes()).expect("CID bytes must parse"), c);
            if s.starts_with("Qm") {
                // A CIDv0 is read as the CIDv1 of the same dag-pb block, and has one text.
                assert_eq!(c.to_v0().as_deref(), Some(s), "accepted CIDv0 text is not canonical");
            } else {
                // One CID, one text per multibase case: `b` + lower-case or `B` + either case.
                assert!(
                    text.eq_ignore_ascii_case(s),
                    "{s:?} parsed as {text}: accepted text is not canonical"
                );
            }
        }
    }
});
