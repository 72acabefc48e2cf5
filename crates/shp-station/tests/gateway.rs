//! The trustless gateway, served for real on 127.0.0.1:0 over a real home, spoken to with a real
//! HTTP client (reqwest) and checked by an independent CAR reader (npm's @ipld/car).

mod common;

use common::*;
use reqwest::blocking::Client;
use shp_core::blob::BlobNode;
use shp_core::cid::{Cid, RAW};
use shp_core::image::ImageRoot;
use shp_core::store::{Blockstore, MemoryStore};
use shp_core::{car, Home};
use shp_station::gateway::RunningGateway;
use shp_station::transport::{CarBlocks, DagScope};
use std::io::Read;
use std::sync::Arc;

struct Fixture {
    _tmp: tempfile::TempDir,
    home: Arc<Home>,
    src: Layout,
    root: Cid,
    gw: RunningGateway,
}

fn fixture() -> Fixture {
    let tmp = tempdir();
    let src = Layout::create(&tmp.path().join("src"));
    let mut files = app_files(12, 100_000, None);
    files.push(("app/empty".into(), Vec::new()));
    src.write_image("app", &[tar_of(&files), tar_of(&app_files(2, 5000, Some(1)))]);
    let home = new_home(&tmp.path().join("home"));
    let root = push(&home, &src, "app");
    let home = Arc::new(home);
    let gw = RunningGateway::start(home.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    Fixture {
        _tmp: tmp,
        home,
        src,
        root,
        gw,
    }
}

fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::blocking::Response {
    let mut r = client().get(url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().unwrap()
}

fn header(r: &reqwest::blocking::Response, k: &str) -> String {
    r.headers()
        .get(k)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn body(r: reqwest::blocking::Response) -> Vec<u8> {
    r.bytes().unwrap().to_vec()
}

/// Decodes a body per its Content-Encoding.
fn decoded(r: reqwest::blocking::Response) -> Vec<u8> {
    let enc = header(&r, "content-encoding");
    let raw = body(r);
    let mut out = Vec::new();
    match enc.as_str() {
        "" => out = raw,
        "gzip" => {
            flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).unwrap();
        }
        "zstd" => out = zstd::decode_all(&raw[..]).unwrap(),
        e => panic!("unexpected content-encoding {e}"),
    }
    out
}

fn car_blocks(car: &[u8]) -> (Vec<Cid>, Vec<(Cid, Vec<u8>)>) {
    let r = CarBlocks::new(car, "test").unwrap();
    let roots = r.roots.clone();
    (roots, r.map(|b| b.unwrap()).collect())
}

#[test]
fn raw_blocks_headers_and_conditional_requests() {
    let f = fixture();
    let base = f.gw.url();
    let root = f.root;
    let want = f.home.store().get(&root).unwrap();
    for (url, hdrs) in [
        (format!("{base}/ipfs/{root}?format=raw"), vec![]),
        (
            format!("{base}/ipfs/{root}"),
            vec![("accept", "application/vnd.ipld.raw")],
        ),
        (
            format!("{base}/ipfs/{root}"),
            vec![("accept", "text/html, application/vnd.ipld.raw;q=0.9")],
        ),
    ] {
        let r = get(&url, &hdrs);
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(header(&r, "content-type"), "application/vnd.ipld.raw");
        assert_eq!(header(&r, "etag"), format!("\"{root}.raw\""));
        assert!(header(&r, "cache-control").contains("immutable"));
        assert_eq!(header(&r, "x-ipfs-path"), format!("/ipfs/{root}"));
        assert_eq!(header(&r, "content-length"), want.len().to_string());
        assert_eq!(body(r), want);
    }
    // a raw chunk: its bytes hash to its CID
    let chunk = dag_cids(f.home.store(), &root)
        .into_iter()
        .find(|c| c.codec() == RAW)
        .unwrap();
    let b = body(get(&format!("{base}/ipfs/{chunk}?format=raw"), &[]));
    assert!(chunk.matches(&b) && !b.is_empty());

    // HEAD: the headers, no body
    let r = client().head(format!("{base}/ipfs/{root}?format=raw")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), want.len().to_string());
    assert!(body(r).is_empty());
    let r = client().head(format!("{base}/ipfs/{root}?format=car")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("application/vnd.ipld.car; version=1"));
    assert!(body(r).is_empty());

    // If-None-Match with the Etag: 304, no body
    let r = get(
        &format!("{base}/ipfs/{root}?format=raw"),
        &[("if-none-match", &format!("\"{root}.raw\""))],
    );
    assert_eq!(r.status(), 304);
    assert!(body(r).is_empty());
}

/// Raw blocks in transit: a client that takes zstd gets each block that compresses (the DAG's
/// nodes, text chunks) as zstd, a block of random bytes as it is; decoded, every answer is the
/// block. A client that does not ask gets every block as it is.
#[test]
fn raw_blocks_are_compressed_in_transit_for_clients_that_take_zstd() {
    let f = fixture();
    let base = f.gw.url();
    let noise: Vec<u8> = {
        let mut x = 0x2545f4914f6cdd1du64;
        (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    let random = Cid::hash(RAW, &noise);
    let mut b = f.home.store().batch().unwrap();
    b.put_own(&random, &noise).unwrap();
    b.commit().unwrap();
    let (mut zstd, mut plain) = (0, 0);
    let mut cids = dag_cids(f.home.store(), &f.root);
    cids.push(random);
    for c in cids {
        let want = f.home.store().get(&c).unwrap();
        let url = format!("{base}/ipfs/{c}?format=raw");
        let r = get(&url, &[("accept-encoding", "zstd")]);
        assert_eq!(r.status(), 200, "{url}");
        let enc = header(&r, "content-encoding");
        assert!(header(&r, "vary").contains("Accept-Encoding"));
        match enc.as_str() {
            "zstd" => zstd += 1,
            "" => plain += 1,
            e => panic!("{e}"),
        }
        if c == random {
            assert_eq!(enc, "", "random bytes do not compress: sent as they are");
        }
        let got = decoded(r);
        assert!(c.matches(&got), "{c}");
        assert_eq!(got, want);
        let r = get(&url, &[]);
        assert_eq!(header(&r, "content-encoding"), "", "not asked: not compressed");
        assert_eq!(body(r), want);
    }
    assert!(zstd > 3 && plain >= 1, "{zstd} compressed, {plain} plain");
}

#[test]
fn car_responses_are_the_dag_depth_first_and_compressed_on_request() {
    let f = fixture();
    let base = f.gw.url();
    let root = f.root;
    let mut want = Vec::new();
    car::export(f.home.store(), &root, &mut want).unwrap();

    let plain = get(
        &format!("{base}/ipfs/{root}?format=car"),
        &[("accept-encoding", "identity")],
    );
    assert_eq!(plain.status(), 200);
    assert_eq!(
        header(&plain, "content-type"),
        "application/vnd.ipld.car; version=1; order=dfs; dups=n"
    );
    assert_eq!(header(&plain, "content-encoding"), "");
    assert_eq!(header(&plain, "etag"), format!("\"{root}.car.all\""));
    let plain = body(plain);
    assert_eq!(plain, want, "the CAR equals shp's own export (same blocks, same order)");
    let (roots, blocks) = car_blocks(&plain);
    assert_eq!(roots, vec![root]);
    assert_eq!(
        blocks.iter().map(|b| b.0).collect::<Vec<_>>(),
        dag_cids(f.home.store(), &root)
    );

    for (enc, accept) in [("gzip", "gzip"), ("zstd", "gzip, zstd"), ("gzip", "zstd;q=0, gzip")] {
        let r = get(
            &format!("{base}/ipfs/{root}"),
            &[
                ("accept", "application/vnd.ipld.car; version=1; order=dfs; dups=n"),
                ("accept-encoding", accept),
            ],
        );
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-encoding"), enc, "Accept-Encoding: {accept}");
        let wire = r.headers().get("content-length").is_none();
        assert!(wire, "compressed CARs are streamed (chunked)");
        assert_eq!(decoded(r), want, "{enc}");
    }
    // compression pays: the text-like files shrink in transit
    let gz = body(get(
        &format!("{base}/ipfs/{root}?format=car"),
        &[("accept-encoding", "zstd")],
    ));
    assert!(
        gz.len() * 2 < want.len(),
        "zstd CAR {} vs {} bytes",
        gz.len(),
        want.len()
    );
}

#[test]
fn dag_scopes_block_entity_all() {
    let f = fixture();
    let base = f.gw.url();
    let root = f.root;
    let store = f.home.store();
    let car_of = |cid: &Cid, scope: &str| {
        let r = get(&format!("{base}/ipfs/{cid}?format=car&dag-scope={scope}"), &[]);
        assert_eq!(r.status(), 200, "{cid} {scope}");
        assert_eq!(header(&r, "etag"), format!("\"{cid}.car.{scope}\""));
        car_blocks(&decoded(r)).1
    };
    // block: the root alone
    let b = car_of(&root, "block");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0], (root, store.get(&root).unwrap()));

    // entity of the image root: the root, its top (manifest) blob node and the manifest's bytes;
    // no config or layer blocks
    let img = ImageRoot::load(store, &root).unwrap();
    let e = car_of(&root, "entity");
    let top = BlobNode::load(store, &img.top).unwrap();
    assert!(!top.children.is_empty());
    let cids: Vec<Cid> = e.iter().map(|b| b.0).collect();
    assert_eq!(cids[..2], [root, img.top]);
    for child in &top.children {
        assert!(!cids.contains(child), "entity stops at the manifest's children");
    }
    let mem = MemoryStore::new();
    for (c, d) in &e {
        mem.put(c, d).unwrap();
    }
    let mut manifest = Vec::new();
    BlobNode::load(&mem, &img.top)
        .unwrap()
        .open(&mem)
        .read_to_end(&mut manifest)
        .unwrap();
    assert_eq!(digest_of(&manifest), f.src.ref_digest("app"));

    // entity of a layer's blob node: exactly what rebuilds that (gzip) layer, bit-exact
    let blobs = img.blobs(store).unwrap();
    let layer = blobs.iter().find(|b| b.is_layer).unwrap();
    let e = car_of(&layer.node.cid, "entity");
    let mem = MemoryStore::new();
    for (c, d) in &e {
        mem.put(c, d).unwrap();
    }
    let mut bytes = Vec::new();
    BlobNode::load(&mem, &layer.node.cid)
        .unwrap()
        .open(&mem)
        .read_to_end(&mut bytes)
        .unwrap();
    assert_eq!(digest_of(&bytes), layer.node.digest_str());
    assert_eq!(bytes, f.src.blob(&layer.node.digest_str()));
    assert_eq!(
        e.len(),
        dag_cids(store, &layer.node.cid).len(),
        "a layer has no children"
    );

    // all (the default) = the whole DAG
    assert_eq!(car_of(&root, "all").len(), dag_cids(store, &root).len());
}

#[test]
fn errors_400_404_406() {
    let f = fixture();
    let base = f.gw.url();
    let root = f.root;
    let absent = Cid::hash(RAW, b"not in this store");
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (format!("{base}/ipfs/not-a-cid?format=raw"), vec![], 400, "invalid CID"),
        (
            format!("{base}/ipfs/{root}?format=tar"),
            vec![],
            400,
            "unsupported format",
        ),
        (
            format!("{base}/ipfs/{root}?format=car&dag-scope=most"),
            vec![],
            400,
            "dag-scope",
        ),
        (
            format!("{base}/ipfs/{root}/some/path?format=raw"),
            vec![],
            400,
            "paths are resolved in UnixFS (dag-pb) DAGs only",
        ),
        (format!("{base}/ipfs/{absent}?format=raw"), vec![], 404, "not found"),
        (format!("{base}/ipfs/{absent}?format=car"), vec![], 404, "not found"),
        (format!("{base}/ipfs/{root}"), vec![], 406, "trustless gateway"),
        (
            format!("{base}/ipfs/{root}"),
            vec![("accept", "text/html")],
            406,
            "trustless gateway",
        ),
        (
            format!("{base}/ipfs/{root}"),
            vec![("accept", "application/vnd.ipld.car; version=2")],
            406,
            "trustless gateway",
        ),
    ];
    for (url, hdrs, status, msg) in cases {
        let r = get(&url, &hdrs);
        assert_eq!(r.status().as_u16(), status, "{url} {hdrs:?}");
        let t = String::from_utf8(body(r)).unwrap();
        assert!(t.contains(msg), "{url}: {t:?} should say {msg:?}");
    }
    // the extension: bad CID lines are 400; absent blocks are left out
    let r = client()
        .post(format!("{base}/shp/v1/blocks"))
        .body("bafynot\n")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(String::from_utf8(body(r)).unwrap().contains("line 1: invalid CID"));
    let r = client()
        .post(format!("{base}/shp/v1/blocks"))
        .body(format!("{root}\n{absent}\n{root}\n"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let (roots, blocks) = car_blocks(&decoded(r));
    assert!(roots.is_empty());
    assert_eq!(blocks, vec![(root, f.home.store().get(&root).unwrap())]);
}

#[test]
fn a_car_from_the_gateway_passes_the_ipld_car_reader() {
    let f = fixture();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = repo.join("tests/interop/node/verify-car.mjs");
    assert!(
        repo.join("tests/interop/node/node_modules/@ipld/car").is_dir(),
        "npm package @ipld/car not found in tests/interop/node/node_modules: run scripts/ci-deps.sh"
    );
    let tmp = tempdir();
    let path = tmp.path().join("gw.car");
    let r = get(
        &format!("{}/ipfs/{}", f.gw.url(), f.root),
        &[("accept", "application/vnd.ipld.car"), ("accept-encoding", "gzip")],
    );
    assert_eq!(header(&r, "content-encoding"), "gzip");
    std::fs::write(&path, decoded(r)).unwrap();
    let out = std::process::Command::new("node")
        .arg(&script)
        .arg(&path)
        .arg(f.root.to_string())
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "verify-car.mjs rejected the gateway's CAR: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["root"], serde_json::json!(f.root.to_string()));
    assert_eq!(
        v["blocks"].as_u64().unwrap() as usize,
        dag_cids(f.home.store(), &f.root).len()
    );
    let _ = DagScope::All;
}
