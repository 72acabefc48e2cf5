//! `docker://` on both sides, against Debian's real `docker-registry` on 127.0.0.1 (seeded and
//! checked with skopeo): import from a registry, export to one, a multi-platform index, shared
//! layers not downloaded twice, Basic auth, and the errors (unknown tag, unreachable registry, a
//! registry that serves a corrupt blob).

mod common;

use common::upstream::Registry;
use common::*;
use serde_json::Value;

fn seed(reg: &Registry, layout: &Layout, tag: &str, repo_tag: &str, extra: &[&str]) {
    let src = oci_ref(&layout.dir, tag);
    let dst = reg.url(repo_tag);
    let mut args = vec!["copy", "--dest-tls-verify=false"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[&src, &dst]);
    skopeo(&args);
}

fn raw_manifest(reg: &Registry, repo_tag: &str, extra: &[&str]) -> Vec<u8> {
    let u = reg.url(repo_tag);
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    args.extend_from_slice(extra);
    args.push(&u);
    skopeo(&args).stdout
}

fn blobs_of(v: &Value) -> Vec<String> {
    v["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn import_from_a_registry_is_bit_exact_and_downloads_only_new_blobs() {
    let fx = oci_fixture();
    let reg = Registry::start(None);
    seed(&reg, &fx, "busybox-gzip", "busybox:1", &[]);
    seed(&reg, &fx, "busybox-2layer", "busybox:2", &[]);
    assert_eq!(
        digest_of(&raw_manifest(&reg, "busybox:1", &[])),
        fx.ref_digest("busybox-gzip"),
        "skopeo keeps the manifest bytes"
    );
    let home = ShpHome::new();
    let v = home.json(&["push", &reg.url("busybox:1"), "--tls-verify=false"]);
    let name = format!("{}/busybox:1", reg.host);
    assert_eq!(v["name"], name.as_str());
    assert_eq!(v["digest"], fx.ref_digest("busybox-gzip").as_str());
    let all1: Vec<String> = fx.reachable(&fx.ref_desc("busybox-gzip")).into_keys().collect();
    // Every non-manifest blob was downloaded exactly once.
    let top1 = fx.ref_digest("busybox-gzip");
    let mut got = reg.blob_gets("busybox");
    got.sort();
    let mut want: Vec<String> = all1.iter().filter(|d| **d != top1).cloned().collect();
    want.sort();
    assert_eq!(got, want, "GETs of blobs for busybox:1");
    assert_eq!(num(&v, "fetched_blobs"), want.len() as u64);
    let out = Layout::open(home.scratch("out"));
    home.pull(&name, &oci_ref(&out.dir, "x"));
    assert_roundtrip(&fx, "busybox-gzip", &out, "x");

    // busybox:2 shares its first layer: only the new blobs are downloaded.
    let before = reg.blob_gets("busybox").len();
    let v2 = home.json(&["push", &reg.url("busybox:2"), "--tls-verify=false", "--tag", "two"]);
    assert_eq!(v2["name"], "two");
    let top2 = fx.ref_digest("busybox-2layer");
    let mut new: Vec<String> = fx
        .reachable(&fx.ref_desc("busybox-2layer"))
        .into_keys()
        .filter(|d| *d != top2 && !all1.contains(d))
        .collect();
    new.sort();
    assert!(!new.is_empty() && new.len() < blobs_of(&v2).len() - 1, "{new:?}");
    let mut got2 = reg.blob_gets("busybox")[before..].to_vec();
    got2.sort();
    assert_eq!(got2, new, "only blobs the store lacked were downloaded");
    assert_eq!(num(&v2, "fetched_blobs"), new.len() as u64);
    home.pull("two", &oci_ref(&out.dir, "y"));
    assert_roundtrip(&fx, "busybox-2layer", &out, "y");
    home.verify(true);

    // Text output: the fetched line, then the name, the totals and the root last.
    let home2 = ShpHome::new();
    let text = home2.ok(&["push", &reg.url("busybox:1"), "--tls-verify=false"]);
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len();
    assert!(
        lines[n - 4].starts_with("fetched ") && lines[n - 4].ends_with(" bytes"),
        "{text}"
    );
    assert_eq!(lines[n - 3], format!("name {name}"));
    assert_cid(lines[n - 1]);
}

#[test]
fn export_to_a_registry_gives_the_same_digests() {
    let fx = oci_fixture();
    let reg = Registry::start(None);
    let home = ShpHome::new();
    home.push(&oci_ref(&fx.dir, "busybox-2layer"), &["--tag", "app:v1"]);
    let out = home.ok(&["pull", "app:v1", &reg.url("copy:2"), "--tls-verify=false"]);
    let lines: Vec<&str> = out.lines().collect();
    let all = fx.reachable(&fx.ref_desc("busybox-2layer"));
    assert_eq!(lines.len(), all.len() + 1, "{out}");
    assert_cid(lines[lines.len() - 1]);
    let top = fx.ref_digest("busybox-2layer");
    assert!(lines[lines.len() - 2].starts_with(&top) && lines[lines.len() - 2].ends_with(" manifest"));
    for l in &lines[..lines.len() - 2] {
        assert!(l.ends_with(" uploaded"), "{out}");
    }
    assert_eq!(digest_of(&raw_manifest(&reg, "copy:2", &[])), top);
    let back = Layout::open(home.scratch("back"));
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &reg.url("copy:2"),
        &oci_ref(&back.dir, "b"),
    ]);
    assert_roundtrip(&fx, "busybox-2layer", &back, "b");

    // Again: every blob is present. To another repository: mounted from copy.
    let again = home.ok(&["pull", "app:v1", &reg.url("copy:3"), "--tls-verify=false"]);
    assert_eq!(
        again.lines().filter(|l| l.ends_with(" present")).count(),
        all.len() - 1,
        "{again}"
    );
    let other = home.ok(&["pull", "app:v1", &reg.url("other/copy:1"), "--tls-verify=false"]);
    assert_eq!(
        other.lines().filter(|l| l.ends_with(" mounted copy")).count(),
        all.len() - 1,
        "{other}"
    );
    assert_eq!(digest_of(&raw_manifest(&reg, "other/copy:1", &[])), top);

    // Chunked uploads (small chunks), then the bytes back through skopeo.
    let home2 = ShpHome::new();
    home2.push(&oci_ref(&fx.dir, "busybox-2layer"), &["--tag", "app:v1"]);
    let chunked = home2.ok(&[
        "pull",
        "app:v1",
        &reg.url("chunked:1"),
        "--tls-verify=false",
        "--chunk-size",
        "300000",
    ]);
    let big = chunked
        .lines()
        .filter(|l| l.contains(" uploaded ") && l.ends_with(" chunks"))
        .count();
    assert!(big >= 2, "the two layers are over 300000 bytes: {chunked}");
    let back2 = Layout::open(home.scratch("back2"));
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &reg.url("chunked:1"),
        &oci_ref(&back2.dir, "c"),
    ]);
    assert_roundtrip(&fx, "busybox-2layer", &back2, "c");
}

