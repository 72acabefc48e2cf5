//! The bitswap server against a peer we control byte for byte: it answers wants as the protocol
//! says, ignores a wantlist flood beyond its limit, disconnects a peer that keeps sending malformed
//! messages, and goes on serving everyone else; and the oci-roots protocol beside it (which image
//! root holds a manifest digest). Loopback only, no mDNS.

mod common;

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use shp_core::cid::{Cid, RAW};
use shp_core::Home;
use shp_station::p2p::bitswap::server::MAX_WANTS;
use shp_station::p2p::message::{self, block_cid, Entry, Message, Presence, WantType};
use shp_station::p2p::P2pConfig;
use shp_station::server::{Config, Running, Station};
use shp_station::transport::delta;
use std::time::Duration;
use tokio::sync::mpsc;

const PROTO: libp2p::StreamProtocol = libp2p::StreamProtocol::new("/ipfs/bitswap/1.2.0");

fn station(home: &std::path::Path) -> Running {
    let mut cfg = Config::local("127.0.0.1:0".parse().unwrap());
    cfg.p2p = Some(P2pConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        ..Default::default()
    });
    Station::bind(home, &cfg).unwrap().spawn().unwrap()
}

/// A raw libp2p peer: our bitswap stream out, the messages the station sends in, connection events.
struct RawPeer {
    proto: libp2p::StreamProtocol,
    control: libp2p_stream::Control,
    out: Option<libp2p::Stream>,
    messages: mpsc::UnboundedReceiver<Message>,
    closed: mpsc::UnboundedReceiver<PeerId>,
    station: PeerId,
}

impl RawPeer {
    async fn connect(addr: &str) -> RawPeer {
        RawPeer::connect_with(addr, PROTO).await
    }

    /// Connects and opens our stream with `proto` (plain bitswap, or shp's sealed variant).
    async fn connect_with(addr: &str, proto: libp2p::StreamProtocol) -> RawPeer {
        let addr: Multiaddr = addr.parse().unwrap();
        let station = shp_station::p2p::host::peer_of(&addr).unwrap();
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default(),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        let mut control = swarm.behaviour().new_control();
        let mut incoming = control.accept(PROTO).unwrap();
        let (mtx, messages) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some((_, mut s)) = incoming.next().await {
                let mtx = mtx.clone();
                tokio::spawn(async move {
                    while let Ok(Some(f)) = message::read_frame(&mut s).await {
                        let _ = mtx.send(Message::decode(&f).expect("the station sends valid messages"));
                    }
                });
            }
        });
        swarm.dial(addr).unwrap();
        let (ctx, closed) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                if let SwarmEvent::ConnectionClosed { peer_id, .. } = swarm.select_next_some().await {
                    let _ = ctx.send(peer_id);
                }
            }
        });
        let out = control
            .open_stream(station, proto.clone())
            .await
            .expect("open a bitswap stream");
        RawPeer {
            proto,
            control,
            out: Some(out),
            messages,
            closed,
            station,
        }
    }

    /// Sends one frame, opening a stream first when there is none; false when no stream can be
    /// opened (the station has disconnected us).
    async fn try_send_raw(&mut self, frame: &[u8]) -> bool {
        if self.out.is_none() {
            match self.control.open_stream(self.station, self.proto.clone()).await {
                Ok(s) => self.out = Some(s),
                Err(_) => return false,
            }
        }
        if message::write_frame(self.out.as_mut().unwrap(), frame).await.is_err() {
            self.out = None;
        }
        true
    }

    async fn send_raw(&mut self, frame: &[u8]) {
        assert!(self.try_send_raw(frame).await, "open a bitswap stream to the station");
    }

    async fn send(&mut self, m: &Message) {
        self.send_raw(&m.encode()).await;
    }

    /// Messages until `done` says enough (at most 20 s).
    async fn until(&mut self, done: impl FnMut(&Message) -> bool) {
        assert!(
            self.within(Duration::from_secs(20), done).await,
            "the station answered within 20 s"
        );
    }

    /// Messages until `done` says enough; false if `limit` passes first.
    async fn within(&mut self, limit: Duration, mut done: impl FnMut(&Message) -> bool) -> bool {
        tokio::time::timeout(limit, async {
            while let Some(m) = self.messages.recv().await {
                if done(&m) {
                    return;
                }
            }
        })
        .await
        .is_ok()
    }
}

