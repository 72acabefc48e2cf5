//! Fetching a DAG over the network: bitswap peers and HTTP peers together in one multi-peer fetch,
//! from a running station (through its control socket) or from a short-lived node of the CLI's own
//! when no station runs.

use super::bitswap::client::{who_has, PROBE_WAIT};
use super::inflight::Spill;
use super::{BitswapPeer, Node, P2pConfig};
use crate::transport::{self, FetchHooks, FetchOptions, FetchReport, HttpTransport, SessionReport, Transport};
use shp_core::cid::Cid;
use shp_core::Home;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a running fetch waits for the peers it asks again whether they have the root.
pub const JOIN_WAIT: Duration = Duration::from_millis(500);

/// Requests in flight per bitswap peer (each a batch of up to 64 wants): the window is deep so a
/// pull is bound by bandwidth, not by round trips.
pub const BITSWAP_WORKERS: usize = 6;

/// The most bitswap peers one fetch uses (the fetcher takes 64 peers in all).
pub const MAX_SESSION_PEERS: usize = 32;

/// The bitswap peers a fetch of `root` should use, as a boxo session picks them: every connected
/// peer is asked whether it has the root; those that say HAVE are used, fastest (by ping) first;
/// when none does, those that stayed silent (they may be slow, or speak an older bitswap), never
/// those that said DONT_HAVE. So a node with hundreds of DHT connections sends its wants only to
/// the peers that hold the image, and a peer without it costs one want-have, not a share of every
/// batch. A peer holding only part of the DAG (a shared layer, not this root) is left out: the
/// price of not asking everyone for everything.
pub fn choose_session<'p>(root: &Cid, swarm: &'p [BitswapPeer], room: usize) -> (Vec<&'p BitswapPeer>, SessionReport) {
    let (chosen, _, report) = session(root, swarm, room);
    (chosen, report)
}

/// [`choose_session`], and the peers left out that could join later (not chosen, not over the
/// limit): asked again while the fetch runs, as they may have begun pulling the same DAG.
fn session<'p>(
    root: &Cid,
    swarm: &'p [BitswapPeer],
    room: usize,
) -> (Vec<&'p BitswapPeer>, Vec<&'p BitswapPeer>, SessionReport) {
    let answers = who_has(swarm, root, PROBE_WAIT);
    let count = |want: Option<bool>| answers.iter().filter(|a| **a == want).count() as u64;
    let mut report = SessionReport {
        asked: swarm.len() as u64,
        have: count(Some(true)),
        dont_have: count(Some(false)),
        silent: count(None),
        used: 0,
        joined: 0,
    };
    let pick = if report.have > 0 { Some(true) } else { None };
    let (mut chosen, mut rest): (Vec<(&BitswapPeer, _)>, Vec<_>) =
        swarm.iter().zip(&answers).partition(|(_, a)| **a == pick);
    let by_rtt = |p: &&BitswapPeer| p.rtt().unwrap_or(Duration::MAX);
    chosen.sort_by_key(|(p, _)| by_rtt(p));
    let room = room.min(MAX_SESSION_PEERS);
    let mut chosen: Vec<&BitswapPeer> = chosen.into_iter().map(|(p, _)| p).collect();
    let mut later: Vec<&BitswapPeer> = chosen.split_off(room.min(chosen.len()));
    rest.sort_by_key(|(p, _)| by_rtt(p));
    later.extend(rest.into_iter().map(|(p, _)| p));
    later.truncate(room.saturating_sub(chosen.len()));
    report.used = chosen.len() as u64;
    tracing::info!(
        root = %root,
        asked = report.asked,
        have = report.have,
        dont_have = report.dont_have,
        silent = report.silent,
        used = report.used,
        "bitswap session"
    );
    (chosen, later, report)
}

/// What a bitswap fetch hands the fetcher: it keeps every block for other peers until the fetch
/// lands, and adds the left-out peers that have begun pulling the same root.
struct Hooks {
    root: Cid,
    spill: Option<Arc<Spill>>,
    candidates: Vec<BitswapPeer>,
}

impl FetchHooks for Hooks {
    fn block(&self, cid: &Cid, data: &[u8]) {
        if let Some(s) = &self.spill {
            s.put(cid, data);
        }
    }

