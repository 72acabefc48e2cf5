//! Bitswap `/ipfs/bitswap/1.2.0`, client and server, on libp2p streams.
//!
//! As in go-bitswap, each side *sends* on a stream it opened and only *reads* the streams the other
//! side opened: a peer's messages arrive on inbound streams and are read frame by frame; everything
//! we say to a peer goes through one outbound stream per peer, fed by one task ([`Outbox`]) so the
//! server's answers and the client's wants share it in order.
//!
//! - [`server`]: answers wantlists from the home's store (HAVE / DONT_HAVE / blocks), one ledger and
//!   one task per peer, store reads bounded across all peers, bytes in flight bounded across all peers.
//! - [`client`]: wants blocks from one peer ([`BitswapPeer`], a [`crate::transport::Transport`]), so
//!   the multi-peer fetcher drives bitswap peers and HTTP peers alike.
//!
//! A peer that sends malformed messages, floods its wantlist or sends blocks nobody asked for gets
//! strikes; at [`MAX_STRIKES`] it is disconnected. Every problem is logged with the peer's id.

pub mod client;
pub mod server;

use super::message::{self, Message};
use libp2p::{PeerId, StreamProtocol};
use shp_core::Home;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

pub use client::BitswapPeer;

/// The protocol shp speaks (the one with HAVE / DONT_HAVE).
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.2.0");
/// A received message with at least this many block bytes is routed (its blocks hashed) on the
/// blocking pool, not on the task reading the stream.
const OFFLOAD_BYTES: usize = 64 * 1024;
/// Such messages waiting to be routed, per stream: what a peer can make this station hold in
/// received messages is bounded by it (and by [`message::MAX_MESSAGE`] each).
const OFFLOADED: usize = 4;

/// The same messages sealed ([`message::seal`]: zstd when it pays), between shp stations. A station
/// opens its stream to a peer with this protocol first and falls back to [`PROTOCOL`] when the
/// peer does not speak it (Kubo, Helia, older stations).
pub const SEALED: StreamProtocol = StreamProtocol::new("/shp/bitswap-zstd/1.2.0");
/// The zstd level large sealed messages are compressed at (fast: blocks are sent as fast as read);
/// messages under [`SEAL_PROBE`] (a few blocks: an update's changed chunks and their parents) at
/// [`SEAL_LEVEL_SMALL`], and under [`SEAL_TINY`] at [`SEAL_LEVEL_TINY`] (about 27 MB/s on a 12 KB
/// message: a few tenths of a millisecond each, where every byte saved is a tenth of the message).
pub const SEAL_LEVEL: i32 = 1;
pub const SEAL_LEVEL_SMALL: i32 = 3;
pub const SEAL_LEVEL_TINY: i32 = 9;
pub const SEAL_TINY: usize = 16 << 10;
/// After a message of at least [`SEAL_JUDGE`] bytes that did not compress, how many such messages
/// go as they are before trying again (random or already compressed data costs one try in this
/// many). Smaller messages are always tried (too little to judge by, and cheap).
pub const SEAL_SKIP: u32 = 15;
pub const SEAL_JUDGE: usize = 4 << 10;
/// Messages from this size on are compressed at [`SEAL_LEVEL`].
pub const SEAL_PROBE: usize = 64 << 10;
/// Strikes after which a misbehaving peer is disconnected.
pub const MAX_STRIKES: u32 = 8;

/// Byte and message counters for one peer (bitswap traffic only).
#[derive(Debug, Default)]
pub struct PeerCounters {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub blocks_in: AtomicU64,
    pub blocks_out: AtomicU64,
    pub strikes: AtomicU64,
}

/// What the engine asks the host to do.
#[derive(Debug)]
pub enum HostRequest {
    /// Close every connection to the peer (it misbehaved).
    Disconnect(PeerId, String),
}

/// The bitswap engine shared by the host, the server and the clients.
pub struct Engine {
    pub(crate) home: Arc<Home>,
    control: libp2p_stream::Control,
    outboxes: Mutex<HashMap<PeerId, mpsc::Sender<Outgoing>>>,
    counters: Mutex<HashMap<PeerId, Arc<PeerCounters>>>,
    pub(crate) server: server::Server,
    pub(crate) client: client::Client,
    /// Blocks of this process's running fetches, served before they land.
    pub(crate) inflight: Arc<super::inflight::Inflight>,
    host: mpsc::UnboundedSender<HostRequest>,
    pub(crate) runtime: tokio::runtime::Handle,
}

/// An inbound stream that tells the client whenever bytes arrive (at most every 50 ms), so a peer
/// busy sending a large message over a slow link is not taken for a silent one (which would make
/// the client ask again, and the peer send the same blocks twice).
struct Heard<'a, S> {
    inner: S,
    engine: &'a Engine,
    peer: PeerId,
    last: std::time::Instant,
}

