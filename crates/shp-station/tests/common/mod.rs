//! Shared machinery of the station's tests: OCI layouts of generated images (real tars, gzip'd by
//! zlib at level 6 so a recipe is found), homes, and a corrupting HTTP proxy in front of a real
//! gateway. Everything binds 127.0.0.1, every loop is bounded, and every server stops on Drop.

#![allow(dead_code)]

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shp_core::car;
use shp_core::cid::Cid;
use shp_core::store::Blockstore;
use shp_core::tar::HeaderBuilder;
use shp_core::Home;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

pub fn digest_of(b: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(b)))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Deterministic text-like bytes (words from a small vocabulary): compressible like real files.
pub fn text_bytes(seed: u64, n: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "import", "def", "return", "self", "value", "lambda", "config", "station", "layer", "chunk", "block", "while",
        "for", "class", "None", "print",
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x & 15) as usize].as_bytes());
        out.extend_from_slice(match (x >> 8) % 11 {
            0 => b"\n",
            1 => b"(",
            2 => b") ",
            _ => b" ",
        });
        // a sprinkle of numbers keeps it from compressing absurdly well
        if (x >> 16).is_multiple_of(5) {
            out.extend_from_slice(format!("{} ", (x >> 24) % 100000).as_bytes());
        }
    }
    out.truncate(n);
    out
}

/// A ustar archive of `files` (name, bytes), regular files, mtime 0, ending with two zero blocks.
pub fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut t = Vec::new();
    for (name, data) in files {
        t.extend_from_slice(&HeaderBuilder::new(name.as_bytes(), b'0', data.len() as u64).block());
        t.extend_from_slice(data);
        t.resize(t.len().div_ceil(512) * 512, 0);
    }
    t.resize(t.len() + 1024, 0);
    t
}

/// gzip at level 6 with zlib (what Python and other zlib users write): shp finds a recipe.
pub fn gzip6(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// An "app" layer: `n` files of `size` bytes; `changed` (if any) gets a few bytes altered.
pub fn app_files(n: usize, size: usize, changed: Option<usize>) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let mut d = text_bytes(i as u64 + 1, size);
            if changed == Some(i) {
                let mid = d.len() / 2;
                d[mid..mid + 12].copy_from_slice(b"VERSION 2.0!");
            }
            (format!("app/module{i:03}.py"), d)
        })
        .collect()
}

