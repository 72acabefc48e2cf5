//! The libp2p host: transport, behaviours, and the task that owns the swarm.
//!
//! Transport: TCP (nodelay) → pnet (only with a network key) → multistream → TLS 1.3 or noise
//! ([`super::tls`]: TLS first, with AES-GCM where the CPU has AES) → yamux; beside
//! it QUIC (v1) when there is no network key (pnet is TCP only, as in Kubo); DNS names
//! (`/dns4`, `/dnsaddr`, as the public bootstrap peers use) resolved by the system resolver.
//! Behaviours: identify (`/ipfs/id/1.0.0`, protocol version `ipfs/0.1.0` as Kubo says), ping
//! (round trips feed the bitswap client's timeouts and `shp peers`), mDNS (optional), Kademlia
//! ([`super::dht`]: providing and finding), and libp2p-stream, on which bitswap runs. The swarm lives in one task; everything else talks to it
//! through [`Command`]s.

use super::bitswap::{Engine, HostRequest};
use super::dht::{self, Announce};
use super::{Error, P2pConfig, PeerInfo};
use futures::StreamExt;
use libp2p::core::transport::upgrade::Version;
use libp2p::core::{muxing::StreamMuxerBox, transport::Boxed, Transport as _};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{behaviour::toggle::Toggle, ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{identify, identity::Keypair, kad, mdns, ping, tcp, yamux, Multiaddr, PeerId, Swarm};
use shp_core::cid::Cid;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
    kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    stream: libp2p_stream::Behaviour,
    bitswap: super::inbound::Inbound,
}

pub(crate) enum Command {
    Connect(Multiaddr, oneshot::Sender<Result<PeerId, Error>>),
    Disconnect(PeerId, oneshot::Sender<bool>),
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Addrs(oneshot::Sender<Vec<Multiaddr>>),
    Connected(oneshot::Sender<Vec<PeerId>>),
    /// Asks the DHT for providers of a CID; each one found is dialled, and the reply lists them
    /// once the query is over.
    FindProviders(Cid, oneshot::Sender<Vec<PeerId>>),
    Stop,
}

fn transport(
    key: &Keypair,
    net_key: Option<[u8; 32]>,
    seen: &super::tls::Seen,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, Error> {
    match libp2p::dns::tokio::Transport::system(stack(key, net_key, seen)?) {
        Ok(dns) => Ok(dns.boxed()),
        // No readable resolver configuration (a minimal container): everything but DNS names.
        Err(e) => {
            tracing::warn!("no DNS resolver configuration ({e}): /dns and /dnsaddr addresses cannot be dialled");
            stack(key, net_key, seen)
        }
    }
}

/// Streams a yamux connection may hold at once. Chosen so that no stream's receive window can grow
/// past 1 MiB: rust-yamux refuses data frames over 1 MiB, while js-libp2p's yamux (Helia) sends
/// frames as large as the credit it has been given, so a window auto-tuned beyond 1 MiB made every
/// fast transfer from a Helia peer end with "frame body is too large". rust-yamux lets the streams
/// of a connection grow their windows, together, by the connection limit (1 GiB) minus 256 KiB per
/// allowed stream: with 4093 streams that is 768 KiB, so one stream reaches 1 MiB at most and the
/// others keep the 256 KiB the spec gives them. go-yamux (Kubo) caps its frames at 64 KiB itself.
pub const YAMUX_MAX_STREAMS: usize = 4093;

fn yamux_config() -> yamux::Config {
    let mut c = yamux::Config::default();
    c.set_max_num_streams(YAMUX_MAX_STREAMS);
    c
}

fn stack(
    key: &Keypair,
    net_key: Option<[u8; 32]>,
    seen: &super::tls::Seen,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, Error> {
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    let secure = super::tls::Secure::new(key, seen.clone())?;
    let timeout = Duration::from_secs(20);
    Ok(match net_key {
        // pnet wraps the raw socket: a peer without the key fails before multistream even starts.
        Some(k) => {
            let psk = libp2p::pnet::PreSharedKey::new(k);
            tcp.and_then(move |socket, _| libp2p::pnet::PnetConfig::new(psk).handshake(socket))
                .upgrade(Version::V1Lazy)
                .authenticate(secure)
                .multiplex(yamux_config())
                .timeout(timeout)
                .boxed()
        }
        None => {
            let quic = libp2p::quic::tokio::Transport::new(libp2p::quic::Config::new(key))
                .map(|(peer, conn), _| (peer, StreamMuxerBox::new(conn)));
            tcp.upgrade(Version::V1Lazy)
                .authenticate(secure)
                .multiplex(yamux_config())
                .timeout(timeout)
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
                .or_transport(quic)
                .map(|either, _| match either {
                    futures::future::Either::Left(x) | futures::future::Either::Right(x) => x,
                })
                .boxed()
        }
    })
}

/// Inbound streams: oci-roots queries are answered here, bitswap streams go on to the engine.
fn route_inbound(
    engine: Arc<Engine>,
    catalog: Arc<super::oci::Catalog>,
    mut streams: mpsc::UnboundedReceiver<super::inbound::Accepted>,
) -> mpsc::UnboundedReceiver<super::inbound::Accepted> {
    let (tx, rx) = mpsc::unbounded_channel();
    let engine = Arc::downgrade(&engine);
    tokio::spawn(async move {
        while let Some((peer, stream, proto)) = streams.recv().await {
            if proto == super::oci::PROTOCOL {
                let Some(e) = engine.upgrade() else { return };
                tokio::spawn(super::oci::serve(e, catalog.clone(), peer, stream));
            } else if tx.send((peer, stream, proto)).is_err() {
                return;
            }
        }
    });
    rx
}

/// Whether `addr` is a QUIC address (`/udp/PORT/quic-v1`).
pub fn is_quic(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::QuicV1 | Protocol::Quic))
}

