//! Station-to-station fetches over real HTTP: real gateways on 127.0.0.1:0 over real homes, the
//! HTTP transport, the multi-peer fetcher; a corrupting proxy plays the lying peer.

mod common;

use common::*;
use shp_core::cid::{Cid, RAW};
use shp_core::store::Blockstore;
use shp_core::Home;
use shp_station::gateway::{trustless_router, GatewayState, RunningGateway};
use shp_station::transport::{fetch_into_home, Error, FetchOptions, FetchReport, HttpTransport, Transport};
use std::sync::Arc;

fn gateway(home: &Arc<Home>) -> RunningGateway {
    RunningGateway::start(home.clone(), "127.0.0.1:0".parse().unwrap()).unwrap()
}

fn fetch(home: &Home, root: &Cid, urls: &[String], name: Option<&str>) -> Result<FetchReport, Error> {
    let peers: Vec<HttpTransport> = urls.iter().map(|u| HttpTransport::new(u).unwrap()).collect();
    let refs: Vec<&dyn Transport> = peers.iter().map(|p| p as &dyn Transport).collect();
    fetch_into_home(home, root, &refs, name, FetchOptions::default())
}

fn pull(home: &std::sync::Arc<Home>, id: &str, dir: &std::path::Path, tag: &str) {
    let dest = format!("oci:{}:{tag}", dir.display()).parse().unwrap();
    home.pull(id, &dest, Home::no_progress()).unwrap();
}

/// Two app images whose one layer differs by one changed file (plus a shared base layer).
struct Apps {
    _tmp: tempfile::TempDir,
    src: Layout,
    a: Arc<Home>,
    v1: Cid,
    v2: Cid,
    /// Size of v2's changed (gzip) layer.
    layer_bytes: u64,
}

fn apps() -> Apps {
    let tmp = tempdir();
    let src = Layout::create(&tmp.path().join("src"));
    let base = tar_of(
        &app_files(4, 50_000, None)
            .into_iter()
            .map(|(n, d)| (format!("base/{n}"), d))
            .collect::<Vec<_>>(),
    );
    src.write_image("app-v1", &[base.clone(), tar_of(&app_files(48, 120_000, None))]);
    let (_, layers) = src.write_image("app-v2", &[base, tar_of(&app_files(48, 120_000, Some(17)))]);
    let a = new_home(&tmp.path().join("a"));
    let v1 = push(&a, &src, "app-v1");
    let v2 = push(&a, &src, "app-v2");
    let inspect = a.inspect("app-v2").unwrap();
    assert!(
        inspect.layers.iter().all(|l| l.storage.starts_with("recipe:")),
        "zlib level-6 layers get a recipe: {:?}",
        inspect.layers
    );
    Apps {
        _tmp: tmp,
        src,
        a: Arc::new(a),
        v1,
        v2,
        layer_bytes: layers[1].1,
    }
}

/// How many blocks of `root`'s DAG in `from` are missing in `to`.
fn lacking(from: &dyn Blockstore, to: &dyn Blockstore, root: &Cid) -> u64 {
    dag_cids(from, root).iter().filter(|c| !to.has(c).unwrap()).count() as u64
}

