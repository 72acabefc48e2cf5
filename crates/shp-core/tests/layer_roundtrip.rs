//! Property tests: random tars (every entry type, PAX, GNU long names, either checksum convention,
//! odd padding, trailers) imported as layers come back with the same bytes and sha256 — as
//! uncompressed tar DAGs and as opaque gzip layers.

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use shp_core::blob::{import_blob, BlobKind, BlobNode, ImportOptions, Storage};
use shp_core::dag::DagWriter;
use shp_core::store::{Blockstore, MemoryStore};
use shp_core::tar::HeaderBuilder;
use std::io::{Read, Write};

#[derive(Debug, Clone)]
enum Ent {
    File {
        name: Vec<u8>,
        data: Vec<u8>,
        pad: u8,
    },
    Huge {
        name: Vec<u8>,
        seed: u64,
        len: usize,
    },
    Link {
        name: Vec<u8>,
        typeflag: u8,
        target: Vec<u8>,
    },
    Dev {
        name: Vec<u8>,
        typeflag: u8,
    },
    Pax {
        records: Vec<(String, String)>,
    },
    GnuLong {
        name: Vec<u8>,
    },
}

fn header(name: &[u8], typeflag: u8, size: u64, linkname: &[u8], signed: bool) -> [u8; 512] {
    HeaderBuilder {
        linkname,
        mtime: 0o14712345670,
        signed_checksum: signed,
        ..HeaderBuilder::new(name, typeflag, size)
    }
    .block()
}

fn pad(out: &mut Vec<u8>, fill: u8) {
    while !out.len().is_multiple_of(512) {
        out.push(fill);
    }
}

fn pseudo(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn build(ents: &[Ent], signed: bool, end_blocks: usize, trailer: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in ents {
        match e {
            Ent::File { name, data, pad: fill } => {
                out.extend_from_slice(&header(name, b'0', data.len() as u64, b"", signed));
                out.extend_from_slice(data);
                pad(&mut out, *fill);
            }
            Ent::Huge { name, seed, len } => {
                out.extend_from_slice(&header(name, b'0', *len as u64, b"", signed));
                out.extend_from_slice(&pseudo(*seed, *len));
                pad(&mut out, 0);
            }
            Ent::Link { name, typeflag, target } => {
                out.extend_from_slice(&header(name, *typeflag, 0, target, signed));
            }
            Ent::Dev { name, typeflag } => out.extend_from_slice(&header(name, *typeflag, 0, b"", signed)),
            Ent::Pax { records } => {
                let mut body = Vec::new();
                for (k, v) in records {
                    let rec = format!(" {k}={v}\n");
                    let mut len = rec.len() + 1;
                    while (len.to_string().len() + rec.len()) != len {
                        len = len.to_string().len() + rec.len();
                    }
                    body.extend_from_slice(format!("{len}{rec}").as_bytes());
                }
                out.extend_from_slice(&header(b"./PaxHeaders/x", b'x', body.len() as u64, b"", signed));
                out.extend_from_slice(&body);
                pad(&mut out, 0);
                // The entry the PAX header describes.
                out.extend_from_slice(&header(b"pax-target", b'0', 3, b"", signed));
                out.extend_from_slice(b"abc");
                pad(&mut out, 0);
            }
            Ent::GnuLong { name } => {
                let mut n = name.clone();
                n.push(0);
                out.extend_from_slice(&header(b"././@LongLink", b'L', n.len() as u64, b"", signed));
                out.extend_from_slice(&n);
                pad(&mut out, 0);
                out.extend_from_slice(&header(&name[..name.len().min(100)], b'0', 0, b"", signed));
            }
        }
    }
    out.extend(std::iter::repeat_n(0u8, 512 * end_blocks));
    out.extend_from_slice(trailer);
    out
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[a-z]{1,12}(/[a-z0-9._-]{1,12}){0,3}".prop_map(String::into_bytes),
        Just(b"../../etc/passwd".to_vec()),
        Just(b"/etc/shadow".to_vec()),
        proptest::collection::vec(1u8..=255, 1..100),
    ]
}

fn ent() -> impl Strategy<Value = Ent> {
    prop_oneof![
        4 => (name(), proptest::collection::vec(any::<u8>(), 0..3000), prop_oneof![Just(0u8), any::<u8>()])
            .prop_map(|(name, data, pad)| Ent::File { name, data, pad }),
        1 => (name(), any::<u64>(), 16_000usize..400_000).prop_map(|(name, seed, len)| Ent::Huge { name, seed, len }),
        2 => (name(), prop_oneof![Just(b'1'), Just(b'2')], name())
            .prop_map(|(name, typeflag, target)| Ent::Link { name, typeflag, target }),
        1 => (name(), prop_oneof![Just(b'3'), Just(b'4'), Just(b'5'), Just(b'6')])
            .prop_map(|(name, typeflag)| Ent::Dev { name, typeflag }),
        1 => proptest::collection::vec(("[a-z.]{1,20}", "[ -~]{0,300}"), 1..4)
            .prop_map(|mut records| { records.retain(|(k, _)| k != "size"); Ent::Pax { records } }),
        1 => proptest::collection::vec(b'a'..=b'z', 101..400).prop_map(|name| Ent::GnuLong { name }),
    ]
}