struct Peer {
    addr: Multiaddr,
    /// The handshake of its first connection.
    security: super::tls::Security,
    connections: usize,
    agent: Option<String>,
    since: Instant,
}

/// The swarm's task state.
/// How often LAN neighbours that are not connected are dialled again.
const LAN_REDIAL: Duration = Duration::from_secs(5);
/// Bootstrap peers are redialled every this many LAN ticks (30 s).
const BOOTSTRAP_EVERY: u32 = 6;

pub(crate) struct Host {
    swarm: Swarm<Behaviour>,
    engine: Arc<Engine>,
    peers: HashMap<PeerId, Peer>,
    dials: HashMap<ConnectionId, oneshot::Sender<Result<PeerId, Error>>>,
    listen: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
    /// Peers mDNS reports on the LAN (until their record expires), redialled while they are not
    /// connected.
    lan: HashMap<PeerId, Multiaddr>,
    requests: mpsc::UnboundedReceiver<HostRequest>,
    /// What the announcer asks us to provide or stop providing.
    announce: mpsc::UnboundedReceiver<Announce>,
    /// Provider searches under way: who was found, and who waits for the answer.
    finds: HashMap<kad::QueryId, (Vec<PeerId>, oneshot::Sender<Vec<PeerId>>)>,
    kad_protocol: libp2p::StreamProtocol,
    public: bool,
    /// Which handshake each new TCP connection took.
    seen: super::tls::Seen,
}

