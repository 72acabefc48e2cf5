//! `Home::blob_reader`: a recipe layer is rebuilt once and cached; the next read is served from
//! the cache with the same bytes; readers of a cold layer at the same moment share one rebuild
//! (and its failure); gc drops cached copies of blobs the home no longer holds.

use sha2::{Digest, Sha256};
use shp_core::blob::Storage;
use shp_core::cid::format_digest;
use shp_core::home::Home;
use shp_core::tar::HeaderBuilder;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Barrier};

/// A home holding one gzip layer (a recipe) of a tar with a file of `n` bytes; its bytes and digest.
fn home_with_layer(dir: &Path, n: u32) -> (Arc<Home>, Vec<u8>, String) {
    let home = Home::init(&dir.join("home")).unwrap();
    let mut tar = Vec::new();
    // Text of words picked by a xorshift: compressible, with no long repeats.
    let words: Vec<&[u8]> = b"layer chunk block rebuild cache station blob digest tar gzip the of a to "
        .split(|&c| c == b' ')
        .collect();
    let (mut x, mut data) = (0x9e37_79b9_7f4a_7c15u64, Vec::with_capacity(n as usize + 16));
    while data.len() < n as usize {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(words[(x % words.len() as u64) as usize]);
        data.push(if x & 0xf00 == 0 { b'\n' } else { b' ' });
    }
    data.truncate(n as usize);
    tar.extend_from_slice(&HeaderBuilder::new(b"f", b'0', data.len() as u64).block());
    tar.extend_from_slice(&data);
    tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(&tar).unwrap();
    let gz = e.finish().unwrap();
    let digest = format_digest(&Sha256::digest(&gz).into());
    let imported = home.put_blob(&mut &gz[..], Some(&digest), true).unwrap();
    assert_eq!(imported.storage, Storage::Recipe("zlib-1.2/6".into()));
    (Arc::new(home), gz, digest)
}

fn read_all(mut r: Box<dyn Read + Send>) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    r.read_to_end(&mut v)?;
    Ok(v)
}

#[test]
fn hot_layer_is_rebuilt_once() {
    let dir = tempfile::tempdir().unwrap();
    let (home, gz, digest) = home_with_layer(dir.path(), 300_000);
    let cached = dir.path().join("home/cache/blobs").join(&digest[7..]);
    let node = home.blob(&digest).unwrap();
    // A partial read leaves the rebuild running to its end: the next read shares it or hits the copy.
    home.blob_reader(&node).read_exact(&mut [0u8; 100]).unwrap();
    let first = read_all(home.blob_reader(&node)).unwrap();
    assert_eq!(first, gz);
    assert_eq!(std::fs::read(&cached).unwrap(), gz);
    let second = read_all(home.blob_reader(&node)).unwrap();
    assert_eq!(second, gz);
    let s = home.cache_stats();
    assert_eq!((s.rebuilds, s.hits + s.joined), (1, 2), "{s:?}");

    assert!(home.remove(&digest).unwrap());
    home.gc().unwrap();
    assert!(!cached.exists(), "gc drops the cached copy of a collected blob");
}

#[test]
fn concurrent_cold_readers_share_one_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let (home, gz, digest) = home_with_layer(dir.path(), 6_000_000);
    let want = Sha256::digest(&gz);
    let mid = gz.len() as u64 / 2;
    let barrier = Arc::new(Barrier::new(9));
    let readers: Vec<_> = (0..9u64)
        .map(|i| {
            let (home, digest, barrier) = (home.clone(), digest.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                match i {
                    // A Range request from the middle, while the rebuild is on its way there.
                    7 => (
                        mid,
                        read_all(home.blob_reader_at(&home.blob(&digest).unwrap(), mid)).unwrap(),
                    ),
                    // A client that gives up early does not stop the others.
                    8 => {
                        home.open_blob(&digest).unwrap().read_exact(&mut [0u8; 4096]).unwrap();
                        (0, Vec::new())
                    }
                    _ => (0, read_all(home.open_blob(&digest).unwrap()).unwrap()),
                }
            })
        })
        .collect();
    for (i, r) in readers.into_iter().enumerate() {
        let (off, got) = r.join().unwrap();
        match i {
            7 => assert!(got == gz[off as usize..], "the range reader got other bytes"),
            8 => {}
            _ => assert_eq!(Sha256::digest(&got), want, "reader {i}"),
        }
    }
    let s = home.cache_stats();
    assert_eq!(
        (s.rebuilds, s.joined + s.hits),
        (1, 8),
        "one rebuild for nine readers: {s:?}"
    );
    let cached = dir.path().join("home/cache/blobs").join(&digest[7..]);
    assert_eq!(std::fs::read(cached).unwrap(), gz);
}

