//! Shared machinery of the registry tests: the busybox fixtures (tests/interop/make-images.sh,
//! built once per test process), a station on 127.0.0.1:0 over a temporary home, an HTTP client,
//! and OCI layout helpers.

#![allow(dead_code)]

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use shp_station::auth::AuthSpec;
use shp_station::server::{Config, Running, Station};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;
use tempfile::TempDir;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The fixture images (see make-images.sh): `oci/` and `multi/`.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let parent = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("shp-station-fixtures");
        std::fs::create_dir_all(&parent).unwrap();
        for e in std::fs::read_dir(&parent).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("pid-").and_then(|p| p.parse::<u32>().ok()) {
                if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = parent.join(format!("pid-{}", std::process::id()));
        let script = repo_root().join("tests/interop/make-images.sh");
        let out = Command::new("bash").arg(&script).arg(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "make-images.sh failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(b)))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An OCI image layout on disk.
pub struct Layout(pub PathBuf);

impl Layout {
    pub fn fixture() -> Layout {
        Layout(fixtures().join("oci"))
    }
    pub fn multi() -> Layout {
        Layout(fixtures().join("multi"))
    }
    pub fn blob(&self, digest: &str) -> Vec<u8> {
        let hexpart = digest.strip_prefix("sha256:").unwrap();
        std::fs::read(self.0.join("blobs/sha256").join(hexpart)).unwrap()
    }
    pub fn index(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.0.join("index.json")).unwrap()).unwrap()
    }
    /// The descriptor `index.json` holds for a ref (or the only one).
    pub fn top(&self, reference: Option<&str>) -> Value {
        let idx = self.index();
        let ms = idx["manifests"].as_array().unwrap();
        match reference {
            None => {
                assert_eq!(ms.len(), 1, "{}: one manifest expected", self.0.display());
                ms[0].clone()
            }
            Some(r) => ms
                .iter()
                .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == r)
                .unwrap_or_else(|| panic!("ref {r} in {}", self.0.display()))
                .clone(),
        }
    }
    /// Every blob reachable from a descriptor: digest → bytes (each checked against its digest).
    pub fn closure(&self, desc: &Value) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        self.walk(desc, &mut out);
        out
    }
    fn walk(&self, desc: &Value, out: &mut BTreeMap<String, Vec<u8>>) {
        let d = desc["digest"].as_str().unwrap().to_string();
        let bytes = self.blob(&d);
        assert_eq!(sha256(&bytes), d, "blob {d} in {} is corrupt", self.0.display());
        let mt = desc["mediaType"].as_str().unwrap_or("");
        if mt.contains("manifest") || mt.contains("index") {
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            for m in v["manifests"].as_array().into_iter().flatten() {
                self.walk(m, out);
            }
            if v.get("config").is_some() {
                self.walk(&v["config"], out);
            }
            for l in v["layers"].as_array().into_iter().flatten() {
                self.walk(l, out);
            }
        }
        out.insert(d, bytes);
    }
}

/// A station over a temporary home, stopped on drop.
pub struct TestStation {
    pub home: TempDir,
    pub running: Option<Running>,
    pub addr: String,
}

impl TestStation {
    pub fn start() -> TestStation {
        TestStation::with(AuthSpec::Off, false)
    }

    pub fn with(auth: AuthSpec, auth_reads: bool) -> TestStation {
        TestStation::configured(None, |cfg| {
            cfg.auth = auth;
            cfg.auth_reads = auth_reads;
        })
    }

    /// A station over a home made with `compression`, its config adjusted by `set`. With
    /// `SHP_TEST_STORE=s3://BUCKET` (and the AWS_* variables of an object store) the home keeps its
    /// blocks and refs in that bucket, under a prefix of its own: the same tests, on an S3 home.
    pub fn configured(compression: Option<shp_core::store::Compression>, set: impl FnOnce(&mut Config)) -> TestStation {
        let home = tempfile::tempdir().unwrap();
        let store = std::env::var("SHP_TEST_STORE")
            .ok()
            .filter(|s| !s.is_empty())
            .map(|base| {
                let prefix = home.path().file_name().unwrap().to_string_lossy().to_lowercase();
                shp_core::config::StoreSpec {
                    url: format!("{}/{prefix}", base.trim_end_matches('/')),
                    options: Default::default(),
                }
            });
        shp_core::Home::init_on(home.path(), compression, store).unwrap();
        let mut cfg = Config::local("127.0.0.1:0".parse().unwrap());
        set(&mut cfg);
        let station = Station::bind(home.path(), &cfg).unwrap();
        let running = station.spawn().unwrap();
        let addr = running.addr.to_string();
        TestStation {
            home,
            running: Some(running),
            addr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The home, opened alongside the station (shared lock).
    pub fn open_home(&self) -> shp_core::Home {
        shp_core::Home::open(self.home.path()).unwrap()
    }
}

impl Drop for TestStation {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().unwrap();
        }
    }
}

