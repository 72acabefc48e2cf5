//! The gzip member decoder over arbitrary bytes: never panics, and whatever it accepts, the framing
//! it reports is consistent (member ends add up to the decoded length; headers parse again).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shp_core::gzip::{parse_header, Boundary, MemberDecoder};
use std::cell::RefCell;
use std::io::Read;

fuzz_target!(|data: &[u8]| {
    let _ = parse_header(data);
    if !data.starts_with(&[0x1f, 0x8b]) {
        return;
    }
    let events = RefCell::new(Vec::new());
    let mut out = Vec::new();
    let ok = MemberDecoder::new(data, Some(&events))
        .take(1 << 24)
        .read_to_end(&mut out)
        .is_ok();
    if ok && out.len() < 1 << 24 {
        let mut total = 0;
        for e in events.into_inner() {
            match e {
                Boundary::Member(h) => assert_eq!(parse_header(&h).expect("reported header parses").bytes, h),
                Boundary::End(n) => total += n,
                Boundary::Tail(t, n) => assert!(t.len() as u64 <= n),
            }
        }
        assert_eq!(total, out.len() as u64, "member sizes must add up to the data");
    }
});
