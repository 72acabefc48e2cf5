//! The registry against a real client, skopeo (Debian), pushing and pulling the busybox fixtures
//! through a station on 127.0.0.1, plus the spec's upload, error, auth, tag-listing and referrers
//! behaviour over plain HTTP/1.1.

mod registry_support;

use registry_support::*;
use serde_json::{json, Value};
use shp_station::auth::AuthSpec;
use std::process::Command;

const GZIP_TAG: &str = "busybox-gzip";

/// The fixture's busybox-gzip image: (manifest bytes, manifest digest, config, layer).
#[allow(clippy::type_complexity)]
fn gzip_image() -> (Vec<u8>, String, (String, Vec<u8>), (String, Vec<u8>)) {
    let l = Layout::fixture();
    let top = l.top(Some(GZIP_TAG));
    let d = top["digest"].as_str().unwrap().to_string();
    let m = l.blob(&d);
    let v: Value = serde_json::from_slice(&m).unwrap();
    let cd = v["config"]["digest"].as_str().unwrap().to_string();
    let ld = v["layers"][0]["digest"].as_str().unwrap().to_string();
    (m, d, (cd.clone(), l.blob(&cd)), (ld.clone(), l.blob(&ld)))
}

/// skopeo copies each fixture into the station and back out; manifests and blobs are identical.
#[test]
fn skopeo_round_trip() {
    let st = TestStation::start();
    let src = Layout::fixture();
    let out = tempfile::tempdir().unwrap();
    for (i, tag) in ["busybox-gzip", "busybox-2layer", "busybox-zstd", "busybox-none"]
        .iter()
        .enumerate()
    {
        let dest = format!("docker://{}/test/busybox:{tag}", st.addr);
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &format!("oci:{}:{tag}", src.0.display()),
            &dest,
        ]);
        let back = out.path().join(format!("back{i}"));
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            &dest,
            &format!("oci:{}:{tag}", back.display()),
        ]);
        let want = src.top(Some(tag));
        let got = Layout(back.clone()).top(Some(tag));
        assert_eq!(got["digest"], want["digest"], "{tag}: manifest digest");
        let (a, b) = (src.closure(&want), Layout(back).closure(&got));
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{tag}: blob set"
        );
        assert_eq!(a, b, "{tag}: blob bytes");
        // The raw manifest, by tag and by digest.
        let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &dest]).stdout;
        assert_eq!(sha256(&raw), want["digest"].as_str().unwrap());
    }
    // inspect and list-tags
    let dest = format!("docker://{}/test/busybox:busybox-2layer", st.addr);
    let info: Value = serde_json::from_slice(&skopeo(&["inspect", "--tls-verify=false", &dest]).stdout).unwrap();
    assert_eq!(info["Digest"], src.top(Some("busybox-2layer"))["digest"]);
    assert_eq!(info["Layers"].as_array().unwrap().len(), 2);
    let tags: Value = serde_json::from_slice(
        &skopeo(&[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{}/test/busybox", st.addr),
        ])
        .stdout,
    )
    .unwrap();
    let mut want = vec!["busybox-2layer", "busybox-gzip", "busybox-none", "busybox-zstd"];
    want.sort();
    assert_eq!(tags["Tags"], json!(want));
    // The pushed layers were decomposed, not kept verbatim.
    let home = st.open_home();
    let m: Value = serde_json::from_slice(&src.blob(src.top(Some(GZIP_TAG))["digest"].as_str().unwrap())).unwrap();
    let node = home.blob(m["layers"][0]["digest"].as_str().unwrap()).unwrap();
    assert_ne!(node.storage(false).to_string(), "verbatim");
    assert!(home.verify(true).unwrap().problems.is_empty());
}

