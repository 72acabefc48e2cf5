//! The tree index of a layer kept between mounts: the entries [`crate::tree::layer_entries`] reads
//! from a layer's tar headers, written once to `HOME/cache/trees/<tar CID>` and read back by the
//! next mount of that layer instead of walking its DAG again (and, in a lazy mount, instead of
//! fetching its headers again).
//!
//! A tar CID names its entries for ever, so an index never goes stale; it can only be lost or
//! damaged, and then it costs a walk, never a wrong tree. The file is `MAGIC`, the sha256 of the
//! body, then the body: a dag-cbor array with one array per entry (see [`encode`]). A file that
//! does not start with `MAGIC`, whose body does not hash to its sum, or that does not decode is
//! removed and the walk done again. The directory is bounded ([`MAX_BYTES`]): the least recently
//! used indexes go first. Writes are a temp file renamed in place, so a reader sees a whole index
//! or none.

use crate::tree::{Entry, Kind};
use shp_core::cbor::{self, Value};
use shp_core::cid::Cid;
use shp_core::Home;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The first bytes of an index file (the format's version is in it).
pub const MAGIC: &[u8; 16] = b"shp-tree-index1\n";
/// Bytes of indexes a home keeps (py311's two layers: about 1.5 MB).
pub const MAX_BYTES: u64 = 256 << 20;

fn dir(home: &Home) -> PathBuf {
    home.dir().join("cache").join("trees")
}

/// The kept entries of the layer whose tar node is `tar`, if an intact index is there.
pub fn load(home: &Home, tar: &Cid) -> Option<Vec<Entry>> {
    let path = dir(home).join(tar.to_string());
    let bytes = std::fs::read(&path).ok()?;
    match decode_file(&bytes) {
        Some(entries) => {
            // Recently used: the bound evicts the others first.
            if let Ok(f) = std::fs::File::options().write(true).open(&path) {
                let _ = f.set_modified(SystemTime::now());
            }
            Some(entries)
        }
        None => {
            let _ = std::fs::remove_file(&path);
            None
        }
    }
}

/// Keeps `entries` as the index of `tar`. Best effort: an index that cannot be written (a full
/// disk, a read-only home) only means the next mount walks the DAG again.
pub fn save(home: &Home, tar: &Cid, entries: &[Entry]) {
    let d = dir(home);
    if std::fs::create_dir_all(&d).is_err() {
        return;
    }
    let bytes = encode_file(entries);
    let path = d.join(tar.to_string());
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = d.join(format!(".tmp-{tar}-{}-{seq}", std::process::id()));
    if std::fs::write(&tmp, &bytes).is_err() || std::fs::rename(&tmp, &path).is_err() {
        let _ = std::fs::remove_file(&tmp);
        return;
    }
    trim(&d, MAX_BYTES);
}

/// Removes the least recently used indexes until the directory holds at most `max` bytes.
fn trim(d: &Path, max: u64) {
    let Ok(rd) = std::fs::read_dir(d) else { return };
    let mut files: Vec<(SystemTime, u64, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((m.modified().ok()?, m.len(), e.path()))
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    for (_, len, p) in files {
        if total <= max {
            break;
        }
        if std::fs::remove_file(&p).is_ok() {
            total -= len;
        }
    }
}

fn encode_file(entries: &[Entry]) -> Vec<u8> {
    let body = encode(entries);
    let mut out = Vec::with_capacity(MAGIC.len() + 32 + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&sha256(&body));
    out.extend_from_slice(&body);
    out
}

fn decode_file(bytes: &[u8]) -> Option<Vec<Entry>> {
    let rest = bytes.strip_prefix(&MAGIC[..])?;
    if rest.len() < 32 {
        return None;
    }
    let (sum, body) = rest.split_at(32);
    if sha256(body)[..] != sum[..] {
        return None;
    }
    decode(body)
}

fn sha256(b: &[u8]) -> [u8; 32] {
    // A raw CID's digest is the sha256 of its bytes.
    *Cid::hash(shp_core::cid::RAW, b).digest()
}

fn kind_code(k: Kind) -> u64 {
    match k {
        Kind::File => 0,
        Kind::Dir => 1,
        Kind::Symlink => 2,
        Kind::Fifo => 3,
        Kind::Char => 4,
        Kind::Block => 5,
    }
}

fn kind_of(n: u64) -> Option<Kind> {
    Some(match n {
        0 => Kind::File,
        1 => Kind::Dir,
        2 => Kind::Symlink,
        3 => Kind::Fifo,
        4 => Kind::Char,
        5 => Kind::Block,
        _ => return None,
    })
}

/// Entries as dag-cbor: `[[name, kind, hardlink | null, mode, uid, gid, mtime_s, mtime_ns, size,
/// target, [major, minor], [[key, value] ...], [&chunk ...], [len ...] | null] ...]`.
pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let int = |n: i64| {
        if n >= 0 {
            Value::UInt(n as u64)
        } else {
            Value::NegInt((-1 - n) as u64)
        }
    };
    let rows = entries
        .iter()
        .map(|e| {
            Value::Array(vec![
                Value::Bytes(e.name.clone()),
                Value::UInt(kind_code(e.kind)),
                e.hardlink.clone().map_or(Value::Null, Value::Bytes),
                Value::UInt(e.mode as u64),
                Value::UInt(e.uid as u64),
                Value::UInt(e.gid as u64),
                int(e.mtime.0),
                Value::UInt(e.mtime.1 as u64),
                Value::UInt(e.size),
                Value::Bytes(e.target.clone()),
                Value::Array(vec![Value::UInt(e.dev.0 as u64), Value::UInt(e.dev.1 as u64)]),
                Value::Array(
                    e.xattrs
                        .iter()
                        .map(|(k, v)| Value::Array(vec![Value::Bytes(k.clone()), Value::Bytes(v.clone())]))
                        .collect(),
                ),
                Value::links(&e.data),
                e.data_lens.as_ref().map_or(Value::Null, |l| {
                    Value::Array(l.iter().map(|n| Value::UInt(*n)).collect())
                }),
            ])
        })
        .collect();
    cbor::encode(&Value::Array(rows))
}

/// [`encode`]'s inverse; `None` for anything else.
pub fn decode(body: &[u8]) -> Option<Vec<Entry>> {
    let v = cbor::decode(body).ok()?;
    let u32_of = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let bytes = |v: &Value| v.as_bytes().map(<[u8]>::to_vec);
    v.as_array()?
        .iter()
        .map(|row| {
            let f = row.as_array().filter(|f| f.len() == 14)?;
            let mtime_s = match &f[6] {
                Value::UInt(n) => i64::try_from(*n).ok()?,
                Value::NegInt(n) => -1 - i64::try_from(*n).ok()?,
                _ => return None,
            };
            let dev = f[10].as_array().filter(|d| d.len() == 2)?;
            let xattrs = f[11]
                .as_array()?
                .iter()
                .map(|kv| {
                    let kv = kv.as_array().filter(|kv| kv.len() == 2)?;
                    Some((bytes(&kv[0])?, bytes(&kv[1])?))
                })
                .collect::<Option<Vec<_>>>()?;
            let data = f[12]
                .as_array()?
                .iter()
                .map(Value::as_link)
                .collect::<Option<Vec<Cid>>>()?;
            let data_lens = match &f[13] {
                Value::Null => None,
                l => Some(l.as_array()?.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>()?),
            };
            Some(Entry {
                name: bytes(&f[0])?,
                kind: kind_of(f[1].as_u64()?)?,
                hardlink: match &f[2] {
                    Value::Null => None,
                    b => Some(bytes(b)?),
                },
                mode: u32_of(&f[3])?,
                uid: u32_of(&f[4])?,
                gid: u32_of(&f[5])?,
                mtime: (mtime_s, u32_of(&f[7])?),
                size: f[8].as_u64()?,
                target: bytes(&f[9])?,
                dev: (u32_of(&dev[0])?, u32_of(&dev[1])?),
                xattrs,
                data,
                data_lens,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn same(a: &Entry, b: &Entry) -> bool {
        a.name == b.name
            && a.kind == b.kind
            && a.hardlink == b.hardlink
            && (a.mode, a.uid, a.gid, a.mtime, a.size) == (b.mode, b.uid, b.gid, b.mtime, b.size)
            && a.target == b.target
            && a.dev == b.dev
            && a.xattrs == b.xattrs
            && a.data == b.data
            && a.data_lens == b.data_lens
    }

    fn entry() -> impl Strategy<Value = Entry> {
        (
            (
                proptest::collection::vec(any::<u8>(), 0..40),
                0u64..6,
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                any::<i64>(),
                0u32..1_000_000_000,
            ),
            (
                any::<u64>(),
                proptest::collection::vec(any::<u8>(), 0..20),
                (any::<u32>(), any::<u32>()),
                proptest::collection::vec(
                    (
                        proptest::collection::vec(any::<u8>(), 0..10),
                        proptest::collection::vec(any::<u8>(), 0..10),
                    ),
                    0..3,
                ),
                proptest::collection::vec(any::<[u8; 8]>(), 0..4),
                proptest::option::of(proptest::collection::vec(1u64..300_000, 2..5)),
            ),
        )
            .prop_map(
                |((name, kind, hardlink, mode, uid, gid, s, ns), (size, target, dev, xattrs, data, lens))| Entry {
                    name,
                    kind: kind_of(kind).unwrap(),
                    hardlink,
                    mode,
                    uid,
                    gid,
                    mtime: (s, ns),
                    size,
                    target,
                    dev,
                    xattrs,
                    data: data.iter().map(|d| Cid::hash(shp_core::cid::RAW, d)).collect(),
                    data_lens: lens,
                },
            )
    }

    proptest! {
        #[test]
        fn entries_survive_encode_and_decode(entries in proptest::collection::vec(entry(), 0..8)) {
            let back = decode_file(&encode_file(&entries)).expect("decodes");
            prop_assert_eq!(back.len(), entries.len());
            for (a, b) in entries.iter().zip(&back) {
                prop_assert!(same(a, b), "{:?} != {:?}", a, b);
            }
        }

        #[test]
        fn damaged_files_are_refused(entries in proptest::collection::vec(entry(), 1..4), at in any::<usize>(), bit in 0u8..8) {
            let mut f = encode_file(&entries);
            let i = at % f.len();
            f[i] ^= 1 << bit;
            prop_assert!(decode_file(&f).is_none(), "a flipped bit at {} passed", i);
            prop_assert!(decode_file(&f[..f.len() - 1]).is_none());
        }
    }

    /// Saved, loaded back; a damaged file is removed and not loaded.
    #[test]
    fn kept_in_the_home_and_dropped_when_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::init(dir.path()).unwrap();
        let tar = Cid::hash(shp_core::cid::DAG_CBOR, b"a tar node");
        assert!(load(&home, &tar).is_none());
        let e = Entry {
            name: b"usr/bin/python3".to_vec(),
            kind: Kind::File,
            hardlink: None,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: (-5, 7),
            size: 10,
            target: Vec::new(),
            dev: (0, 0),
            xattrs: vec![(b"security.capability".to_vec(), vec![1, 2, 3])],
            data: vec![Cid::hash(shp_core::cid::RAW, b"0123456789")],
            data_lens: None,
        };
        save(&home, &tar, std::slice::from_ref(&e));
        let back = load(&home, &tar).expect("kept");
        assert!(same(&back[0], &e));
        let path = dir.path().join("cache/trees").join(tar.to_string());
        let mut b = std::fs::read(&path).unwrap();
        let n = b.len();
        b[n - 3] ^= 0x40;
        std::fs::write(&path, &b).unwrap();
        assert!(load(&home, &tar).is_none(), "damaged: not used");
        assert!(!path.exists(), "damaged: removed");
    }

    #[test]
    fn the_bound_evicts_the_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (i, name) in ["old", "mid", "new"].iter().enumerate() {
            let p = d.join(name);
            std::fs::write(&p, vec![0u8; 1000]).unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000 * (i as u64 + 1)))
                .unwrap();
        }
        trim(d, 2000);
        assert!(!d.join("old").exists() && d.join("mid").exists() && d.join("new").exists());
    }
}