/// An OCI image layout directory being written.
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn create(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        if !dir.join("index.json").exists() {
            std::fs::write(
                dir.join("index.json"),
                serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": []})).unwrap(),
            )
            .unwrap();
        }
        Layout { dir: dir.to_path_buf() }
    }

    pub fn put_blob(&self, b: &[u8]) -> String {
        let d = digest_of(b);
        std::fs::write(self.blob_path(&d), b).unwrap();
        d
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
    }

    pub fn blob(&self, digest: &str) -> Vec<u8> {
        std::fs::read(self.blob_path(digest)).unwrap()
    }

    /// Writes an image of gzip'd `layers` (uncompressed tars) tagged `tag`; returns the manifest
    /// digest and the compressed layers' digests and sizes.
    pub fn write_image(&self, tag: &str, layers: &[Vec<u8>]) -> (String, Vec<(String, u64)>) {
        let diff_ids: Vec<String> = layers.iter().map(|l| digest_of(l)).collect();
        let config = serde_json::to_vec(&json!({
            "created": "2024-01-01T00:00:00Z", "architecture": "amd64", "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let cdigest = self.put_blob(&config);
        let mut out = Vec::new();
        let descs: Vec<Value> = layers
            .iter()
            .map(|l| {
                let gz = gzip6(l);
                let d = self.put_blob(&gz);
                out.push((d.clone(), gz.len() as u64));
                json!({"mediaType": LAYER_GZIP, "digest": d, "size": gz.len()})
            })
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": config.len()},
            "layers": descs,
        }))
        .unwrap();
        let mdigest = self.put_blob(&manifest);
        let ipath = self.dir.join("index.json");
        let mut index: Value = serde_json::from_slice(&std::fs::read(&ipath).unwrap()).unwrap();
        let ms = index["manifests"].as_array_mut().unwrap();
        ms.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] != json!(tag));
        ms.push(
            json!({"mediaType": OCI_MANIFEST, "digest": mdigest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}}),
        );
        std::fs::write(&ipath, serde_json::to_vec(&index).unwrap()).unwrap();
        (mdigest, out)
    }

    /// The manifest digest `tag` names in index.json.
    pub fn ref_digest(&self, tag: &str) -> String {
        let index: Value = serde_json::from_slice(&std::fs::read(self.dir.join("index.json")).unwrap()).unwrap();
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == json!(tag))
            .unwrap_or_else(|| panic!("no ref {tag}"))["digest"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// Checks `out:tag` is `src:tag` bit-exact: same manifest digest, and the manifest's config and
/// layers are byte-identical files.
pub fn assert_same_image(src: &Layout, out: &Layout, tag: &str) {
    let d = src.ref_digest(tag);
    assert_eq!(out.ref_digest(tag), d, "manifest digest of {tag}");
    let mbytes = out.blob(&d);
    assert_eq!(mbytes, src.blob(&d));
    let m: Value = serde_json::from_slice(&mbytes).unwrap();
    let mut digests = vec![m["config"]["digest"].as_str().unwrap().to_string()];
    for l in m["layers"].as_array().unwrap() {
        digests.push(l["digest"].as_str().unwrap().to_string());
    }
    for dg in digests {
        let b = out.blob(&dg);
        assert_eq!(digest_of(&b), dg, "blob {dg} in the pulled layout");
        assert_eq!(b, src.blob(&dg), "blob {dg}");
    }
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("shp-station-test").tempdir().unwrap()
}

pub fn new_home(dir: &Path) -> Home {
    Home::init(dir).unwrap()
}

/// Pushes `oci:DIR:TAG` into `home`; returns the root.
pub fn push(home: &Home, layout: &Layout, tag: &str) -> Cid {
    let src = format!("oci:{}:{tag}", layout.dir.display()).parse().unwrap();
    home.push(&src, Some(tag), Home::no_progress()).unwrap().import.root
}

/// Every CID of the DAG under `root` in `store`.
pub fn dag_cids(store: &dyn Blockstore, root: &Cid) -> Vec<Cid> {
    let mut out = Vec::new();
    car::walk(store, root, &mut |c, _| {
        out.push(*c);
        Ok(())
    })
    .unwrap();
    out
}

/// A tiny HTTP/1.1 proxy in front of a real gateway that flips the last byte of every successful
/// body it relays (it asks upstream for identity encoding, so the bytes it flips are block bytes).
/// One thread per connection; `Connection: close`; stops on Drop.
pub struct CorruptingProxy {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    pub relayed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CorruptingProxy {
    pub fn start(upstream: String) -> CorruptingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let relayed = Arc::new(AtomicU64::new(0));
        let (s, r) = (stop.clone(), relayed.clone());
        let thread = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (client, up, r) = (client.clone(), upstream.clone(), r.clone());
                        std::thread::spawn(move || {
                            let _ = relay(conn, &client, &up, &r);
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break,
                }
            }
        });
        CorruptingProxy {
            addr,
            stop,
            relayed,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for CorruptingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn relay(
    mut conn: TcpStream,
    client: &reqwest::blocking::Client,
    upstream: &str,
    n: &AtomicU64,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte)? == 0 || buf.len() > 64 << 10 {
            return Ok(());
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (method, path) = (
        first.next().unwrap_or("GET").to_string(),
        first.next().unwrap_or("/").to_string(),
    );
    let mut len = 0usize;
    let mut req = client.request(method.parse().unwrap(), format!("{upstream}{path}"));
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if k == "content-length" {
                len = v.trim().parse().unwrap_or(0);
            } else if k == "accept" || k == "content-type" {
                req = req.header(k, v.trim());
            }
        }
    }
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body)?;
    let resp = req.header("accept-encoding", "identity").body(body).send();
    let (status, ctype, mut data) = match resp {
        Ok(r) => {
            let st = r.status().as_u16();
            let ct = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/octet-stream")
                .to_string();
            (st, ct, r.bytes().map(|b| b.to_vec()).unwrap_or_default())
        }
        Err(_) => (502, "text/plain".to_string(), b"bad gateway".to_vec()),
    };
    if status == 200 && method != "HEAD" {
        if let Some(last) = data.last_mut() {
            *last ^= 0x5a;
            n.fetch_add(1, Ordering::Relaxed);
        }
    }
    let mut out = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        data.len()
    )
    .into_bytes();
    if method != "HEAD" {
        out.append(&mut data);
    }
    conn.write_all(&out)?;
    conn.flush()
}
