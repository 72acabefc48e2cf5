//! `Home::commit_image`: blobs put one by one, then the manifest, make an image that pulls back
//! bit-exact; a manifest naming a blob the store lacks is refused and changes nothing.

use sha2::{Digest, Sha256};
use shp_core::cid::format_digest;
use shp_core::error::Error;
use shp_core::home::Home;
use shp_core::reference::ImageRef;
use shp_core::tar::HeaderBuilder;
use std::io::Write;

fn digest(b: &[u8]) -> String {
    format_digest(&Sha256::digest(b).into())
}

fn layer() -> Vec<u8> {
    let mut tar = Vec::new();
    for (i, name) in ["etc/hostname", "usr/bin/tool", "usr/share/doc/readme"]
        .iter()
        .enumerate()
    {
        let data: Vec<u8> = (0..20_000 * (i + 1)).map(|j| (j * 7 % 251) as u8 ^ i as u8).collect();
        tar.extend_from_slice(&HeaderBuilder::new(name.as_bytes(), b'0', data.len() as u64).block());
        tar.extend_from_slice(&data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.resize(tar.len() + 1024, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

fn manifest(config: &[u8], layer: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(layer), "size": layer.len()}],
    }))
    .unwrap()
}

#[test]
fn blobs_then_manifest_pull_back_exact() {
    let dir = tempfile::tempdir().unwrap();
    let home = std::sync::Arc::new(Home::init(&dir.path().join("home")).unwrap());
    let layer = layer();
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    home.put_blob(&mut &layer[..], Some(&digest(&layer)), true).unwrap();
    home.put_blob(&mut &config[..], Some(&digest(&config)), false).unwrap();
    let m = manifest(&config, &layer);
    let rep = home.commit_image(&m, None, Some("app:v1")).unwrap();
    assert_eq!(rep.import.top_digest, digest(&m));
    assert_eq!(home.top_digest("app:v1").unwrap(), digest(&m));
    assert_eq!(home.resolve("app:v1").unwrap(), rep.import.root);
    // The layer was not imported twice: its node is the one put_blob made.
    let reported = rep.import.blobs.iter().find(|b| b.digest == digest(&layer)).unwrap();
    assert_eq!(home.blob(&digest(&layer)).unwrap().cid, reported.cid);
    assert_eq!(reported.new_bytes, 0);

    let out = dir.path().join("out");
    home.pull(
        "app:v1",
        &format!("oci:{}:v1", out.display()).parse::<ImageRef>().unwrap(),
        Home::no_progress(),
    )
    .unwrap();
    for b in [&layer[..], &config[..], &m[..]] {
        let p = out.join("blobs/sha256").join(&digest(b)[7..]);
        assert_eq!(std::fs::read(&p).unwrap(), b, "{}", p.display());
    }
    // Committing the same manifest again under the declared media type gives the same root.
    let again = home
        .commit_image(
            &m,
            Some("application/vnd.oci.image.manifest.v1+json"),
            Some("app:v1-again"),
        )
        .unwrap();
    assert_eq!(again.import.root, rep.import.root);
}

#[test]
fn missing_blob_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::init(&dir.path().join("home")).unwrap();
    let layer = layer();
    let config = b"{}".to_vec();
    home.put_blob(&mut &config[..], None, false).unwrap();
    let before = std::fs::read(dir.path().join("home/refs.json")).unwrap();
    let m = manifest(&config, &layer);
    match home.commit_image(&m, None, Some("app:v1")) {
        Err(Error::MissingBlob { digest: d, .. }) => assert_eq!(d, digest(&layer)),
        other => panic!("expected MissingBlob, got {other:?}"),
    }
    assert_eq!(std::fs::read(dir.path().join("home/refs.json")).unwrap(), before);
    // Not a manifest at all; a config media type; no media type anywhere.
    assert!(matches!(
        home.commit_image(b"not json", None, None),
        Err(Error::InvalidManifest { .. })
    ));
    assert!(matches!(
        home.commit_image(&m, Some("application/vnd.oci.image.config.v1+json"), None),
        Err(Error::InvalidManifest { .. })
    ));
    let bare = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[]}"#;
    assert!(matches!(
        home.commit_image(bare, None, None),
        Err(Error::InvalidManifest { .. })
    ));
    assert_eq!(std::fs::read(dir.path().join("home/refs.json")).unwrap(), before);
}