fn want(cid: &[u8], kind: WantType) -> Entry {
    Entry {
        cid: cid.to_vec(),
        priority: 1,
        cancel: false,
        want_type: kind,
        send_dont_have: true,
        base: Vec::new(),
    }
}

#[test]
fn the_server_answers_limits_and_drops_peers() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::init(&dir.path().join("home")).unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let small = b"a small block".to_vec();
    let (big_cid, small_cid) = (Cid::hash(RAW, &big), Cid::hash(RAW, &small));
    home.store().put(&big_cid, &big).unwrap();
    home.store().put(&small_cid, &small).unwrap();
    drop(home);
    let running = station(&dir.path().join("home"));
    let addr = running.p2p_addrs[0].clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut p = RawPeer::connect(&addr).await;
        let missing = Cid::hash(RAW, b"nobody has this").to_bytes();
        let dag_pb_v0 = {
            let mut v = vec![0x12, 0x20];
            v.extend_from_slice(&[7u8; 32]);
            v
        };
        // want-block → the block; want-have on a small block → the block itself (inlined);
        // want-have on a big one → HAVE; missing, or a CID shp cannot store → DONT_HAVE.
        p.send(&Message {
            wantlist: vec![
                want(&big_cid.to_bytes(), WantType::Block),
                want(&small_cid.to_bytes(), WantType::Have),
                want(&missing, WantType::Block),
                want(&dag_pb_v0, WantType::Have),
            ],
            ..Default::default()
        })
        .await;
        let (mut got_big, mut got_small, mut dont, mut have) = (false, false, 0, 0);
        p.until(|m| {
            for b in &m.blocks {
                let c = block_cid(b).unwrap();
                assert!(c.matches(&b.data));
                got_big |= c == big_cid;
                got_small |= c == small_cid;
            }
            for (c, k) in &m.presences {
                match k {
                    Presence::DontHave => {
                        assert!(
                            c[..] == missing[..] || c[..] == dag_pb_v0[..],
                            "DONT_HAVE for an unknown CID"
                        );
                        dont += 1;
                    }
                    Presence::Have => have += 1,
                }
            }
            got_big && got_small && dont == 2
        })
        .await;
        assert_eq!(have, 0, "small blocks are sent in place of HAVE");
        // want-have on the big block: HAVE, not the block.
        p.send(&Message {
            wantlist: vec![want(&big_cid.to_bytes(), WantType::Have)],
            ..Default::default()
        })
        .await;
        p.until(|m| {
            assert!(m.blocks.is_empty(), "a want-have for a big block gets no block");
            m.presences
                .iter()
                .any(|(c, k)| *k == Presence::Have && c[..] == big_cid.to_bytes()[..])
        })
        .await;

        // A flood: the ledger keeps MAX_WANTS wants and ignores the rest; the peer stays connected.
        let flood: Vec<Entry> = (0..MAX_WANTS as u32 + 500)
            .map(|i| Entry {
                send_dont_have: false,
                ..want(&Cid::hash(RAW, &i.to_le_bytes()).to_bytes(), WantType::Have)
            })
            .collect();
        p.send(&Message {
            wantlist: flood,
            ..Default::default()
        })
        .await;
        // Still served afterwards: wants that arrive while the ledger is full are ignored (another
        // strike each), so ask until the flood has drained.
        let mut served = false;
        for _ in 0..4 {
            p.send(&Message {
                wantlist: vec![want(&small_cid.to_bytes(), WantType::Block)],
                ..Default::default()
            })
            .await;
            let got = p.within(Duration::from_secs(2), |m| {
                m.blocks.iter().any(|b| block_cid(b).unwrap() == small_cid)
            });
            if got.await {
                served = true;
                break;
            }
        }
        assert!(served, "the flooding peer is served again once its ledger drains");
        assert!(p.closed.try_recv().is_err(), "a flood alone does not disconnect");

        // A message over the 4 MiB limit, then malformed ones: each a strike; at the limit the
        // station disconnects the peer.
        // The strikes the flood earned count too, so the station may hang up before the last of
        // these is sent: stop sending once no stream can be opened.
        p.send_raw(&vec![0u8; message::MAX_MESSAGE + 1]).await;
        p.out = None;
        for _ in 1..shp_station::p2p::bitswap::MAX_STRIKES {
            if !p.try_send_raw(&[0x0b, 0x01]).await {
                break;
            }
        }
        let gone = tokio::time::timeout(Duration::from_secs(20), p.closed.recv()).await;
        assert_eq!(
            gone.ok().flatten(),
            Some(p.station),
            "the station disconnected the misbehaving peer"
        );

        // Everyone else is still served.
        let mut q = RawPeer::connect(&addr).await;
        q.send(&Message {
            wantlist: vec![want(&big_cid.to_bytes(), WantType::Block)],
            ..Default::default()
        })
        .await;
        q.until(|m| m.blocks.iter().any(|b| block_cid(b).unwrap() == big_cid))
            .await;
    });
    drop(rt);
    running.stop().unwrap();
}

