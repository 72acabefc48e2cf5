//! Integration tests of the `shp` binary over real images: busybox OCI layouts built with umoci,
//! a docker-archive written by skopeo, and hand-made odd or hostile inputs. Everything is checked on
//! bytes and digests, with skopeo and npm's @ipld/car as independent readers.
//!
//! Needs the tools scripts/ci-deps.sh installs (umoci, skopeo, busybox-static, jq, zstd, python3,
//! node + tests/interop/node's npm packages); a missing one fails the run naming it.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How the fixture's zstd layers (written by the `zstd -3` CLI, libzstd 1.5.4) are kept.
const ZSTD_STORAGE: &str = "recipe:zstd-1.5.4/3/mt/ck/cs=5164544";

// ---------------------------------------------------------------------------------------------
// 1. Round trips through OCI layouts

#[test]
fn oci_tags_round_trip_bit_exact() {
    let src = oci_fixture();
    let home = ShpHome::new();
    // All tags go into one output layout: later pulls must not drop earlier refs.
    let out = Layout::open(home.scratch("out"));
    for tag in OCI_TAGS {
        let root = home.push(&oci_ref(&src.dir, tag), &[]);
        assert_eq!(
            home.pull(tag, &oci_ref(&out.dir, tag)),
            root,
            "pull prints the root it exported"
        );
        assert_roundtrip(&src, tag, &out, tag);
    }
    let other = home.scratch("other");
    for tag in OCI_TAGS {
        assert_roundtrip(&src, tag, &out, tag);
        check_with_skopeo(&out, tag, &other);
    }
}

#[test]
fn multi_platform_index_round_trips_bit_exact() {
    let src = multi_fixture();
    let home = ShpHome::new();
    let out = Layout::open(home.scratch("out"));
    home.push(&oci_ref(&src.dir, "multi"), &[]);
    home.pull("multi", &oci_ref(&out.dir, "multi"));
    assert_roundtrip(&src, "multi", &out, "multi");
    assert_eq!(out.ref_desc("multi")["mediaType"], OCI_INDEX);
    check_with_skopeo(&out, "multi", &home.scratch("other"));
}