/// A minimal blocking HTTP/1.1 client (one connection per request, `Connection: close`).
#[derive(Clone, Copy)]
pub struct Client;

pub fn client() -> Client {
    Client
}

impl Client {
    fn req(&self, method: &str, url: impl AsRef<str>) -> Req {
        Req {
            method: method.to_string(),
            url: url.as_ref().to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn get(&self, url: impl AsRef<str>) -> Req {
        self.req("GET", url)
    }
    pub fn head(&self, url: impl AsRef<str>) -> Req {
        self.req("HEAD", url)
    }
    pub fn post(&self, url: impl AsRef<str>) -> Req {
        self.req("POST", url)
    }
    pub fn put(&self, url: impl AsRef<str>) -> Req {
        self.req("PUT", url)
    }
    pub fn patch(&self, url: impl AsRef<str>) -> Req {
        self.req("PATCH", url)
    }
    pub fn delete(&self, url: impl AsRef<str>) -> Req {
        self.req("DELETE", url)
    }
}

pub struct Req {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

pub struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Req {
    pub fn header(mut self, k: &str, v: impl std::fmt::Display) -> Req {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
    pub fn body(mut self, b: impl Into<Vec<u8>>) -> Req {
        self.body = b.into();
        self
    }
    pub fn send(self) -> std::io::Result<Resp> {
        let rest = self.url.strip_prefix("http://").expect("http URL");
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let mut s = TcpStream::connect(host)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut head = format!(
            "{} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n",
            self.method
        );
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        s.write_all(head.as_bytes())?;
        s.write_all(&self.body)?;
        let mut all = Vec::new();
        s.read_to_end(&mut all)?;
        let end = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no response head"))?;
        let text = String::from_utf8_lossy(&all[..end]).into_owned();
        let mut lines = text.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other("bad status line"))?;
        let mut headers = HeaderMap::new();
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                headers.append(
                    HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                    HeaderValue::from_str(v.trim()).unwrap(),
                );
            }
        }
        let mut body = all[end + 4..].to_vec();
        if headers.get("transfer-encoding").is_some_and(|v| v == "chunked") {
            body = dechunk(&body)?;
        } else if let Some(n) = headers
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        {
            if self.method != "HEAD" && body.len() != n {
                return Err(std::io::Error::other(format!(
                    "body is {} bytes, Content-Length {n}",
                    body.len()
                )));
            }
        }
        Ok(Resp {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body,
        })
    }
}

fn dechunk(mut b: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| std::io::Error::other("bad chunk"))?;
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).split(';').next().unwrap().trim(), 16)
            .map_err(|_| std::io::Error::other("bad chunk size"))?;
        if size == 0 {
            return Ok(out);
        }
        let start = nl + 2;
        if b.len() < start + size + 2 {
            return Err(std::io::Error::other("truncated chunk"));
        }
        out.extend_from_slice(&b[start..start + size]);
        b = &b[start + size + 2..];
    }
}

impl Resp {
    pub fn status(&self) -> StatusCode {
        self.status
    }
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    pub fn bytes(self) -> std::io::Result<Bytes> {
        Ok(Bytes::from(self.body))
    }
    pub fn text(self) -> std::io::Result<String> {
        Ok(String::from_utf8_lossy(&self.body).into_owned())
    }
    pub fn json<T: serde::de::DeserializeOwned>(self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.body)
    }
}

/// The spec error code of a response body.
pub fn error_code(res: Resp) -> (u16, String, Value) {
    let status = res.status().as_u16();
    let body: Value = res.json().unwrap();
    let code = body["errors"][0]["code"].as_str().unwrap_or("").to_string();
    (status, code, body)
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn skopeo(args: &[&str]) -> Output {
    run(Command::new("skopeo").arg("--insecure-policy").args(args))
}

/// Pushes one blob monolithically.
pub fn put_blob(c: &Client, st: &TestStation, repo: &str, bytes: &[u8]) -> String {
    let d = sha256(bytes);
    let res = c
        .post(st.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
        .body(bytes.to_vec())
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 201, "{:?}", res.text());
    d
}

/// Pushes a manifest; returns the response.
pub fn put_manifest(c: &Client, st: &TestStation, repo: &str, r: &str, mt: &str, body: &[u8]) -> Resp {
    c.put(st.url(&format!("/v2/{repo}/manifests/{r}")))
        .header("content-type", mt)
        .body(body.to_vec())
        .send()
        .unwrap()
}
