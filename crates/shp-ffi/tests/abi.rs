//! The C ABI driven from Rust: the paths the C and Go examples cannot reach easily (kind
//! fallback, a corrupt store, status mapping, threads sharing one handle).

use sha2::{Digest, Sha256};
use shp_ffi::*;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io::Write;
use std::ptr::null_mut;

fn digest(b: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(b))
}

fn last_error() -> String {
    let p = shp_last_error_message();
    assert!(!p.is_null(), "a failed call leaves a message");
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

struct Store(*mut shp_store);
// The handle is documented thread-safe; this wrapper lets the tests share it.
unsafe impl Send for Store {}
unsafe impl Sync for Store {}

impl Store {
    fn open(dir: &std::path::Path) -> Store {
        let c = CString::new(dir.to_str().unwrap()).unwrap();
        let mut s = null_mut();
        assert_eq!(unsafe { shp_store_open(c.as_ptr(), &mut s) }, 0);
        Store(s)
    }

    fn put(&self, expected: Option<&str>, kind: shp_blob_kind, data: &[u8]) -> Result<String, (c_int, String)> {
        let e = expected.map(|d| CString::new(d).unwrap());
        let mut w = null_mut();
        unsafe {
            let rc = shp_blob_writer_new_kind(
                self.0,
                e.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
                kind as c_int,
                &mut w,
            );
            if rc != 0 {
                return Err((rc, last_error()));
            }
            for piece in data.chunks(7919) {
                assert_eq!(shp_blob_writer_write(w, piece.as_ptr(), piece.len()), 0);
            }
            let mut out = [0 as c_char; SHP_DIGEST_BUF_LEN];
            let rc = shp_blob_writer_commit(w, out.as_mut_ptr(), out.len());
            shp_blob_writer_free(w);
            if rc != 0 {
                return Err((rc, last_error()));
            }
            Ok(CStr::from_ptr(out.as_ptr()).to_str().unwrap().to_string())
        }
    }

    fn get(&self, d: &str) -> Result<Vec<u8>, (i64, String)> {
        let c = CString::new(d).unwrap();
        let mut r = null_mut();
        unsafe {
            let rc = shp_blob_reader_open(self.0, c.as_ptr(), &mut r);
            if rc != 0 {
                return Err((rc as i64, last_error()));
            }
            let mut out = Vec::new();
            let mut buf = vec![0u8; 65536];
            let res = loop {
                match shp_blob_reader_read(r, buf.as_mut_ptr(), buf.len()) {
                    0 => break Ok(out),
                    n if n > 0 => out.extend_from_slice(&buf[..n as usize]),
                    e => {
                        let msg = last_error();
                        // A failed reader keeps failing the same way.
                        assert_eq!(shp_blob_reader_read(r, buf.as_mut_ptr(), buf.len()), e);
                        break Err((e, msg));
                    }
                }
            };
            shp_blob_reader_free(r);
            res
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        unsafe { shp_store_free(self.0) }
    }
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn pseudo_random(n: usize, mut x: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn anything_that_looks_like_a_layer_but_is_not_is_kept_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path());
    let not_tar = gzip(&pseudo_random(200_000, 7)); // gzip magic, no tar inside
    let mut bad_gzip = vec![0x1f, 0x8b];
    bad_gzip.extend(pseudo_random(50_000, 9)); // gzip magic, corrupt stream
    for blob in [&not_tar, &bad_gzip] {
        let d = digest(blob);
        assert_eq!(s.put(Some(&d), shp_blob_kind::SHP_BLOB_AUTO, blob).unwrap(), d);
        assert_eq!(&s.get(&d).unwrap(), blob);
        // Forced to be a layer, it is refused as invalid input.
        let (rc, msg) = s.put(Some(&d), shp_blob_kind::SHP_BLOB_LAYER, blob).unwrap_err();
        assert_eq!(rc, shp_status::SHP_INVALID_INPUT as c_int, "{msg}");
    }
    // The wrong digest still wins over the fallback.
    let (rc, _) = s
        .put(Some(&digest(b"x")), shp_blob_kind::SHP_BLOB_AUTO, &not_tar)
        .unwrap_err();
    assert_eq!(rc, shp_status::SHP_DIGEST_MISMATCH as c_int);
}

/// A one-file ustar archive.
fn tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[136..148].copy_from_slice(b"14536336200\0");
    h[156] = b'0';
    h[257..265].copy_from_slice(b"ustar\x0000");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

#[test]
fn layers_are_decomposed_and_shared() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path());
    let file = pseudo_random(3 << 20, 11);
    let plain = tar("data/big.bin", &file);
    let gz = gzip(&plain);
    for blob in [&plain, &gz] {
        let d = digest(blob);
        assert_eq!(s.put(None, shp_blob_kind::SHP_BLOB_AUTO, blob).unwrap(), d);
        assert_eq!(&s.get(&d).unwrap(), blob);
    }
    // The second layer holds the same file: it cost only its own few blocks, so the store is
    // far smaller than the two layers together.
    let packs: u64 = std::fs::read_dir(dir.path().join("store/packs"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        packs < (plain.len() + gz.len()) as u64 * 3 / 5,
        "store holds {packs} bytes"
    );
}

/// A home set to defer compression: blobs land raw, `shp_store_compact` compresses them (while the
/// handle stays open), and every blob reads back the same.
#[test]
fn compact_compresses_a_deferred_store() {
    let dir = tempfile::tempdir().unwrap();
    let deferred = shp_core::store::Compression::parse("zstd:3,deferred").unwrap();
    drop(shp_core::Home::init_with(dir.path(), Some(deferred)).unwrap());
    let s = Store::open(dir.path());
    let text: Vec<u8> = (0..40_000u32)
        .flat_map(|i| format!("line {i} of a log\n").into_bytes())
        .collect();
    let layer = gzip(&tar("var/log/app.log", &text));
    let d = s.put(None, shp_blob_kind::SHP_BLOB_AUTO, &layer).unwrap();
    let (mut before, mut after) = (0u64, 0u64);
    assert_eq!(
        unsafe { shp_store_compact(s.0, &mut before, &mut after) },
        0,
        "{}",
        last_error()
    );
    assert!(before > text.len() as u64 && after * 4 < before, "{before} -> {after}");
    assert_eq!(s.get(&d).unwrap(), layer);
    // Nothing left; NULL outputs are fine.
    assert_eq!(unsafe { shp_store_compact(s.0, null_mut(), &mut after) }, 0);
    assert_eq!(after, 0);
    assert_eq!(
        unsafe { shp_store_compact(null_mut(), null_mut(), null_mut()) },
        shp_status::SHP_INVALID_ARGUMENT as c_int
    );
}

#[test]
fn a_corrupt_store_is_reported_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path());
    let blob = pseudo_random(1 << 20, 3);
    let d = s.put(None, shp_blob_kind::SHP_BLOB_OTHER, &blob).unwrap();
    drop(s);
    // Flip bytes in the middle of every pack: blocks no longer hash to their CIDs.
    for e in std::fs::read_dir(dir.path().join("store/packs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "pack") {
            let mut b = std::fs::read(&p).unwrap();
            let mid = b.len() / 2;
            for x in &mut b[mid..mid + 64] {
                *x ^= 0xff;
            }
            std::fs::write(&p, b).unwrap();
        }
    }
    let s = Store::open(dir.path());
    let (rc, msg) = s.get(&d).unwrap_err();
    assert_eq!(rc, -(shp_status::SHP_CORRUPT as i64), "{msg}");
    assert!(msg.contains("corrupt"), "{msg}");
}