/// A station over a `deferred` store: skopeo's push lands raw (loose packs), the station compacts
/// them once it has been idle for `compact_idle`, and the image still comes back bit-exact.
#[test]
fn idle_station_compacts_a_deferred_store() {
    if std::env::var_os("SHP_TEST_STORE").is_some() {
        // Deferred compression is the disk store's: an S3 store compresses as it writes packs.
        eprintln!("skipped on an S3 home: deferred compaction is a disk-store feature");
        return;
    }
    let deferred = shp_core::store::Compression::parse("zstd:3,deferred").unwrap();
    let st = TestStation::configured(Some(deferred), |cfg| {
        cfg.compact_idle = std::time::Duration::from_secs(2)
    });
    let src = Layout::fixture();
    let dest = format!("docker://{}/test/busybox:{GZIP_TAG}", st.addr);
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:{GZIP_TAG}", src.0.display()),
        &dest,
    ]);
    let home = st.open_home();
    let loose = home.loose_bytes().unwrap();
    assert!(loose > 0, "the push was not written raw");
    let stored = home.store().stored_bytes().unwrap();
    assert_eq!(loose, stored);
    // Bounded wait: the station checks every 2 s once idle for 2 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while home.loose_bytes().unwrap() > 0 {
        assert!(std::time::Instant::now() < deadline, "the idle station never compacted");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let after = home.store().stored_bytes().unwrap();
    assert!(
        after < stored,
        "compaction did not shrink the store: {stored} -> {after}"
    );
    let back = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        &dest,
        &format!("oci:{}:{GZIP_TAG}", back.path().display()),
    ]);
    let want = src.top(Some(GZIP_TAG));
    let got = Layout(back.path().to_path_buf()).top(Some(GZIP_TAG));
    assert_eq!(got["digest"], want["digest"]);
    assert_eq!(src.closure(&want), Layout(back.path().to_path_buf()).closure(&got));
    assert!(home.verify(true).unwrap().problems.is_empty());
}

/// A multi-platform index goes in and comes back whole with `--all`.
#[test]
fn skopeo_index_round_trip() {
    let st = TestStation::start();
    let src = Layout::multi();
    let want = src.top(Some("multi"));
    let dest = format!("docker://{}/multi/busybox:latest", st.addr);
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", src.0.display()),
        &dest,
    ]);
    let out = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &dest,
        &format!("oci:{}:multi", out.path().display()),
    ]);
    let back = Layout(out.path().to_path_buf());
    let got = back.top(Some("multi"));
    assert_eq!(got["digest"], want["digest"]);
    assert_eq!(src.closure(&want), back.closure(&got));
}

/// skopeo pushes with credentials to an htpasswd station; without them it is refused.
#[test]
fn skopeo_with_htpasswd() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    let out = run(Command::new("htpasswd").args(["-Bbn", "alice", "s3cret"]));
    std::fs::write(&pw, &out.stdout).unwrap();
    let st = TestStation::with(AuthSpec::Htpasswd(pw), false);
    let src = format!("oci:{}:{GZIP_TAG}", Layout::fixture().0.display());
    let dest = format!("docker://{}/auth/busybox:v1", st.addr);
    let denied = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--dest-tls-verify=false", &src, &dest])
        .output()
        .unwrap();
    assert!(!denied.status.success());
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:s3cret",
        &src,
        &dest,
    ]);
    // Reads stay open.
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", "--no-creds", &dest]).stdout;
    assert_eq!(
        sha256(&raw),
        Layout::fixture().top(Some(GZIP_TAG))["digest"].as_str().unwrap()
    );
}

