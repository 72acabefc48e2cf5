//! shp homes on a shared S3 bucket, against a real SeaweedFS cluster on 127.0.0.1 (one master with
//! replication 001, two volume servers, a filer with the S3 gateway; tests/s3/seaweed.sh). Without
//! SeaweedFS installed these tests skip, unless SHP_REQUIRE_S3=1 (CI), where that is a failure.

mod common;

use common::s3::Cluster;
use common::station::start;
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

fn entry<'a>(ls: &'a [Value], suffix: &str) -> Option<&'a Value> {
    ls.iter()
        .find(|e| e["name"].as_str().is_some_and(|n| n.ends_with(suffix)))
}

fn root_of(h: &ShpHome, suffix: &str) -> String {
    let ls = h.ls();
    entry(&ls, suffix).unwrap_or_else(|| panic!("no name ending {suffix:?} in {ls:?}"))["root"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Pulls `name` from `h` into a fresh layout and checks it blob for blob against `tag` of `src`.
fn pulls_back(h: &ShpHome, name: &str, src: &Layout, tag: &str) {
    let out = Layout::open(h.scratch(&format!("out-{}", name.replace([':', '/'], "-"))));
    let _ = std::fs::remove_dir_all(&out.dir);
    h.pull(name, &oci_ref(&out.dir, tag));
    assert_roundtrip(src, tag, &out, tag);
}

/// Every fixture goes into an S3 home and comes back bit-exact; a second home (another process,
/// another directory, credentials from the AWS_* environment) on the same bucket sees and pulls
/// every image at once, and what it pushes the first sees too.
#[test]
fn images_round_trip_and_a_second_home_on_the_bucket_sees_them() {
    let Some(c) = Cluster::shared() else { return };
    let url = "s3://roundtrip/images";
    let a = c.home(url, &[]);
    let cfg = a.dir.join("config.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&cfg).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "config.json holds the secret: 0600");
    let cfg: Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    assert_eq!(cfg["store"]["url"], url, "{cfg}");

    let fixture = oci_fixture();
    for tag in OCI_TAGS {
        a.push(&oci_ref(&fixture.dir, tag), &["--tag", tag]);
    }
    for tag in OCI_TAGS {
        pulls_back(&a, tag, &fixture, tag);
    }
    // Nothing of the image is kept in the home but the cache: no pack store there.
    assert!(
        !a.dir.join("store/packs").exists(),
        "an S3 home wrote a local pack store"
    );
    assert!(
        !a.dir.join("refs.json").exists(),
        "an S3 home's refs live in the bucket"
    );
    let s = a.stats();
    assert_eq!(s["store"], url, "{s}");
    assert_eq!(num(&s, "images"), OCI_TAGS.len() as u64, "{s}");
    let objects = num(&s["bucket"], "objects");
    assert!(
        objects >= 2 && objects.is_multiple_of(2),
        "packs and their indexes: {s}"
    );
    let put = num(&s["bucket"]["requests"], "put");
    // The requests are this home's, summed over its commands: pushes wrote packs, indexes, refs.
    assert!(put >= objects, "{s}");
    let packs = c.list("roundtrip/images/packs");
    assert_eq!(packs.len() as u64, objects, "{packs:?} vs {s}");

    let b = c.home_from_env(url);
    assert_eq!(b.names(), a.names(), "the second home sees the first's names");
    for tag in OCI_TAGS {
        pulls_back(&b, tag, &fixture, tag);
    }
    let v = b.verify(true);
    assert!(num(&v, "roots_checked") >= OCI_TAGS.len() as u64, "{v}");
    assert_eq!(b.stats()["blocks"], s["blocks"]);

    // What B pushes, A has at once; blocks already in the bucket are not written again.
    let before = c.list("roundtrip/images/packs").len();
    b.push(&oci_ref(&fixture.dir, "busybox-gzip"), &["--tag", "from-b:v1"]);
    assert_eq!(
        c.list("roundtrip/images/packs").len(),
        before,
        "a push of held blocks wrote packs"
    );
    assert!(a.names().iter().any(|n| n.ends_with("from-b:v1")), "{:?}", a.names());
    pulls_back(&a, "from-b:v1", &fixture, "busybox-gzip");
}

/// Two stations push different images to one tag at the same moment, four times over, each also
/// pushing a tag of its own: every contested tag ends as one of the two images, whole, and no
/// station's own tag is lost to the other's write.
#[test]
fn concurrent_pushes_of_one_tag_end_with_one_of_them() {
    let Some(c) = Cluster::shared() else { return };
    let url = "s3://race/tags";
    let (a, b) = (c.home(url, &[]), c.home(url, &[]));
    let fixture = oci_fixture();
    let (src_a, src_b) = (
        oci_ref(&fixture.dir, "busybox-gzip"),
        oci_ref(&fixture.dir, "busybox-zstd"),
    );
    let ra = a.push(&src_a, &["--tag", "seed-a"]);
    let rb = b.push(&src_b, &["--tag", "seed-b"]);
    assert_ne!(ra, rb);
    for round in 0..4 {
        std::thread::scope(|s| {
            s.spawn(|| {
                a.push(&src_a, &["--tag", &format!("race:r{round}")]);
                a.push(&src_a, &["--tag", &format!("own-a:r{round}")]);
            });
            s.spawn(|| {
                b.push(&src_b, &["--tag", &format!("race:r{round}")]);
                b.push(&src_b, &["--tag", &format!("own-b:r{round}")]);
            });
        });
    }
    let (la, lb) = (a.json(&["ls"]), b.json(&["ls"]));
    assert_eq!(la, lb, "both stations see the same refs");
    let ls = la.as_array().unwrap();
    let mut winners = BTreeMap::new();
    for round in 0..4 {
        let won = entry(ls, &format!("race:r{round}")).unwrap_or_else(|| panic!("race:r{round} lost: {la}"))["root"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(won == ra || won == rb, "race:r{round} is {won}, neither image");
        winners.insert(round, won);
        assert_eq!(root_of(&a, &format!("own-a:r{round}")), ra);
        assert_eq!(root_of(&a, &format!("own-b:r{round}")), rb);
    }
    // A third home pulls each contested tag whole: the image its root names.
    let d = c.home(url, &[]);
    for (round, won) in winners {
        let tag = if won == ra { "busybox-gzip" } else { "busybox-zstd" };
        pulls_back(&d, &format!("race:r{round}"), &fixture, tag);
    }
}

/// gc on one station while another removes and pushes the same image again: whatever the timing,
/// the image pulls back whole from a cold home after every round, and once nothing names it gc
/// does delete its packs.
#[test]
fn gc_racing_a_push_never_loses_a_block() {
    let Some(c) = Cluster::shared() else { return };
    let url = "s3://gcrace/p";
    let grace = ["--store-opt", "grace=2s"];
    let (pusher, collector) = (c.home(url, &grace), c.home(url, &grace));
    let fixture = oci_fixture();
    let src = oci_ref(&fixture.dir, "busybox-2layer");
    pusher.push(&src, &["--tag", "x"]);
    let mut rng = Rng(0x005e_ed9c);
    for round in 0..5 {
        pusher.ok(&["rm", "x"]);
        // Old enough to be condemned: the race is between a condemnation and the push reusing
        // the condemned blocks.
        std::thread::sleep(Duration::from_millis(2300));
        let delay = Duration::from_millis(rng.next() % 2500);
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..3 {
                    collector.json(&["gc"]);
                    std::thread::sleep(Duration::from_millis(700));
                }
            });
            s.spawn(|| {
                std::thread::sleep(delay);
                // A push that reused blocks of a pack this very gc deletes commits nothing and is
                // run again by shp itself (saying so on stderr): it succeeds.
                let out = pusher.cmd().args(["push", "-q", &src, "--tag", "x"]).output().unwrap();
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(out.status.success(), "round {round}: {err}");
                if !err.is_empty() {
                    assert!(err.contains("it was run again"), "round {round}: {err}");
                }
            });
        });
        // After more gc, past every grace period: still whole, read from the bucket.
        std::thread::sleep(Duration::from_millis(2200));
        collector.json(&["gc"]);
        let cold = c.home(url, &[]);
        pulls_back(&cold, "x", &fixture, "busybox-2layer");
        assert_eq!(cold.verify(false)["problems"], serde_json::json!([]), "round {round}");
    }
    // Nothing names it any more: two gc runs a grace period apart delete its packs.
    let before = num(&collector.stats()["bucket"], "objects");
    pusher.ok(&["rm", "x"]);
    let mut freed = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while num(&collector.stats()["bucket"], "objects") > 0 {
        assert!(Instant::now() < deadline, "gc never emptied the bucket");
        std::thread::sleep(Duration::from_millis(2200));
        freed += num(&collector.json(&["gc"]), "bytes_freed");
    }
    assert!(before > 0 && freed > 0, "objects {before}, freed {freed}");
    assert_eq!(num(&pusher.stats(), "blocks"), 0);
}