    fn may_join(&self) -> bool {
        !self.candidates.is_empty()
    }

    fn join(&self, using: &[String]) -> Vec<Arc<dyn Transport>> {
        let ask: Vec<BitswapPeer> = self
            .candidates
            .iter()
            .filter(|p| !using.contains(&p.name()))
            .map(BitswapPeer::again)
            .collect();
        let answers = who_has(&ask, &self.root, JOIN_WAIT);
        ask.into_iter()
            .zip(answers)
            .filter(|(_, a)| *a == Some(true))
            .map(|(p, _)| Arc::new(p) as Arc<dyn Transport>)
            .collect()
    }
}

/// Fetches `root` into `home` from HTTP peers `urls` and the connected bitswap `swarm`, naming it
/// `tag` (or pinning it). The bitswap peers are those [`choose_session`] picks (all of them when
/// the home already holds the root). Blocking: call it from a blocking thread.
pub fn fetch_blocking(
    home: &Home,
    root: &Cid,
    tag: Option<&str>,
    urls: &[String],
    swarm: &[BitswapPeer],
) -> transport::Result<FetchReport> {
    fetch_blocking_based(home, root, tag, None, urls, swarm)
}

/// [`fetch_blocking`] with a delta base ([`FetchOptions::base`]; with a `tag` and no base, the
/// previous version of the tag's repository is taken).
pub fn fetch_blocking_based(
    home: &Home,
    root: &Cid,
    tag: Option<&str>,
    base: Option<Cid>,
    urls: &[String],
    swarm: &[BitswapPeer],
) -> transport::Result<FetchReport> {
    let http = urls
        .iter()
        .map(|u| HttpTransport::new(u))
        .collect::<transport::Result<Vec<_>>>()?;
    if http.is_empty() && swarm.is_empty() {
        return Err(transport::Error::Unavailable {
            cid: root.to_string(),
            not_found: false,
            reason: "no peers: nothing connected (`shp connect MULTIADDR`, bootstrap peers, mDNS) and no --from URL"
                .into(),
        });
    }
    let mut report_session = None;
    let mut candidates = Vec::new();
    let chosen: Vec<&BitswapPeer> = if swarm.is_empty() || home.store().has(root)? {
        swarm.iter().collect()
    } else {
        let (chosen, later, report) = session(root, swarm, 64 - http.len().min(64));
        candidates = later;
        if chosen.is_empty() && http.is_empty() {
            return Err(transport::Error::Unavailable {
                cid: root.to_string(),
                not_found: true,
                reason: format!(
                    "none of the {} connected bitswap peers has it ({} answered DONT_HAVE)",
                    report.asked, report.dont_have
                ),
            });
        }
        report_session = Some(report);
        chosen
    };
    // Blocks are kept for others when some connected peer lacked the root (it may be pulling it
    // too), or when several peers said HAVE (some may be pulling it themselves); not in a fetch
    // from the one peer connected, which holds it already.
    let others = !candidates.is_empty() || chosen.len() > 1;
    let spill = match swarm.first().filter(|_| others) {
        Some(p) => match p.engine().inflight.begin(home) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot keep fetched blocks for other peers during this fetch");
                None
            }
        },
        None => None,
    };
    let hooks = Hooks {
        root: *root,
        spill,
        candidates: candidates.into_iter().map(BitswapPeer::again).collect(),
    };
    let mut peers: Vec<&dyn Transport> = http.iter().map(|t| t as &dyn Transport).collect();
    peers.extend(chosen.iter().map(|t| *t as &dyn Transport));
    let opts = FetchOptions {
        workers_per_peer: if chosen.is_empty() {
            FetchOptions::default().workers_per_peer
        } else {
            BITSWAP_WORKERS
        },
        base,
        ..Default::default()
    };
    let mut report = transport::fetch_into_home_with(home, root, &peers, tag, opts, &hooks)?;
    if let Some(s) = report_session.as_mut() {
        s.joined = report.peers.iter().filter(|p| p.joined).count() as u64;
    }
    report.session = report_session;
    Ok(report)
}

