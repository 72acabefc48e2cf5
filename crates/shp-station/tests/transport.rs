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

fn fetch_based(home: &Home, root: &Cid, url: &str, base: Option<Cid>) -> Result<FetchReport, Error> {
    let t = HttpTransport::new(url).unwrap();
    let opts = FetchOptions {
        base,
        ..Default::default()
    };
    fetch_into_home(home, root, &[&t], None, opts)
}

#[test]
fn an_update_fetched_against_its_previous_version_moves_deltas() {
    let x = apps();
    let gw = gateway(&x.a);
    let tmp = tempdir();
    // Two homes holding v1: one fetches v2 as plain blocks, the other against v1.
    let plain = new_home(&tmp.path().join("plain"));
    let based = Arc::new(new_home(&tmp.path().join("based")));
    for h in [&plain, &*based] {
        fetch(h, &x.v1, &[gw.url()], Some("app-v1")).unwrap();
    }
    let want = lacking(x.a.store(), based.store(), &x.v2);
    let p = fetch_based(&plain, &x.v2, &gw.url(), None).unwrap();
    let d = fetch_based(&based, &x.v2, &gw.url(), Some(x.v1)).unwrap();
    eprintln!(
        "app update: plain {} blocks {} wire bytes; against v1 {} blocks ({} as deltas) {} wire bytes",
        p.blocks_fetched, p.bytes_fetched, d.blocks_fetched, d.blocks_delta, d.bytes_fetched
    );
    assert_eq!((p.blocks_fetched, d.blocks_fetched), (want, want));
    assert_eq!(p.blocks_delta, 0);
    // The changed chunk, its data list, the tar header, the entry list and the nodes above.
    assert!(d.blocks_delta >= 4 && d.blocks_delta <= d.blocks_fetched, "{d:?}");
    assert!(
        d.bytes_fetched * 3 < p.bytes_fetched,
        "against v1: {} bytes; as blocks: {}",
        d.bytes_fetched,
        p.bytes_fetched
    );
    assert_eq!(d.block_bytes, p.block_bytes, "the same blocks were stored");
    let out = Layout::create(&tmp.path().join("out"));
    pull(&based, &x.v2.to_string(), &out.dir, "app-v2");
    assert_same_image(&x.src, &out, "app-v2");
    assert!(based.verify(true).unwrap().problems.is_empty());

    // A base the peer lacks (the peer never had v1): blocks come whole, and the fetch works.
    let c = Arc::new(new_home(&tmp.path().join("c")));
    push(&c, &x.src, "app-v2");
    let only_v2 = Arc::new(new_home(&tmp.path().join("only-v2")));
    fetch(&only_v2, &x.v2, &[gateway(&c).url()], None).unwrap();
    let gw2 = gateway(&only_v2);
    let e = Arc::new(new_home(&tmp.path().join("e")));
    fetch(&e, &x.v1, &[gw.url()], None).unwrap();
    let r = fetch_based(&e, &x.v2, &gw2.url(), Some(x.v1)).unwrap();
    assert_eq!((r.blocks_fetched, r.blocks_delta), (want, 0));

    // A plain trustless gateway: the bases are not understood, the blocks come one by one.
    let plain_gw = RunningGateway::start_router(
        trustless_router(GatewayState::new(x.a.clone())),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let f = Arc::new(new_home(&tmp.path().join("f")));
    fetch(&f, &x.v1, &[gw.url()], None).unwrap();
    let r = fetch_based(&f, &x.v2, &plain_gw.url(), Some(x.v1)).unwrap();
    assert_eq!((r.blocks_fetched, r.blocks_delta), (want, 0));

    // A peer whose deltas are wrong: refused as wrong data, nothing of v2 stored.
    let proxy = CorruptingProxy::start(gw.url());
    let g = Arc::new(new_home(&tmp.path().join("g")));
    fetch(&g, &x.v1, &[gw.url()], None).unwrap();
    let before = g.store().cids().unwrap().len();
    let err = fetch_based(&g, &x.v2, &proxy.url(), Some(x.v1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("wrong data") && err.contains(&proxy.url()), "{err}");
    assert_eq!(g.store().cids().unwrap().len(), before, "nothing stored");
    assert!(g.verify(true).unwrap().problems.is_empty());
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

/// A peer that is itself pulling the DAG: it serves from `from` only the blocks it has received so
/// far (`has`), and says it lacks the others (a bitswap peer's DONT_HAVE).
struct Pulling {
    from: Arc<Home>,
    has: std::sync::Mutex<std::collections::HashSet<Cid>>,
    served: std::sync::atomic::AtomicU64,
    requests: std::sync::atomic::AtomicU64,
}

impl Pulling {
    fn new(from: &Arc<Home>) -> Arc<Pulling> {
        Arc::new(Pulling {
            from: from.clone(),
            has: Default::default(),
            served: Default::default(),
            requests: Default::default(),
        })
    }

    /// Receives `cids`, a few at a time, over `over`.
    fn receive(self: &Arc<Self>, cids: Vec<Cid>, over: std::time::Duration) -> std::thread::JoinHandle<()> {
        let me = self.clone();
        std::thread::spawn(move || {
            let steps = 10;
            for part in cids.chunks(cids.len().div_ceil(steps)) {
                std::thread::sleep(over / steps as u32);
                me.has.lock().unwrap().extend(part.iter().copied());
            }
        })
    }
}

impl Transport for Pulling {
    fn name(&self) -> String {
        "12D3KooWpulling".into()
    }
    fn kind(&self) -> &'static str {
        "bitswap"
    }
    fn get_block(&self, cid: &Cid) -> shp_station::transport::Result<Vec<u8>> {
        self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !self.has.lock().unwrap().contains(cid) {
            return Err(Error::NotFound {
                peer: self.name(),
                cid: cid.to_string(),
            });
        }
        self.served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.from.store().get(cid).unwrap())
    }
    fn batch_hint(&self) -> usize {
        32
    }
    fn get_car(
        &self,
        _: &Cid,
        _: shp_station::transport::DagScope,
    ) -> shp_station::transport::Result<Box<dyn std::io::Read + Send>> {
        unreachable!("the fetcher asks for blocks")
    }
    fn stats(&self) -> shp_station::transport::TransportStats {
        shp_station::transport::TransportStats {
            wire_bytes: 0,
            requests: self.requests.load(std::sync::atomic::Ordering::Relaxed),
            deltas: 0,
        }
    }
}

/// A peer that answers each request after `delay`, a few blocks at a time (a seeder on a slow link).
struct Slow<T>(T, std::time::Duration);

impl<T: Transport> Transport for Slow<T> {
    fn name(&self) -> String {
        self.0.name()
    }
    fn get_block(&self, cid: &Cid) -> shp_station::transport::Result<Vec<u8>> {
        std::thread::sleep(self.1);
        self.0.get_block(cid)
    }
    fn get_blocks(
        &self,
        cids: &[Cid],
        found: &mut dyn FnMut(Cid, Vec<u8>) -> shp_station::transport::Result<()>,
    ) -> shp_station::transport::Result<()> {
        std::thread::sleep(self.1);
        self.0.get_blocks(cids, found)
    }
    fn batch_hint(&self) -> usize {
        4
    }
    fn get_car(
        &self,
        root: &Cid,
        scope: shp_station::transport::DagScope,
    ) -> shp_station::transport::Result<Box<dyn std::io::Read + Send>> {
        self.0.get_car(root, scope)
    }
    fn stats(&self) -> shp_station::transport::TransportStats {
        self.0.stats()
    }
}

/// Joins `peer` the first time it is asked; counts the blocks it is told of.
struct JoinOnce {
    peer: std::sync::Mutex<Option<Arc<dyn Transport>>>,
    told: std::sync::atomic::AtomicU64,
}

impl shp_station::transport::FetchHooks for JoinOnce {
    fn block(&self, cid: &Cid, data: &[u8]) {
        assert!(cid.matches(data), "hooks see verified blocks only");
        self.told.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn join(&self, _: &[String]) -> Vec<Arc<dyn Transport>> {
        self.peer.lock().unwrap().take().into_iter().collect()
    }
    fn may_join(&self) -> bool {
        true
    }
}

#[test]
fn a_peer_pulling_the_same_dag_joins_and_serves_what_it_has() {
    // B fetches v1 from a slow seeder; a second after it starts, a peer that is pulling v1 too
    // joins. It has every block by then: the slow seeder serves only what B took before.
    let x = apps();
    let gw = gateway(&x.a);
    let all = dag_cids(x.a.store(), &x.v1);
    let tmp = tempdir();
    let b = Arc::new(new_home(&tmp.path().join("b")));
    let fellow = Pulling::new(&x.a);
    fellow
        .receive(all.clone(), std::time::Duration::from_millis(200))
        .join()
        .unwrap();
    let seeder = Slow(
        HttpTransport::new(&gw.url()).unwrap(),
        std::time::Duration::from_millis(150),
    );
    let hooks = JoinOnce {
        peer: std::sync::Mutex::new(Some(fellow.clone() as Arc<dyn Transport>)),
        told: Default::default(),
    };
    let r = shp_station::transport::fetch_into_home_with(
        &b,
        &x.v1,
        &[&seeder],
        Some("app-v1"),
        FetchOptions::default(),
        &hooks,
    )
    .unwrap();
    let n = all.len() as u64;
    assert_eq!(r.blocks_fetched, n, "{r:?}");
    assert_eq!(r.peers.len(), 2, "{r:?}");
    assert!(!r.peers[0].joined && r.peers[1].joined, "{r:?}");
    assert_eq!(r.peers[1].peer, fellow.name());
    assert!(r.peers[1].blocks > n / 2, "the fellow served most of it: {r:?}");
    assert_eq!(r.peers[0].blocks + r.peers[1].blocks, n);
    assert_eq!(hooks.told.load(std::sync::atomic::Ordering::Relaxed), n);
    let out = Layout::create(&tmp.path().join("out"));
    pull(&b, "app-v1", &out.dir, "app-v1");
    assert_same_image(&x.src, &out, "app-v1");
}

#[test]
fn a_bitswap_peer_that_lacks_a_block_now_is_asked_again() {
    // The only peer is pulling the DAG itself and has nothing yet: its DONT_HAVE is not final. It
    // receives the DAG over the next two seconds, and the fetch completes from it.
    let x = apps();
    let all = dag_cids(x.a.store(), &x.v2);
    let tmp = tempdir();
    let b = Arc::new(new_home(&tmp.path().join("b")));
    let fellow = Pulling::new(&x.a);
    let feeding = fellow.receive(all.clone(), std::time::Duration::from_secs(2));
    let r = fetch_into_home(&b, &x.v2, &[&*fellow], Some("app-v2"), FetchOptions::default()).unwrap();
    feeding.join().unwrap();
    assert_eq!(r.blocks_fetched, all.len() as u64, "{r:?}");
    assert!(
        fellow.requests.load(std::sync::atomic::Ordering::Relaxed)
            > fellow.served.load(std::sync::atomic::Ordering::Relaxed),
        "it lacked blocks when first asked"
    );
    let out = Layout::create(&tmp.path().join("out"));
    pull(&b, "app-v2", &out.dir, "app-v2");
    assert_same_image(&x.src, &out, "app-v2");
    // An HTTP peer's "not found" stays final: a root it lacks fails at once.
    let missing = Cid::hash(RAW, b"held by nobody");
    let gw = gateway(&x.a);
    let started = std::time::Instant::now();
    let e = fetch(&b, &missing, &[gw.url()], None).unwrap_err();
    assert!(matches!(e, Error::Unavailable { not_found: true, .. }), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