#[test]
fn blocks_of_a_running_fetch_are_served_until_it_ends() {
    // A station mid-pull serves what it has received so far (its fetch's spill), answers HAVE for
    // it, and forgets it when the fetch ends (then the store answers, or DONT_HAVE).
    let dir = tempfile::tempdir().unwrap();
    let home = Home::init(&dir.path().join("home")).unwrap();
    let running = station(&dir.path().join("home"));
    let inflight = running
        .inflight
        .clone()
        .expect("a p2p station keeps its fetches' blocks");
    let got: Vec<u8> = (0..150_000u32).map(|i| (i * 13 % 241) as u8).collect();
    let got_cid = Cid::hash(RAW, &got);
    let spill = inflight.begin(&home).unwrap();
    spill.put(&got_cid, &got);
    let addr = running.p2p_addrs[0].clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut p = RawPeer::connect(&addr).await;
        p.send(&Message {
            wantlist: vec![want(&got_cid.to_bytes(), WantType::Have)],
            ..Default::default()
        })
        .await;
        p.until(|m| {
            m.presences
                .iter()
                .any(|(c, k)| *k == Presence::Have && c[..] == got_cid.to_bytes()[..])
        })
        .await;
        p.send(&Message {
            wantlist: vec![want(&got_cid.to_bytes(), WantType::Block)],
            ..Default::default()
        })
        .await;
        p.until(|m| {
            m.blocks
                .iter()
                .any(|b| block_cid(b).unwrap() == got_cid && b.data == got)
        })
        .await;
        // The fetch ends without storing it (it failed, say): DONT_HAVE from then on.
        drop(spill);
        p.send(&Message {
            wantlist: vec![want(&got_cid.to_bytes(), WantType::Block)],
            ..Default::default()
        })
        .await;
        p.until(|m| {
            assert!(m.blocks.is_empty(), "a block of an ended fetch is not served");
            m.presences
                .iter()
                .any(|(c, k)| *k == Presence::DontHave && c[..] == got_cid.to_bytes()[..])
        })
        .await;
    });
    drop(rt);
    assert!(
        !home.store().has(&got_cid).unwrap(),
        "the spill never reached the store"
    );
}

#[test]
fn sealed_streams_are_read_and_bad_seals_are_strikes() {
    // shp's sealed variant of bitswap: a zstd-compressed want is answered like a plain one; frames
    // with an unknown flag or bytes that are not zstd are strikes, and at the limit the peer is
    // disconnected while others are still served.
    let dir = tempfile::tempdir().unwrap();
    let home = Home::init(&dir.path().join("home")).unwrap();
    let block = b"a block wanted over a sealed stream ".repeat(100);
    let cid = Cid::hash(RAW, &block);
    home.store().put(&cid, &block).unwrap();
    drop(home);
    let running = station(&dir.path().join("home"));
    let addr = running.p2p_addrs[0].clone();
    let sealed = shp_station::p2p::bitswap::SEALED;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut p = RawPeer::connect_with(&addr, sealed.clone()).await;
        let want_it = Message {
            wantlist: vec![want(&cid.to_bytes(), WantType::Block)],
            ..Default::default()
        }
        .encode();
        let (frame, packed) = message::seal(&want_it, true, 3);
        let frame = if packed {
            frame
        } else {
            // Force the compressed form: the point is reading zstd.
            let mut f = vec![1];
            f.extend_from_slice(&zstd::bulk::compress(&want_it, 3).unwrap());
            f
        };
        p.send_raw(&frame).await;
        // The station answers on a stream of its own: this peer does not accept the sealed
        // protocol, so the station falls back to plain bitswap for it.
        p.until(|m| m.blocks.iter().any(|b| block_cid(b).unwrap() == cid && b.data == block))
            .await;
        for _ in 0..shp_station::p2p::bitswap::MAX_STRIKES {
            p.send_raw(&[7, 1, 2, 3]).await;
        }
        let gone = tokio::time::timeout(Duration::from_secs(20), p.closed.recv()).await;
        assert_eq!(gone.ok().flatten(), Some(p.station), "bad seals are strikes");
        let mut q = RawPeer::connect_with(&addr, sealed).await;
        let mut f = vec![0];
        f.extend_from_slice(&want_it);
        q.send_raw(&f).await;
        q.until(|m| m.blocks.iter().any(|b| block_cid(b).unwrap() == cid)).await;
    });
    drop(rt);
}

