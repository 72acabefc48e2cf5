//! UnixFS views of layers: built by `shp inspect`, the same CIDs on every home, served by a
//! station's gateway by path (content, `?format=raw`, `?format=car` read by js-ipfs-unixfs's
//! exporter), HAMT-sharded for a big directory, kept by gc while their image lives.

mod common;

use common::station::{http, start};
use common::*;
use serde_json::Value;

/// A layer tar of `(path, kind, bytes)`: `d` directory, `s` symlink (bytes: target), else a file.
fn tar_of(entries: &[(String, char, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, k, d) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_path(p).unwrap();
        h.set_mtime(1_700_000_000);
        h.set_size(0);
        match k {
            'd' => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
            }
            's' => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_link_name(std::str::from_utf8(d).unwrap()).unwrap();
                h.set_mode(0o777);
            }
            _ => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o640);
                h.set_size(d.len() as u64);
            }
        }
        h.set_cksum();
        let data: &[u8] = if *k == 'f' { d } else { &[] };
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

struct Img {
    h: ShpHome,
    layers: Vec<Vec<u8>>,
    big: Vec<u8>,
    inspect: Value,
}

/// An image with a 6 MB file (more than 174 chunks: a tree of file nodes), a directory of 5000
/// long names (over 256 KiB of links: a HAMT) and a symlink; a second layer removes a file.
fn image(h: ShpHome) -> Img {
    let big = Rng(11).bytes(6_000_000);
    let mut l0 = vec![
        ("usr/".to_string(), 'd', Vec::new()),
        ("usr/bin/".to_string(), 'd', Vec::new()),
        ("usr/bin/big".to_string(), 'f', big.clone()),
        ("usr/bin/tool".to_string(), 's', b"big".to_vec()),
        ("etc/".to_string(), 'd', Vec::new()),
        ("etc/gone".to_string(), 'f', b"removed above".to_vec()),
        ("many/".to_string(), 'd', Vec::new()),
    ];
    for i in 0..5000 {
        l0.push((
            format!("many/entry-with-a-name-long-enough-to-shard-{i:05}"),
            'f',
            format!("file {i}\n").into_bytes(),
        ));
    }
    let l1 = vec![
        ("etc/".to_string(), 'd', Vec::new()),
        ("etc/.wh.gone".to_string(), 'f', Vec::new()),
        ("etc/motd".to_string(), 'f', b"hello from a view\n".to_vec()),
    ];
    let layers = vec![tar_of(&l0), tar_of(&l1)];
    let l = layout_of_tars(&h, "layout", &layers);
    h.push(&oci_ref(&l.dir, "t"), &["--tag", "view:t"]);
    let inspect = h.json(&["inspect", "view:t"]);
    Img {
        h,
        layers,
        big,
        inspect,
    }
}

fn rootfs(i: &Value) -> String {
    i["manifests"][0]["rootfs_view"]
        .as_str()
        .expect("a rootfs view")
        .to_string()
}