#[test]
fn a_multi_platform_index_round_trips() {
    let fx = multi_fixture();
    let reg = Registry::start(None);
    seed(&reg, &fx, "multi", "multi:1", &["--all"]);
    let home = ShpHome::new();
    // skopeo may rewrite the index on its way in: the registry's copy is the reference.
    let want = Layout::open(home.scratch("want"));
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &reg.url("multi:1"),
        &oci_ref(&want.dir, "multi"),
    ]);
    let idx = want.json_blob(&want.ref_digest("multi"));
    assert_eq!(
        idx["manifests"].as_array().unwrap().len(),
        2,
        "an index of two platforms: {idx}"
    );
    let v = home.json(&["push", &reg.url("multi:1"), "--tls-verify=false", "--tag", "m"]);
    assert_eq!(v["digest"], digest_of(&raw_manifest(&reg, "multi:1", &[])).as_str());
    assert_eq!(v["digest"], want.ref_digest("multi").as_str());
    let out = Layout::open(home.scratch("out"));
    home.pull("m", &oci_ref(&out.dir, "multi"));
    assert_roundtrip(&want, "multi", &out, "multi");
    home.verify(true);
    home.ok(&["pull", "m", &reg.url("mirror:1"), "--tls-verify=false"]);
    assert_eq!(
        digest_of(&raw_manifest(&reg, "mirror:1", &[])),
        want.ref_digest("multi")
    );
    let back = Layout::open(home.scratch("back"));
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &reg.url("mirror:1"),
        &oci_ref(&back.dir, "multi"),
    ]);
    assert_roundtrip(&want, "multi", &back, "multi");
}