#[test]
fn a_want_naming_a_base_is_answered_with_a_delta() {
    // shp's base field: a want-block naming a base the station holds gets a delta (decoding to the
    // block against the base); a base it lacks, or one that does not help, gets the block whole; a
    // want-have gets HAVE as ever.
    let dir = tempfile::tempdir().unwrap();
    let home = Home::init(&dir.path().join("home")).unwrap();
    let old: Vec<u8> = (0..3000u32)
        .flat_map(|i| format!("line {i}: def f(x): return x * {}\n", i % 7).into_bytes())
        .collect();
    let mut new = old.clone();
    new.extend_from_slice(b"# patched\n");
    let mut x = 0x9e3779b97f4a7c15u64;
    let noise: Vec<u8> = (0..60_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    let (old_cid, new_cid, noise_cid) = (Cid::hash(RAW, &old), Cid::hash(RAW, &new), Cid::hash(RAW, &noise));
    for (c, d) in [(&old_cid, &old), (&new_cid, &new), (&noise_cid, &noise)] {
        home.store().put(c, d).unwrap();
    }
    drop(home);
    let running = station(&dir.path().join("home"));
    let addr = running.p2p_addrs[0].clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut p = RawPeer::connect(&addr).await;
        let based = |cid: &Cid, base: &Cid| Entry {
            base: base.to_bytes().to_vec(),
            ..want(&cid.to_bytes(), WantType::Block)
        };
        p.send(&Message {
            wantlist: vec![based(&new_cid, &old_cid)],
            ..Default::default()
        })
        .await;
        let mut frame = None;
        p.until(|m| {
            assert!(m.blocks.is_empty(), "a block whose base helps goes as a delta");
            frame = m.deltas.iter().find(|d| d.cid[..] == new_cid.to_bytes()[..]).map(|d| {
                assert_eq!(d.base[..], old_cid.to_bytes()[..]);
                d.frame.clone()
            });
            frame.is_some()
        })
        .await;
        let frame = frame.unwrap();
        assert!(
            frame.len() < 200,
            "{} bytes for a line appended to {}",
            frame.len(),
            old.len()
        );
        assert_eq!(delta::apply(&old, &frame).unwrap(), new);

        // A base it lacks, and a base that does not help: whole blocks. A want-have: HAVE.
        let lacking = Cid::hash(RAW, b"not held");
        p.send(&Message {
            wantlist: vec![
                based(&old_cid, &lacking),
                based(&noise_cid, &old_cid),
                Entry {
                    want_type: WantType::Have,
                    ..based(&new_cid, &old_cid)
                },
            ],
            ..Default::default()
        })
        .await;
        let (mut whole, mut have) = (0, false);
        p.until(|m| {
            assert!(m.deltas.is_empty(), "{:?}", m.deltas);
            for b in &m.blocks {
                let c = block_cid(b).unwrap();
                assert!(c == old_cid || c == noise_cid);
                whole += 1;
            }
            have |= m
                .presences
                .iter()
                .any(|(c, k)| *k == Presence::Have && c[..] == new_cid.to_bytes()[..]);
            whole == 2 && have
        })
        .await;
    });
    drop(rt);
}

