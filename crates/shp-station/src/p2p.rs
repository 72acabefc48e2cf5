//! The station as a libp2p peer: a host speaking bitswap, with private networks and LAN discovery.
//!
//! - [`host`]    — the swarm: TCP (+ pnet) + noise + yamux, QUIC, identify, ping, mDNS, raw streams.
//! - [`dht`]     — Kademlia: announcing what the home holds, finding providers for a fetch.
//! - [`bitswap`] — `/ipfs/bitswap/1.2.0`: a server over the home's store, a client that is a
//!   [`crate::transport::Transport`] per peer.
//! - [`inbound`] — accepts every inbound bitswap stream (libp2p-stream drops bursts).
//! - [`message`] — the bitswap protobuf and its framing.
//! - [`netkey`]  — private-network keys (`swarm.key`).
//! - [`fetch`]   — a DAG from bitswap and HTTP peers at once; a short-lived node when no station runs.
//! - [`oci`]     — `/shp/oci-roots/1.0.0`: which peer holds the image of a manifest digest, and its root.
//!
//! [`Node`] is the handle the rest of the station holds: connect, disconnect, list peers and
//! addresses, and hand out one [`BitswapPeer`] per connected peer for the multi-peer fetcher.

pub mod bitswap;
pub mod dht;
pub mod fetch;
pub mod host;
pub mod inbound;
pub mod inflight;
pub mod message;
pub mod netkey;
pub mod oci;
pub mod tls;

pub use bitswap::BitswapPeer;
pub use netkey::NetKey;

use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Where the host listens by default.
pub const DEFAULT_LISTEN: &str = "/ip4/0.0.0.0/tcp/4001";

/// Added to the default listen addresses on the public network: QUIC on the same port.
pub const DEFAULT_LISTEN_QUIC: &str = "/ip4/0.0.0.0/udp/4001/quic-v1";

/// The public IPFS network's bootstrap peers (the list Kubo ships), written into `station.json` by
/// `shp init --public`. Nothing else ever makes a station dial the public internet.
pub const PUBLIC_BOOTSTRAP: &[&str] = &[
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmbLHAnMoJPWSCR5Zhtx6BHJX9KiKNN6tpvbUcqanj75Nb",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmcZf59bWwK5XFi76CZX8cbJ4BhTzzA3gU1ZjYZcYW3dwt",
    "/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV9BziYpJsPpimSy9bhMJGpgx8G8E36rCvKXBJ",
    "/ip4/104.131.131.82/udp/4001/quic-v1/p2p/QmaCpDMGvV9BziYpJsPpimSy9bhMJGpgx8G8E36rCvKXBJ",
];

/// How long a fetch looks for providers on the DHT before it starts with the peers it has.
pub const FIND_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("p2p: {0}")]
    Start(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("cannot connect to {addr}: {reason}")]
    Dial { addr: String, reason: String },
    #[error("{0:?} is not a multiaddr (e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…): {1}")]
    BadAddr(String, String),
    #[error("{0:?} is not a peer id")]
    BadPeer(String),
    #[error("the p2p host has stopped")]
    Stopped,
}

/// The host's settings (from `station.json` and flags).
#[derive(Debug, Clone, Default)]
pub struct P2pConfig {
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub mdns: bool,
    /// Kademlia: announce what the home holds, find providers for fetches.
    pub dht: bool,
    pub net_key: Option<NetKey>,
    /// On the public IPFS network (`shp init --public`): QUIC beside TCP by default, and kad
    /// serves only once the host is reachable.
    pub public: bool,
}

/// Parses a multiaddr, naming it in the error.
pub fn parse_addr(s: &str) -> Result<Multiaddr, Error> {
    s.parse()
        .map_err(|e: libp2p::multiaddr::Error| Error::BadAddr(s.to_string(), e.to_string()))
}

/// One connected peer, as `shp peers --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct PeerInfo {
    pub peer_id: String,
    /// The remote address of its first connection.
    pub addr: String,
    /// The last ping round trip, once one was measured.
    pub latency_ms: Option<f64>,
    /// Bitswap bytes received from and sent to it.
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub blocks_in: u64,
    pub blocks_out: u64,
    /// Its identify agent version (`shp/0.1.0`, `kubo/0.22.0/…`).
    pub agent: Option<String>,
    /// The handshake that secured its first connection: `tls` (TLS 1.3 over TCP, or QUIC) or `noise`.
    pub security: &'static str,
    pub connected_secs: u64,
}

/// A running libp2p host.
pub struct Node {
    peer_id: PeerId,
    commands: mpsc::Sender<host::Command>,
    engine: Arc<bitswap::Engine>,
    task: tokio::task::JoinHandle<()>,
    dht: bool,
    catalog: Arc<oci::Catalog>,
}