#[test]
fn app_update_moves_only_the_changed_file() {
    let x = apps();
    let gw = gateway(&x.a);
    let tmp = tempdir();
    let b = std::sync::Arc::new(new_home(&tmp.path().join("b")));

    let r1 = fetch(&b, &x.v1, &[gw.url()], Some("app-v1")).unwrap();
    let n1 = dag_cids(x.a.store(), &x.v1).len() as u64;
    assert_eq!(r1.blocks_fetched, n1, "a fresh home fetches every block of v1");
    assert_eq!(r1.name.as_deref(), Some("app-v1"));
    assert_eq!(b.resolve("app-v1").unwrap(), x.v1);

    let want = lacking(x.a.store(), b.store(), &x.v2);
    let r2 = fetch(&b, &x.v2, &[gw.url()], Some("app-v2")).unwrap();
    assert_eq!(r2.blocks_fetched, want, "only the blocks B lacked");
    assert!(r2.blocks_present > 0, "shared subtrees were skipped");
    eprintln!(
        "app update: v1 {} blocks {} wire bytes; v2 {} blocks, {} block bytes, {} wire bytes, changed layer {} bytes ({:.1}x less)",
        r1.blocks_fetched,
        r1.bytes_fetched,
        r2.blocks_fetched,
        r2.block_bytes,
        r2.bytes_fetched,
        x.layer_bytes,
        x.layer_bytes as f64 / r2.bytes_fetched as f64
    );
    assert!(
        r2.bytes_fetched * 10 < x.layer_bytes,
        "v2 moved {} bytes for a {}-byte layer with one changed file",
        r2.bytes_fetched,
        x.layer_bytes
    );
    assert!(r2.bytes_fetched < r2.block_bytes, "blocks are compressed in transit");
    assert_eq!(r2.peers.len(), 1);
    assert_eq!(r2.peers[0].blocks, r2.blocks_fetched);

    // both come back bit-exact from B, whose blob index knows them
    let out = Layout::create(&tmp.path().join("out"));
    pull(&b, "app-v1", &out.dir, "app-v1");
    pull(&b, &x.v2.to_string(), &out.dir, "app-v2");
    assert_same_image(&x.src, &out, "app-v1");
    assert_same_image(&x.src, &out, "app-v2");
    let d = x.a.inspect("app-v2").unwrap().layers[1].digest.clone();
    assert_eq!(b.blob(&d).unwrap().cid, x.a.blob(&d).unwrap().cid);
    assert!(b.verify(true).unwrap().problems.is_empty());

    // fetching again moves nothing
    let r3 = fetch(&b, &x.v2, &[gw.url()], None).unwrap();
    assert_eq!((r3.blocks_fetched, r3.bytes_fetched, r3.peers[0].requests), (0, 0, 0));
}

#[test]
fn a_peer_sending_wrong_bytes_is_caught_and_another_used() {
    let x = apps();
    let gw = gateway(&x.a);
    let proxy = CorruptingProxy::start(gw.url());
    let tmp = tempdir();
    let b = std::sync::Arc::new(new_home(&tmp.path().join("b")));

    // the transport alone catches it
    let t = HttpTransport::new(&proxy.url()).unwrap();
    match t.get_block(&x.v1) {
        Err(Error::Corrupt { peer, cid }) => assert_eq!((peer, cid), (proxy.url(), x.v1.to_string())),
        other => panic!("expected Corrupt, got {other:?}"),
    }

    // the liar alone: the fetch fails naming it, and B is unchanged
    let e = fetch(&b, &x.v1, &[proxy.url()], Some("app")).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("wrong data") && msg.contains(&proxy.url()), "{msg}");
    assert!(b.store().cids().unwrap().is_empty(), "nothing stored");
    assert!(b.list().unwrap().is_empty());

    // the liar and an honest peer: the fetch succeeds, bit-exact; the liar, when asked, is dropped
    let r = fetch(&b, &x.v1, &[proxy.url(), gw.url()], Some("app-v1")).unwrap();
    let liar = &r.peers[0];
    if liar.requests > 0 {
        // Requests already in flight when the first wrong block arrives may bring more.
        assert!(
            liar.dropped && liar.corrupt >= 1 && liar.corrupt <= liar.requests && liar.blocks == 0,
            "{r:?}"
        );
        assert!(r.problems.iter().any(|p| p.contains("wrong data")), "{r:?}");
    }
    assert_eq!(r.peers[1].blocks, r.blocks_fetched);
    let out = Layout::create(&tmp.path().join("out"));
    pull(&b, "app-v1", &out.dir, "app-v1");
    assert_same_image(&x.src, &out, "app-v1");
    assert!(proxy.relayed.load(std::sync::atomic::Ordering::Relaxed) >= 2);
}