/// A peer that serves `a`'s blocks to the station over `p`: HAVE / DONT_HAVE for want-haves, the
/// block for want-blocks — and for a want-block naming a base, `delta(cid, base)`'s frame when it
/// gives one. Returns the bases the station named, until `done` is set.
async fn serve_from(
    p: &mut RawPeer,
    a: &Home,
    delta: impl Fn(&Cid, &Cid) -> Option<Vec<u8>>,
    done: &std::sync::atomic::AtomicBool,
) -> Vec<(Cid, Cid)> {
    let mut named = Vec::new();
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), p.messages.recv()).await else {
            continue;
        };
        let mut out = Message::default();
        for e in m.wantlist.iter().filter(|e| !e.cancel) {
            let cid = Cid::from_bytes(&e.cid).unwrap();
            let Ok(data) = a.store().get(&cid) else {
                out.presences.push((e.cid.clone(), Presence::DontHave));
                continue;
            };
            if e.want_type == WantType::Have {
                out.presences.push((e.cid.clone(), Presence::Have));
                continue;
            }
            let base = Cid::from_bytes(&e.base).ok();
            if let Some(b) = base {
                named.push((cid, b));
            }
            match base.and_then(|b| delta(&cid, &b).map(|f| (b, f))) {
                Some((b, frame)) => out.deltas.push(message::Delta {
                    cid: e.cid.clone(),
                    base: b.to_bytes().to_vec(),
                    frame,
                }),
                None => out.blocks.push(message::Block {
                    prefix: message::prefix_of(&cid),
                    data,
                }),
            }
        }
        if !out.is_empty() {
            p.send(&out).await;
        }
    }
    named
}

/// Connects a raw peer serving `a` (see [`serve_from`]) to the station at `addr`, makes the station
/// run `req` through its control socket, and serves until that ends: the bases named, the answer.
async fn fetch_served_by(
    addr: &str,
    home: &std::path::Path,
    req: &serde_json::Value,
    a: &Home,
    delta: impl Fn(&Cid, &Cid) -> Option<Vec<u8>>,
) -> (
    Vec<(Cid, Cid)>,
    Result<serde_json::Value, shp_station::control::ControlError>,
) {
    let mut p = RawPeer::connect(addr).await;
    let done = std::sync::atomic::AtomicBool::new(false);
    let (home, req) = (home.to_path_buf(), req.clone());
    let job = tokio::task::spawn_blocking(move || shp_station::control::request(&home, &req));
    let waiting = async {
        let r = job.await.unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    };
    tokio::join!(serve_from(&mut p, a, delta, &done), waiting)
}