fn import(store: &MemoryStore, bytes: &[u8], opts: &ImportOptions) -> shp_core::Result<shp_core::blob::ImportedBlob> {
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    let mut batch = store.batch()?;
    let open = || -> shp_core::Result<Box<dyn Read>> { Ok(Box::new(std::io::Cursor::new(bytes.to_vec()))) };
    let imported = {
        let mut w = DagWriter::new(&mut *batch);
        import_blob(
            &mut w,
            BlobKind::Layer,
            &open,
            Some((&digest, bytes.len() as u64)),
            &[],
            opts,
        )?
    };
    batch.commit()?;
    Ok(imported)
}

fn read_back(store: &MemoryStore, cid: &shp_core::Cid) -> Vec<u8> {
    let node = BlobNode::load(store, cid).unwrap();
    let mut out = Vec::new();
    node.open(store).read_to_end(&mut out).unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn random_tars_roundtrip(ents in proptest::collection::vec(ent(), 0..24), signed in any::<bool>(),
                             end_blocks in 0usize..4, trailer in proptest::collection::vec(any::<u8>(), 0..700)) {
        // Trailing bytes only make sense after an end-of-archive block.
        let trailer = if end_blocks == 0 { Vec::new() } else { trailer };
        let tar = build(&ents, signed, end_blocks, &trailer);
        let store = MemoryStore::new();
        let imported = import(&store, &tar, &ImportOptions::default()).unwrap();
        prop_assert_eq!(&imported.storage, &Storage::Uncompressed);
        prop_assert_eq!(imported.diff_id, Some(<[u8; 32]>::from(Sha256::digest(&tar))));
        prop_assert_eq!(read_back(&store, &imported.cid), tar.clone());
        // Same bytes, same CID: deterministic.
        let again = import(&MemoryStore::new(), &tar, &ImportOptions::default()).unwrap();
        prop_assert_eq!(again.cid, imported.cid);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let imported = import(&store, &gz, &ImportOptions::default()).unwrap();
        prop_assert_eq!(&imported.storage, &Storage::Recipe("zlib-1.2/6".into()));
        prop_assert_eq!(read_back(&store, &imported.cid), gz.clone());

        // Two members written alike, then trailing bytes: one recipe lists both members and
        // keeps the tail, and the blob comes back exact.
        let half = tar.len() / 2;
        let mut two = Vec::new();
        for part in [&tar[..half], &tar[half..]] {
            let mut e = flate2::GzBuilder::new().mtime(7).write(Vec::new(), flate2::Compression::new(1));
            e.write_all(part).unwrap();
            two.extend_from_slice(&e.finish().unwrap());
        }
        let imported = import(&store, &two, &ImportOptions::default()).unwrap();
        prop_assert!(matches!(&imported.storage, Storage::Recipe(p) if p.starts_with("zlib-1.2/")), "{:?}", imported.storage);
        prop_assert_eq!(read_back(&store, &imported.cid), two.clone());
        let mut padded = gz.clone();
        padded.extend_from_slice(&trailer);
        padded.extend_from_slice(&[0; 100]);
        let imported = import(&store, &padded, &ImportOptions::default()).unwrap();
        prop_assert_eq!(&imported.storage, &Storage::Recipe("zlib-1.2/6".into()));
        prop_assert_eq!(read_back(&store, &imported.cid), padded);
        // Members written differently: kept exact, by recipe only if one profile happens to fit both.
        let mut mixed = Vec::new();
        for (part, level) in [(&tar[..half], 1), (&tar[half..], 9)] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            e.write_all(part).unwrap();
            mixed.extend_from_slice(&e.finish().unwrap());
        }
        let imported = import(&store, &mixed, &ImportOptions::default()).unwrap();
        prop_assert_eq!(read_back(&store, &imported.cid), mixed);
    }
}

#[test]
fn identical_files_share_chunks() {
    let data = pseudo(7, 300_000);
    let a = build(
        &[Ent::File {
            name: b"a/one".to_vec(),
            data: data.clone(),
            pad: 0,
        }],
        false,
        2,
        b"",
    );
    let b = build(
        &[
            Ent::File {
                name: b"x".to_vec(),
                data: b"different".to_vec(),
                pad: 0,
            },
            Ent::File {
                name: b"b/two".to_vec(),
                data,
                pad: 0,
            },
        ],
        false,
        2,
        b"",
    );
    let store = MemoryStore::new();
    import(&store, &a, &ImportOptions::default()).unwrap();
    let before = store.cids().unwrap().len();
    let mut batch = store.batch().unwrap();
    let digest: [u8; 32] = Sha256::digest(&b).into();
    let open = || -> shp_core::Result<Box<dyn Read>> { Ok(Box::new(std::io::Cursor::new(b.clone()))) };
    let mut w = DagWriter::new(&mut *batch);
    import_blob(
        &mut w,
        BlobKind::Layer,
        &open,
        Some((&digest, b.len() as u64)),
        &[],
        &ImportOptions::default(),
    )
    .unwrap();
    // Only structure and the small file are new: the 300 KB file's chunks are all shared.
    assert!(w.stats.new_bytes < 4000, "new bytes {}", w.stats.new_bytes);
    batch.commit().unwrap();
    assert!(store.cids().unwrap().len() - before <= 5);
}