#[test]
fn one_handle_many_threads() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path());
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..4 {
                    let b = pseudo_random(10_000 + (t * 4 + i) as usize * 997, t * 100 + i + 1);
                    let d = s.put(None, shp_blob_kind::SHP_BLOB_AUTO, &b).unwrap();
                    assert_eq!(s.get(&d).unwrap(), b);
                }
            });
        }
    });
    extern "C" fn count(_: *const c_char, ctx: *mut c_void) -> c_int {
        unsafe { *(ctx as *mut usize) += 1 };
        0
    }
    let mut n = 0usize;
    assert_eq!(
        unsafe { shp_blob_list(s.0, Some(count), &mut n as *mut usize as *mut c_void) },
        0
    );
    assert_eq!(n, 32);
}

#[test]
fn status_names_and_messages() {
    for code in 0..=10 {
        let name = unsafe { CStr::from_ptr(shp_status_name(code)) }.to_str().unwrap();
        assert!(name.starts_with("SHP_") && name != "SHP_UNKNOWN", "{code}: {name}");
    }
    assert_eq!(
        unsafe { CStr::from_ptr(shp_status_name(99)) }.to_str().unwrap(),
        "SHP_UNKNOWN"
    );
    // Not a home and cannot be made one: a file stands where the directory should be.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let c = CString::new(file.join("home").to_str().unwrap()).unwrap();
    let mut s = null_mut();
    let rc = unsafe { shp_store_open(c.as_ptr(), &mut s) };
    assert_eq!(rc, shp_status::SHP_IO as c_int);
    assert!(s.is_null());
    assert!(last_error().contains("file/home"), "{}", last_error());
    // Messages are per thread.
    std::thread::spawn(|| assert!(shp_last_error_message().is_null()))
        .join()
        .unwrap();
    // A non-UTF-8 digest.
    let s = Store::open(&dir.path().join("home"));
    let bad = [0xffu8 as c_char, 0];
    let mut size = 0u64;
    assert_eq!(
        unsafe { shp_blob_stat(s.0, bad.as_ptr(), &mut size) },
        shp_status::SHP_INVALID_ARGUMENT as c_int
    );
}