/// A random 48 MiB layer, so a pull reads many segments of several packs.
fn big_image(dir: &std::path::Path) -> Layout {
    let mut rng = Rng(0x0b16_1a7e);
    let mut tar = tar::Builder::new(Vec::new());
    for i in 0..6 {
        let data = rng.bytes(8 << 20);
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        tar.append_data(&mut h, format!("data/part{i}.bin"), &data[..]).unwrap();
    }
    let layer = tar.into_inner().unwrap();
    let l = Layout::create(dir);
    l.write_image("big", &config_for(&[&layer]), &[(LAYER_TAR, &layer)], |_| {});
    l
}

/// A volume server is killed while a cold home pulls: replication 001 keeps a copy, so the pull
/// completes bit-exact, or fails with a clear, retryable error that names the bucket, and a pull
/// again then succeeds. Never wrong bytes.
#[test]
fn a_volume_server_killed_mid_pull() {
    let Some(c) = Cluster::start() else { return };
    let url = "s3://volumes/p";
    let a = c.home(url, &[]);
    let src = big_image(&a.scratch("big"));
    a.push(&oci_ref(&src.dir, "big"), &["--tag", "big"]);
    let b = c.home(url, &["--store-opt", "cache_size=0"]);
    let out = Layout::open(b.scratch("pulled"));
    let child = b
        .cmd()
        .args(["pull", "big", &oci_ref(&out.dir, "big")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    c.kill_volume(1);
    let first = child.wait_with_output().unwrap();
    if first.status.success() {
        assert_roundtrip(&src, "big", &out, "big");
    } else {
        let err = stderr(&first);
        assert!(err.contains("s3://volumes/p"), "the error names the store: {err}");
        assert!(!out.dir.join("index.json").exists(), "a failed pull left a layout");
        // Bounded: the master notices the lost node within seconds.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let _ = std::fs::remove_dir_all(&out.dir);
            let again = b.run(&["pull", "big", &oci_ref(&out.dir, "big")]);
            if again.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no pull succeeded after the loss: {}",
                stderr(&again)
            );
            std::thread::sleep(Duration::from_secs(2));
        }
        assert_roundtrip(&src, "big", &out, "big");
    }
    b.verify(false);
}