#[test]
fn a_fetch_names_bases_takes_deltas_and_drops_a_peer_whose_delta_is_wrong() {
    // The station (B) holds app:v1 and fetches app:v2 from a peer we control: its want-blocks name
    // the blocks at the same places in v1 as bases; right deltas are decoded and stored; a peer whose
    // delta decodes to the wrong bytes is dropped as a liar and nothing is stored.
    let dir = tempfile::tempdir().unwrap();
    let src = common::Layout::create(&dir.path().join("src"));
    let files = common::app_files(12, 20_000, None);
    src.write_image("app-v1", &[common::tar_of(&files)]);
    src.write_image("app-v2", &[common::tar_of(&common::app_files(12, 20_000, Some(5)))]);
    let a = Home::init(&dir.path().join("a")).unwrap();
    let v2 = common::push(&a, &src, "app-v2");
    let b_dir = dir.path().join("b");
    let b = Home::init(&b_dir).unwrap();
    let v1_src = format!("oci:{}:app-v1", src.dir.display()).parse().unwrap();
    let v1 = b
        .push(&v1_src, Some("app:v1"), Home::no_progress())
        .unwrap()
        .import
        .root;
    for c in common::dag_cids(b.store(), &v1) {
        let d = b.store().get(&c).unwrap();
        a.store().put(&c, &d).unwrap();
    }
    let running = station(&b_dir);
    let addr = running.p2p_addrs[0].clone();
    // v2's blocks that v1 lacks (the station builds views beside, so the store's size is no test).
    let held: std::collections::HashSet<Cid> = common::dag_cids(b.store(), &v1).into_iter().collect();
    let new: Vec<Cid> = common::dag_cids(a.store(), &v2)
        .into_iter()
        .filter(|c| !held.contains(c))
        .collect();
    assert!(new.len() >= 4, "{new:?}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let req = serde_json::json!({"op": "fetch", "cid": v2.to_string(), "tag": "app:v2"});
    // A liar: every delta decodes (it is a real frame) to bytes that are not the block.
    let (named, r) = rt.block_on(fetch_served_by(&addr, &b_dir, &req, &a, |cid, base| {
        let mut wrong = a.store().get(cid).ok()?;
        wrong[0] ^= 1;
        delta::compress_against(&a.store().get(base).ok()?, &wrong).unwrap()
    }));
    let err = r.expect_err("a fetch from a liar alone fails").to_string();
    assert!(err.contains("wrong data"), "{err}");
    assert!(
        named.iter().any(|(c, base)| *c == v2 && *base == v1),
        "the root's base is v1's root: {named:?}"
    );
    assert!(new.iter().all(|c| !b.store().has(c).unwrap()), "nothing of v2 stored");
    // An honest peer: deltas where they pay, blocks elsewhere; v2 is stored and reads back.
    let (named, r) = rt.block_on(fetch_served_by(&addr, &b_dir, &req, &a, |cid, base| {
        delta::compress_against(&a.store().get(base).ok()?, &a.store().get(cid).ok()?).unwrap()
    }));
    let rep = r.expect("the fetch from an honest peer works");
    assert!(rep["blocks_delta"].as_u64().unwrap() >= 3, "{rep}");
    assert!(named.len() >= 3, "{named:?}");
    drop(rt);
    assert_eq!(b.resolve("app:v2").unwrap(), v2);
    assert!(b.verify(true).unwrap().problems.is_empty());
    let out = common::Layout::create(&dir.path().join("out"));
    let dest = format!("oci:{}:app-v2", out.dir.display()).parse().unwrap();
    std::sync::Arc::new(b)
        .pull("app:v2", &dest, Home::no_progress())
        .unwrap();
    common::assert_same_image(&src, &out, "app-v2");
}

/// One oci-roots question on a fresh stream: the answer frame, or None when the station closed the
/// stream without one.
async fn oci_ask(p: &mut RawPeer, query: &[u8]) -> Option<Vec<u8>> {
    let mut s = p
        .control
        .open_stream(p.station, shp_station::p2p::oci::PROTOCOL)
        .await
        .ok()?;
    message::write_frame(&mut s, query).await.ok()?;
    tokio::time::timeout(Duration::from_secs(10), message::read_frame(&mut s))
        .await
        .expect("the station answers or closes within 10 s")
        .ok()
        .flatten()
}

#[test]
fn the_oci_roots_protocol_names_the_image_of_a_manifest_digest() {
    use shp_station::p2p::oci;
    let dir = tempfile::tempdir().unwrap();
    let home = Home::init(&dir.path().join("home")).unwrap();
    let layout = common::Layout::create(&dir.path().join("oci"));
    let files = common::app_files(4, 3000, None);
    let (manifest, _) = layout.write_image("v1", &[common::tar_of(&files)]);
    let root = common::push(&home, &layout, "v1");
    drop(home);
    let held: [u8; 32] = shp_core::cid::parse_digest(&manifest).unwrap();
    let unknown = [9u8; 32];
    let running = station(&dir.path().join("home"));
    let addr = running.p2p_addrs[0].clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut p = RawPeer::connect(&addr).await;
        // The held manifest is answered with the image's root; an unknown digest is left out; a
        // tag the refs name is answered with its image, an unknown one is left out.
        let ask = |digests: Vec<[u8; 32]>, tags: Vec<&str>| {
            oci::encode_query(&oci::Query {
                digests,
                tags: tags.into_iter().map(String::from).collect(),
            })
        };
        let by = |tag: Option<&str>| oci::Held {
            digest: held,
            root,
            tag: tag.map(String::from),
        };
        let a = oci_ask(&mut p, &ask(vec![unknown, held], vec!["v1", "v2"]))
            .await
            .expect("an answer");
        assert_eq!(oci::decode_answer(&a).unwrap(), vec![by(None), by(Some("v1"))]);
        let a = oci_ask(&mut p, &ask(vec![unknown], vec![])).await.expect("an answer");
        assert!(oci::decode_answer(&a).unwrap().is_empty());
        // A digest of the wrong length is a strike and gets no answer; enough of them and the
        // station hangs up (then the peer cannot open streams any more).
        let mut bad = Vec::new();
        bad.extend_from_slice(&[0x0a, 5, 1, 2, 3, 4, 5]);
        assert_eq!(oci_ask(&mut p, &bad).await, None);
        for _ in 1..shp_station::p2p::bitswap::MAX_STRIKES {
            if oci_ask(&mut p, &bad).await.is_some() {
                panic!("a malformed query was answered");
            }
        }
        let gone = tokio::time::timeout(Duration::from_secs(20), p.closed.recv()).await;
        assert_eq!(
            gone.ok().flatten(),
            Some(p.station),
            "the station disconnected the peer"
        );
        // Others still get answers.
        let mut q = RawPeer::connect(&addr).await;
        let a = oci_ask(&mut q, &ask(vec![held], vec![])).await.expect("an answer");
        assert_eq!(oci::decode_answer(&a).unwrap(), vec![by(None)]);
    });
    drop(rt);
    running.stop().unwrap();
}