#[test]
fn concurrent_readers_share_a_rebuild_the_cache_cannot_keep() {
    let dir = tempfile::tempdir().unwrap();
    let (home, gz, digest) = home_with_layer(dir.path(), 3_000_000);
    drop(home);
    let mut home = Home::open(&dir.path().join("home")).unwrap();
    home.set_cache_bytes(0);
    let home = Arc::new(home);
    let barrier = Arc::new(Barrier::new(4));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (home, digest, barrier) = (home.clone(), digest.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                read_all(home.open_blob(&digest).unwrap()).unwrap()
            })
        })
        .collect();
    for r in readers {
        assert!(r.join().unwrap() == gz);
    }
    // Every reader came while the rebuild was in flight or still held by another reader.
    assert_eq!(home.cache_stats().rebuilds, 1);
    let blobs = dir.path().join("home/cache/blobs");
    assert_eq!(
        std::fs::read_dir(blobs).unwrap().count(),
        0,
        "no file kept, no temp file left"
    );
}

/// Flips a byte in the middle of the largest record of every pack (a data block of the layer).
fn corrupt_largest_block(store: &Path) {
    for e in std::fs::read_dir(store.join("packs")).unwrap().flatten() {
        if e.path().extension().is_none_or(|x| x != "pack") {
            continue;
        }
        let mut pack = std::fs::read(e.path()).unwrap();
        let (mut at, mut best) = (8usize, (0usize, 0usize));
        while at + 45 <= pack.len() {
            let stored = u32::from_le_bytes(pack[at + 37..at + 41].try_into().unwrap()) as usize;
            if stored > best.1 {
                best = (at + 45, stored);
            }
            at += 45 + stored;
        }
        pack[best.0 + best.1 / 2] ^= 0x40;
        std::fs::write(e.path(), pack).unwrap();
    }
}

#[test]
fn a_failed_rebuild_fails_every_reader_with_the_same_error() {
    let dir = tempfile::tempdir().unwrap();
    let (home, _, digest) = home_with_layer(dir.path(), 4_000_000);
    drop(home);
    corrupt_largest_block(&dir.path().join("home/store"));
    let home = Arc::new(Home::open(&dir.path().join("home")).unwrap());
    let barrier = Arc::new(Barrier::new(6));
    let readers: Vec<_> = (0..6u64)
        .map(|i| {
            let (home, digest, barrier) = (home.clone(), digest.clone(), barrier.clone());
            std::thread::spawn(move || {
                let node = home.blob(&digest).unwrap();
                barrier.wait();
                let mut r = home.blob_reader_at(&node, i * 1000);
                let e = r
                    .read_to_end(&mut Vec::new())
                    .expect_err("a corrupt store is no clean end");
                shp_core::dag::unwrap_io(e).to_string()
            })
        })
        .collect();
    let errs: Vec<String> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    assert!(errs.iter().all(|e| *e == errs[0]), "{errs:#?}");
    assert!(errs[0].contains("corrupt"), "{}", errs[0]);
    assert_eq!(home.cache_stats().rebuilds, 1);
    let blobs = dir.path().join("home/cache/blobs");
    assert_eq!(
        std::fs::read_dir(blobs).unwrap().count(),
        0,
        "nothing published, no temp file left"
    );
}

/// `Home::pull` reads recipe layers as the station does: the first pull rebuilds the layer once
/// and leaves it cached; the next pull (to an OCI layout or a docker-archive) is served from the
/// cached copy, with the same bytes. A docker-archive wants the layer's tar, which comes straight
/// from the DAG: no rebuild at all.
#[test]
fn pulls_go_through_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (home, gz, digest) = home_with_layer(dir.path(), 400_000);
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = format_digest(&Sha256::digest(config).into());
    home.put_blob(&mut &config[..], Some(&cd), false).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{digest}","size":{}}}]}}"#,
        config.len(),
        gz.len()
    );
    home.commit_image(manifest.as_bytes(), None, Some("app:v1")).unwrap();
    let cached = dir.path().join("home/cache/blobs").join(&digest[7..]);
    assert!(!cached.exists());

    let oci = dir.path().join("oci");
    let dest = format!("oci:{}:v1", oci.display()).parse().unwrap();
    home.pull("app:v1", &dest, Home::no_progress()).unwrap();
    assert_eq!(std::fs::read(oci.join("blobs/sha256").join(&digest[7..])).unwrap(), gz);
    assert_eq!(
        std::fs::read(&cached).unwrap(),
        gz,
        "the first pull left the rebuild cached"
    );
    let s = home.cache_stats();
    assert_eq!((s.rebuilds, s.hits), (1, 0), "{s:?}");

    let oci2 = dir.path().join("oci2");
    let dest = format!("oci:{}:v1", oci2.display()).parse().unwrap();
    home.pull("app:v1", &dest, Home::no_progress()).unwrap();
    assert_eq!(std::fs::read(oci2.join("blobs/sha256").join(&digest[7..])).unwrap(), gz);
    let archive = dir.path().join("app.tar");
    let dest = format!("docker-archive:{}:app:v1", archive.display()).parse().unwrap();
    home.pull("app:v1", &dest, Home::no_progress()).unwrap();
    let s = home.cache_stats();
    assert_eq!(
        (s.rebuilds, s.hits),
        (1, 1),
        "the second pull was a hit, the archive needed neither: {s:?}"
    );
    // The archive holds the layer, decompressed as docker-archive wants it, bit for bit.
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut tar).unwrap();
    let archive = std::fs::read(&archive).unwrap();
    assert!(
        archive.windows(tar.len()).any(|w| w == tar),
        "the layer's tar is in the archive"
    );
}
