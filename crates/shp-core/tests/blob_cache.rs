//! `Home::blob_reader`: a recipe layer read to the end is cached; the next read is served from
//! the cache with the same bytes; gc drops cached copies of blobs the home no longer holds.

use sha2::{Digest, Sha256};
use shp_core::blob::Storage;
use shp_core::cid::format_digest;
use shp_core::home::Home;
use shp_core::tar::HeaderBuilder;
use std::io::{Read, Write};

#[test]
fn hot_layer_is_rebuilt_once() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::init(&dir.path().join("home")).unwrap();
    let mut tar = Vec::new();
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| b"cache me please "[(i % 16) as usize] ^ (i % 7) as u8)
        .collect();
    tar.extend_from_slice(&HeaderBuilder::new(b"f", b'0', data.len() as u64).block());
    tar.extend_from_slice(&data);
    tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(&tar).unwrap();
    let gz = e.finish().unwrap();
    let digest = format_digest(&Sha256::digest(&gz).into());
    let imported = home.put_blob(&mut &gz[..], Some(&digest), true).unwrap();
    assert_eq!(imported.storage, Storage::Recipe("zlib-1.2/6".into()));

    let cached = dir.path().join("home/cache/blobs").join(&digest[7..]);
    let node = home.blob(&digest).unwrap();
    // A partial read caches nothing.
    home.blob_reader(&node).read_exact(&mut [0u8; 100]).unwrap();
    assert!(!cached.exists());
    let mut first = Vec::new();
    home.blob_reader(&node).read_to_end(&mut first).unwrap();
    assert_eq!(first, gz);
    assert_eq!(std::fs::read(&cached).unwrap(), gz);
    let mut second = Vec::new();
    home.blob_reader(&node).read_to_end(&mut second).unwrap();
    assert_eq!(second, gz);

    assert!(home.remove(&digest).unwrap());
    home.gc().unwrap();
    assert!(!cached.exists(), "gc drops the cached copy of a collected blob");
}