fn cstr(b: &[c_char]) -> String {
    unsafe { CStr::from_ptr(b.as_ptr()) }.to_str().unwrap().to_string()
}

impl Store {
    fn commit(&self, manifest: &[u8], media_type: Option<&str>, name: Option<&str>) -> Result<String, (c_int, String)> {
        let mt = media_type.map(|m| CString::new(m).unwrap());
        let n = name.map(|m| CString::new(m).unwrap());
        let mut out = [0 as c_char; SHP_CID_BUF_LEN];
        let rc = unsafe {
            shp_image_commit(
                self.0,
                manifest.as_ptr(),
                manifest.len(),
                mt.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
                n.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
                out.as_mut_ptr(),
                out.len(),
            )
        };
        if rc != 0 {
            return Err((rc, last_error()));
        }
        Ok(cstr(&out))
    }

    fn top_digest(&self, id: &str) -> Result<String, (c_int, String)> {
        let c = CString::new(id).unwrap();
        let mut out = [0 as c_char; SHP_DIGEST_BUF_LEN];
        match unsafe { shp_image_top_digest(self.0, c.as_ptr(), out.as_mut_ptr(), out.len()) } {
            0 => Ok(cstr(&out)),
            rc => Err((rc, last_error())),
        }
    }

    fn resolve(&self, id: &str) -> Result<String, (c_int, String)> {
        let c = CString::new(id).unwrap();
        let mut out = [0 as c_char; SHP_CID_BUF_LEN];
        match unsafe { shp_image_resolve(self.0, c.as_ptr(), out.as_mut_ptr(), out.len()) } {
            0 => Ok(cstr(&out)),
            rc => Err((rc, last_error())),
        }
    }
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let layers: Vec<String> = layers
        .iter()
        .map(|l| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}"#,
                digest(l),
                l.len()
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]}}"#,
        digest(config),
        config.len(),
        layers.join(",")
    )
    .into_bytes()
}

