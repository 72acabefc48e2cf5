//! A full disk: a push, a fetch, a registry upload and a compact into a home on a tiny file system
//! fail with a clear "no space" error naming the home, leave the store and refs as they were, and
//! succeed once space is freed. Needs root (it mounts a tmpfs); SHP_REQUIRE_ROOT=1 makes that a
//! requirement rather than a skip.

mod common;

use common::*;
use shp_core::Home;
use shp_station::gateway::RunningGateway;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// A tmpfs of `mib` MiB, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, mib: u32) -> Option<Tmpfs> {
        if is_root() {
            std::fs::create_dir_all(at).unwrap();
            let ok = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
                .arg(at)
                .status()
                .unwrap()
                .success();
            assert!(ok, "mount tmpfs at {}", at.display());
            return Some(Tmpfs(at.to_path_buf()));
        }
        assert!(
            std::env::var("SHP_REQUIRE_ROOT").as_deref() != Ok("1"),
            "the full-disk tests need root (mount -t tmpfs)"
        );
        eprintln!("skipping: not root (mount -t tmpfs)");
        None
    }

    /// Fills the file system, then frees `leave` bytes of the filler.
    fn fill(&self, leave: u64) {
        let p = self.0.join("filler");
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&p).unwrap();
        let zeros = vec![0u8; 64 << 10];
        while f.write_all(&zeros).is_ok() {}
        let len = std::fs::metadata(&p).unwrap().len();
        f.set_len(len.saturating_sub(leave)).unwrap();
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

fn assert_no_space(err: &str, home: &Path) {
    assert!(
        err.contains("no space left on the file system of home") && err.contains(&home.display().to_string()),
        "not a clear no-space error naming the home: {err}"
    );
}

/// One HTTP/1.1 request; returns (status, body).
fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
        body.len()
    )
    .unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

#[test]
fn a_full_disk_changes_nothing_and_says_which_home() {
    let scratch = ShpHome::new();
    let Some(fs) = Tmpfs::mount(&scratch.scratch("fs"), 16) else {
        return;
    };
    let mut h = ShpHome::new();
    h.dir = fs.0.join("home");
    h.ok(&["init", "--compression", "zstd:3,deferred"]);
    let src = oci_fixture();
    let tag = src.index()["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap()
        .to_string();
    let image = oci_ref(&src.dir, &tag);

    // push
    fs.fill(16 << 10);
    let before = h.state();
    let (code, err) = h.fails(&["push", &image, "--tag", "app:v1"]);
    assert_eq!(code, 1, "{err}");
    assert_no_space(&err, &h.dir);
    assert_eq!(h.state(), before, "a failed push changed the store");

    // fetch from a peer
    let peer = ShpHome::new();
    let root = peer.push(&image, &["--tag", "app:v1"]);
    let gw = RunningGateway::start(Arc::new(Home::open(&peer.dir).unwrap()), "127.0.0.1:0".parse().unwrap()).unwrap();
    let (code, err) = h.fails(&["fetch", &root, "--from", &gw.url()]);
    assert_eq!(code, 1, "{err}");
    assert_no_space(&err, &h.dir);
    assert_eq!(h.state(), before, "a failed fetch changed the store");

    // a registry upload into a station on the full home: 507, naming the home
    {
        let mut cfg = shp_station::server::Config::local("127.0.0.1:0".parse().unwrap());
        cfg.compact_idle = std::time::Duration::ZERO;
        let st = shp_station::server::Station::bind(&h.dir, &cfg)
            .unwrap()
            .spawn()
            .unwrap();
        let blob: Vec<u8> = Rng(7).bytes(256 << 10);
        let digest = digest_of(&blob);
        let (status, text) = http(
            &st.addr.to_string(),
            "POST",
            &format!("/v2/app/blobs/uploads/?digest={digest}"),
            &blob,
        );
        assert_eq!(status, 507, "{text}");
        assert_no_space(&text, &h.dir);
        st.stop().unwrap();
    }
    assert_eq!(h.state(), before, "a failed upload changed the store");

    // space freed: the same commands succeed
    fs.free();
    h.ok(&["push", &image, "--tag", "app:v1"]);
    h.ok(&["fetch", &root, "--from", &gw.url(), "--tag", "app:v2"]);
    assert_eq!(h.verify(true)["problems"].as_array().map_or(0, |p| p.len()), 0);

    // compact on a full disk: nothing lost, then it works
    let loose = num(&h.stats(), "loose_bytes");
    assert!(loose > 0, "a deferred home has loose packs to compact");
    fs.fill(4 << 10);
    let before = h.state();
    let (code, err) = h.fails(&["compact"]);
    assert_eq!(code, 1, "{err}");
    assert_no_space(&err, &h.dir);
    assert_eq!(h.state(), before, "a failed compact changed the store");
    fs.free();
    h.ok(&["compact"]);
    assert_eq!(h.verify(true)["problems"].as_array().map_or(0, |p| p.len()), 0);
    let out = h.scratch("out");
    h.pull("app:v1", &oci_ref(&out, "latest"));
}
