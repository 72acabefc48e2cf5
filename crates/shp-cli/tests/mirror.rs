//! The station as a pull-through mirror (`shp start --mirror HOST=URL`) in front of Debian's real
//! `docker-registry`: skopeo pulling `docker.io/…` through a registries.conf mirror entry that
//! `shp mirror-config podman` wrote, the image kept as a DAG, one upstream GET per blob however
//! many clients ask at once, tags with a TTL and served from the cache while the upstream is down,
//! wrong bytes from the upstream refused, and no writes through the mirror path.
//!
//! Everything listens on 127.0.0.1; stations run without a libp2p host, except where the mirror
//! finds images among its libp2p peers (loopback, no mDNS).

mod common;

use common::station::{http, split_response, start, Guard};
use common::upstream::Registry;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Copies a fixture image into the upstream as `repo_tag`.
fn seed(up: &Registry, fx: &Layout, tag: &str, repo_tag: &str) {
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &oci_ref(&fx.dir, tag),
        &up.url(repo_tag),
    ]);
}

/// A station mirroring docker.io from `up`; returns its guard and `127.0.0.1:PORT`.
fn mirror_station(h: &ShpHome, up: &Registry, extra: &[&str]) -> (Station, String) {
    let mut args = vec!["--no-p2p"];
    args.extend_from_slice(extra);
    mirror_station_with(h, up, &args)
}

/// The same with a libp2p host (on loopback, no mDNS: see `common::station::start`): `extra`
/// adds `--bootstrap` and the like.
fn mirror_station_p2p(h: &ShpHome, up: &Registry, extra: &[&str]) -> (Station, String) {
    mirror_station_with(h, up, extra)
}

fn mirror_station_with(h: &ShpHome, up: &Registry, extra: &[&str]) -> (Station, String) {
    let spec = format!("docker.io=http://{}", up.host);
    let mut args = vec!["--listen", "127.0.0.1:0", "--mirror", &spec];
    args.extend_from_slice(extra);
    let (g, banner, log) = start(h, &args);
    let addr = banner
        .strip_prefix("listening http://")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("banner {banner:?}"))
        .to_string();
    (Station { g, log }, addr)
}

struct Station {
    g: Guard,
    log: std::path::PathBuf,
}