/// Bytes changed behind shp's back are caught on read: the pull fails naming the block, verify
/// reports it, and nothing wrong is written.
#[test]
fn a_corrupted_pack_is_detected_on_read() {
    let Some(c) = Cluster::shared() else { return };
    let url = "s3://corrupt/p";
    let a = c.home(url, &[]);
    let fixture = oci_fixture();
    a.push(&oci_ref(&fixture.dir, "busybox-none"), &["--tag", "bb"]);
    let packs: Vec<String> = c
        .list("corrupt/p/packs")
        .into_iter()
        .filter(|n| n.ends_with(".pack"))
        .collect();
    assert!(!packs.is_empty());
    for p in &packs {
        let key = format!("corrupt/p/packs/{p}");
        let mut bytes = c.get(&key);
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x5a;
        c.put(&key, &bytes);
    }
    let b = c.home(url, &[]);
    let out = b.scratch("out");
    let (code, err) = b.fails(&["pull", "bb", &oci_ref(&out, "bb")]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("bafk") || err.contains("bafy"),
        "the error names the block: {err}"
    );
    assert!(err.contains("s3://corrupt/p"), "and the store: {err}");
    assert!(!out.join("index.json").exists(), "a failed pull wrote a layout");
    let v = b.run(&["verify", "--json"]);
    assert!(!v.status.success(), "verify passed a corrupted bucket");
    let rep: Value = serde_json::from_slice(&v.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&v)));
    assert!(!rep["problems"].as_array().unwrap().is_empty(), "{rep}");
}