#[test]
fn images_are_committed_from_stored_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path());
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let layer = gzip(&tar("etc/hello", b"hello\n"));
    let m = manifest(&config, &[&layer]);

    // A blob the manifest names is missing: refused, naming it, and nothing is named.
    s.put(None, shp_blob_kind::SHP_BLOB_AUTO, &config).unwrap();
    let (rc, msg) = s.commit(&m, None, Some("app:1")).unwrap_err();
    assert_eq!(rc, shp_status::SHP_INVALID_INPUT as c_int, "{msg}");
    assert!(msg.contains(&digest(&layer)), "{msg}");
    let (rc, _) = s.resolve("app:1").unwrap_err();
    assert_eq!(rc, shp_status::SHP_NOT_FOUND as c_int);

    // Blobs first, then the manifest.
    s.put(Some(&digest(&layer)), shp_blob_kind::SHP_BLOB_AUTO, &layer)
        .unwrap();
    let root = s.commit(&m, None, Some("app:1")).unwrap();
    assert!(root.starts_with('b') && root.len() == SHP_CID_BUF_LEN - 1, "{root}");
    assert_eq!(s.resolve("app:1").unwrap(), root);
    assert_eq!(s.resolve(&root).unwrap(), root);
    assert_eq!(s.top_digest("app:1").unwrap(), digest(&m));
    assert_eq!(s.top_digest(&root).unwrap(), digest(&m));
    // The manifest is a blob now, byte for byte, and so are the others.
    assert_eq!(s.get(&digest(&m)).unwrap(), m);
    assert_eq!(s.get(&digest(&layer)).unwrap(), layer);

    // An index over it (its child manifest is in the store as part of app:1).
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
        digest(&m),
        m.len()
    )
    .into_bytes();
    let iroot = s.commit(&index, Some(OCI_INDEX), None).unwrap();
    assert_ne!(iroot, root);
    assert_eq!(s.top_digest(&iroot).unwrap(), digest(&index));
    assert_eq!(s.get(&digest(&index)).unwrap(), index);

    // Bad arguments change nothing.
    let mut small = [0 as c_char; SHP_CID_BUF_LEN - 1];
    let rc = unsafe {
        shp_image_commit(
            s.0,
            m.as_ptr(),
            m.len(),
            std::ptr::null(),
            std::ptr::null(),
            small.as_mut_ptr(),
            small.len(),
        )
    };
    assert_eq!(rc, shp_status::SHP_BUFFER_TOO_SMALL as c_int);
    let rc = unsafe {
        shp_image_commit(
            s.0,
            std::ptr::null(),
            0,
            std::ptr::null(),
            std::ptr::null(),
            null_mut(),
            0,
        )
    };
    assert_eq!(rc, shp_status::SHP_INVALID_ARGUMENT as c_int);
    let (rc, msg) = s.commit(b"{\"schemaVersion\":2}", None, None).unwrap_err();
    assert_eq!(rc, shp_status::SHP_INVALID_INPUT as c_int, "{msg}");
    let (rc, msg) = s.commit(&config, Some("application/json"), None).unwrap_err();
    assert_eq!(rc, shp_status::SHP_INVALID_INPUT as c_int, "{msg}");
    let (rc, msg) = s.commit(&m, None, Some("bad name with spaces")).unwrap_err();
    assert_eq!(rc, shp_status::SHP_INVALID_ARGUMENT as c_int, "{msg}");
    let (rc, _) = s.top_digest("no-such-name").unwrap_err();
    assert_eq!(rc, shp_status::SHP_NOT_FOUND as c_int);
    let c = CString::new("app:1").unwrap();
    let mut small = [0 as c_char; SHP_DIGEST_BUF_LEN - 1];
    let rc = unsafe { shp_image_top_digest(s.0, c.as_ptr(), small.as_mut_ptr(), small.len()) };
    assert_eq!(rc, shp_status::SHP_BUFFER_TOO_SMALL as c_int);
    // The refs hold exactly one name and one pin.
    let refs: String = std::fs::read_to_string(dir.path().join("refs.json")).unwrap();
    assert!(refs.contains("app:1") && refs.contains(&iroot), "{refs}");
}