impl<S: futures::AsyncRead + Unpin> futures::AsyncRead for Heard<'_, S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        let r = std::pin::Pin::new(&mut me.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            if *n > 0 && me.last.elapsed() >= std::time::Duration::from_millis(50) {
                me.last = std::time::Instant::now();
                me.engine.client.heard(&me.peer);
            }
        }
        r
    }
}

/// A message on its way out, with the budget permits it holds until it is written.
pub(crate) struct Outgoing {
    pub msg: Message,
    pub permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Engine {
    pub(crate) fn new(
        home: Arc<Home>,
        control: libp2p_stream::Control,
        host: mpsc::UnboundedSender<HostRequest>,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            home,
            control,
            outboxes: Mutex::new(HashMap::new()),
            counters: Mutex::new(HashMap::new()),
            server: server::Server::new(),
            client: client::Client::default(),
            inflight: Default::default(),
            host,
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Reads every inbound bitswap stream (from [`crate::p2p::inbound`]) for as long as the engine
    /// lives.
    pub(crate) fn spawn_acceptor(self: &Arc<Self>, mut incoming: mpsc::UnboundedReceiver<super::inbound::Accepted>) {
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some((peer, stream, proto)) = incoming.recv().await {
                let Some(e) = engine.upgrade() else { return };
                tokio::spawn(e.read_stream(peer, stream, proto == SEALED));
            }
        });
    }

    /// A handle for opening streams of other protocols to peers.
    pub(crate) fn control(&self) -> libp2p_stream::Control {
        self.control.clone()
    }

    pub fn counters(&self, peer: &PeerId) -> Arc<PeerCounters> {
        self.counters.lock().unwrap().entry(*peer).or_default().clone()
    }

    /// Reads one inbound stream until it ends or misbehaves.
    async fn read_stream(self: Arc<Self>, peer: PeerId, stream: libp2p::Stream, sealed: bool) {
        let counters = self.counters(&peer);
        let offloaded = Arc::new(tokio::sync::Semaphore::new(OFFLOADED));
        let mut stream = Heard {
            inner: stream,
            engine: &self,
            peer,
            last: std::time::Instant::now(),
        };
        loop {
            let frame = match message::read_frame(&mut stream).await {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    self.strike(&peer, &format!("bitswap stream: {e}"));
                    return;
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "bitswap stream closed");
                    return;
                }
            };
            counters.bytes_in.fetch_add(frame.len() as u64, Ordering::Relaxed);
            let frame = if sealed {
                match message::unseal_in(&frame) {
                    Ok(f) => f,
                    Err(e) => {
                        self.strike(&peer, &format!("sealed bitswap stream: {e}"));
                        continue;
                    }
                }
            } else {
                std::borrow::Cow::Borrowed(&frame[..])
            };
            let mut msg = match Message::decode(&frame) {
                Ok(m) => m,
                Err(e) => {
                    self.strike(&peer, &e.to_string());
                    continue;
                }
            };
            tracing::debug!(
                %peer,
                wants = msg.wantlist.len(),
                full = msg.full,
                blocks = msg.blocks.len(),
                presences = msg.presences.len(),
                "bitswap message in"
            );
            let wantlist = std::mem::take(&mut msg.wantlist);
            let full = msg.full;
            if msg.blocks.iter().map(|b| b.data.len()).sum::<usize>() >= OFFLOAD_BYTES {
                // Hashing a big message's blocks goes to the blocking pool, so this task reads
                // the next frame meanwhile; at most OFFLOADED messages per stream wait there.
                let Ok(turn) = offloaded.clone().acquire_owned().await else {
                    return;
                };
                let engine = self.clone();
                tokio::task::spawn_blocking(move || {
                    engine.client.received(&engine, &peer, &mut msg);
                    drop(turn);
                });
            } else {
                self.client.received(&self, &peer, &mut msg);
            }
            if !wantlist.is_empty() || full {
                self.server.wantlist(&self, &peer, wantlist, full);
            }
        }
    }

    /// Records a strike against `peer`, logging why; disconnects it at [`MAX_STRIKES`].
    pub(crate) fn strike(&self, peer: &PeerId, why: &str) {
        let n = self.counters(peer).strikes.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(%peer, strikes = n, "bitswap: {why}");
        if n == MAX_STRIKES as u64 {
            let _ = self.host.send(HostRequest::Disconnect(
                *peer,
                format!("{n} protocol violations, the last: {why}"),
            ));
        }
    }

    /// Queues a message for `peer` (waits while its outbox is full). Fails when the peer cannot be
    /// reached.
    pub(crate) async fn send(self: &Arc<Self>, peer: PeerId, out: Outgoing) -> Result<(), String> {
        let tx = self.outbox(peer);
        tx.send(out).await.map_err(|_| format!("{peer}: bitswap stream closed"))
    }

    /// The same from a blocking thread.
    pub(crate) fn send_blocking(self: &Arc<Self>, peer: PeerId, out: Outgoing) -> Result<(), String> {
        let tx = self.outbox(peer);
        tx.blocking_send(out)
            .map_err(|_| format!("{peer}: bitswap stream closed"))
    }

    fn outbox(self: &Arc<Self>, peer: PeerId) -> mpsc::Sender<Outgoing> {
        let mut boxes = self.outboxes.lock().unwrap();
        if let Some(tx) = boxes.get(&peer) {
            if !tx.is_closed() {
                return tx.clone();
            }
        }
        let (tx, rx) = mpsc::channel(8);
        boxes.insert(peer, tx.clone());
        let _guard = self.runtime.enter();
        tokio::spawn(Outbox::run(self.clone(), peer, rx));
        tx
    }

    /// The peer's connections are gone: forget its outbox and ledger, fail its client wants.
    pub(crate) fn peer_gone(&self, peer: &PeerId) {
        self.outboxes.lock().unwrap().remove(peer);
        self.server.forget(peer);
        self.client.peer_gone(peer, "the peer disconnected");
    }
}