impl Host {
    /// Builds the swarm and binds every listen address; returns the host (to be run) and the
    /// engine it feeds.
    pub(crate) async fn build(
        key: Keypair,
        cfg: &P2pConfig,
        home: Arc<shp_core::Home>,
        catalog: Arc<super::oci::Catalog>,
    ) -> Result<(Host, Arc<Engine>), Error> {
        let net_key = cfg.net_key.as_ref().map(|k| k.0);
        if net_key.is_some() {
            if let Some(a) = cfg.listen.iter().find(|a| is_quic(a)) {
                return Err(Error::Listen {
                    addr: a.to_string(),
                    reason: "QUIC is off in a private network (the swarm key protects TCP connections only)".into(),
                });
            }
        }
        let mdns_on = cfg.mdns;
        let dht_on = cfg.dht;
        let local = key.public().to_peer_id();
        // A station answers DHT queries on a private or local network; on the public one kad
        // serves once an external address is confirmed; a node without listeners only asks.
        let kad_protocol = dht::protocol(cfg.public);
        let kad_server = match (cfg.listen.is_empty(), cfg.public) {
            (true, _) => Some(false),
            (false, true) => None,
            (false, false) => Some(true),
        };
        let seen = super::tls::Seen::default();
        let t = transport(&key, net_key, &seen)?;
        let (inbound, streams) =
            super::inbound::Inbound::new(&[super::bitswap::SEALED, super::bitswap::PROTOCOL, super::oci::PROTOCOL]);
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_other_transport(|_| t)
            .map_err(|e| Error::Start(e.to_string()))?
            .with_behaviour(|k| {
                let mdns = if mdns_on {
                    Some(mdns::tokio::Behaviour::new(mdns::Config::default(), local)?)
                } else {
                    None
                };
                Ok(Behaviour {
                    identify: identify::Behaviour::new(
                        identify::Config::new("ipfs/0.1.0".into(), k.public())
                            .with_agent_version(format!("shp/{}", env!("CARGO_PKG_VERSION"))),
                    ),
                    ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(10))),
                    mdns: Toggle::from(mdns),
                    kad: Toggle::from(dht_on.then(|| dht::behaviour(local, kad_protocol.clone(), kad_server))),
                    stream: libp2p_stream::Behaviour::new(),
                    bitswap: inbound,
                })
            })
            .map_err(|e| Error::Start(format!("behaviours: {e}")))?
            // Stations keep their peers: connections close when a side disconnects or goes away.
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
            .build();
        let (tx, requests) = mpsc::unbounded_channel();
        let (announce_tx, announce) = mpsc::unbounded_channel();
        if !cfg.listen.is_empty() && cfg.dht {
            dht::spawn_announcer(home.clone(), announce_tx);
        }
        let engine = Engine::new(home, swarm.behaviour().stream.new_control(), tx);
        engine.spawn_acceptor(route_inbound(engine.clone(), catalog, streams));
        for addr in &cfg.listen {
            swarm.listen_on(addr.clone()).map_err(|e| Error::Listen {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        }
        let mut host = Host {
            swarm,
            engine: engine.clone(),
            peers: HashMap::new(),
            dials: HashMap::new(),
            listen: Vec::new(),
            bootstrap: cfg.bootstrap.clone(),
            lan: HashMap::new(),
            requests,
            announce,
            finds: HashMap::new(),
            kad_protocol,
            public: cfg.public,
            seen,
        };
        // Wait until every listener reports an address (or fails): then `addrs` is complete and a
        // port that is taken is an error of `shp start`, not a log line.
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        let mut pending = cfg.listen.len();
        while pending > 0 {
            tokio::select! {
                ev = host.swarm.select_next_some() => match ev {
                    SwarmEvent::NewListenAddr { address, .. } => {
                        host.listening(address);
                        pending -= 1;
                    }
                    SwarmEvent::ListenerClosed { addresses, reason, .. } => {
                        return Err(Error::Listen {
                            addr: addresses.first().map(|a| a.to_string()).unwrap_or_default(),
                            reason: format!("{reason:?}"),
                        });
                    }
                    SwarmEvent::ListenerError { error, .. } => {
                        return Err(Error::Listen { addr: cfg.listen[0].to_string(), reason: error.to_string() });
                    }
                    other => host.event(other),
                },
                _ = &mut deadline => return Err(Error::Start("listeners did not come up within 10 s".into())),
            }
        }
        // 0.0.0.0 expands into one address per interface; keep collecting them as they come.
        let boot = host.bootstrap.clone();
        for addr in boot {
            if let (Some(p), Some(kad)) = (peer_of(&addr), host.swarm.behaviour_mut().kad.as_mut()) {
                kad.add_address(&p, addr.clone());
            }
            host.dial(addr, false, None);
        }
        Ok((host, engine))
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut redial = tokio::time::interval(LAN_REDIAL);
        redial.tick().await;
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.event(ev),
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Stop) => break,
                    Some(c) => self.command(c),
                },
                Some(a) = self.announce.recv() => self.on_announce(a),
                Some(req) = self.requests.recv() => match req {
                    HostRequest::Disconnect(peer, why) => {
                        tracing::warn!(%peer, "disconnecting a misbehaving peer: {why}");
                        let _ = self.swarm.disconnect_peer_id(peer);
                    }
                },
                _ = redial.tick() => {
                    ticks = ticks.wrapping_add(1);
                    // LAN neighbours are kept while mDNS reports them: a dial that failed, or a
                    // neighbour that left it to us (see `event`), is tried again.
                    let lan: Vec<Multiaddr> = self
                        .lan
                        .iter()
                        .filter(|(p, _)| !self.swarm.is_connected(p))
                        .map(|(p, a)| with_peer(a.clone(), *p))
                        .collect();
                    for addr in lan {
                        self.dial(addr, true, None);
                    }
                    // Bootstrap peers are kept: redial the ones that went away (every 30 s).
                    if ticks.is_multiple_of(BOOTSTRAP_EVERY) {
                        for addr in self.bootstrap.clone() {
                            if let Some(p) = peer_of(&addr) {
                                if !self.swarm.is_connected(&p) {
                                    self.dial(addr, false, None);
                                }
                            }
                        }
                    }
                }
            }
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for p in peers {
            let _ = self.swarm.disconnect_peer_id(p);
        }
    }

    /// Dials `addr`. `new_port`: from a fresh local port rather than the listening one, so that two
    /// stations dialling each other at once (both told by the same mDNS answer) make two TCP
    /// connections instead of one simultaneous open that neither handshake survives.
    fn dial(&mut self, addr: Multiaddr, new_port: bool, reply: Option<oneshot::Sender<Result<PeerId, Error>>>) {
        let opts = match (peer_of(&addr), new_port) {
            (Some(p), false) => DialOpts::peer_id(p).addresses(vec![addr.clone()]).build(),
            (Some(p), true) => DialOpts::peer_id(p)
                .addresses(vec![addr.clone()])
                .allocate_new_port()
                .build(),
            (None, false) => DialOpts::unknown_peer_id().address(addr.clone()).build(),
            (None, true) => DialOpts::unknown_peer_id()
                .address(addr.clone())
                .allocate_new_port()
                .build(),
        };
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                if let Some(r) = reply {
                    self.dials.insert(id, r);
                }
            }
            // Already connected or dialling (a LAN redial while the first dial is under way).
            Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) if reply.is_none() => {}
            Err(e) => {
                let err = Error::Dial {
                    addr: addr.to_string(),
                    reason: dial_reason(&e),
                };
                match reply {
                    Some(r) => {
                        let _ = r.send(Err(err));
                    }
                    None => tracing::warn!("{err}"),
                }
            }
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Connect(addr, reply) => {
                if let Some(p) = peer_of(&addr) {
                    if self.swarm.is_connected(&p) {
                        let _ = reply.send(Ok(p));
                        return;
                    }
                }
                self.dial(addr, false, Some(reply));
            }
            Command::Disconnect(peer, reply) => {
                let _ = reply.send(self.swarm.disconnect_peer_id(peer).is_ok());
            }
            Command::Peers(reply) => {
                let mut out: Vec<PeerInfo> = self
                    .peers
                    .iter()
                    .map(|(id, p)| {
                        let c = self.engine.counters(id);
                        PeerInfo {
                            peer_id: id.to_string(),
                            addr: p.addr.to_string(),
                            latency_ms: self.engine.client.rtt(id).map(|d| d.as_secs_f64() * 1000.0),
                            bytes_in: c.bytes_in.load(std::sync::atomic::Ordering::Relaxed),
                            bytes_out: c.bytes_out.load(std::sync::atomic::Ordering::Relaxed),
                            blocks_in: c.blocks_in.load(std::sync::atomic::Ordering::Relaxed),
                            blocks_out: c.blocks_out.load(std::sync::atomic::Ordering::Relaxed),
                            agent: p.agent.clone(),
                            security: p.security.as_str(),
                            connected_secs: p.since.elapsed().as_secs(),
                        }
                    })
                    .collect();
                out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
                let _ = reply.send(out);
            }
            Command::Addrs(reply) => {
                let me = *self.swarm.local_peer_id();
                let _ = reply.send(self.listen.iter().map(|a| a.clone().with(Protocol::P2p(me))).collect());
            }
            Command::Connected(reply) => {
                let _ = reply.send(self.peers.keys().copied().collect());
            }
            Command::FindProviders(cid, reply) => match self.swarm.behaviour_mut().kad.as_mut() {
                Some(kad) => {
                    let id = kad.get_providers(dht::key(&cid));
                    self.finds.insert(id, (Vec::new(), reply));
                }
                // No DHT: no providers beyond the peers connected.
                None => {
                    let _ = reply.send(Vec::new());
                }
            },
            Command::Stop => {}
        }
    }

    fn event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                tracing::info!(peer = %peer_id, addr = %endpoint.get_remote_address(), "peer connected");
                // QUIC connections leave no entry: their handshake is TLS 1.3.
                let security = self.seen.take(&peer_id).unwrap_or(super::tls::Security::Tls);
                let p = self.peers.entry(peer_id).or_insert_with(|| Peer {
                    addr: endpoint.get_remote_address().clone(),
                    security,
                    connections: 0,
                    agent: None,
                    since: Instant::now(),
                });
                p.connections += 1;
                if let Some(r) = self.dials.remove(&connection_id) {
                    let _ = r.send(Ok(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                if num_established == 0 {
                    tracing::info!(peer = %peer_id, cause = ?cause.map(|c| c.to_string()), "peer disconnected");
                    self.peers.remove(&peer_id);
                    self.engine.peer_gone(&peer_id);
                } else if let Some(p) = self.peers.get_mut(&peer_id) {
                    p.connections = num_established as usize;
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id, error, ..
            } => {
                if let Some(r) = self.dials.remove(&connection_id) {
                    let _ = r.send(Err(Error::Dial {
                        addr: String::new(),
                        reason: dial_reason(&error),
                    }));
                } else {
                    tracing::debug!(error = %error, "outgoing connection failed");
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr, error, ..
            } => {
                // What a peer without the network key (or speaking something else) looks like.
                tracing::info!(from = %send_back_addr, error = %error, "incoming connection refused");
            }
            SwarmEvent::NewListenAddr { address, .. } if !self.listen.contains(&address) => self.listening(address),
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.swarm.remove_external_address(&address);
                self.listen.retain(|a| a != &address);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer, result: Ok(rtt), ..
            })) => self.engine.client.set_rtt(peer, rtt),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                // A peer that speaks the DHT joins the routing table with the addresses it listens on.
                if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                    if info.protocols.contains(&self.kad_protocol) {
                        for a in info.listen_addrs {
                            kad.add_address(&peer_id, a);
                        }
                    }
                }
                if let Some(p) = self.peers.get_mut(&peer_id) {
                    p.agent = Some(info.agent_version);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(ev)) => self.kad_event(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                let me = *self.swarm.local_peer_id();
                for (peer, addr) in found {
                    if peer == me || self.lan.insert(peer, addr.clone()).is_some() {
                        continue;
                    }
                    tracing::info!(%peer, %addr, "found on the LAN (mDNS)");
                    // One mDNS answer reaches both sides: the smaller peer id dials at once, the
                    // other only at the next redial tick if no connection came by then.
                    if !self.swarm.is_connected(&peer) && me < peer {
                        self.dial(with_peer(addr, peer), true, None);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Expired(gone))) => {
                for (peer, addr) in gone {
                    if self.lan.get(&peer) == Some(&addr) {
                        self.lan.remove(&peer);
                    }
                }
            }
            _ => {}
        }
    }
}

