//! OCI/Docker manifest and index parsing: whatever parses names only well-formed children, whose
//! digests parse again and agree with the bytes the descriptor holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shp_core::cid::{format_digest, parse_digest};
use shp_core::oci::{DocKind, Document};

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = Document::parse(data, "fuzz") else { return };
    let kids = doc.children();
    assert_eq!(
        kids.len(),
        doc.manifests.len() + doc.config.iter().count() + doc.layers.len()
    );
    if doc.kind == DocKind::Manifest {
        assert!(doc.config.is_some(), "an image manifest parsed without a config");
    }
    for (d, is_layer) in kids {
        let digest = parse_digest(&d.digest_str).expect("a child's digest_str must parse");
        assert_eq!(digest, d.digest, "digest_str and digest disagree");
        assert_eq!(format_digest(&d.digest), d.digest_str, "digest_str is not canonical");
        assert_eq!(d.json.get("size").and_then(|s| s.as_u64()), Some(d.size));
        if is_layer {
            assert!(d.is_layer());
        }
        let _ = Document::platform_of(d);
    }
});