impl Node {
    /// Starts the host on the current Tokio runtime: binds every listen address (an error if one
    /// cannot be bound), dials the bootstrap peers, serves bitswap from `home`.
    pub async fn start(
        key: libp2p::identity::Keypair,
        cfg: &P2pConfig,
        home: Arc<shp_core::Home>,
    ) -> Result<Node, Error> {
        let peer_id = key.public().to_peer_id();
        let catalog = Arc::new(oci::Catalog::new(home.clone()));
        let (h, engine) = host::Host::build(key, cfg, home, catalog.clone()).await?;
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(h.run(rx));
        if let Some(k) = &cfg.net_key {
            tracing::info!(fingerprint = %k.fingerprint(), "private network: only peers with this swarm key can connect");
        }
        Ok(Node {
            peer_id,
            commands: tx,
            engine,
            task,
            dht: cfg.dht,
            catalog,
        })
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> host::Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Connects to `addr` and returns the peer's id once the connection is up (noise done).
    pub async fn connect(&self, addr: Multiaddr) -> Result<PeerId, Error> {
        let s = addr.to_string();
        match tokio::time::timeout(
            std::time::Duration::from_secs(30),
            self.ask(|r| host::Command::Connect(addr, r)),
        )
        .await
        {
            Ok(r) => r?.map_err(|e| match e {
                Error::Dial { reason, .. } => Error::Dial { addr: s, reason },
                e => e,
            }),
            Err(_) => Err(Error::Dial {
                addr: s,
                reason: "no connection within 30 s".into(),
            }),
        }
    }

    /// Closes every connection to `peer`; false when it was not connected.
    pub async fn disconnect(&self, peer: PeerId) -> Result<bool, Error> {
        self.ask(|r| host::Command::Disconnect(peer, r)).await
    }

    pub async fn peers(&self) -> Result<Vec<PeerInfo>, Error> {
        self.ask(host::Command::Peers).await
    }

    /// The listen addresses, each ending in `/p2p/<our id>`.
    pub async fn addrs(&self) -> Result<Vec<Multiaddr>, Error> {
        self.ask(host::Command::Addrs).await
    }

    /// Looks for providers of `cid` on the DHT for at most `wait`, dials each one found, and
    /// returns them once connected (or once `wait` is over; a provider that is slow to connect
    /// still joins later fetches).
    pub async fn find_providers(&self, cid: shp_core::cid::Cid, wait: Duration) -> Result<Vec<PeerId>, Error> {
        let deadline = Instant::now() + wait;
        let found = match tokio::time::timeout(wait, self.ask(|r| host::Command::FindProviders(cid, r))).await {
            Ok(r) => r?,
            Err(_) => return Ok(Vec::new()),
        };
        loop {
            let up = self.ask(host::Command::Connected).await?;
            if found.iter().all(|p| up.contains(p)) || Instant::now() >= deadline {
                return Ok(found.into_iter().filter(|p| up.contains(p)).collect());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The peers that hold the image `want` names, with what each answered ([`oci`]): the
    /// connected peers are asked; for a digest that none of them holds, when the DHT is on, the
    /// providers of the digest are found, dialled and asked too (tags are not announced). At most
    /// `wait` for each step.
    pub async fn image_holders(&self, want: &oci::Want, wait: Duration) -> Result<Vec<(PeerId, oci::Held)>, Error> {
        let control = self.engine.control();
        let connected = self.ask(host::Command::Connected).await?;
        let found = oci::holders(&control, &connected, want, wait).await;
        let oci::Want::Digest(digest) = want else {
            return Ok(found);
        };
        if !found.is_empty() || !self.dht {
            return Ok(found);
        }
        let providers: Vec<PeerId> = self
            .find_providers(oci::digest_key(*digest), wait)
            .await?
            .into_iter()
            .filter(|p| !connected.contains(p))
            .collect();
        Ok(oci::holders(&control, &providers, want, wait).await)
    }

    /// Where the answers to peers' tag questions come from, beyond the refs' names (the mirror's
    /// record of its upstream's tags); set once.
    pub fn set_tag_source(&self, source: oci::TagSource) {
        self.catalog.set_tags(source);
    }

    /// The blocks of this node's running fetches (served to peers before the fetches land).
    pub fn inflight(&self) -> Arc<inflight::Inflight> {
        self.engine.inflight.clone()
    }

    /// One bitswap transport per connected peer.
    pub async fn bitswap_peers(&self) -> Result<Vec<BitswapPeer>, Error> {
        let ids = self.ask(host::Command::Connected).await?;
        Ok(ids
            .into_iter()
            .map(|p| BitswapPeer::new(self.engine.clone(), p))
            .collect())
    }

    /// Disconnects everyone and stops the host.
    pub async fn stop(self) {
        let _ = self.commands.send(host::Command::Stop).await;
        let _ = self.task.await;
    }
}

/// The libp2p key pair of a station identity (`HOME/station.key`).
pub fn keypair(id: &crate::server::identity::Identity) -> Result<libp2p::identity::Keypair, Error> {
    libp2p::identity::Keypair::from_protobuf_encoding(&id.private_protobuf())
        .map_err(|e| Error::Start(format!("station key: {e}")))
}