#[test]
fn two_peers_share_the_work() {
    let x = apps();
    let (g1, g2) = (gateway(&x.a), gateway(&x.a));
    let tmp = tempdir();
    let b = std::sync::Arc::new(new_home(&tmp.path().join("b")));
    let r = fetch(&b, &x.v1, &[g1.url(), g2.url()], None).unwrap();
    let n = dag_cids(x.a.store(), &x.v1).len() as u64;
    assert_eq!(r.blocks_fetched, n);
    assert_eq!(r.peers[0].blocks + r.peers[1].blocks, n);
    assert!(
        r.peers[0].blocks > 0 && r.peers[1].blocks > 0,
        "both peers served blocks: {:?}",
        r.peers
    );
    assert_eq!(r.bytes_fetched, r.peers[0].bytes + r.peers[1].bytes);
    assert_eq!(b.list().unwrap()[0].root, x.v1.to_string(), "pinned unnamed");
    let out = Layout::create(&tmp.path().join("out"));
    pull(&b, &x.v1.to_string(), &out.dir, "app-v1");
    assert_same_image(&x.src, &out, "app-v1");
}

#[test]
fn a_plain_trustless_gateway_is_enough() {
    let x = apps();
    let plain = RunningGateway::start_router(
        trustless_router(GatewayState::new(x.a.clone())),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let tmp = tempdir();
    let b = std::sync::Arc::new(new_home(&tmp.path().join("b")));
    let t = HttpTransport::new(&plain.url()).unwrap();
    let r = fetch_into_home(&b, &x.v1, &[&t], Some("app-v1"), FetchOptions::default()).unwrap();
    assert!(!t.speaks_shp());
    assert_eq!(r.blocks_fetched, dag_cids(x.a.store(), &x.v1).len() as u64);
    // one raw request per block, plus the extension probe(s) refused (one per worker at most)
    let probes = r.peers[0].requests - r.blocks_fetched;
    assert!((1..=2).contains(&probes), "{:?}", r.peers);
    let out = Layout::create(&tmp.path().join("out"));
    pull(&b, "app-v1", &out.dir, "app-v1");
    assert_same_image(&x.src, &out, "app-v1");

    // and get_car speaks the spec's CAR to it
    let car = t.get_car(&x.v2, shp_station::transport::DagScope::Block).unwrap();
    let blocks: Vec<_> = shp_station::transport::CarBlocks::new(car, "plain")
        .unwrap()
        .map(|b| b.unwrap().0)
        .collect();
    assert_eq!(blocks, vec![x.v2]);
}

#[test]
fn missing_blocks_dead_peers_and_bad_input() {
    let x = apps();
    let gw = gateway(&x.a);
    let tmp = tempdir();
    let b = std::sync::Arc::new(new_home(&tmp.path().join("b")));

    // nobody has it: not found
    let absent = Cid::hash(RAW, b"nobody has this");
    let e = fetch(&b, &absent, &[gw.url()], None).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains(&absent.to_string()), "{e}");

    // a dead peer next to a live one: the live one serves everything
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let r = fetch(&b, &x.v1, &[dead.clone(), gw.url()], None).unwrap();
    assert_eq!(r.peers[1].blocks, r.blocks_fetched);
    assert_eq!(r.peers[0].blocks, 0);
    // a dead peer alone: a clear failure, nothing stored
    let c = new_home(&tmp.path().join("c"));
    let e = fetch(&c, &x.v1, std::slice::from_ref(&dead), None).unwrap_err();
    assert!(e.to_string().contains(&dead), "{e}");
    assert!(c.store().cids().unwrap().is_empty());

    // a name needs an image root: refused before anything is stored
    let chunk = dag_cids(x.a.store(), &x.v1)
        .into_iter()
        .find(|c| c.codec() == RAW)
        .unwrap();
    let e = fetch(&c, &chunk, &[gw.url()], Some("oops")).unwrap_err();
    assert!(e.to_string().contains("not an image root"), "{e}");
    assert!(c.store().cids().unwrap().is_empty());
    // pinned without a name it is fine
    let r = fetch(&c, &chunk, &[gw.url()], None).unwrap();
    assert_eq!(r.blocks_fetched, 1);
    assert!(c.refs().unwrap().pins.contains(&chunk.to_string()));

    // bad URLs
    for u in ["ftp://x", "not a url", "http://h:1/?q=1"] {
        assert!(matches!(HttpTransport::new(u), Err(Error::BadUrl { .. })), "{u}");
    }
}