impl Drop for Station {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- {}:\n{}",
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl Station {
    /// SIGTERM; asserts a clean exit (the log is shown otherwise).
    fn stop(&mut self) {
        let st = self.g.terminate();
        assert!(
            st.success(),
            "shp start: {st}\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

/// Waits (at most 60 s) until the home names `name`.
fn wait_for_name(h: &ShpHome, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !h.names().contains(name) {
        assert!(Instant::now() < deadline, "{name} was not imported: {:?}", h.names());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A GET that tolerates an aborted body: (status, body bytes received, whether it ended cleanly
/// with every byte Content-Length announced).
fn get_lenient(addr: &str, path: &str) -> (u16, Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
    let (status, head, body) = split_response(&all);
    let len: Option<usize> = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok());
    let whole = len == Some(body.len());
    (status, body, whole)
}

fn error_code(body: &[u8]) -> (String, String) {
    let v: serde_json::Value =
        serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)));
    (
        v["errors"][0]["code"].as_str().unwrap_or_default().to_string(),
        v["errors"][0]["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn skopeo_pulls_through_the_mirror_and_the_image_is_kept_as_a_dag() {
    let fx = oci_fixture();
    let up = Registry::start(None);
    seed(&up, &fx, "busybox-gzip", "library/app:v1");
    let h = ShpHome::new();
    let (mut g, addr) = mirror_station(&h, &up, &[]);

    // The runtime wiring as `shp mirror-config podman` prints it (station.json names the upstream).
    std::fs::write(
        h.dir.join("station.json"),
        format!(r#"{{"mirrors": ["docker.io=http://{}"]}}"#, up.host),
    )
    .unwrap();
    let conf = h.ok(&["mirror-config", "podman", "--station", &format!("http://{addr}")]);
    assert!(conf.contains(&format!("location = \"{addr}/docker.io\"")), "{conf}");
    assert!(conf.contains(&format!("location = \"{}\"", up.host)), "{conf}");
    let regconf = h.scratch("registries.conf");
    std::fs::write(&regconf, &conf).unwrap();
    let containerd = h.ok(&["mirror-config", "containerd", "--station", &format!("http://{addr}")]);
    assert!(
        containerd.contains(&format!("server = \"http://{}\"", up.host)),
        "{containerd}"
    );
    assert!(
        containerd.contains(&format!("[host.\"http://{addr}\"]")),
        "{containerd}"
    );
    assert!(
        containerd.contains(r#"capabilities = ["pull", "resolve"]"#),
        "{containerd}"
    );

    let pull = |dir: &str| {
        let out = Layout::open(h.scratch(dir));
        skopeo(&[
            "--registries-conf",
            regconf.to_str().unwrap(),
            "copy",
            "docker://docker.io/library/app:v1",
            &oci_ref(&out.dir, "v1"),
        ]);
        out
    };
    let out = pull("out1");
    assert_roundtrip(&fx, "busybox-gzip", &out, "v1");

    // Every blob came from the upstream once, fetched by the station (not skopeo falling back).
    let want: std::collections::BTreeSet<String> = fx.reachable(&fx.ref_desc("busybox-gzip")).into_keys().collect();
    let gets = up.blob_gets("library/app");
    let log = up.log.lock().unwrap().clone();
    let by_shp = log
        .iter()
        .filter(|l| l.contains("\"GET /v2/library/app/blobs/") && l.contains("shp/"))
        .count();
    assert_eq!(by_shp, gets.len(), "every upstream blob GET is the station's: {log:?}");
    let fetched: std::collections::BTreeSet<String> = gets.iter().cloned().collect();
    assert_eq!(fetched.len(), gets.len(), "no blob fetched twice: {gets:?}");
    assert!(fetched.iter().all(|d| want.contains(d)), "{fetched:?} ⊄ {want:?}");

    // The image is in the home as a DAG, named by digest, and pulls back bit-exact.
    let digest = fx.ref_digest("busybox-gzip");
    let name = format!("docker.io/library/app@{digest}");
    wait_for_name(&h, &name);
    let back = Layout::open(h.scratch("back"));
    h.pull(&name, &oci_ref(&back.dir, "v1"));
    assert_roundtrip(&fx, "busybox-gzip", &back, "v1");
    h.verify(true);

    // The upstream goes away: the tag (within its TTL) and every blob are served from the station.
    drop(up);
    let again = pull("out2");
    assert_roundtrip(&fx, "busybox-gzip", &again, "v1");
    g.stop();

    // Unused for longer than --mirror-keep: the station takes the name away (at start, then
    // hourly), and gc reclaims the blocks.
    let before = h.stats();
    std::thread::sleep(Duration::from_millis(1100));
    let up2 = Registry::start(None);
    let (mut g, _) = mirror_station(&h, &up2, &["--mirror-keep", "1"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.names().contains(&name) {
        assert!(Instant::now() < deadline, "{name} is still named");
        std::thread::sleep(Duration::from_millis(100));
    }
    g.stop();
    h.ok(&["gc"]);
    let after = h.stats();
    assert!(num(&after, "blocks") < num(&before, "blocks"), "{before} → {after}");
}

#[test]
fn one_upstream_fetch_per_blob_tags_ttl_wrong_bytes_and_an_upstream_down() {
    let fx = oci_fixture();
    let up = Registry::start(None);
    seed(&up, &fx, "busybox-gzip", "library/app:v1");
    seed(&up, &fx, "busybox-2layer", "library/other:v1");
    let h = ShpHome::new();
    let (mut g, addr) = mirror_station(&h, &up, &["--mirror-tag-ttl", "0"]);
    let v2 = |p: &str| format!("/v2/library/{p}?ns=docker.io");

    // A tag by HEAD (containerd's resolve), then the manifest by digest.
    let (st, head, _) = http(&addr, "HEAD", &v2("app/manifests/v1"), "");
    assert_eq!(st, 200, "{head}");
    let digest = fx.ref_digest("busybox-gzip");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("docker-content-digest: {digest}")),
        "{head}"
    );
    let (st, _, body) = http(&addr, "GET", &v2(&format!("app/manifests/{digest}")), "");
    assert_eq!(st, 200);
    assert_eq!(body, fx.blob(&digest), "the manifest bytes are the upstream's");

    // Eight clients at once for the biggest layer: one upstream GET, every body the blob.
    let m = fx.manifest("busybox-gzip");
    let layer = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64().unwrap())
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let bytes = fx.blob(&layer);
    let bodies: Vec<(u16, Vec<u8>, bool)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| s.spawn(|| get_lenient(&addr, &v2(&format!("app/blobs/{layer}")))))
            .collect();
        hs.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for (st, b, whole) in &bodies {
        assert_eq!((*st, *whole), (200, true));
        assert!(b == &bytes, "a body is not the blob");
    }
    assert_eq!(
        up.blob_gets("library/app").iter().filter(|d| **d == layer).count(),
        1,
        "one upstream GET"
    );
    // The GET by digest started the image's import, which joined those downloads.
    wait_for_name(&h, &format!("docker.io/library/app@{digest}"));
    assert_eq!(
        up.blob_gets("library/app").iter().filter(|d| **d == layer).count(),
        1,
        "one upstream GET"
    );
    // A range of it.
    let (st, head, part) = http(
        &addr,
        "GET",
        &v2(&format!("app/blobs/{layer}")),
        "Range: bytes=10-99\r\n",
    );
    assert_eq!(st, 206, "{head}");
    assert_eq!(part, bytes[10..100]);

    // What the upstream lacks, what no upstream is configured for, and writes: refused clearly.
    let (st, _, body) = http(&addr, "GET", &v2("app/manifests/nope"), "");
    let (code, msg) = error_code(&body);
    assert_eq!((st, code.as_str()), (404, "MANIFEST_UNKNOWN"), "{msg}");
    assert!(msg.contains(&up.host), "the message names the upstream: {msg}");
    let (st, _, body) = http(&addr, "GET", "/v2/library/app/manifests/v1?ns=quay.io", "");
    assert_eq!((st, error_code(&body).0.as_str()), (404, "NAME_UNKNOWN"));
    let (st, _, body) = http(&addr, "POST", &v2("app/blobs/uploads/"), "");
    assert_eq!((st, error_code(&body).0.as_str()), (403, "DENIED"));
    let (st, _, body) = http(&addr, "POST", "/v2/docker.io/library/app/blobs/uploads/", "");
    assert_eq!((st, error_code(&body).0.as_str()), (403, "DENIED"));

    // The upstream serves wrong bytes for a blob: every response is cut short, nothing is kept,
    // and once the upstream is right again the same request succeeds.
    let other = fx.manifest("busybox-2layer");
    let mine: Vec<&serde_json::Value> = m["layers"].as_array().unwrap().iter().map(|l| &l["digest"]).collect();
    let victim = other["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| !mine.contains(&&l["digest"]))
        .expect("busybox-2layer has a layer busybox-gzip lacks")["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let file = up.blob_file(&victim);
    let good = std::fs::read(&file).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&file, &bad).unwrap();
    for _ in 0..2 {
        let (st, b, whole) = get_lenient(&addr, &v2(&format!("other/blobs/{victim}")));
        assert_eq!(st, 200);
        assert!(
            !whole && b != good && b != bad,
            "a wrong blob must not arrive whole ({} of {} bytes, whole: {whole})",
            b.len(),
            good.len()
        );
    }
    let refs = String::from_utf8_lossy(&h.state().refs_json.unwrap_or_default()).into_owned();
    assert!(!refs.contains(&victim), "the wrong blob was kept: {refs}");
    std::fs::write(&file, &good).unwrap();
    let (st, b, whole) = get_lenient(&addr, &v2(&format!("other/blobs/{victim}")));
    assert_eq!((st, whole), (200, true));
    assert!(b == good);

    // A manifest whose bytes are not its digest: 502, nothing kept, and fine once it is right.
    let other_digest = fx.ref_digest("busybox-2layer");
    let mfile = up.blob_file(&other_digest);
    let mgood = std::fs::read(&mfile).unwrap();
    let mut mbad = mgood.clone();
    mbad.push(b'\n');
    std::fs::write(&mfile, &mbad).unwrap();
    let path = v2(&format!("other/manifests/{other_digest}"));
    let (st, _, body) = http(&addr, "GET", &path, "");
    let (code, msg) = error_code(&body);
    assert_eq!((st, code.as_str()), (502, "UNKNOWN"), "{msg}");
    assert!(msg.contains("refused") && msg.contains(&up.host), "{msg}");
    std::fs::write(&mfile, &mgood).unwrap();
    let (st, _, body) = http(&addr, "GET", &path, "");
    assert_eq!((st, &body), (200, &mgood));

    // TTL 0: a tag moved upstream is seen at once.
    seed(&up, &fx, "busybox-2layer", "library/app:v1");
    let (_, head, _) = http(&addr, "HEAD", &v2("app/manifests/v1"), "");
    let moved = fx.ref_digest("busybox-2layer");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("docker-content-digest: {moved}")),
        "{head}"
    );

    // The upstream down: a tag seen before is served from the cache; anything else is a 503
    // naming the upstream.
    drop(up);
    let (st, head, _) = http(&addr, "GET", &v2("app/manifests/v1"), "");
    assert_eq!(st, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("docker-content-digest: {moved}")),
        "{head}"
    );
    let (st, _, body) = http(&addr, "GET", &v2("app/manifests/never-seen"), "");
    let (code, msg) = error_code(&body);
    assert_eq!((st, code.as_str()), (503, "UNAVAILABLE"), "{msg}");
    assert!(msg.contains("docker.io="), "{msg}");
    h.verify(false);
    g.stop();
}

#[test]
fn a_station_with_a_mirror_peer_serves_the_image_with_the_upstream_down() {
    let fx = oci_fixture();
    let up = Registry::start(None);
    seed(&up, &fx, "busybox-2layer", "library/app:v1");
    let ha = ShpHome::new();
    let (mut a, addr_a) = mirror_station(&ha, &up, &[]);
    let peer = format!("http://{addr_a}");
    let pull = |addr: &str, dir: &std::path::Path| {
        let out = Layout::open(dir);
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{addr}/docker.io/library/app:v1"),
            &oci_ref(&out.dir, "v1"),
        ]);
        out
    };
    // A node pulls through A; then B, with A as its peer, serves another node: the upstream saw
    // each blob once (B's came from A) and each station keeps the image.
    let via_a = pull(&addr_a, &ha.scratch("via-a"));
    assert_roundtrip(&fx, "busybox-2layer", &via_a, "v1");
    let digest = fx.ref_digest("busybox-2layer");
    wait_for_name(&ha, &format!("docker.io/library/app@{digest}"));
    let hb = ShpHome::new();
    let (mut b, addr_b) = mirror_station(&hb, &up, &["--mirror-peer", &peer]);
    let via_b = pull(&addr_b, &hb.scratch("via-b"));
    assert_roundtrip(&fx, "busybox-2layer", &via_b, "v1");
    let gets = up.blob_gets("library/app");
    let unique: std::collections::BTreeSet<&String> = gets.iter().collect();
    assert_eq!(unique.len(), gets.len(), "the upstream served each blob once: {gets:?}");
    wait_for_name(&hb, &format!("docker.io/library/app@{digest}"));
    // A held the image as a DAG: B fetched the DAG (blocks, verified) rather than the blobs.
    let log_b = std::fs::read_to_string(&b.log).unwrap();
    assert!(log_b.contains("mirrored image's DAG fetched from a peer"), "{log_b}");

    // The upstream stops. A third station, with A as its peer, serves the tag and every blob.
    drop(up);
    let hc = ShpHome::new();
    let dead = Registry::start(None); // an upstream that has nothing, then goes away too
    let (mut c, addr_c) = mirror_station(&hc, &dead, &["--mirror-peer", &peer]);
    drop(dead);
    let via_c = pull(&addr_c, &hc.scratch("via-c"));
    assert_roundtrip(&fx, "busybox-2layer", &via_c, "v1");
    let log_c = std::fs::read_to_string(&c.log).unwrap();
    assert!(log_c.contains("mirrored image's DAG fetched from a peer"), "{log_c}");
    wait_for_name(&hc, &format!("docker.io/library/app@{digest}"));
    hc.verify(true);
    c.stop();
    b.stop();
    a.stop();
}

#[test]
fn an_upstream_that_wants_credentials_gets_them_from_the_mirror_authfile() {
    let fx = oci_fixture();
    let up = Registry::start(Some(("shp", "s3cret")));
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "shp:s3cret",
        &oci_ref(&fx.dir, "busybox-gzip"),
        &up.url("library/app:v1"),
    ]);
    let digest = fx.ref_digest("busybox-gzip");
    let path = "/v2/library/app/manifests/v1?ns=docker.io";

    // Without credentials: a 503 that says the upstream refused.
    let h = ShpHome::new();
    let (mut g, addr) = mirror_station(&h, &up, &[]);
    let (st, _, body) = http(&addr, "GET", path, "");
    let (code, msg) = error_code(&body);
    assert_eq!((st, code.as_str()), (503, "UNAVAILABLE"), "{msg}");
    assert!(msg.contains("unauthorized"), "{msg}");
    g.stop();

    // With an auth file keyed by the upstream's HOST (docker.io): the image comes through.
    let authfile = h.scratch("auth.json");
    std::fs::write(&authfile, r#"{"auths": {"docker.io": {"auth": "c2hwOnMzY3JldA=="}}}"#).unwrap();
    let af = authfile.display().to_string();
    let (mut g, addr) = mirror_station(&h, &up, &["--mirror-authfile", &af]);
    let (st, head, body) = http(&addr, "GET", path, "");
    assert_eq!(st, 200, "{head}");
    assert_eq!(body, fx.blob(&digest));
    let config = fx.manifest("busybox-gzip")["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, _, body) = http(
        &addr,
        "GET",
        &format!("/v2/library/app/blobs/{config}?ns=docker.io"),
        "",
    );
    assert_eq!((st, body), (200, fx.blob(&config)));
    wait_for_name(&h, &format!("docker.io/library/app@{digest}"));
    g.stop();
}