/// The task that owns the outbound stream to one peer.
struct Outbox;

impl Outbox {
    /// A stream to `peer`: [`SEALED`] unless the peer is known not to speak it, then [`PROTOCOL`].
    async fn open(
        engine: &Engine,
        peer: PeerId,
        sealed: &mut Option<bool>,
    ) -> Result<libp2p::Stream, libp2p_stream::OpenStreamError> {
        if *sealed != Some(false) {
            match engine.control.clone().open_stream(peer, SEALED).await {
                Ok(s) => {
                    tracing::debug!(%peer, "bitswap stream out: sealed");
                    *sealed = Some(true);
                    return Ok(s);
                }
                Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_)) => {
                    tracing::debug!(%peer, "bitswap stream out: plain (the peer does not seal)");
                    *sealed = Some(false)
                }
                Err(e) => return Err(e),
            }
        }
        engine.control.clone().open_stream(peer, PROTOCOL).await
    }

    async fn run(engine: Arc<Engine>, peer: PeerId, mut rx: mpsc::Receiver<Outgoing>) {
        let counters = engine.counters(&peer);
        let mut stream: Option<libp2p::Stream> = None;
        // Whether the peer speaks SEALED (unknown until the first stream is opened), and how many
        // messages to send as they are before trying to compress again.
        let mut sealed: Option<bool> = None;
        let mut skip = 0u32;
        while let Some(out) = rx.recv().await {
            let plain = out.msg.encode();
            tracing::debug!(
                %peer,
                wants = out.msg.wantlist.len(),
                blocks = out.msg.blocks.len(),
                presences = out.msg.presences.len(),
                bytes = plain.len(),
                "bitswap message out"
            );
            let mut sent: Option<usize> = None;
            // One retry on a fresh stream: an idle stream may have been reset by the other side.
            for _ in 0..2 {
                if stream.is_none() {
                    match Outbox::open(&engine, peer, &mut sealed).await {
                        Ok(s) => stream = Some(s),
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "cannot open a bitswap stream");
                            break;
                        }
                    }
                }
                // A compressed frame when sealing pays; else the message as it is (after the
                // plain flag on a sealed stream), written in parts, never copied into a frame.
                let packed = if sealed == Some(true) {
                    // Small messages are always tried (cheap); a larger one that does not
                    // compress makes the next SEAL_SKIP larger ones go as they are.
                    let large = plain.len() >= SEAL_JUDGE;
                    let try_it = !(out.msg.blocks.is_empty() && out.msg.deltas.is_empty()) && (!large || skip == 0);
                    let level = match plain.len() {
                        n if n >= SEAL_PROBE => SEAL_LEVEL,
                        n if n >= SEAL_TINY => SEAL_LEVEL_SMALL,
                        _ => SEAL_LEVEL_TINY,
                    };
                    let packed = try_it.then(|| message::seal_packed(&plain, level)).flatten();
                    if large {
                        skip = match (try_it, packed.is_some()) {
                            (true, false) => SEAL_SKIP,
                            (true, true) => 0,
                            (false, _) => skip.saturating_sub(1),
                        };
                    }
                    packed
                } else {
                    None
                };
                let parts: &[&[u8]] = match (&packed, sealed == Some(true)) {
                    (Some(f), _) => &[f],
                    (None, true) => &[message::PLAIN, &plain],
                    (None, false) => &[&plain],
                };
                let written = parts.iter().map(|p| p.len()).sum::<usize>();
                match message::write_frame_parts(stream.as_mut().expect("stream"), parts).await {
                    Ok(()) => {
                        sent = Some(written);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "bitswap write failed");
                        stream = None;
                    }
                }
            }
            drop(out.permit);
            if let Some(written) = sent {
                counters.bytes_out.fetch_add(written as u64, Ordering::Relaxed);
                counters
                    .blocks_out
                    .fetch_add((out.msg.blocks.len() + out.msg.deltas.len()) as u64, Ordering::Relaxed);
            } else {
                engine.client.peer_gone(&peer, "cannot send to the peer over bitswap");
                engine.outboxes.lock().unwrap().remove(&peer);
                return;
            }
        }
    }
}