struct Reader(*mut shp_blob_reader);
// A reader may move between threads between calls (the engine's reader is Send).
unsafe impl Send for Reader {}

#[test]
fn readers_outlive_their_store_handle_and_move_between_threads() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path());
    let blob = gzip(&tar("data/x.bin", &pseudo_random(1 << 20, 5)));
    let d = s.put(None, shp_blob_kind::SHP_BLOB_AUTO, &blob).unwrap();
    let c = CString::new(d.as_str()).unwrap();
    let mut r = null_mut();
    assert_eq!(unsafe { shp_blob_reader_open(s.0, c.as_ptr(), &mut r) }, 0);
    drop(s); // frees the store handle
    let r = Reader(r);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 100_000];
    // Half on this thread...
    while out.len() < blob.len() / 2 {
        let n = unsafe { shp_blob_reader_read(r.0, buf.as_mut_ptr(), buf.len()) };
        assert!(n > 0);
        out.extend_from_slice(&buf[..n as usize]);
    }
    // ...the rest on another.
    let out = std::thread::spawn(move || {
        let r = r;
        loop {
            match unsafe { shp_blob_reader_read(r.0, buf.as_mut_ptr(), buf.len()) } {
                0 => break,
                n if n > 0 => out.extend_from_slice(&buf[..n as usize]),
                e => panic!("read failed: {e}: {}", last_error()),
            }
        }
        unsafe { shp_blob_reader_free(r.0) };
        out
    })
    .join()
    .unwrap();
    assert_eq!(out, blob);
    // No such blob: SHP_NOT_FOUND, no reader.
    let s = Store::open(dir.path());
    let absent = CString::new(digest(b"absent")).unwrap();
    let mut r = std::ptr::dangling_mut();
    assert_eq!(
        unsafe { shp_blob_reader_open(s.0, absent.as_ptr(), &mut r) },
        shp_status::SHP_NOT_FOUND as c_int
    );
    assert!(r.is_null());
    assert!(last_error().contains(&digest(b"absent")), "{}", last_error());
}

/// Readers of one cold layer opened at once from many threads share its rebuild: all read the
/// same bytes; when the store is corrupt, all get the same SHP_CORRUPT message.
#[test]
fn concurrent_readers_of_a_layer_agree() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path());
    let layer = gzip(&tar("data/big.bin", &pseudo_random(3 << 20, 13)));
    let d = s.put(None, shp_blob_kind::SHP_BLOB_AUTO, &layer).unwrap();
    let read_all = |s: &Store| -> Vec<Result<Vec<u8>, (i64, String)>> {
        let barrier = std::sync::Barrier::new(6);
        std::thread::scope(|scope| {
            let hs: Vec<_> = (0..6)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        s.get(&d)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    for got in read_all(&s) {
        assert!(got.unwrap() == layer, "a reader got other bytes");
    }
    drop(s);
    let _ = std::fs::remove_dir_all(dir.path().join("cache"));
    // Flip a byte in the middle of the largest block of every pack.
    for e in std::fs::read_dir(dir.path().join("store/packs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "pack") {
            let mut b = std::fs::read(&p).unwrap();
            let (mut at, mut best) = (8usize, (0usize, 0usize));
            while at + 45 <= b.len() {
                let stored = u32::from_le_bytes(b[at + 37..at + 41].try_into().unwrap()) as usize;
                if stored > best.1 {
                    best = (at + 45, stored);
                }
                at += 45 + stored;
            }
            b[best.0 + best.1 / 2] ^= 0x10;
            std::fs::write(&p, b).unwrap();
        }
    }
    let s = Store::open(dir.path());
    let errs: Vec<(i64, String)> = read_all(&s).into_iter().map(|r| r.unwrap_err()).collect();
    assert!(errs.iter().all(|e| *e == errs[0]), "{errs:#?}");
    assert_eq!(errs[0].0, -(shp_status::SHP_CORRUPT as i64), "{}", errs[0].1);
}