/// Wrong credentials, an unreachable endpoint, unknown options and a store for a home that already
/// has one are refused with errors that say what was wrong; a failed init leaves the home usable.
#[test]
fn bad_credentials_endpoints_and_options_are_clear_errors() {
    let Some(c) = Cluster::shared() else { return };
    // `h` is a disk home with an image; `fresh` a directory no init has finished in.
    let h = ShpHome::new();
    let fresh = h.scratch("fresh");
    let init = |extra: &[String]| -> (i32, String) {
        let out = std::process::Command::new(SHP)
            .env_remove("SHP_HOME")
            .arg("--home")
            .arg(&fresh)
            .arg("init")
            .args(extra)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!out.status.success(), "init {extra:?} succeeded: {}", stdout(&out));
        assert!(err.starts_with("shp: error: ") || out.status.code() == Some(2), "{err}");
        (out.status.code().unwrap(), err)
    };
    let with = |url: &str, key: &str, value: &str| -> Vec<String> {
        let mut a = vec!["--store".to_string(), url.to_string()];
        for o in c.store_opts() {
            if o.starts_with(&format!("{key}=")) {
                a.push(format!("{key}={value}"));
            } else {
                a.push(o);
            }
        }
        a
    };
    let (code, err) = init(&with("s3://creds/x", "secret_access_key", "not-the-secret"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("s3://creds/x") && err.contains("credentials"), "{err}");

    let t = Instant::now();
    let (code, err) = init(&with("s3://creds/y", "endpoint", "http://127.0.0.1:9"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("127.0.0.1:9"), "the error names the endpoint: {err}");
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "retries are bounded: {:?}",
        t.elapsed()
    );

    let (code, err) = init(&[
        "--store".into(),
        "s3://creds/z".into(),
        "--store-opt".into(),
        "colour=blue".into(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("colour") && err.contains("endpoint"),
        "names the key and the known ones: {err}"
    );
    let (code, err) = init(&["--store-opt".into(), "region=x".into()]);
    assert_eq!(code, 2, "--store-opt needs --store: {err}");
    let (code, err) = init(&["--store".into(), "ftp://creds/z".into()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ftp://creds/z") && err.contains("s3://"), "{err}");
    // After all that, the right settings work in the same directory.
    let ok = std::process::Command::new(SHP)
        .env_remove("SHP_HOME")
        .arg("--home")
        .arg(&fresh)
        .arg("init")
        .args(with("s3://creds/x", "region", "us-east-1"))
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", stderr(&ok));

    // A disk home that holds images keeps its store: another store is refused.
    h.push(&oci_ref(&oci_fixture().dir, "busybox-gzip"), &["--tag", "bb"]);
    let mut args = vec!["init", "--store", "s3://creds/late"];
    let opts = c.store_opts();
    args.extend(opts.iter().map(String::as_str));
    let (code, err) = h.fails(&args);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&h.dir.display().to_string()), "names the home: {err}");
    assert!(h.names().iter().any(|n| n.ends_with("bb")));
    h.verify(false);
}

/// Two stations in front of one bucket: skopeo pushes into one and pulls the same image, digest for
/// digest, from the other.
#[test]
fn two_stations_in_front_of_one_bucket() {
    let Some(c) = Cluster::shared() else { return };
    let url = "s3://stations/reg";
    let (a, b) = (c.home(url, &[]), c.home(url, &[]));
    let addr = |line: &str| {
        line.split(' ')
            .nth(1)
            .unwrap()
            .trim_start_matches("http://")
            .to_string()
    };
    let (mut ga, la, _) = start(&a, &["--listen", "127.0.0.1:0", "--no-p2p"]);
    let (mut gb, lb, _) = start(&b, &["--listen", "127.0.0.1:0", "--no-p2p"]);
    let (aa, ab) = (addr(&la), addr(&lb));
    let fixture = oci_fixture();
    let mut want = BTreeSet::new();
    for tag in ["busybox-gzip", "busybox-2layer"] {
        skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            &oci_ref(&fixture.dir, tag),
            &format!("docker://{aa}/shared/bb:{tag}"),
        ]);
        let out = Layout::open(b.scratch(&format!("via-b-{tag}")));
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{ab}/shared/bb:{tag}"),
            &oci_ref(&out.dir, tag),
        ]);
        assert_roundtrip(&fixture, tag, &out, tag);
        want.insert(tag);
    }
    assert!(ga.terminate().success());
    assert!(gb.terminate().success());
    for tag in want {
        assert!(b.names().iter().any(|n| n.ends_with(tag)), "{:?}", b.names());
    }
}
