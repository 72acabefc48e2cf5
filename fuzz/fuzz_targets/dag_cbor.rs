//! The dag-cbor decoder accepts only canonical bytes: whatever it accepts re-encodes to exactly
//! the input, so one value has one byte form and one CID.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shp_core::cbor::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = decode(data) {
        assert_eq!(encode(&v), data, "decoded value {v:?} re-encodes differently");
    }
});