impl Host {
    /// A listen address is up. It is also what the host advertises (in provider records, which
    /// Kubo drops without an address): every one off the public network, only global ones on it.
    fn listening(&mut self, address: Multiaddr) {
        if !self.public || is_global(&address) {
            self.swarm.add_external_address(address.clone());
        }
        self.listen.push(address);
    }

    fn on_announce(&mut self, a: Announce) {
        let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() else {
            return;
        };
        match a {
            Announce::Provide(cids) => {
                tracing::info!(count = cids.len(), "providing on the DHT");
                for c in cids {
                    if let Err(e) = kad.start_providing(dht::key(&c)) {
                        tracing::warn!(cid = %c, "cannot provide: {e}");
                    }
                }
            }
            Announce::Unprovide(cids) => {
                for c in cids {
                    kad.stop_providing(&dht::key(&c));
                }
            }
        }
    }

    fn kad_event(&mut self, ev: kad::Event) {
        tracing::debug!(event = ?ev, "kad");
        let kad::Event::OutboundQueryProgressed { id, result, step, .. } = ev else {
            return;
        };
        match result {
            kad::QueryResult::GetProviders(res) => {
                let me = *self.swarm.local_peer_id();
                let mut dial = Vec::new();
                if let Some((found, _)) = self.finds.get_mut(&id) {
                    match res {
                        Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => {
                            for p in providers {
                                if p != me && !found.contains(&p) {
                                    found.push(p);
                                    dial.push(p);
                                }
                            }
                        }
                        Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => {}
                        Err(e) => tracing::debug!("provider search: {e}"),
                    }
                }
                for p in dial {
                    tracing::info!(peer = %p, "found a provider on the DHT");
                    // kad gives the addresses its query learnt.
                    let opts = DialOpts::peer_id(p)
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    if let Err(e) = self.swarm.dial(opts) {
                        if !matches!(e, libp2p::swarm::DialError::DialPeerConditionFalse(_)) {
                            tracing::info!(peer = %p, "cannot dial a provider: {e}");
                        }
                    }
                }
                if step.last {
                    if let Some((found, reply)) = self.finds.remove(&id) {
                        let _ = reply.send(found);
                    }
                }
            }
            kad::QueryResult::StartProviding(Err(e)) => tracing::debug!("provider record not stored: {e}"),
            kad::QueryResult::Bootstrap(Err(e)) => tracing::debug!("DHT bootstrap: {e}"),
            _ => {}
        }
    }
}