#[test]
fn bad_layers_are_refused_and_leave_nothing() {
    let tar = build(
        &[Ent::File {
            name: b"f".to_vec(),
            data: pseudo(1, 100_000),
            pad: 0,
        }],
        false,
        2,
        b"",
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let store = MemoryStore::new();
    let e = import(&store, &gz[..gz.len() / 2], &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated gzip"), "{e}");
    let e = import(
        &store,
        &gz,
        &ImportOptions {
            max_layer_bytes: 50_000,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("limit"), "{e}");
    let mut bad = tar.clone();
    bad[0] ^= 0x40;
    let e = import(&store, &bad, &ImportOptions::default()).unwrap_err().to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
    assert!(store.cids().unwrap().is_empty());
    // A descriptor that lies about the digest.
    let mut batch = store.batch().unwrap();
    let open = || -> shp_core::Result<Box<dyn Read>> { Ok(Box::new(std::io::Cursor::new(tar.clone()))) };
    let mut w = DagWriter::new(&mut *batch);
    let e = import_blob(
        &mut w,
        BlobKind::Layer,
        &open,
        Some((&[0u8; 32], tar.len() as u64)),
        &[],
        &ImportOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("sha256:0000"), "{e}");
    drop(batch);
    assert!(store.cids().unwrap().is_empty());
}

#[test]
fn unknown_producer_is_opaque_and_exact() {
    // Two members at different levels over compressible data: no single profile writes both, so
    // the proof fails, the layer is kept opaque, and it still comes back exact.
    let text: Vec<u8> = pseudo(3, 400_000)
        .iter()
        .map(|b| b"abcdefgh  \n"[(*b % 11) as usize])
        .collect();
    let tar = build(
        &[Ent::File {
            name: b"words".to_vec(),
            data: text,
            pad: 0,
        }],
        false,
        2,
        b"",
    );
    let half = tar.len() / 2;
    let mut mixed = Vec::new();
    for (part, level) in [(&tar[..half], 1), (&tar[half..], 9)] {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        e.write_all(part).unwrap();
        mixed.extend_from_slice(&e.finish().unwrap());
    }
    let store = MemoryStore::new();
    let imported = import(&store, &mixed, &ImportOptions::default()).unwrap();
    assert_eq!(imported.storage, Storage::Opaque);
    assert_eq!(imported.diff_id, Some(<[u8; 32]>::from(Sha256::digest(&tar))));
    assert_eq!(read_back(&store, &imported.cid), mixed);
}

/// A gzip member whose deflate stream is stored blocks of `block` bytes: no producer writes that.
fn stored_gzip(data: &[u8], block: usize) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut parts = data.chunks(block).peekable();
    while let Some(p) = parts.next() {
        out.push(if parts.peek().is_none() { 1 } else { 0 });
        out.extend_from_slice(&(p.len() as u16).to_le_bytes());
        out.extend_from_slice(&(!(p.len() as u16)).to_le_bytes());
        out.extend_from_slice(p);
    }
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn stored_bytes(store: &MemoryStore) -> usize {
    store.cids().unwrap().iter().map(|c| store.get(c).unwrap().len()).sum()
}

#[test]
fn no_candidate_is_opaque_without_a_tar_dag() {
    // Small (the probe's head holds it whole): probed before the import, so the tar DAG is never
    // written and the store holds the compressed chunks and the blob node only.
    let noise = |seed: u64, len: usize| {
        let tar = build(
            &[Ent::File {
                name: b"noise".to_vec(),
                data: pseudo(seed, len),
                pad: 0,
            }],
            false,
            2,
            b"",
        );
        let gz = stored_gzip(&tar, 1000);
        (tar, gz)
    };
    let (tar, gz) = noise(11, 600_000);
    let store = MemoryStore::new();
    let imported = import(&store, &gz, &ImportOptions::default()).unwrap();
    assert_eq!(imported.storage, Storage::Opaque);
    assert_eq!(imported.diff_id, Some(<[u8; 32]>::from(Sha256::digest(&tar))));
    assert_eq!(read_back(&store, &imported.cid), gz);
    let stored = stored_bytes(&store);
    assert!(
        stored < gz.len() + 4096,
        "{stored} bytes stored for a {} byte blob",
        gz.len()
    );

    // Big (probed beside the import): still opaque and exact.
    let (tar, gz) = noise(12, 6 << 20);
    let store = MemoryStore::new();
    let imported = import(&store, &gz, &ImportOptions::default()).unwrap();
    assert_eq!(imported.storage, Storage::Opaque);
    assert_eq!(imported.diff_id, Some(<[u8; 32]>::from(Sha256::digest(&tar))));
    assert_eq!(read_back(&store, &imported.cid), gz);
}