/// A GET; a chunked body is decoded.
fn get(addr: &str, path: &str) -> (u16, String, Vec<u8>) {
    let (st, head, body) = http(addr, "GET", path, "");
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return (st, head, body);
    }
    let (mut out, mut rest) = (Vec::new(), &body[..]);
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16).unwrap();
        rest = &rest[eol + 2..];
        if size == 0 {
            return (st, head, out);
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[test]
fn views_are_deterministic_and_served_by_path() {
    let img = image(ShpHome::new());
    let h = &img.h;
    let view = rootfs(&img.inspect);
    let layer_views: Vec<String> = img.inspect["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["view"].as_str().expect("a layer view").to_string())
        .collect();
    assert_eq!(layer_views.len(), 2);
    for v in std::iter::once(&view).chain(&layer_views) {
        assert!(v.starts_with("bafybei"), "CIDv1 dag-pb: {v}");
    }
    // Built once: inspect again finds the same views and writes nothing.
    let blocks = num(&h.json(&["stats"]), "blocks");
    assert_eq!(rootfs(&h.json(&["inspect", "view:t"])), view);
    assert_eq!(num(&h.json(&["stats"]), "blocks"), blocks);
    // Another home, the same image: the same CIDs.
    let other = image(ShpHome::new());
    assert_eq!(rootfs(&other.inspect), view);
    assert_eq!(other.inspect["layers"][1]["view"].as_str().unwrap(), layer_views[1]);
    drop(other);
    let text = h.ok(&["inspect", "view:t"]);
    assert!(text.contains(&format!("rootfs   /ipfs/{view}")), "{text}");

    let (mut station, banner, _) = start(h, &["--listen", "127.0.0.1:0", "--no-p2p"]);
    let url = banner.split_whitespace().nth(1).expect("the station's URL").to_string();
    let addr = url.trim_start_matches("http://").to_string();

    // Content: a file's bytes, a symlink's target, a directory listing (through the HAMT).
    let (st, head, body) = get(&addr, &format!("/ipfs/{view}/usr/bin/big"));
    assert_eq!(st, 200, "{head}");
    assert!(body == img.big, "the big file comes back byte for byte");
    assert!(head.to_ascii_lowercase().contains("content-length: 6000000"), "{head}");
    let (st, _, body) = get(&addr, &format!("/ipfs/{view}/usr/bin/tool"));
    assert_eq!((st, body.as_slice()), (200, &b"big"[..]));
    let (st, _, body) = get(&addr, &format!("/ipfs/{view}/etc/motd"));
    assert_eq!((st, body.as_slice()), (200, &b"hello from a view\n"[..]));
    let (st, _, body) = get(
        &addr,
        &format!("/ipfs/{view}/many/entry-with-a-name-long-enough-to-shard-04321"),
    );
    assert_eq!((st, body.as_slice()), (200, &b"file 4321\n"[..]));
    let (st, _, body) = get(&addr, &format!("/ipfs/{view}/many/"));
    assert_eq!(st, 200);
    assert_eq!(String::from_utf8(body).unwrap().lines().count(), 5000);
    let (st, _, body) = get(&addr, &format!("/ipfs/{view}/"));
    let listing = String::from_utf8(body).unwrap();
    assert_eq!(st, 200);
    let names: Vec<&str> = listing.lines().map(|l| l.rsplit('\t').next().unwrap()).collect();
    assert_eq!(names, ["etc", "many", "usr"], "{listing}");

    // Errors: a missing path (404 naming it), a path in a dag-cbor DAG (400), a file as a parent.
    let (st, _, body) = get(&addr, &format!("/ipfs/{view}/etc/gone"));
    assert_eq!(st, 404, "the whiteout removed it");
    assert!(
        String::from_utf8_lossy(&body).contains("etc/gone: no such file"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let root = img.inspect["root"].as_str().unwrap();
    let (st, _, body) = get(&addr, &format!("/ipfs/{root}/etc"));
    assert_eq!(st, 400, "{}", String::from_utf8_lossy(&body));
    let (st, _, _) = get(&addr, &format!("/ipfs/{view}/etc/motd/x"));
    assert_eq!(st, 404);

    // A path's CAR: the blocks on the way and the file, read back by another implementation.
    let car = h.scratch("path.car");
    let (st, head, body) = get(&addr, &format!("/ipfs/{view}/usr/bin/big?format=car"));
    assert_eq!(st, 200, "{head}");
    std::fs::write(&car, &body).unwrap();
    let e = unixfs_walk(&car, &[&format!("{view}/usr/bin/big")]);
    assert_eq!(e[0]["sha256"], sha256_hex(&img.big));
    assert_eq!(e[0]["mode"], 0o640);
    assert_eq!(e[0]["mtime"], serde_json::json!([1_700_000_000, 0]));
    // The HAMT directory's entity: its shards, enough to list every name.
    let (st, _, body) = get(&addr, &format!("/ipfs/{view}/many?format=car&dag-scope=entity"));
    assert_eq!(st, 200);
    std::fs::write(&car, &body).unwrap();
    let names = unixfs_walk(&car, &["--ls", &format!("{view}/many")]);
    assert_eq!(names.len(), 5000);
    assert!(body.len() < 2_000_000, "the entity holds no file: {} bytes", body.len());
    // A raw block.
    let (st, head, body) = get(&addr, &format!("/ipfs/{view}/etc?format=raw"));
    assert_eq!(st, 200, "{head}");
    assert!(head.contains("application/vnd.ipld.raw"), "{head}");
    assert!(!body.is_empty());

    // The whole view as a CAR: every file of the merged tree, checked against the layers.
    let (st, _, body) = get(&addr, &format!("/ipfs/{view}?format=car"));
    assert_eq!(st, 200);
    std::fs::write(&car, &body).unwrap();
    let walk = unixfs_walk(&car, &[&view]);
    let files: Vec<&Value> = walk.iter().filter(|e| e["type"] == "file").collect();
    assert_eq!(files.len(), 5000 + 2, "many/*, usr/bin/big, etc/motd");
    let hamt = walk.iter().find(|e| e["path"] == "many").unwrap();
    assert_eq!(hamt["shards"], true, "{hamt}");
    let plain = walk.iter().find(|e| e["path"] == "usr/bin").unwrap();
    assert!(plain.get("shards").is_none(), "{plain}");
    // The exporter finds names in the HAMT by their hash: shp placed them where it looks.
    let want: Vec<String> = [17, 2024, 4999]
        .iter()
        .map(|i| format!("{view}/many/entry-with-a-name-long-enough-to-shard-{i:05}"))
        .collect();
    let found = unixfs_walk(&car, &want.iter().map(String::as_str).collect::<Vec<_>>());
    for (e, i) in found.iter().zip([17, 2024, 4999]) {
        assert_eq!(e["sha256"], sha256_hex(format!("file {i}\n").as_bytes()), "{e}");
    }
    station.terminate();

    // gc keeps the views while the image lives, and drops them with it.
    let views_before = num(&h.json(&["stats"]), "blocks");
    h.ok(&["gc"]);
    assert_eq!(num(&h.json(&["stats"]), "blocks"), views_before);
    let refs: Value = serde_json::from_slice(&std::fs::read(h.dir.join("refs.json")).unwrap()).unwrap();
    assert_eq!(refs["views"].as_object().map(|m| m.len()), Some(3), "{refs}");
    h.ok(&["rm", "view:t"]);
    h.ok(&["gc"]);
    assert_eq!(num(&h.json(&["stats"]), "blocks"), 0);
    let refs: Value = serde_json::from_slice(&std::fs::read(h.dir.join("refs.json")).unwrap()).unwrap();
    assert!(refs.get("views").is_none(), "{refs}");
    let _ = &img.layers;
}

#[test]
fn a_station_builds_the_views_of_what_it_is_pushed() {
    // skopeo pushes into a station; without any `shp inspect`, the station builds the image's views
    // in the background and its gateway serves files by path.
    let h = ShpHome::new();
    let (mut station, banner, _) = start(&h, &["--listen", "127.0.0.1:0", "--no-p2p"]);
    let url = banner.split_whitespace().nth(1).expect("the station's URL").to_string();
    let addr = url.trim_start_matches("http://").to_string();
    let fixture = oci_fixture();
    let out = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:busybox-gzip", fixture.dir.display()),
        &format!("docker://{addr}/test/bb:v1"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let refs = || -> Value { serde_json::from_slice(&std::fs::read(h.dir.join("refs.json")).unwrap()).unwrap() };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // One view per layer and one of the root file system.
    let want = fixture.manifest("busybox-gzip")["layers"].as_array().unwrap().len() + 1;
    while refs()["views"].as_object().map_or(0, |m| m.len()) < want {
        assert!(
            std::time::Instant::now() < deadline,
            "not {want} views after 60 s: {}",
            refs()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // inspect finds them all and writes nothing.
    let blocks = num(&h.json(&["stats"]), "blocks");
    let i = h.json(&["inspect", "test/bb:v1"]);
    assert_eq!(num(&h.json(&["stats"]), "blocks"), blocks, "the station built them all");
    let view = rootfs(&i);
    let (st, _, body) = get(&addr, &format!("/ipfs/{view}/etc/motd"));
    assert_eq!(st, 200);
    let tree = h.scratch("tree");
    h.ok(&["unpack", "test/bb:v1", tree.to_str().unwrap()]);
    assert_eq!(body, std::fs::read(tree.join("etc/motd")).unwrap());
    station.terminate();
}
