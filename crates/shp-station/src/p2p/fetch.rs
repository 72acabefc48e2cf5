//! Fetching a DAG over the network: bitswap peers and HTTP peers together in one multi-peer fetch,
//! from a running station (through its control socket) or from a short-lived node of the CLI's own
//! when no station runs.

use super::{BitswapPeer, Node, P2pConfig};
use crate::transport::{self, FetchOptions, FetchReport, HttpTransport, Transport};
use shp_core::cid::Cid;
use shp_core::Home;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests in flight per bitswap peer (each a batch of up to 64 wants): the window is deep so a
/// pull is bound by bandwidth, not by round trips.
pub const BITSWAP_WORKERS: usize = 6;

/// Fetches `root` into `home` from HTTP peers `urls` and the connected bitswap `swarm`, naming it
/// `tag` (or pinning it). Blocking: call it from a blocking thread.
pub fn fetch_blocking(
    home: &Home,
    root: &Cid,
    tag: Option<&str>,
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
    let mut peers: Vec<&dyn Transport> = http.iter().map(|t| t as &dyn Transport).collect();
    peers.extend(swarm.iter().map(|t| t as &dyn Transport));
    let opts = FetchOptions {
        workers_per_peer: if swarm.is_empty() {
            FetchOptions::default().workers_per_peer
        } else {
            BITSWAP_WORKERS
        },
        ..Default::default()
    };
    transport::fetch_into_home(home, root, &peers, tag, opts)
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