#[test]
fn a_mirror_peer_moves_only_the_blocks_the_station_lacks() {
    // The same busybox tree as a gzip and as a zstd layer: different blobs, the same files.
    let fx = oci_fixture();
    let up = Registry::start(None);
    seed(&up, &fx, "busybox-gzip", "library/app:gz");
    seed(&up, &fx, "busybox-zstd", "library/app:zst");
    let ha = ShpHome::new();
    let (mut a, addr_a) = mirror_station(&ha, &up, &[]);
    for tag in ["gz", "zst"] {
        let out = Layout::open(ha.scratch(tag));
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{addr_a}/docker.io/library/app:{tag}"),
            &oci_ref(&out.dir, tag),
        ]);
    }
    for t in ["busybox-gzip", "busybox-zstd"] {
        wait_for_name(&ha, &format!("docker.io/library/app@{}", fx.ref_digest(t)));
    }
    let hb = ShpHome::new();
    let (mut b, addr_b) = mirror_station(&hb, &up, &["--mirror-peer", &format!("http://{addr_a}")]);
    let mut fetched = Vec::new();
    for (tag, t) in [("gz", "busybox-gzip"), ("zst", "busybox-zstd")] {
        let out = Layout::open(hb.scratch(tag));
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{addr_b}/docker.io/library/app:{tag}"),
            &oci_ref(&out.dir, tag),
        ]);
        assert_roundtrip(&fx, t, &out, tag);
        let log = std::fs::read_to_string(&b.log).unwrap();
        let line = log
            .lines()
            .filter(|l| l.contains("DAG fetched from a peer"))
            .nth(fetched.len())
            .unwrap_or_else(|| panic!("{log}"))
            .to_string();
        let field = |k: &str| -> u64 {
            line.split(&format!("{k}="))
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{k} in {line}"))
        };
        let n = field("bytes_fetched");
        let total: u64 = fx.reachable(&fx.ref_desc(t)).values().sum();
        // The second image is an update of the first one's repository: its changed nodes come as
        // deltas against the first's (the peer holds both).
        let deltas = field("blocks_delta");
        assert_eq!(deltas > 0, !fetched.is_empty(), "{line}");
        fetched.push((n, total));
    }
    eprintln!("bytes fetched from the peer (fetched, image blobs): {fetched:?}");
    let (zst, zst_total) = fetched[1];
    assert!(
        zst * 4 < zst_total,
        "the zstd image shares its files with the gzip one: {fetched:?}"
    );
    hb.verify(true);
    b.stop();
    a.stop();
}