/// A dial error in one line: the innermost cause of each address's failure (libp2p nests one per
/// transport layer, DNS, TCP or QUIC, upgrade), e.g. "Connection refused (os error 111)".
fn dial_reason(e: &libp2p::swarm::DialError) -> String {
    use libp2p::swarm::DialError;
    fn innermost(e: &dyn std::error::Error) -> String {
        let mut handshake = false;
        let mut cur = e;
        loop {
            handshake |= cur.to_string().to_ascii_lowercase().contains("handshake");
            match cur.source() {
                Some(s) => cur = s,
                None => break,
            }
        }
        let msg = cur.to_string();
        let msg = msg.lines().next().unwrap_or("").trim().to_string();
        if handshake && !msg.to_ascii_lowercase().contains("handshake") {
            format!("handshake failed: {msg}")
        } else {
            msg
        }
    }
    match e {
        DialError::Transport(errs) => {
            let mut out: Vec<String> = errs.iter().map(|(_, te)| innermost(te)).collect();
            out.dedup();
            out.join("; ")
        }
        other => innermost(other).replace('\n', " "),
    }
}

/// Whether `addr` is reachable from the internet (not loopback, private, link-local, CGNAT,
/// unspecified or unique-local).
fn is_global(addr: &Multiaddr) -> bool {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => {
            let o = ip.octets();
            !(ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        Some(Protocol::Ip6(ip)) => {
            let s = ip.segments();
            !(ip.is_loopback() || ip.is_unspecified() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80)
        }
        // DNS names are what their owner published.
        Some(Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_)) => true,
        _ => false,
    }
}

/// `addr` ending in `/p2p/<peer>` (mDNS answers carry it already).
fn with_peer(addr: Multiaddr, peer: PeerId) -> Multiaddr {
    if peer_of(&addr).is_some() {
        addr
    } else {
        addr.with(Protocol::P2p(peer))
    }
}

/// The peer id at the end of a multiaddr (`…/p2p/<id>`), if any.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().last().and_then(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}
