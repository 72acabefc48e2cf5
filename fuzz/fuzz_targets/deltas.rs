//! Delta responses and requests from peers (`POST /shp/v1/deltas`): what a station's gateway parses
//! (the request body) and what a fetcher reads back (the response). Never a panic; an accepted
//! request encodes to a body that parses to the same wants; a response's sections never exceed the
//! section limit, and a delta frame decodes (against a base taken from the input) to at most a
//! block's bytes, or fails.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shp_core::store::MAX_BLOCK;
use shp_station::transport::delta::{self, Section, MAGIC};

fuzz_target!(|data: &[u8]| {
    if let Ok(wants) = delta::parse_request(data, 64) {
        assert!(wants.len() <= 64, "a request over the limit");
        let again =
            delta::parse_request(delta::encode_request(&wants).as_bytes(), 64).expect("an encoded request parses");
        assert_eq!(again, wants);
    }
    // The input as a response body (with and without the magic), its first 64 bytes as the base.
    let base = &data[..data.len().min(64)];
    let mut with_magic = MAGIC.to_vec();
    with_magic.extend_from_slice(data);
    for body in [data, &with_magic[..]] {
        for sec in delta::Sections::new(body).take(256) {
            match sec {
                Ok(Section::Whole(_, b)) => assert!(b.len() <= MAX_BLOCK),
                Ok(Section::Delta { frame, .. }) => {
                    if let Ok(out) = delta::apply(base, &frame) {
                        assert!(out.len() <= MAX_BLOCK);
                    }
                }
                Err(_) => break,
            }
        }
    }
    // Frames made against the input's first half decode back to its second half.
    let (b, d) = data.split_at(data.len() / 2);
    if let Some(frame) = delta::compress_against(b, d).expect("compressing never fails") {
        assert_eq!(delta::apply(b, &frame).expect("a delta decodes"), d);
    }
});