/// A station's first libp2p address (`/ip4/127.0.0.1/tcp/PORT/p2p/ID`).
fn p2p_addr(h: &ShpHome) -> String {
    h.json(&["addrs"])["addrs"][0]
        .as_str()
        .expect("a libp2p address")
        .to_string()
}

/// Waits (at most 30 s) until the station of `h` has `n` libp2p peers.
fn wait_for_peers(h: &ShpHome, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = h.json(&["peers"]);
        if v.as_array().map_or(0, |a| a.len()) >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{n} peers: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_mirror_takes_images_from_its_libp2p_peers_before_the_upstream() {
    // D is a plain station that holds nothing: the DHT's meeting point. A (connected to D) pulls
    // through its mirror from the upstream. B, connected to A over libp2p and configured with no
    // --mirror-peer, finds A holds the image (`/shp/oci-roots/1.0.0`) and fetches the DAG over
    // bitswap: the upstream sees no blob request from B. C, connected only to D, finds A through
    // the DHT by the manifest's digest and serves the image with the upstream gone; E, connected
    // to B only, is told by B what the tag is.
    let hd = ShpHome::new();
    let (mut d, _, log_d) = common::station::start(&hd, &["--listen", "127.0.0.1:0"]);
    let boot_d = p2p_addr(&hd);
    let fx = oci_fixture();
    let up = Registry::start(None);
    seed(&up, &fx, "busybox-2layer", "library/app:v1");
    let digest = fx.ref_digest("busybox-2layer");
    let name = format!("docker.io/library/app@{digest}");
    let pull = |addr: &str, reference: &str, dir: &std::path::Path| {
        let out = Layout::open(dir);
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{addr}/docker.io/library/app{reference}"),
            &oci_ref(&out.dir, "v1"),
        ]);
        out
    };
    let ha = ShpHome::new();
    let (mut a, addr_a) = mirror_station_p2p(&ha, &up, &["--bootstrap", &boot_d]);
    let via_a = pull(&addr_a, ":v1", &ha.scratch("via-a"));
    assert_roundtrip(&fx, "busybox-2layer", &via_a, "v1");
    wait_for_name(&ha, &name);
    let gets_a = up.blob_gets("library/app").len();

    let hb = ShpHome::new();
    let boot_a = p2p_addr(&ha);
    let (mut b, addr_b) = mirror_station_p2p(&hb, &up, &["--bootstrap", &boot_a]);
    wait_for_peers(&hb, 1);
    let via_b = pull(&addr_b, ":v1", &hb.scratch("via-b"));
    assert_roundtrip(&fx, "busybox-2layer", &via_b, "v1");
    assert!(hb.names().contains(&name), "{:?}", hb.names());
    let log_b = std::fs::read_to_string(&b.log).unwrap();
    assert!(
        log_b.contains("mirrored image's DAG fetched from libp2p peers"),
        "{log_b}"
    );
    assert_eq!(
        up.blob_gets("library/app").len(),
        gets_a,
        "B took every blob from A's DAG, none from the upstream"
    );
    hb.verify(true);

    // C knows only D; the upstream goes away. A announced the digest on the DHT (every few
    // seconds), so C finds A by it, dials it and fetches from it.
    drop(up);
    let dead = Registry::start(None);
    let hc = ShpHome::new();
    let (mut c, addr_c) = mirror_station_p2p(&hc, &dead, &["--bootstrap", &boot_d]);
    drop(dead);
    wait_for_peers(&hc, 1);
    let out = Layout::open(hc.scratch("via-c"));
    let src = format!("docker://{addr_c}/docker.io/library/app@{digest}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = std::process::Command::new("skopeo")
            .args(["copy", "-q", "--src-tls-verify=false", &src, &oci_ref(&out.dir, "v1")])
            .status()
            .unwrap();
        if st.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "C never served the image: {}",
            std::fs::read_to_string(&c.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_roundtrip(&fx, "busybox-2layer", &out, "v1");
    let log_c = std::fs::read_to_string(&c.log).unwrap();
    let id_a = ha.json(&["addrs"])["peer_id"].as_str().unwrap().to_string();
    let fetched = log_c
        .lines()
        .find(|l| l.contains("mirrored image's DAG fetched from libp2p peers"))
        .unwrap_or_else(|| panic!("{log_c}"));
    assert!(fetched.contains(&id_a), "C fetched from A, found on the DHT: {fetched}");
    assert!(hc.names().contains(&name), "{:?}", hc.names());
    hc.verify(true);

    // E, connected to B only, pulls the *tag* with the upstream gone: B's mirror last learnt from
    // the upstream what app:v1 is, and tells E (a tag is mutable: asked only while the upstream
    // cannot be reached).
    let dead = Registry::start(None);
    let he = ShpHome::new();
    let boot_b = p2p_addr(&hb);
    let (mut e, addr_e) = mirror_station_p2p(&he, &dead, &["--bootstrap", &boot_b]);
    drop(dead);
    wait_for_peers(&he, 1);
    let via_e = pull(&addr_e, ":v1", &he.scratch("via-e"));
    assert_roundtrip(&fx, "busybox-2layer", &via_e, "v1");
    let log_e = std::fs::read_to_string(&e.log).unwrap();
    let id_b = hb.json(&["addrs"])["peer_id"].as_str().unwrap().to_string();
    let fetched = log_e
        .lines()
        .find(|l| l.contains("mirrored image's DAG fetched from libp2p peers"))
        .unwrap_or_else(|| panic!("{log_e}"));
    assert!(fetched.contains(&id_b), "E took the tag's image from B: {fetched}");
    assert!(he.names().contains(&name), "{:?}", he.names());
    e.stop();
    c.stop();
    b.stop();
    a.stop();
    let st = d.terminate();
    assert!(st.success(), "{}", std::fs::read_to_string(&log_d).unwrap_or_default());
}
