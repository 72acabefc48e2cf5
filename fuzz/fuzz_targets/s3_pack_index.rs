//! A pack index and a record's payload as an S3 bucket (or the home's cache of it) hands them
//! back: anything may be there. The input is an index body; the target appends the checksum so
//! the search gets past it (a wrong checksum is refused first, and checked separately). Decoding
//! never panics; what decodes encodes back to the same bytes, every entry lies inside its pack;
//! and a payload opened for an entry either hashes to the entry's CID or is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use shp_core::store::s3::pack::{open_payload, Index, REC_HEAD};

fuzz_target!(|data: &[u8]| {
    // As it came: almost always a bad checksum, which must be an error, not a panic.
    let _ = Index::decode(data, "fuzz");
    let mut with_sum = data.to_vec();
    with_sum.extend_from_slice(&Sha256::digest(data));
    let Ok(idx) = Index::decode(&with_sum, "fuzz") else { return };
    assert_eq!(idx.encode(), with_sum, "an index does not encode back to its bytes");
    for e in &idx.entries {
        assert!(e.offset >= REC_HEAD as u64 && e.offset + e.stored as u64 <= idx.pack_len);
    }
    // The tail of the input (what follows the last entry's worth of bytes, wrapped) as a payload.
    if let Some(e) = idx.entries.first() {
        let n = (e.stored as usize).min(data.len());
        let payload = &data[data.len() - n..];
        if let Ok(block) = open_payload(e, payload, "fuzz") {
            assert!(e.cid.matches(&block), "open_payload returned bytes that are not the block");
        }
    }
});
