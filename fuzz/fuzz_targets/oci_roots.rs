//! oci-roots queries and answers from peers (`/shp/oci-roots/1.0.0`): decoding arbitrary bytes
//! never panics, never yields more than the limits (digests, tags, entries), and what decodes
//! encodes to bytes that decode to the same query or answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shp_station::p2p::oci::{
    decode_answer, decode_query, encode_answer, encode_query, MAX_DIGESTS, MAX_HELD, MAX_TAGS, MAX_TAG_LEN,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = decode_query(data) {
        assert!(q.digests.len() <= MAX_DIGESTS && q.tags.len() <= MAX_TAGS, "a query over the limits");
        assert!(q.tags.iter().all(|t| t.len() <= MAX_TAG_LEN), "a tag over the limit");
        assert_eq!(decode_query(&encode_query(&q)).expect("an encoded query decodes"), q);
    }
    if let Ok(a) = decode_answer(data) {
        assert!(a.len() <= MAX_HELD, "an answer over the limit");
        assert_eq!(decode_answer(&encode_answer(&a)).expect("an encoded answer decodes"), a);
    }
});