/// What a fetch through a node of our own can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error(transparent)]
    P2p(#[from] super::Error),
    #[error(transparent)]
    Fetch(#[from] transport::Error),
    #[error(transparent)]
    Identity(#[from] crate::server::identity::IdentityError),
    #[error("p2p runtime: {0}")]
    Runtime(std::io::Error),
}

/// Starts a node of our own (no listeners; the config's bootstrap peers and mDNS), waits up to
/// `wait` for peers to connect, asks them (the DHT) for the root's providers and dials those,
/// fetches from everyone connected, and stops the node.
pub fn fetch_standalone(
    home: Arc<Home>,
    cfg: &P2pConfig,
    root: &Cid,
    tag: Option<&str>,
    urls: &[String],
    wait: Duration,
) -> Result<FetchReport, StandaloneError> {
    let (id, _) = crate::server::identity::Identity::load_or_create(home.dir())?;
    let key = super::keypair(&id)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
        .map_err(StandaloneError::Runtime)?;
    let mut cfg = cfg.clone();
    cfg.listen.clear();
    let want_peers = !cfg.bootstrap.is_empty() || cfg.mdns;
    let node = rt.block_on(Node::start(key, &cfg, home.clone()))?;
    let swarm = rt.block_on(async {
        let start = Instant::now();
        loop {
            let peers = node.bitswap_peers().await?;
            // Every bootstrap peer up (or the wait over; mDNS neighbours arrive as they answer).
            let enough = !cfg.bootstrap.is_empty() && peers.len() >= cfg.bootstrap.len();
            if !want_peers || enough || start.elapsed() >= wait {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Then the providers the DHT knows of, through the peers we reached.
        if want_peers {
            node.find_providers(*root, super::FIND_WAIT).await?;
        }
        node.bitswap_peers().await
    })?;
    let root = *root;
    let tag = tag.map(str::to_string);
    let urls = urls.to_vec();
    let h = home.clone();
    let res = rt
        .block_on(rt.spawn_blocking(move || fetch_blocking(&h, &root, tag.as_deref(), &urls, &swarm)))
        .map_err(|e| StandaloneError::Runtime(std::io::Error::other(e)))?;
    rt.block_on(node.stop());
    Ok(res?)
}

/// A node of this process's own, dialled to the peers given and to nobody else (no listeners, no
/// mDNS, no bootstrap peers, no DHT), for a caller that wants their blocks over bitswap without a
/// station: a lazy `shp mount --from MULTIADDR`. It has an identity of its own (a fresh ed25519
/// key), so a station running on the same home keeps its peer id to itself; the home's private
/// network key applies. Its runtime lives as long as it does; dropping it closes the connections.
pub struct Dialed {
    rt: tokio::runtime::Runtime,
    node: Option<Node>,
    peers: Vec<BitswapPeer>,
}

impl Dialed {
    /// Starts the node and connects to every address of `addrs` (each must end in `/p2p/<id>`);
    /// an address that cannot be reached is an error naming it.
    pub fn connect(home: Arc<Home>, cfg: &P2pConfig, addrs: &[libp2p::Multiaddr]) -> Result<Dialed, StandaloneError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .worker_threads(2)
            .build()
            .map_err(StandaloneError::Runtime)?;
        let cfg = P2pConfig {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            mdns: false,
            dht: false,
            net_key: cfg.net_key.clone(),
            public: cfg.public,
        };
        let key = libp2p::identity::Keypair::generate_ed25519();
        let node = rt.block_on(Node::start(key, &cfg, home))?;
        let peers = rt.block_on(async {
            for a in addrs {
                node.connect(a.clone()).await?;
            }
            node.bitswap_peers().await
        });
        let peers = match peers {
            Ok(p) => p,
            Err(e) => {
                rt.block_on(node.stop());
                return Err(e.into());
            }
        };
        Ok(Dialed {
            rt,
            node: Some(node),
            peers,
        })
    }

    /// The connected peers, as transports (blocks verified against their CIDs as they arrive).
    pub fn peers(&self) -> &[BitswapPeer] {
        &self.peers
    }
}

impl Drop for Dialed {
    fn drop(&mut self) {
        if let Some(n) = self.node.take() {
            self.rt.block_on(n.stop());
        }
    }
}