/// skopeo reads what shp wrote, and copies it (every platform, digests preserved).
fn check_with_skopeo(out: &Layout, tag: &str, other: &Path) {
    let want = out.ref_digest(tag);
    let raw = skopeo(&["inspect", "--raw", &oci_ref(&out.dir, tag)]).stdout;
    assert_eq!(
        digest_of(&raw),
        want,
        "skopeo inspect --raw of {tag}: not the manifest shp wrote"
    );
    skopeo(&["inspect", &oci_ref(&out.dir, tag)]);
    skopeo(&[
        "copy",
        "-q",
        "--all",
        "--preserve-digests",
        &oci_ref(&out.dir, tag),
        &oci_ref(other, tag),
    ]);
    assert_eq!(
        Layout::open(other).ref_digest(tag),
        want,
        "skopeo copy of {tag} changed its digest"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. docker-archive

#[test]
fn docker_archive_round_trips_member_files() {
    let home = ShpHome::new();
    let src = fixtures().join("busybox.docker.tar");
    let root = home.push(&format!("docker-archive:{}", src.display()), &[]);
    let repo_tag = {
        let dir = home.scratch("src-x");
        untar(&src, &dir);
        let m: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        m[0]["RepoTags"][0].as_str().expect("RepoTags[0]").to_string()
    };
    assert!(
        home.names().contains(&repo_tag),
        "push names a docker-archive image by its RepoTag {repo_tag:?}: {:?}",
        home.names()
    );

    let out = home.scratch("out.tar");
    assert_eq!(home.pull(&root, &format!("docker-archive:{}", out.display())), root);
    let (a, b) = (home.scratch("a"), home.scratch("b"));
    untar(&src, &a);
    untar(&out, &b);
    let (ta, tb) = (tree(&a), tree(&b));
    assert_eq!(
        ta.keys().collect::<Vec<_>>(),
        tb.keys().collect::<Vec<_>>(),
        "member names differ"
    );
    assert!(
        ta.values().filter(|v| v.is_some()).count() >= 4,
        "too few regular files in the archive: {:?}",
        ta.keys()
    );
    for (name, bytes) in &ta {
        assert!(bytes == &tb[name], "member {} differs", name.display());
    }
}

/// Issue 16: names are compared as docker normalises them. An archive skopeo tagged
/// `docker.io/holdout/curl:latest` (with the legacy `repositories`, `VERSION` and `json` members)
/// pulled as `holdout/curl:latest` is that archive, byte for byte; another name gets a generated one.
#[test]
fn docker_names_are_normalized() {
    let fx = oci_fixture();
    // shp writes an archive's members back in its own tar framing: the input is an archive it
    // wrote from skopeo's, so the comparison below is of whole files (that the members are
    // skopeo's is what `docker_archive_round_trips_member_files` checks).
    let maker = ShpHome::new();
    let skopeo_tar = maker.scratch("skopeo.tar");
    skopeo(&[
        "copy",
        "-q",
        &oci_ref(&fx.dir, "busybox-2layer"),
        &format!("docker-archive:{}:docker.io/holdout/curl:latest", skopeo_tar.display()),
    ]);
    maker.push(&format!("docker-archive:{}", skopeo_tar.display()), &[]);
    let input = maker.scratch("in.tar");
    maker.pull(
        "docker.io/holdout/curl:latest",
        &format!("docker-archive:{}", input.display()),
    );
    let made = std::fs::read(&input).unwrap();

    let home = ShpHome::new();
    let members = |tar: &Path| -> BTreeSet<String> {
        let out = run_tool(Command::new("tar").arg("-tf").arg(tar));
        stdout(&out).lines().map(str::to_string).collect()
    };
    let legacy: Vec<String> = members(&input)
        .into_iter()
        .filter(|m| m == "repositories" || m.ends_with("/VERSION") || m.ends_with("/json"))
        .collect();
    assert!(
        legacy.len() >= 3 && legacy.iter().any(|m| m == "repositories"),
        "the input has no legacy members to lose: {:?}",
        members(&input)
    );

    let root = home.push(&format!("docker-archive:{}", input.display()), &[]);
    assert_eq!(
        home.names(),
        BTreeSet::from(["docker.io/holdout/curl:latest".to_string()]),
        "a name is stored as the source spells it"
    );
    for (name, file) in [
        ("holdout/curl:latest", "out.tar"),
        ("docker.io/holdout/curl:latest", "out-full.tar"),
        ("index.docker.io/holdout/curl:latest", "out-index.tar"),
    ] {
        let out = home.scratch(file);
        assert_eq!(
            home.pull(&root, &format!("docker-archive:{}:{name}", out.display())),
            root
        );
        assert_eq!(
            sha256_hex(&std::fs::read(&out).unwrap()),
            sha256_hex(&made),
            "docker-archive:{file}:{name} is not the archive pushed, byte for byte"
        );
    }
    // Another name is another image name: the archive is generated, without the legacy members.
    let other = home.scratch("other.tar");
    home.pull(
        &root,
        &format!("docker-archive:{}:holdout/other:latest", other.display()),
    );
    let generated = members(&other);
    assert!(
        !generated.contains("repositories") && generated.contains("manifest.json"),
        "{generated:?}"
    );

    // The image is found by any spelling of its name.
    for name in [
        "holdout/curl",
        "holdout/curl:latest",
        "docker.io/holdout/curl",
        "index.docker.io/holdout/curl:latest",
    ] {
        let dir = home.scratch(&format!("oci-{}", name.replace(['/', ':'], "_")));
        assert_eq!(home.pull(name, &oci_ref(&dir, "curl")), root, "shp pull {name}");
        let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        let inspect = home.json(&["inspect", name]);
        assert_eq!(inspect["root"], json!(root));
        assert_eq!(index["manifests"][0]["digest"], inspect["digest"], "{name}: {index}");
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            json!("curl")
        );
    }
    let (code, err) = home.fails(&["pull", "holdout/other", "oci:/nonexistent"]);
    assert_eq!(code, 3, "{err}");

    // Naming replaces every spelling of the name; the new spelling is the one listed.
    home.push(&oci_ref(&fx.dir, "busybox-none"), &["--tag", "holdout/curl"]);
    assert_eq!(home.names(), BTreeSet::from(["holdout/curl".to_string()]));
    assert_ne!(
        home.json(&["inspect", "docker.io/holdout/curl:latest"])["root"],
        json!(root)
    );
    home.push(&oci_ref(&fx.dir, "busybox-none"), &["--tag", "app:v1"]);
    let app = home.json(&["inspect", "app:v1"])["root"].clone();
    assert_eq!(home.json(&["inspect", "docker.io/library/app:v1"])["root"], app);
    assert_eq!(home.json(&["inspect", "library/app:v1"])["root"], app);
    home.ok(&["rm", "docker.io/library/app:v1"]);
    assert!(!home.names().contains("app:v1"), "rm removes the name in any spelling");

    // Names are image names: uppercase is refused, naming the name, and nothing is stored.
    let before = home.state();
    let (code, err) = home.fails(&["push", &oci_ref(&fx.dir, "busybox-none"), "--tag", "Holdout/Curl"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("\"Holdout/Curl\"") && err.contains("must be lowercase"),
        "{err}"
    );
    let (code, err) = home.fails(&[
        "push",
        &format!("docker-archive:{}:Holdout/curl:latest", input.display()),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("must be lowercase"), "{err}");
    assert_eq!(home.state(), before);
}

#[test]
fn oci_image_pulls_to_docker_archive_skopeo_reads() {
    let src = oci_fixture();
    let tag = "busybox-2layer";
    let home = ShpHome::new();
    home.push(&oci_ref(&src.dir, tag), &[]);
    let file = home.scratch("image.tar");
    home.pull(tag, &format!("docker-archive:{}:foo/bar:v1", file.display()));

    let diff_ids = src.diff_ids(tag);
    assert_eq!(diff_ids.len(), 2);
    let v: Value =
        serde_json::from_slice(&skopeo(&["inspect", &format!("docker-archive:{}", file.display())]).stdout).unwrap();
    assert_eq!(
        v["Layers"],
        json!(diff_ids),
        "skopeo's layer digests of the docker-archive are not the config's diff_ids"
    );

    let dir = home.scratch("x");
    untar(&file, &dir);
    let m: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m[0]["RepoTags"], json!(["foo/bar:v1"]));
    let config = std::fs::read(dir.join(m[0]["Config"].as_str().unwrap())).unwrap();
    assert!(
        config == src.blob(src.manifest(tag)["config"]["digest"].as_str().unwrap()),
        "config differs from the source's"
    );
    let layers: Vec<String> = m[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| digest_of(&std::fs::read(dir.join(l.as_str().unwrap())).unwrap()))
        .collect();
    assert_eq!(
        layers, diff_ids,
        "the archive's layer tars are not the uncompressed layers"
    );
}

#[test]
fn index_pulls_to_docker_archive_as_its_amd64_image() {
    let multi = multi_fixture();
    let home = ShpHome::new();
    home.push(&oci_ref(&multi.dir, "multi"), &[]);
    let file = home.scratch("multi.tar");
    home.pull("multi", &format!("docker-archive:{}:shp/multi:v1", file.display()));
    let index = multi.json_blob(&multi.ref_digest("multi"));
    let manifests = index["manifests"].as_array().unwrap();
    let amd64 = manifests
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .expect("amd64");
    let manifest = multi.json_blob(amd64["digest"].as_str().unwrap());
    let config = multi.json_blob(manifest["config"]["digest"].as_str().unwrap());
    let archive = format!("docker-archive:{}", file.display());
    let v: Value = serde_json::from_slice(&skopeo(&["inspect", &archive]).stdout).unwrap();
    assert_eq!(
        v["Layers"], config["rootfs"]["diff_ids"],
        "the archive is not the index's linux/amd64 image"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Determinism and idempotence

#[test]
fn same_image_same_root_and_no_new_blocks_on_repush() {
    let src = oci_fixture();
    for source in [
        oci_ref(&src.dir, "busybox-2layer"),
        oci_ref(&multi_fixture().dir, "multi"),
    ] {
        let (a, b) = (ShpHome::new(), ShpHome::new());
        let first = a.json(&["push", &source]);
        assert!(
            num(&first, "new_blocks") > 0,
            "{source}: first push stored no blocks: {first}"
        );
        let root = first["root"].as_str().unwrap().to_string();
        assert_eq!(b.push(&source, &[]), root, "{source}: two homes give two roots");
        let before = a.state();
        let again = a.json(&["push", &source]);
        assert_eq!(again["root"], json!(root));
        assert_eq!(
            num(&again, "new_blocks"),
            0,
            "{source}: second push added blocks: {again}"
        );
        assert_eq!(
            num(&again, "new_bytes"),
            0,
            "{source}: second push added bytes: {again}"
        );
        // Blobs the store already holds are not read again, so the second push touches fewer blocks.
        assert!(
            num(&again, "blocks") < num(&first, "blocks"),
            "{source}: second push re-read blobs: {again}"
        );
        assert_eq!(a.state(), before, "{source}: second push changed the store");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Output contract

#[test]
fn push_inspect_stats_ls_output_contract() {
    let src = oci_fixture();
    let home = ShpHome::new();
    let mut roots = std::collections::BTreeMap::new();

    // plain: `DIGEST SIZE STORAGE new N` per blob, `name NAME`, `added …`, then the root CID last
    let out = home.ok(&["push", &oci_ref(&src.dir, "busybox-gzip")]);
    let lines: Vec<&str> = out.lines().collect();
    let blobs = src.reachable(&src.ref_desc("busybox-gzip"));
    assert_eq!(lines.len(), blobs.len() + 3, "push output: {out}");
    for line in &lines[..blobs.len()] {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 5, "blob line {line:?}");
        assert_eq!(
            blobs.get(f[0]).map(u64::to_string).as_deref(),
            Some(f[1]),
            "blob line {line:?} vs the source"
        );
        assert_eq!(f[3], "new");
    }
    assert_eq!(lines[blobs.len()], "name busybox-gzip");
    assert!(lines[blobs.len() + 1].starts_with("added "), "{out}");
    let last = lines[blobs.len() + 2];
    assert_cid(last);
    roots.insert("busybox-gzip", last.to_string());
    // --quiet: exactly the root
    roots.insert("busybox-none", home.push(&oci_ref(&src.dir, "busybox-none"), &[]));
    // --json: one document, the root in it
    let j = home.json(&["push", &oci_ref(&src.dir, "busybox-zstd")]);
    assert_cid(j["root"].as_str().unwrap());
    assert_eq!(j["digest"], json!(src.ref_digest("busybox-zstd")));
    assert_eq!(j["name"], json!("busybox-zstd"));
    roots.insert("busybox-zstd", j["root"].as_str().unwrap().to_string());

    for (tag, want) in [
        // umoci writes layers with klauspost pgzip (Debian's klauspost 1.15.12), 256 KiB blocks.
        ("busybox-gzip", "recipe:pgzip-1.2/kpflate-1.15.12/5/262144"),
        ("busybox-zstd", ZSTD_STORAGE),
        ("busybox-none", "uncompressed"),
    ] {
        let i = home.json(&["inspect", tag]);
        assert_eq!(i["root"], json!(roots[tag]));
        assert_eq!(i["digest"], json!(src.ref_digest(tag)));
        let manifest = src.manifest(tag);
        let layers = i["layers"].as_array().expect("inspect --json has layers");
        assert_eq!(layers.len(), manifest["layers"].as_array().unwrap().len());
        for (l, d) in layers.iter().zip(manifest["layers"].as_array().unwrap()) {
            for key in ["digest", "size", "media_type", "storage"] {
                assert!(!l[key].is_null(), "{tag}: inspect layer has no {key:?}: {l}");
            }
            assert_eq!(l["digest"], d["digest"]);
            assert_eq!(l["size"], d["size"]);
            assert_eq!(l["media_type"], d["mediaType"]);
            assert_eq!(l["storage"], json!(want), "{tag}: layer storage");
        }
    }

    let stats = home.stats();
    let mut unique = std::collections::BTreeMap::new();
    for tag in roots.keys() {
        unique.extend(src.reachable(&src.ref_desc(tag)));
    }
    let sum: u64 = unique.values().sum();
    assert!(num(&stats, "blocks") > 0 && num(&stats, "stored_bytes") > 0, "{stats}");
    assert!(
        num(&stats, "logical_bytes") >= sum,
        "logical_bytes {} < {sum}, the unique blob bytes pushed",
        stats["logical_bytes"]
    );

    let ls = home.ls();
    let listed: std::collections::BTreeMap<String, (String, String)> = ls
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                (
                    e["root"].as_str().unwrap().to_string(),
                    e["digest"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    assert_eq!(listed.len(), 3, "ls: {ls:?}");
    for (tag, root) in &roots {
        assert_eq!(listed[*tag], (root.clone(), src.ref_digest(tag)), "ls entry of {tag}");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. CAR export / import

#[test]
fn car_export_verifies_with_ipld_car_and_imports_bit_exact() {
    let src = oci_fixture();
    let tag = "busybox-2layer";
    let home = ShpHome::new();
    let root = home.push(&oci_ref(&src.dir, tag), &[]);
    let car = home.scratch("image.car");
    let export = home
        .cmd()
        .args(["car", "export", tag, car.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(export.status.success(), "car export failed: {}", stderr(&export));

    let script = repo_root().join("tests/interop/node/verify-car.mjs");
    let out = Command::new("node")
        .arg(&script)
        .arg(&car)
        .arg(&root)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "verify-car.mjs rejected shp's CAR: {}",
        stderr(&out)
    );
    let v: Value = serde_json::from_str(stdout(&out).trim()).expect("verify-car JSON");
    assert!(num(&v, "blocks") > 0, "{v}");
    assert_eq!(v["root"], json!(root));
    let wrote = format!("wrote {} blocks to {}", v["blocks"], car.display());
    assert_eq!(stderr(&export).trim(), wrote, "car export's stderr");

    // into a fresh home, then out again bit-exact
    let fresh = ShpHome::new();
    let imported = fresh.ok(&["car", "import", car.to_str().unwrap()]);
    assert_eq!(
        imported.lines().collect::<Vec<_>>(),
        vec![root.as_str()],
        "car import prints its roots"
    );
    let dest = Layout::open(fresh.scratch("out"));
    fresh.pull(&root, &oci_ref(&dest.dir, tag));
    assert_roundtrip(&src, tag, &dest, tag);
    fresh.verify(true);

    // one flipped byte in the largest block: refused, nothing stored
    let mut bytes = std::fs::read(&car).unwrap();
    let sections = car_sections(&bytes);
    assert_eq!(sections.len() as u64, num(&v, "blocks"));
    assert!(
        sections.iter().any(|s| cid_string(&s.2) == root),
        "the root block is not in the CAR"
    );
    let (off, len, cid) = sections.into_iter().max_by_key(|s| s.1).unwrap();
    bytes[off + len / 2] ^= 0x01;
    let bad = home.scratch("bad.car");
    std::fs::write(&bad, &bytes).unwrap();
    let victim = ShpHome::new();
    let before = victim.state();
    let (_, err) = victim.fails(&["car", "import", bad.to_str().unwrap()]);
    assert!(
        err.contains(&cid_string(&cid)),
        "stderr does not name the corrupt block {}: {err}",
        cid_string(&cid)
    );
    assert!(
        err.contains("hash") || err.contains("corrupt") || err.contains("mismatch"),
        "stderr does not say what is wrong with the block: {err}"
    );
    assert_eq!(victim.state(), before, "a refused CAR changed the store");
}

// ---------------------------------------------------------------------------------------------
// 6. Bad input: refused, named, store unchanged

/// A home holding one image, so that "unchanged" has something to compare.
fn victim_home() -> ShpHome {
    let home = ShpHome::new();
    home.push(&oci_ref(&oci_fixture().dir, "busybox-gzip"), &[]);
    home
}

/// `shp push SOURCE` must exit 1 with every needle in its stderr and leave the store as it was.
fn assert_push_refused(home: &ShpHome, source: &str, extra: &[&str], needles: &[&str]) -> String {
    let before = home.state();
    let mut args = vec!["push", source];
    args.extend_from_slice(extra);
    let (code, err) = home.fails(&args);
    assert_eq!(code, 1, "push {source}: exit code; stderr: {err}");
    for n in needles {
        assert!(
            err.to_lowercase().contains(&n.to_lowercase()),
            "push {source}: stderr does not mention {n:?}: {err}"
        );
    }
    assert_eq!(home.state(), before, "push {source} failed but changed the store");
    err
}

/// The config blob and the single layer of a fixture image.
fn fixture_image(tag: &str) -> (Vec<u8>, Vec<u8>) {
    let src = oci_fixture();
    let m = src.manifest(tag);
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    (
        src.blob(m["config"]["digest"].as_str().unwrap()),
        src.blob(layers[0]["digest"].as_str().unwrap()),
    )
}

#[test]
fn refuses_truncated_gzip_layer() {
    let home = victim_home();
    let (config, layer) = fixture_image("busybox-gzip");
    let cut = &layer[..layer.len() / 2];
    let bad = Layout::create(home.scratch("bad"));
    bad.write_image("truncated", &config, &[(LAYER_GZIP, cut)], |_| {});
    assert_push_refused(
        &home,
        &oci_ref(&bad.dir, "truncated"),
        &[],
        &[&digest_of(cut), "truncated", "gzip"],
    );
}

#[test]
fn refuses_corrupt_compressed_layers() {
    let home = victim_home();
    // zstd cut in half
    let (config, layer) = fixture_image("busybox-zstd");
    let cut = &layer[..layer.len() / 2];
    let bad = Layout::create(home.scratch("zstd"));
    bad.write_image("truncated", &config, &[(LAYER_ZSTD, cut)], |_| {});
    assert_push_refused(
        &home,
        &oci_ref(&bad.dir, "truncated"),
        &[],
        &[&digest_of(cut), "truncated", "zstd"],
    );
    // gzip whose trailer CRC-32 is wrong (the deflate stream itself is intact)
    let (config, mut layer) = fixture_image("busybox-gzip");
    let crc = layer.len() - 8;
    layer[crc] ^= 0xff;
    let bad = Layout::create(home.scratch("crc"));
    bad.write_image("crc", &config, &[(LAYER_GZIP, &layer)], |_| {});
    assert_push_refused(
        &home,
        &oci_ref(&bad.dir, "crc"),
        &[],
        &[&digest_of(&layer), "gzip", "checksum"],
    );
}

#[test]
fn refuses_tar_header_with_bad_checksum() {
    let home = victim_home();
    let (_, mut tar) = fixture_image("busybox-none");
    let (unsigned, signed) = header_sums(&tar[..512]);
    assert_ne!(unsigned, 0);
    let wrong = unsigned.max(signed as u64) + 1;
    tar[148..156].copy_from_slice(format!("{wrong:06o}\0 ").as_bytes());
    let bad = Layout::create(home.scratch("bad"));
    bad.write_image("badsum", &config_for(&[&tar]), &[(LAYER_TAR, &tar)], |_| {});
    assert_push_refused(
        &home,
        &oci_ref(&bad.dir, "badsum"),
        &[],
        &[&digest_of(&tar), "checksum"],
    );
}

#[test]
fn refuses_manifest_lying_about_layer_digest() {
    let home = victim_home();
    let (config, layer) = fixture_image("busybox-gzip");
    let bad = Layout::create(home.scratch("bad"));
    let fake = digest_of(b"these are not the layer's bytes");
    std::fs::write(bad.blob_path(&fake), &layer).unwrap();
    bad.write_image("lie", &config, &[(LAYER_GZIP, &layer)], |m| {
        m["layers"][0]["digest"] = json!(fake)
    });
    assert_push_refused(&home, &oci_ref(&bad.dir, "lie"), &[], &[&fake, &digest_of(&layer)]);
}

#[test]
fn refuses_manifest_lying_about_layer_size() {
    let home = victim_home();
    let (config, layer) = fixture_image("busybox-gzip");
    for (i, size) in [layer.len() as u64 + 1, layer.len() as u64 - 1].into_iter().enumerate() {
        let bad = Layout::create(home.scratch(&format!("bad{i}")));
        bad.write_image("lie", &config, &[(LAYER_GZIP, &layer)], |m| {
            m["layers"][0]["size"] = json!(size)
        });
        assert_push_refused(
            &home,
            &oci_ref(&bad.dir, "lie"),
            &[],
            &[&digest_of(&layer), &size.to_string()],
        );
    }
}

#[test]
fn refuses_missing_blob() {
    let home = victim_home();
    let (config, layer) = fixture_image("busybox-none");
    let bad = Layout::create(home.scratch("bad"));
    bad.write_image("missing", &config, &[(LAYER_TAR, &layer)], |_| {});
    std::fs::remove_file(bad.blob_path(&digest_of(&layer))).unwrap();
    assert_push_refused(
        &home,
        &oci_ref(&bad.dir, "missing"),
        &[],
        &[&digest_of(&layer), "missing"],
    );
}

#[test]
fn refuses_decompression_bomb_over_the_limit() {
    let home = victim_home();
    // one file of 50 MB of zeros, gzipped to a few tens of KiB
    let mut tar = TarBuilder::default();
    tar.file(b"zeros.bin", &vec![0u8; 50_000_000]);
    tar.end_of_archive(2);
    let tar = tar.buf;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 1_000_000);
    let bad = Layout::create(home.scratch("bad"));
    bad.write_image("bomb", &config_for(&[&tar]), &[(LAYER_GZIP, &gz)], |_| {});
    assert_push_refused(
        &home,
        &oci_ref(&bad.dir, "bomb"),
        &["--max-layer-size", "1000000"],
        &[&digest_of(&gz), "limit"],
    );
}

#[test]
fn version_is_the_release() {
    let out = Command::new(SHP).arg("--version").output().expect("run shp --version");
    assert!(out.status.success(), "shp --version: {out:?}");
    // The workspace version, which the C ABI reports too (shp_version(), SHP_VERSION).
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("shp {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn unknown_name_exits_3_and_bad_reference_exits_2() {
    let home = victim_home();
    let before = home.state();
    let existed = Path::new("/x").exists();
    let (code, err) = home.fails(&["pull", "nonexistent-name", "oci:/x"]);
    assert_eq!(code, 3, "pull of an unknown name: {err}");
    assert!(
        err.contains("nonexistent-name"),
        "stderr does not name the image: {err}"
    );
    assert_eq!(Path::new("/x").exists(), existed, "a failed pull created /x");

    let (code, err) = home.fails(&["push", "bogus:xyz"]);
    assert_eq!(code, 2, "push of an unknown transport: {err}");
    assert!(err.contains("bogus"), "stderr does not name the reference: {err}");
    assert_eq!(home.state(), before);
}

// ---------------------------------------------------------------------------------------------
// 7. Odd-but-valid tar, kept bit-exact

/// A raw tar writer: every byte is ours to choose.
#[derive(Default)]
struct TarBuilder {
    buf: Vec<u8>,
}

/// Sum of a header's bytes with the checksum field read as spaces: (unsigned, signed).
fn header_sums(h: &[u8]) -> (u64, i64) {
    let mut u = 0u64;
    let mut s = 0i64;
    for (i, &b) in h[..512].iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        u += b as u64;
        s += b as i8 as i64;
    }
    (u, s)
}

fn octal(field: &mut [u8], v: u64) {
    let w = field.len() - 1;
    field[..w].copy_from_slice(format!("{v:0w$o}").as_bytes());
    field[w] = 0;
}

struct Hdr<'a> {
    name: &'a [u8],
    kind: u8,
    size: u64,
    link: &'a [u8],
    dev: (u64, u64),
    signed: bool,
}

impl<'a> Hdr<'a> {
    fn new(name: &'a [u8], kind: u8, size: u64) -> Self {
        Hdr {
            name,
            kind,
            size,
            link: b"",
            dev: (0, 0),
            signed: false,
        }
    }

    fn bytes(&self) -> [u8; 512] {
        let mut h = [0u8; 512];
        let n = self.name.len().min(100);
        h[..n].copy_from_slice(&self.name[..n]);
        octal(&mut h[100..108], 0o644);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], self.size);
        octal(&mut h[136..148], 1_704_067_200);
        h[156] = self.kind;
        h[157..157 + self.link.len()].copy_from_slice(self.link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[265..269].copy_from_slice(b"root");
        h[297..301].copy_from_slice(b"root");
        octal(&mut h[329..337], self.dev.0);
        octal(&mut h[337..345], self.dev.1);
        let (u, s) = header_sums(&h);
        let sum = if self.signed {
            u64::try_from(s).expect("positive signed sum")
        } else {
            u
        };
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }
}

impl TarBuilder {
    fn header(&mut self, h: Hdr) {
        self.buf.extend_from_slice(&h.bytes());
    }

    /// Data, then padding to the block boundary filled with `pad`.
    fn data(&mut self, data: &[u8], pad: u8) {
        self.buf.extend_from_slice(data);
        let rem = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(pad, rem));
    }

    fn file(&mut self, name: &[u8], data: &[u8]) {
        self.header(Hdr::new(name, b'0', data.len() as u64));
        self.data(data, 0);
    }

    fn end_of_archive(&mut self, blocks: usize) {
        self.buf.extend(std::iter::repeat_n(0u8, 512 * blocks));
    }
}

/// A PAX record "LEN key=value\n" (LEN counts itself).
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = 1 + key.len() + 1 + value.len() + 1;
    let mut len = body + 1;
    while body + len.to_string().len() != len {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    assert_eq!(r.len(), len);
    r
}

fn odd_tar() -> Vec<u8> {
    let mut rng = Rng(0x05ee_d0dd_7a2b);
    let mut t = TarBuilder::default();
    t.header(Hdr::new(b"odd/", b'5', 0));

    // signed-checksum header, name bytes with the high bit set
    let hi_name: &[u8] = b"odd/caf\xe9-\xff\xfe-\x80signed.txt";
    let h = Hdr {
        signed: true,
        ..Hdr::new(hi_name, b'0', 27)
    };
    let (u, s) = header_sums(&h.bytes());
    assert_ne!(u as i64, s, "the signed and unsigned sums must differ for this entry");
    t.header(h);
    t.data(b"signed checksum convention\n", 0);

    // PAX header: long path and a size record; the ustar size field says 0
    let long_path = format!("odd/{}/pax-long-name.bin", "p".repeat(180));
    let pax_data = rng.bytes(1000);
    let mut recs = pax_record("path", long_path.as_bytes());
    recs.extend(pax_record("size", pax_data.len().to_string().as_bytes()));
    t.header(Hdr::new(b"odd/PaxHeaders.0/pax-long-name.bin", b'x', recs.len() as u64));
    t.data(&recs, 0);
    t.header(Hdr::new(&long_path.as_bytes()[..100], b'0', 0));
    t.data(&pax_data, 0);

    // GNU long name
    let gnu_name = format!("odd/{}/gnu-long-name.txt", "g".repeat(150));
    let mut ln = gnu_name.clone().into_bytes();
    ln.push(0);
    t.header(Hdr::new(b"././@LongLink", b'L', ln.len() as u64));
    t.data(&ln, 0);
    t.header(Hdr::new(&gnu_name.as_bytes()[..100], b'0', 14));
    t.data(b"gnu long name\n", 0);

    // hostile names (bytes to keep, never paths to write), odd non-zero padding after the first
    t.header(Hdr::new(b"../../etc/passwd", b'0', 16));
    t.data(b"root::0:0:pwn:/\n", 0xa5);
    t.file(b"/etc/shadow", b"root:pwned:1::::::\n");

    t.header(Hdr {
        link: hi_name,
        ..Hdr::new(b"odd/hardlink", b'1', 0)
    });
    t.header(Hdr {
        link: b"../../etc/shadow",
        ..Hdr::new(b"odd/symlink", b'2', 0)
    });
    t.header(Hdr {
        dev: (1, 3),
        ..Hdr::new(b"odd/null", b'3', 0)
    });
    t.header(Hdr::new(b"odd/fifo", b'6', 0));
    t.file(b"odd/empty", b"");
    t.file(b"odd/big.bin", &rng.bytes(300 * 1024));

    t.end_of_archive(1);
    t.buf.extend(rng.bytes(700).into_iter().map(|b| b | 1)); // trailing garbage, never zero
    t.buf
}

#[test]
fn odd_but_valid_tar_round_trips_bit_exact() {
    let home = ShpHome::new();
    let tar = odd_tar();
    let src = Layout::create(home.scratch("src"));
    src.write_image("odd", &config_for(&[&tar]), &[(LAYER_TAR, &tar)], |_| {});

    // shp runs from deep inside the temp dir, so a `../../etc/passwd` written relative to its cwd
    // would land inside the temp dir too, where the walk below finds it.
    let cwd = home.scratch("a/b/c");
    std::fs::create_dir_all(&cwd).unwrap();
    let sys = |p: &str| std::fs::metadata(p).ok().map(|m| (m.len(), m.modified().ok()));
    let (passwd, shadow) = (sys("/etc/passwd"), sys("/etc/shadow"));

    let push = home
        .cmd()
        .current_dir(&cwd)
        .args(["push", "-q", &oci_ref(&src.dir, "odd")])
        .output()
        .unwrap();
    assert!(push.status.success(), "push of the odd tar failed: {}", stderr(&push));
    let out = Layout::open(home.scratch("out"));
    let pull = home
        .cmd()
        .current_dir(&cwd)
        .args(["pull", "odd", &oci_ref(&out.dir, "odd")])
        .output()
        .unwrap();
    assert!(pull.status.success(), "pull of the odd tar failed: {}", stderr(&pull));

    assert_roundtrip(&src, "odd", &out, "odd");
    assert!(out.blob(&digest_of(&tar)) == tar);
    let i = home.json(&["inspect", "odd"]);
    assert_eq!(
        i["layers"][0]["storage"],
        json!("uncompressed"),
        "the odd tar was not decomposed: {i}"
    );
    home.verify(true);

    for path in tree(home.temp_root()).keys() {
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            name != "passwd" && name != "shadow",
            "shp wrote a file from a tar name: {}",
            path.display()
        );
    }
    assert_eq!(
        (sys("/etc/passwd"), sys("/etc/shadow")),
        (passwd, shadow),
        "/etc/passwd or /etc/shadow changed"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Crash safety

#[test]
fn sigkilled_pushes_leave_a_consistent_store() {
    let src = oci_fixture();
    let home = ShpHome::new();
    // deterministic; SHP_CRASH_SEED explores other kill schedules
    let seed = std::env::var("SHP_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xc0ffee_u64);
    let mut rng = Rng(seed);
    for i in 0..15 {
        let tag = if i % 2 == 0 { "busybox-2layer" } else { "busybox-none" };
        let mut child = home
            .cmd()
            .args(["push", "-q", &oci_ref(&src.dir, tag)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.next() % 300));
        child.kill().unwrap(); // SIGKILL (fails only if already reaped: we have not waited)
        child.wait().unwrap();
    }
    home.verify(false);
    let names = home.names();
    for name in &names {
        let out = Layout::open(home.scratch(&format!("out-{name}")));
        home.pull(name, &oci_ref(&out.dir, name));
        assert_roundtrip(&src, name, &out, name);
    }
    home.push(&oci_ref(&src.dir, "busybox-2layer"), &[]);
    home.verify(true);
}

// ---------------------------------------------------------------------------------------------
// 9. Concurrency

#[test]
fn concurrent_pushes_into_one_home() {
    let src = oci_fixture();
    let home = ShpHome::new();
    let tags = ["busybox-gzip", "busybox-2layer", "busybox-none", "busybox-zstd"];
    let children: Vec<_> = tags
        .iter()
        .map(|t| {
            (
                t,
                home.cmd()
                    .args(["push", "-q", &oci_ref(&src.dir, t)])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    for (tag, c) in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "concurrent push of {tag} failed: {}",
            stderr(&out)
        );
        assert_cid(stdout(&out).trim());
    }
    home.verify(true);
    assert_eq!(
        home.names(),
        tags.iter().map(|t| t.to_string()).collect::<BTreeSet<_>>()
    );
    for tag in tags {
        let out = Layout::open(home.scratch(&format!("out-{tag}")));
        home.pull(tag, &oci_ref(&out.dir, tag));
        assert_roundtrip(&src, tag, &out, tag);
    }
}

// ---------------------------------------------------------------------------------------------
// 10. Garbage collection

#[test]
fn gc_removes_what_no_ref_reaches() {
    let src = oci_fixture();
    let home = ShpHome::new();
    let keep = "busybox-none";
    let drop = "busybox-zstd";
    home.push(&oci_ref(&src.dir, keep), &[]);
    home.push(&oci_ref(&src.dir, drop), &[]);
    let before = home.stats();

    home.ok(&["rm", drop]);
    assert_eq!(home.fails(&["rm", drop]).0, 3, "rm of a name that is gone");
    let (code, _) = home.fails(&["pull", drop, &oci_ref(&home.scratch("gone"), drop)]);
    assert_eq!(code, 3, "a removed name still resolves");
    let gc = home.json(&["gc"]);
    assert!(num(&gc, "blocks_removed") > 0, "gc removed nothing: {gc}");
    assert!(num(&gc, "bytes_freed") > 0, "gc freed nothing: {gc}");

    let after = home.stats();
    assert_eq!(
        num(&after, "blocks"),
        num(&before, "blocks") - num(&gc, "blocks_removed"),
        "gc report vs stats: {gc} {after}"
    );
    assert!(
        num(&after, "stored_bytes") < num(&before, "stored_bytes"),
        "stored_bytes did not decrease: {before} -> {after}"
    );
    assert_eq!(home.names(), BTreeSet::from([keep.to_string()]));

    let out = Layout::open(home.scratch("out"));
    home.pull(keep, &oci_ref(&out.dir, keep));
    assert_roundtrip(&src, keep, &out, keep);
    home.verify(true);
    // a second gc finds nothing more
    assert_eq!(num(&home.json(&["gc"]), "blocks_removed"), 0);
}

/// `init --compression zstd:3,deferred`: pushes write raw blocks, `compact` and gc compress them, every
/// image still comes back bit-exact; a bad setting is refused and leaves the home's config as it was.
#[test]
fn deferred_compression_is_done_by_gc() {
    let src = oci_fixture();
    let home = ShpHome::new();
    let config = home.dir.join("config.json");
    for bad in ["zstd:0", "gzip:6", "zstd:3,later"] {
        let (code, err) = home.fails(&["init", "--compression", bad]);
        assert_ne!(code, 0);
        assert!(err.contains(bad), "error names the setting: {err}");
    }
    let cfg: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(cfg, json!({"version": 1}), "a refused setting changed config.json");
    home.ok(&["init", "--compression", "zstd:3,deferred"]);
    let cfg: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(cfg, json!({"version": 1, "compression": "zstd:3,deferred"}));

    // Two images, then compact: their blocks are compressed, none is lost.
    for tag in &OCI_TAGS[..2] {
        home.push(&oci_ref(&src.dir, tag), &[]);
    }
    let first = home.stats();
    assert_eq!(num(&first, "loose_bytes"), num(&first, "stored_bytes"), "{first}");
    let c = home.json(&["compact"]);
    assert_eq!(
        (num(&c, "packs_compacted"), num(&c, "blocks")),
        (2, num(&first, "blocks")),
        "{c}"
    );
    let compacted = home.stats();
    assert_eq!(num(&compacted, "blocks"), num(&first, "blocks"));
    assert_eq!(num(&compacted, "loose_bytes"), 0, "{compacted}");
    assert_eq!(
        num(&compacted, "stored_bytes"),
        num(&c, "bytes_after"),
        "{c} {compacted}"
    );
    assert!(num(&c, "bytes_after") < num(&c, "bytes_before"), "{c}");
    assert_eq!(
        num(&home.json(&["compact"]), "packs_compacted"),
        0,
        "nothing left to compact"
    );

    // The rest, then gc: it compresses the new loose packs (and merges the small ones).
    for tag in &OCI_TAGS[2..] {
        home.push(&oci_ref(&src.dir, tag), &[]);
    }
    let loose = home.stats();
    assert_eq!(loose["compression"], "zstd:3,deferred");
    assert!(num(&loose, "loose_bytes") > 0, "{loose}");
    let gc = home.json(&["gc"]);
    assert_eq!(num(&gc, "blocks_removed"), 0, "{gc}");
    let packed = home.stats();
    assert_eq!(num(&packed, "blocks"), num(&loose, "blocks"));
    assert_eq!(num(&packed, "loose_bytes"), 0, "{packed}");
    // (The fixture's images share most blocks: these loose packs hold little, mostly JSON.)
    assert!(
        num(&packed, "stored_bytes") < num(&loose, "stored_bytes"),
        "gc did not compress: {loose} -> {packed}"
    );
    assert_eq!(
        num(&gc, "bytes_freed"),
        num(&loose, "stored_bytes") - num(&packed, "stored_bytes")
    );
    let out = Layout::open(home.scratch("out"));
    for tag in OCI_TAGS {
        home.pull(tag, &oci_ref(&out.dir, tag));
        assert_roundtrip(&src, tag, &out, tag);
    }
    home.verify(true);
    // Back to compressing on import: the setting is kept in the home's config.
    home.ok(&["init", "--compression", "zstd:3"]);
    let cfg: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(cfg["compression"], "zstd:3");
}

#[test]
fn gc_refuses_while_another_process_uses_the_home() {
    use std::os::unix::fs::OpenOptionsExt;
    let home = victim_home();
    // A push whose layout's index.json is a FIFO holds the home open (it opens the home first),
    // deterministically, until we close our end.
    let layout = Layout::create(home.scratch("fifo-layout"));
    let fifo = layout.dir.join("index.json");
    std::fs::remove_file(&fifo).unwrap();
    run_tool(Command::new("mkfifo").arg(&fifo));
    let source = oci_ref(&layout.dir, "x");
    let push = home
        .cmd()
        .args(["push", &source])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // opening the write end without blocking succeeds once shp has opened the read end
    let writer = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
        {
            Ok(w) => break w,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("shp push never opened {}: {e}", fifo.display()),
        }
    };
    let before = home.state();
    let (code, err) = home.fails(&["gc"]);
    assert_eq!(code, 1, "gc while a push runs: {err}");
    assert!(err.contains("in use"), "gc does not say the store is in use: {err}");
    assert_eq!(home.state(), before);

    drop(writer);
    let out = push.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "push of an empty index.json: {}",
        stderr(&out)
    );
    assert_eq!(home.state(), before);
    assert_eq!(num(&home.json(&["gc"]), "blocks_removed"), 0);
    home.verify(true);
}

#[test]
fn verify_checks_layers_against_config_diff_ids() {
    let home = ShpHome::new();
    let src = Layout::create(home.scratch("src"));
    // A gzip layer (a recipe: its diff_id is the tar node's) and an uncompressed one (its own
    // digest), each under an honest config and under one that names another tar.
    let (config, gz) = fixture_image("busybox-gzip");
    let tar = odd_tar();
    let liar = |cfg: &[u8]| -> Vec<u8> {
        let mut v: Value = serde_json::from_slice(cfg).unwrap();
        v["rootfs"]["diff_ids"][0] = json!(digest_of(b"some other tar"));
        serde_json::to_vec(&v).unwrap()
    };
    src.write_image("gz", &config, &[(LAYER_GZIP, &gz)], |_| {});
    src.write_image("gz-lie", &liar(&config), &[(LAYER_GZIP, &gz)], |_| {});
    src.write_image("tar", &config_for(&[&tar]), &[(LAYER_TAR, &tar)], |_| {});
    src.write_image("tar-lie", &liar(&config_for(&[&tar])), &[(LAYER_TAR, &tar)], |_| {});
    // An image whose config lists fewer diff_ids than it has layers.
    src.write_image(
        "short",
        &config_for(&[&tar]),
        &[(LAYER_TAR, &tar), (LAYER_GZIP, &gz)],
        |_| {},
    );

    for tag in ["gz", "tar"] {
        let v = home.json(&["push", &oci_ref(&src.dir, tag)]);
        assert_eq!(v["warnings"], json!([]), "{tag}: {v}");
    }
    let v = home.verify(true);
    assert_eq!(num(&v, "diff_ids_checked"), 2, "{v}");
    assert_eq!(num(&v, "diff_ids_skipped"), 0, "{v}");

    // Pushes store them exactly as they are, and warn.
    let v = home.json(&["push", &oci_ref(&src.dir, "gz-lie")]);
    let warnings = v["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{v}");
    assert!(warnings[0].as_str().unwrap().contains("layer 0"), "{v}");
    for tag in ["tar-lie", "short"] {
        let out = home.run(&["push", "-q", &oci_ref(&src.dir, tag)]);
        assert!(out.status.success(), "{tag}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.starts_with("shp: warning: manifest sha256:") && err.lines().count() == 1,
            "{tag}: {err:?}"
        );
    }
    let out = Layout::open(home.scratch("out"));
    home.pull("gz-lie", &oci_ref(&out.dir, "gz-lie"));
    assert_roundtrip(&src, "gz-lie", &out, "gz-lie");
    let out = home.run(&["verify", "--json"]);
    assert_eq!(out.status.code(), Some(4), "verify of lying configs: {}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let problems: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    let other = digest_of(b"some other tar");
    for (tag, layer, unpacked) in [
        ("gz-lie", digest_of(&gz), src.diff_ids("gz")[0].clone()),
        ("tar-lie", digest_of(&tar), digest_of(&tar)),
    ] {
        let ref_name = format!("ref {tag}:");
        assert!(
            problems.iter().any(|p| p.starts_with(&ref_name)
                && p.contains(&format!("layer 0 ({layer}) unpacks to {unpacked}, but config"))
                && p.ends_with(&format!("lists {other}"))),
            "no diff_id problem for {tag}: {problems:#?}"
        );
    }
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("ref short:") && p.contains("lists 1 diff_ids for 2 layers")),
        "{problems:#?}"
    );
}