/// PATCH in pieces with Content-Range, a wrong offset refused with 416, resume after asking the
/// offset, then PUT with the digest and the last piece.
#[test]
fn chunked_upload_with_resume() {
    let st = TestStation::start();
    let c = client();
    let (_, _, _, (ld, layer)) = gzip_image();
    let res = c.post(st.url("/v2/chunks/blobs/uploads/")).send().unwrap();
    assert_eq!(res.status().as_u16(), 202);
    let loc = res.headers()["location"].to_str().unwrap().to_string();
    assert!(res.headers().contains_key("docker-upload-uuid"));
    let url = st.url(&loc);
    let cuts = [0, layer.len() / 3, layer.len() * 2 / 3, layer.len()];
    let patch = |a: usize, b: usize| {
        c.patch(&url)
            .header("content-range", format!("{a}-{}", b - 1))
            .header("content-type", "application/octet-stream")
            .body(layer[a..b].to_vec())
            .send()
    };
    let res = patch(cuts[0], cuts[1]).unwrap();
    assert_eq!(res.status().as_u16(), 202);
    assert_eq!(res.headers()["range"], format!("0-{}", cuts[1] - 1).as_str());
    // Skipping ahead is refused, and changes nothing.
    let res = patch(cuts[2], cuts[3]).unwrap();
    let (status, code, _) = error_code(res);
    assert_eq!((status, code.as_str()), (416, "RANGE_INVALID"));
    // A chunk whose Content-Length disagrees with its Content-Range is refused.
    let res = c
        .patch(&url)
        .header("content-range", format!("{}-{}", cuts[1], cuts[2]))
        .body(layer[cuts[1]..cuts[2]].to_vec())
        .send()
        .unwrap();
    assert_eq!(error_code(res).1, "SIZE_INVALID");
    // Ask the offset and resume from there.
    let res = c.get(&url).send().unwrap();
    assert_eq!(res.status().as_u16(), 204);
    let range = res.headers()["range"].to_str().unwrap().to_string();
    let resume: usize = range.split('-').nth(1).unwrap().parse::<usize>().unwrap() + 1;
    assert_eq!(resume, cuts[1]);
    assert_eq!(patch(resume, cuts[2]).unwrap().status().as_u16(), 202);
    // The last piece rides on the PUT.
    let res = c
        .put(format!("{url}?digest={ld}"))
        .header("content-range", format!("{}-{}", cuts[2], cuts[3] - 1))
        .body(layer[cuts[2]..].to_vec())
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    assert_eq!(res.headers()["docker-content-digest"], ld.as_str());
    assert_eq!(res.headers()["location"], format!("/v2/chunks/blobs/{ld}").as_str());
    // The layer is stored as a recipe, and the uploaded bytes were kept in the blob cache as it
    // was stored, so the first pull (and ranges of it) are served without re-encoding.
    let cached = st.home.path().join("cache/blobs").join(&ld["sha256:".len()..]);
    assert_eq!(std::fs::read(&cached).expect("the upload kept in the cache"), layer);
    let back = c.get(st.url(&format!("/v2/chunks/blobs/{ld}"))).send().unwrap();
    assert_eq!(back.headers()["docker-content-digest"], ld.as_str());
    assert_eq!(back.bytes().unwrap().as_ref(), &layer[..]);
    // Without the copy, the first full read rebuilds the layer and leaves the rebuild there.
    std::fs::remove_file(&cached).unwrap();
    let back = c.get(st.url(&format!("/v2/chunks/blobs/{ld}"))).send().unwrap();
    assert_eq!(back.bytes().unwrap().as_ref(), &layer[..]);
    assert_eq!(std::fs::read(&cached).expect("cached rebuild"), layer);
    let again = c
        .get(st.url(&format!("/v2/chunks/blobs/{ld}")))
        .header("range", "bytes=100-199")
        .send()
        .unwrap();
    assert_eq!(again.status().as_u16(), 206);
    assert_eq!(again.bytes().unwrap().as_ref(), &layer[100..200]);
    // The session is over.
    let (status, code, _) = error_code(c.get(&url).send().unwrap());
    assert_eq!((status, code.as_str()), (404, "BLOB_UPLOAD_UNKNOWN"));
    // The spool directory holds nothing of it.
    let tmp = st.home.path().join("store/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Errors known before the body is read (unknown upload, Content-Range against the session,
/// Content-Length against Content-Range, a bad digest) reach a client that is still sending a
/// large body, as an error response and not a broken pipe; the session is unchanged.
#[test]
fn early_errors_reach_clients_sending_large_bodies() {
    let st = TestStation::start();
    let c = client();
    let big = vec![0x5au8; 8 << 20];
    let res = c.post(st.url("/v2/early/blobs/uploads/")).send().unwrap();
    let url = st.url(res.headers()["location"].to_str().unwrap());
    // Starts past the session's 0 bytes.
    let res = c
        .patch(&url)
        .header("content-range", format!("100-{}", 100 + big.len() - 1))
        .body(big.clone())
        .send()
        .expect("a 416, not a broken pipe");
    assert_eq!(error_code(res).1, "RANGE_INVALID");
    // Announces one byte more than it sends.
    let res = c
        .patch(&url)
        .header("content-range", format!("0-{}", big.len()))
        .body(big.clone())
        .send()
        .expect("a 400, not a broken pipe");
    assert_eq!(error_code(res).1, "SIZE_INVALID");
    // An upload that does not exist.
    let res = c
        .patch(st.url("/v2/early/blobs/uploads/no-such-upload"))
        .body(big.clone())
        .send()
        .expect("a 404, not a broken pipe");
    assert_eq!(error_code(res).1, "BLOB_UPLOAD_UNKNOWN");
    // A monolithic POST whose digest is not one.
    let res = c
        .post(st.url("/v2/early/blobs/uploads/?digest=sha256:nothex"))
        .body(big.clone())
        .send()
        .expect("a 400, not a broken pipe");
    assert_eq!(error_code(res).1, "DIGEST_INVALID");
    // The session still holds nothing.
    let res = c.get(&url).send().unwrap();
    assert_eq!(res.status().as_u16(), 204);
    assert_eq!(res.headers()["range"], "0-0");
}

/// Monolithic POST, a wrong digest (nothing stored), cross-repository mount, blob Range and
/// DELETE.
#[test]
fn monolithic_mount_range_delete() {
    let st = TestStation::start();
    let c = client();
    let data: Vec<u8> = (0..200_000u32)
        .flat_map(|i| (i.wrapping_mul(2654435761)).to_le_bytes())
        .collect();
    let d = put_blob(&c, &st, "one/repo", &data);
    // Wrong digest: refused, nothing kept.
    let other = b"some other bytes".to_vec();
    let wrong = sha256(b"not these");
    let res = c
        .post(st.url(&format!("/v2/one/repo/blobs/uploads/?digest={wrong}")))
        .body(other.clone())
        .send()
        .unwrap();
    assert_eq!(error_code(res).1, "DIGEST_INVALID");
    for dd in [&wrong, &sha256(&other)] {
        let res = c.head(st.url(&format!("/v2/one/repo/blobs/{dd}"))).send().unwrap();
        assert_eq!(res.status().as_u16(), 404);
    }
    // Mount into another repository.
    let res = c
        .post(st.url(&format!("/v2/two/blobs/uploads/?mount={d}&from=one/repo")))
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    assert_eq!(res.headers()["location"], format!("/v2/two/blobs/{d}").as_str());
    // Mounting an unknown blob opens an upload instead.
    let res = c
        .post(st.url(&format!("/v2/two/blobs/uploads/?mount={wrong}&from=one/repo")))
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    assert!(res.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/v2/two/blobs/uploads/"));
    // HEAD and ranges.
    let res = c.head(st.url(&format!("/v2/two/blobs/{d}"))).send().unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["content-length"], data.len().to_string().as_str());
    assert_eq!(res.headers()["docker-content-digest"], d.as_str());
    for (h, a, b) in [
        ("bytes=0-99", 0, 100),
        ("bytes=500000-", 500000, data.len()),
        ("bytes=-10", data.len() - 10, data.len()),
        ("bytes=123-456", 123, 457),
    ] {
        let res = c
            .get(st.url(&format!("/v2/two/blobs/{d}")))
            .header("range", h)
            .send()
            .unwrap();
        assert_eq!(res.status().as_u16(), 206, "{h}");
        assert_eq!(
            res.headers()["content-range"],
            format!("bytes {a}-{}/{}", b - 1, data.len()).as_str()
        );
        assert_eq!(res.bytes().unwrap().as_ref(), &data[a..b], "{h}");
    }
    for h in [format!("bytes={}-", data.len()), "bytes=9-3".into(), "items=0-1".into()] {
        let res = c
            .get(st.url(&format!("/v2/two/blobs/{d}")))
            .header("range", &h)
            .send()
            .unwrap();
        assert_eq!(
            res.headers()["content-range"],
            format!("bytes */{}", data.len()).as_str()
        );
        let (status, code, _) = error_code(res);
        assert_eq!((status, code.as_str()), (416, "RANGE_INVALID"), "{h}");
    }
    // DELETE removes the blob's ref: gone.
    let res = c.delete(st.url(&format!("/v2/two/blobs/{d}"))).send().unwrap();
    assert_eq!(res.status().as_u16(), 202);
    let (status, code, _) = error_code(c.get(st.url(&format!("/v2/two/blobs/{d}"))).send().unwrap());
    assert_eq!((status, code.as_str()), (404, "BLOB_UNKNOWN"));
    let (status, code, _) = error_code(c.delete(st.url(&format!("/v2/two/blobs/{d}"))).send().unwrap());
    assert_eq!((status, code.as_str()), (404, "BLOB_UNKNOWN"));
}

/// The spec's error cases, each with its code.
#[test]
fn spec_errors() {
    let st = TestStation::start();
    let c = client();
    let (m, md, (cd, config), (_, layer)) = gzip_image();
    let unknown = sha256(b"nothing");
    let cases: Vec<(Req, u16, &str)> = vec![
        (c.get(st.url(&format!("/v2/r/blobs/{unknown}"))), 404, "BLOB_UNKNOWN"),
        (c.get(st.url("/v2/r/blobs/sha256:xyz")), 400, "DIGEST_INVALID"),
        (c.get(st.url("/v2/r/blobs/uploads/nope")), 404, "BLOB_UPLOAD_UNKNOWN"),
        (
            c.patch(st.url("/v2/r/blobs/uploads/nope")).body("x"),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (c.delete(st.url("/v2/r/blobs/uploads/nope")), 404, "BLOB_UPLOAD_UNKNOWN"),
        (c.get(st.url("/v2/r/manifests/latest")), 404, "MANIFEST_UNKNOWN"),
        (
            c.get(st.url(&format!("/v2/r/manifests/{unknown}"))),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (c.get(st.url("/v2/never/pushed/tags/list")), 404, "NAME_UNKNOWN"),
        (c.get(st.url("/v2/Bad_Name/manifests/latest")), 400, "NAME_INVALID"),
        (
            c.put(st.url("/v2/r/manifests/-bad-tag")).body(m.clone()),
            400,
            "TAG_INVALID",
        ),
        (
            c.put(st.url("/v2/r/manifests/v1"))
                .header("content-type", OCI_MANIFEST)
                .body("{not json"),
            400,
            "MANIFEST_INVALID",
        ),
        (
            c.put(st.url(&format!("/v2/r/manifests/{unknown}")))
                .header("content-type", OCI_MANIFEST)
                .body(m.clone()),
            400,
            "DIGEST_INVALID",
        ),
        // The manifest names blobs this registry does not have.
        (
            c.put(st.url("/v2/r/manifests/v1"))
                .header("content-type", OCI_MANIFEST)
                .body(m.clone()),
            400,
            "MANIFEST_BLOB_UNKNOWN",
        ),
        (
            c.put(st.url(&format!("/v2/r/blobs/uploads/x?digest={md}"))),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (c.get(st.url("/v2/r/referrers/sha256:12")), 400, "DIGEST_INVALID"),
    ];
    for (req, status, code) in cases {
        let (s, got, body) = error_code(req.send().unwrap());
        assert_eq!((s, got.as_str()), (status, code), "{body}");
        assert!(body["errors"][0]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // MANIFEST_BLOB_UNKNOWN names the blob; after pushing the blobs the same manifest goes in.
    let res = put_manifest(&c, &st, "r", "v1", OCI_MANIFEST, &m);
    let (_, _, body) = error_code(res);
    assert!(body["errors"][0]["detail"]["digest"].as_str().is_some());
    assert_eq!(put_blob(&c, &st, "r", &config), cd);
    put_blob(&c, &st, "r", &layer);
    let res = put_manifest(&c, &st, "r", "v1", OCI_MANIFEST, &m);
    assert_eq!(res.status().as_u16(), 201);
    assert_eq!(res.headers()["docker-content-digest"], md.as_str());
    // A blob that is part of a manifest cannot be deleted on its own.
    let (s, code, _) = error_code(c.delete(st.url(&format!("/v2/r/blobs/{cd}"))).send().unwrap());
    assert_eq!((s, code.as_str()), (405, "UNSUPPORTED"));
    // Unauthenticated write to an auth-off station is fine; the API version header is set.
    let res = c.get(st.url("/v2/")).send().unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["docker-distribution-api-version"], "registry/2.0");
}

/// Manifests by tag and digest (GET, HEAD, DELETE), Accept negotiation, tag pagination and the
/// referrers API.
#[test]
fn manifests_tags_referrers() {
    let st = TestStation::start();
    let c = client();
    let (m, md, (_, config), (_, layer)) = gzip_image();
    put_blob(&c, &st, "lib/bb", &config);
    put_blob(&c, &st, "lib/bb", &layer);
    for t in ["d", "a", "c", "b", "e"] {
        assert_eq!(
            put_manifest(&c, &st, "lib/bb", t, OCI_MANIFEST, &m).status().as_u16(),
            201
        );
    }
    // GET/HEAD by tag and by digest.
    for r in ["a", md.as_str()] {
        let res = c.get(st.url(&format!("/v2/lib/bb/manifests/{r}"))).send().unwrap();
        assert_eq!(res.status().as_u16(), 200);
        assert_eq!(res.headers()["content-type"], OCI_MANIFEST);
        assert_eq!(res.headers()["docker-content-digest"], md.as_str());
        assert_eq!(res.bytes().unwrap().as_ref(), &m[..]);
        let res = c.head(st.url(&format!("/v2/lib/bb/manifests/{r}"))).send().unwrap();
        assert_eq!(res.headers()["content-length"], m.len().to_string().as_str());
    }
    // An OCI manifest is not served to a client that only reads docker schema2.
    let res = c
        .get(st.url("/v2/lib/bb/manifests/a"))
        .header("accept", "application/vnd.docker.distribution.manifest.v2+json")
        .send()
        .unwrap();
    assert_eq!(error_code(res).1, "MANIFEST_UNKNOWN");
    // Tag pagination with Link headers.
    let mut seen = Vec::new();
    let mut next = Some("/v2/lib/bb/tags/list?n=2".to_string());
    let mut pages = 0;
    while let Some(path) = next.take() {
        pages += 1;
        assert!(pages <= 5);
        let res = c.get(st.url(&path)).send().unwrap();
        next = res.headers().get("link").map(|l| {
            let l = l.to_str().unwrap();
            assert!(l.ends_with("rel=\"next\""), "{l}");
            l[l.find('<').unwrap() + 1..l.find('>').unwrap()].to_string()
        });
        let v: Value = res.json().unwrap();
        assert_eq!(v["name"], "lib/bb");
        seen.extend(
            v["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string()),
        );
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    assert_eq!(pages, 3);
    let v: Value = c
        .get(st.url("/v2/lib/bb/tags/list?last=c"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["tags"], json!(["d", "e"]));

    // A referrer: an artifact manifest whose subject is the image.
    let empty = b"{}".to_vec();
    let ed = put_blob(&c, &st, "lib/bb", &empty);
    let sig = b"a signature".to_vec();
    let sd = put_blob(&c, &st, "lib/bb", &sig);
    let artifact = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": ed, "size": 2},
        "layers": [{"mediaType": "application/vnd.example.sig", "digest": sd, "size": sig.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": md, "size": m.len()},
        "annotations": {"org.example": "yes"}
    }))
    .unwrap();
    let ad = sha256(&artifact);
    let res = put_manifest(&c, &st, "lib/bb", &ad, OCI_MANIFEST, &artifact);
    assert_eq!(res.status().as_u16(), 201);
    assert_eq!(res.headers()["oci-subject"], md.as_str());
    let res = c.get(st.url(&format!("/v2/lib/bb/referrers/{md}"))).send().unwrap();
    assert_eq!(res.headers()["content-type"], OCI_INDEX);
    let v: Value = res.json().unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(v["manifests"][0]["digest"], ad.as_str());
    assert_eq!(v["manifests"][0]["artifactType"], "application/vnd.example.signature");
    assert_eq!(v["manifests"][0]["size"], artifact.len());
    assert_eq!(v["manifests"][0]["annotations"]["org.example"], "yes");
    for (filter, n) in [("application/vnd.example.signature", 1), ("application/other", 0)] {
        let res = c
            .get(st.url(&format!("/v2/lib/bb/referrers/{md}?artifactType={filter}")))
            .send()
            .unwrap();
        assert_eq!(res.headers()["oci-filters-applied"], "artifactType");
        let v: Value = res.json().unwrap();
        assert_eq!(v["manifests"].as_array().unwrap().len(), n, "{filter}");
    }
    // The artifact was pushed by digest only: no tag for it.
    let v: Value = c.get(st.url("/v2/lib/bb/tags/list")).send().unwrap().json().unwrap();
    assert_eq!(v["tags"].as_array().unwrap().len(), 5);

    // DELETE by tag removes that tag only; by digest removes the manifest and its tags.
    assert_eq!(
        c.delete(st.url("/v2/lib/bb/manifests/e"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        202
    );
    assert_eq!(
        c.get(st.url("/v2/lib/bb/manifests/e"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        c.get(st.url("/v2/lib/bb/manifests/d"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let res = c.delete(st.url(&format!("/v2/lib/bb/manifests/{md}"))).send().unwrap();
    assert_eq!(res.status().as_u16(), 202);
    for r in ["a", "d", md.as_str()] {
        let (s, code, _) = error_code(c.get(st.url(&format!("/v2/lib/bb/manifests/{r}"))).send().unwrap());
        assert_eq!((s, code.as_str()), (404, "MANIFEST_UNKNOWN"), "{r}");
    }
    let (s, code, _) = error_code(c.delete(st.url(&format!("/v2/lib/bb/manifests/{md}"))).send().unwrap());
    assert_eq!((s, code.as_str()), (404, "MANIFEST_UNKNOWN"));
}

/// Repository paths are read as image names (docs/CLI.md "Names"): `busybox`, `library/busybox`
/// and `docker.io/library/busybox` are one repository (Docker Hub's `library/busybox`), a name the
/// home was given without a tag is that repository's `latest`, and `localhost/busybox` is another.
#[test]
fn repository_paths_are_normalized_names() {
    let st = TestStation::start();
    let c = client();
    let (m, md, (_, config), (_, layer)) = gzip_image();
    put_blob(&c, &st, "busybox", &config);
    put_blob(&c, &st, "busybox", &layer);
    assert_eq!(
        put_manifest(&c, &st, "busybox", "1", OCI_MANIFEST, &m)
            .status()
            .as_u16(),
        201
    );
    let spellings = [
        "busybox",
        "library/busybox",
        "docker.io/library/busybox",
        "index.docker.io/busybox",
    ];
    for repo in spellings {
        for r in ["1", md.as_str()] {
            let res = c.get(st.url(&format!("/v2/{repo}/manifests/{r}"))).send().unwrap();
            assert_eq!(res.status().as_u16(), 200, "{repo} {r}");
            assert_eq!(res.headers()["docker-content-digest"], md.as_str());
            assert_eq!(res.bytes().unwrap().as_ref(), &m[..]);
        }
        let v: Value = c
            .get(st.url(&format!("/v2/{repo}/tags/list")))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(v, json!({"name": repo, "tags": ["1"]}), "{repo}");
    }
    for other in ["localhost/busybox", "library/busybox/x", "busybox2"] {
        let (s, code, _) = error_code(c.get(st.url(&format!("/v2/{other}/manifests/1"))).send().unwrap());
        assert_eq!((s, code.as_str()), (404, "MANIFEST_UNKNOWN"), "{other}");
    }

    // The home's names, in any spelling, are the registry's tags; a tag pushed under another
    // spelling of the repository replaces the first spelling's.
    let home = st.open_home();
    assert_eq!(
        home.resolve("docker.io/library/busybox:1").unwrap(),
        home.resolve("busybox:1").unwrap()
    );
    home.commit_image(&m, Some(OCI_MANIFEST), Some("busybox")).unwrap();
    let v: Value = c
        .get(st.url("/v2/library/busybox/tags/list"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["tags"], json!(["1", "latest"]));
    assert_eq!(
        put_manifest(&c, &st, "library/busybox", "1", OCI_MANIFEST, &m)
            .status()
            .as_u16(),
        201
    );
    let names: Vec<String> = home.refs().unwrap().names.into_keys().collect();
    assert_eq!(
        names,
        [
            "busybox".to_string(),
            "library/busybox:1".to_string(),
            format!("library/busybox@{md}")
        ]
    );

    // DELETE under one spelling removes the tag in every spelling.
    let res = c
        .delete(st.url("/v2/docker.io/library/busybox/manifests/latest"))
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    let (s, code, _) = error_code(c.get(st.url("/v2/busybox/manifests/latest")).send().unwrap());
    assert_eq!((s, code.as_str()), (404, "MANIFEST_UNKNOWN"));
    assert!(home.resolve("busybox").is_err());
    let v: Value = c.get(st.url("/v2/busybox/tags/list")).send().unwrap().json().unwrap();
    assert_eq!(v["tags"], json!(["1"]));
}

/// `/v2/ipfs/<cid>/…` serves the image rooted at `<cid>` under any tag; an index's children by
/// digest; the namespace is read-only. An index served to a client reading only image manifests
/// gives the linux/amd64 one.
#[test]
fn ipfs_view_and_index_negotiation() {
    let st = TestStation::start();
    let c = client();
    let src = Layout::multi();
    let home = st.open_home();
    let rep = home
        .push(
            &format!("oci:{}:multi", src.0.display())
                .parse::<shp_core::reference::ImageRef>()
                .unwrap(),
            Some("local"),
            shp_core::Home::no_progress(),
        )
        .unwrap();
    let root = rep.import.root.to_string();
    let top = src.top(Some("multi"));
    let index = src.blob(top["digest"].as_str().unwrap());
    for r in ["anything", "latest", top["digest"].as_str().unwrap()] {
        let res = c.get(st.url(&format!("/v2/ipfs/{root}/manifests/{r}"))).send().unwrap();
        assert_eq!(res.status().as_u16(), 200, "{r}");
        assert_eq!(res.headers()["docker-content-digest"], top["digest"].as_str().unwrap());
        assert_eq!(res.bytes().unwrap().as_ref(), &index[..]);
    }
    let iv: Value = serde_json::from_slice(&index).unwrap();
    let amd = iv["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .unwrap()
        .clone();
    let ad = amd["digest"].as_str().unwrap();
    let res = c
        .get(st.url(&format!("/v2/ipfs/{root}/manifests/{ad}")))
        .send()
        .unwrap();
    assert_eq!(res.bytes().unwrap().as_ref(), &src.blob(ad)[..]);
    // Negotiation: only image manifests accepted → the linux/amd64 manifest.
    let res = c
        .get(st.url(&format!("/v2/ipfs/{root}/manifests/x")))
        .header("accept", OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(res.headers()["docker-content-digest"], ad);
    // Blobs of the image.
    let am: Value = serde_json::from_slice(&src.blob(ad)).unwrap();
    let ld = am["layers"][0]["digest"].as_str().unwrap();
    let res = c.get(st.url(&format!("/v2/ipfs/{root}/blobs/{ld}"))).send().unwrap();
    assert_eq!(res.bytes().unwrap().as_ref(), &src.blob(ld)[..]);
    // Read-only.
    let (s, code, _) = error_code(
        c.post(st.url(&format!("/v2/ipfs/{root}/blobs/uploads/")))
            .send()
            .unwrap(),
    );
    assert_eq!((s, code.as_str()), (403, "DENIED"));
    // A digest the image does not hold.
    let res = c
        .get(st.url(&format!("/v2/ipfs/{root}/manifests/{}", sha256(b"x"))))
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
}

/// Auth: 401 with the right challenge without credentials, success with them; reads open unless
/// `auth_reads`.
#[test]
fn auth_token_and_htpasswd() {
    let c = client();
    let blob = b"auth test blob".to_vec();
    let d = sha256(&blob);
    // Token, writes only.
    let st = TestStation::with(AuthSpec::Token("t0ken".into()), false);
    let post = |st: &TestStation, auth: Option<&str>| {
        let mut r = c
            .post(st.url(&format!("/v2/a/blobs/uploads/?digest={d}")))
            .body(blob.clone());
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    let res = post(&st, None).unwrap();
    assert_eq!(
        res.headers()["www-authenticate"],
        "Bearer realm=\"shp\",service=\"shp\""
    );
    let (s, code, _) = error_code(res);
    assert_eq!((s, code.as_str()), (401, "UNAUTHORIZED"));
    assert_eq!(post(&st, Some("Bearer wrong")).unwrap().status().as_u16(), 401);
    assert_eq!(post(&st, Some("Bearer t0ken")).unwrap().status().as_u16(), 201);
    let res = c.get(st.url(&format!("/v2/a/blobs/{d}"))).send().unwrap();
    assert_eq!(res.status().as_u16(), 200, "reads are open");
    assert_eq!(c.get(st.url("/v2/")).send().unwrap().status().as_u16(), 401);
    drop(st);

    // htpasswd with auth on reads too.
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    let out = run(Command::new("htpasswd").args(["-Bbn", "bob", "pa55"]));
    std::fs::write(&pw, &out.stdout).unwrap();
    let st = TestStation::with(AuthSpec::Htpasswd(pw), true);
    let basic = |u: &str, p: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    };
    let res = post(&st, None).unwrap();
    assert_eq!(res.status().as_u16(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Basic realm=\"shp\"");
    assert_eq!(post(&st, Some(&basic("bob", "nope"))).unwrap().status().as_u16(), 401);
    assert_eq!(post(&st, Some(&basic("bob", "pa55"))).unwrap().status().as_u16(), 201);
    let res = c.get(st.url(&format!("/v2/a/blobs/{d}"))).send().unwrap();
    assert_eq!(res.status().as_u16(), 401, "reads need credentials with auth_reads");
    let res = c
        .get(st.url(&format!("/v2/a/blobs/{d}")))
        .header("authorization", basic("bob", "pa55"))
        .send()
        .unwrap();
    assert_eq!(res.bytes().unwrap().as_ref(), &blob[..]);
}

/// 64 pulls of a layer at once (one in four a Range from the middle), all byte-identical: the
/// cold layer's one shared rebuild serves them all.
#[test]
fn concurrent_pulls() {
    let st = TestStation::start();
    let c = client();
    let (_, _, _, (ld, layer)) = gzip_image();
    put_blob(&c, &st, "many", &layer);
    let mid = layer.len() / 2;
    let threads: Vec<_> = (0..64)
        .map(|i| {
            let url = st.url(&format!("/v2/many/blobs/{ld}"));
            std::thread::spawn(move || {
                let ranged = i % 4 == 3;
                let mut req = c.get(url);
                if ranged {
                    req = req.header("range", format!("bytes={mid}-"));
                }
                let res = req.send().unwrap();
                assert_eq!(res.status().as_u16(), if ranged { 206 } else { 200 });
                (ranged, res.bytes().unwrap())
            })
        })
        .collect();
    let mut n = 0;
    for t in threads {
        let (ranged, b) = t.join().unwrap();
        if ranged {
            assert!(b.as_ref() == &layer[mid..], "a range got other bytes");
        } else {
            assert_eq!(sha256(&b), ld);
            assert_eq!(b.len(), layer.len());
        }
        n += 1;
    }
    assert_eq!(n, 64);
}
