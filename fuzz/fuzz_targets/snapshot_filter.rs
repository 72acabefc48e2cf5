//! The filters containerd's `List` (Walk) sends the snapshotter: arbitrary text never panics, and a
//! filter that parses matches a snapshot the same way every time (and an empty filter matches all).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shp_snapshotter::filter::{any_matches, Filter};
use shp_snapshotter::proto::{Info, Kind};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let info = Info {
        name: "ns/1/sha256:ab".into(),
        parent: "ns/0/base".into(),
        kind: Kind::Committed as i32,
        labels: [("containerd.io/snapshot.ref".to_string(), "sha256:ab".to_string())].into(),
        ..Default::default()
    };
    if let Ok(f) = Filter::parse(src) {
        let once = f.matches(&info);
        assert_eq!(once, any_matches(std::slice::from_ref(&f), &info));
        if f.0.is_empty() {
            assert!(once, "an empty filter matches everything");
        }
    }
});