#[test]
fn basic_auth_with_creds_and_authfile() {
    let fx = oci_fixture();
    let reg = Registry::start(Some(("shp", "s3cret")));
    seed(&reg, &fx, "busybox-gzip", "busybox:1", &["--dest-creds", "shp:s3cret"]);
    let home = ShpHome::new();
    let before = home.state();
    let (code, err) = home.fails(&["push", &reg.url("busybox:1"), "--tls-verify=false"]);
    assert_eq!(code, 1);
    assert!(err.contains("unauthorized") && err.contains("--creds"), "{err}");
    let (code, err) = home.fails(&[
        "push",
        &reg.url("busybox:1"),
        "--tls-verify=false",
        "--creds",
        "shp:wrong",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("unauthorized"), "{err}");
    assert_eq!(home.state(), before);

    let v = home.json(&[
        "push",
        &reg.url("busybox:1"),
        "--tls-verify=false",
        "--creds",
        "shp:s3cret",
    ]);
    assert_eq!(v["digest"], fx.ref_digest("busybox-gzip").as_str());
    let authfile = home.scratch("auth.json");
    std::fs::write(
        &authfile,
        format!(r#"{{"auths": {{"{}": {{"auth": "c2hwOnMzY3JldA=="}}}}}}"#, reg.host),
    )
    .unwrap();
    let af = authfile.display().to_string();
    home.ok(&[
        "pull",
        &format!("{}/busybox:1", reg.host),
        &reg.url("pushed:1"),
        "--tls-verify=false",
        "--authfile",
        &af,
    ]);
    assert_eq!(
        digest_of(&raw_manifest(&reg, "pushed:1", &["--creds", "shp:s3cret"])),
        fx.ref_digest("busybox-gzip")
    );
}

#[test]
fn errors_name_what_went_wrong_and_change_nothing() {
    let fx = oci_fixture();
    let reg = Registry::start(None);
    seed(&reg, &fx, "busybox-gzip", "busybox:1", &[]);
    let home = ShpHome::new();
    home.push(&oci_ref(&fx.dir, "busybox-none"), &["--tag", "other"]);
    let before = home.state();

    // Unknown tag: exit 3.
    let (code, err) = home.fails(&["push", &reg.url("busybox:nope"), "--tls-verify=false"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("busybox:nope") && err.contains("not found"), "{err}");
    // A malformed reference: exit 2.
    let (code, err) = home.fails(&["push", "docker://127.0.0.1:1/Bad:x"]);
    assert_eq!(code, 2, "{err}");
    // Unreachable registry: a port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (code, err) = home.fails(&["push", &format!("docker://127.0.0.1:{port}/x:1"), "--tls-verify=false"]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    // Pushing a missing image to a registry: exit 3.
    let (code, _) = home.fails(&["pull", "nosuch", &reg.url("x:1"), "--tls-verify=false"]);
    assert_eq!(code, 3);
    assert_eq!(home.state(), before);

    // The registry serves a corrupt layer (same size, one byte changed on its disk).
    let layer = fx.manifest("busybox-gzip")["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let f = reg.blob_file(&layer);
    let mut bytes = std::fs::read(&f).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&f, &bytes).unwrap();
    let (code, err) = home.fails(&["push", &reg.url("busybox:1"), "--tls-verify=false"]);
    assert_eq!(code, 1);
    assert!(err.contains(&layer) && err.contains("the registry sent"), "{err}");
    assert_eq!(home.state(), before, "a failed import changes nothing");
    let leftovers: Vec<_> = std::fs::read_dir(&home.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".remote-spool"))
        .collect();
    assert!(leftovers.is_empty(), "spool directories left behind");
}
