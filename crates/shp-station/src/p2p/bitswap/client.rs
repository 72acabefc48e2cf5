//! The bitswap client: wants blocks from peers and routes what they send to whoever waits.
//!
//! [`BitswapPeer`] is one connected peer seen as a [`Transport`]: `get_blocks` sends one
//! want-block (with send-dont-have) per CID in a single message and waits for each block or
//! DONT_HAVE. The multi-peer fetcher above it keeps several such batches in flight per peer and
//! queues a node's links as soon as the node arrives, so a pull keeps a deep window of wants open
//! instead of walking the DAG one round trip at a time.
//!
//! Every block is hashed on arrival (its CID is computed from its prefix and bytes), so a block is
//! only ever handed to a waiter for the CID it really has; bytes that hash to nothing anybody asked
//! for are *unsolicited* and every [`UNSOLICITED_PER_STRIKE`] of them is a strike. A peer that is
//! silent for the timeout while we wait (no block, no presence, nothing) fails the batch; the
//! fetcher gives its wants to other peers and drops a peer after repeated failures. The timeout is
//! derived from the peer's measured ping round trip: `max(10 s, 20 × rtt)`. A batch whose peer has
//! sent nothing at all for [`RESEND_AFTER`] asks again for what it still lacks, in case a message was lost (a
//! stream reset, a peer that forgot our wants).

use super::{Engine, Outgoing};
use crate::p2p::message::{self, Entry, Message, Presence, WantType};
use crate::transport::{DagScope, Error, Result, Transport, TransportStats};
use libp2p::PeerId;
use shp_core::cid::Cid;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Unsolicited blocks per strike (a few arrive legitimately after a cancel).
pub const UNSOLICITED_PER_STRIKE: u64 = 64;
/// How long a peer may be quiet before a batch asks it again (at least; 4 × rtt when longer).
pub const RESEND_AFTER: Duration = Duration::from_millis(500);
/// How often one batch asks again.
pub const MAX_RESENDS: u32 = 40;
/// The silence timeout's floor.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) enum Answer {
    Block(Cid, Vec<u8>),
    /// A block as a zstd frame against a base (shp's delta field), decoded by the waiter.
    Delta(Cid, Cid, Vec<u8>),
    DontHave(Cid),
    Gone(String),
}

struct Waiter {
    session: u64,
    peer: PeerId,
}

#[derive(Default)]
struct Inner {
    waiters: HashMap<Cid, Vec<Waiter>>,
    sessions: HashMap<u64, (PeerId, mpsc::Sender<Answer>)>,
    last_heard: HashMap<PeerId, Instant>,
    rtt: HashMap<PeerId, Duration>,
    unsolicited: HashMap<PeerId, u64>,
    /// Open want-have questions ([`who_has`]): the answer goes to the sender.
    probes: HashMap<(PeerId, Cid), mpsc::Sender<(PeerId, bool)>>,
}

#[derive(Default)]
pub(crate) struct Client {
    inner: Mutex<Inner>,
    next: AtomicU64,
}

impl Client {
    fn register(&self, peer: PeerId, cids: &[Cid], tx: mpsc::Sender<Answer>) -> u64 {
        let session = self.next.fetch_add(1, Ordering::Relaxed);
        let mut g = self.inner.lock().unwrap();
        g.sessions.insert(session, (peer, tx));
        for c in cids {
            g.waiters.entry(*c).or_default().push(Waiter { session, peer });
        }
        g.last_heard.entry(peer).or_insert_with(Instant::now);
        session
    }

    fn unregister(&self, session: u64, cids: &HashSet<Cid>) {
        let mut g = self.inner.lock().unwrap();
        g.sessions.remove(&session);
        for c in cids {
            if let Some(ws) = g.waiters.get_mut(c) {
                ws.retain(|w| w.session != session);
                if ws.is_empty() {
                    g.waiters.remove(c);
                }
            }
        }
    }

    /// Bytes are arriving from `peer` (part of a message, maybe).
    pub(crate) fn heard(&self, peer: &PeerId) {
        self.inner.lock().unwrap().last_heard.insert(*peer, Instant::now());
    }

    pub(crate) fn set_rtt(&self, peer: PeerId, rtt: Duration) {
        self.inner.lock().unwrap().rtt.insert(peer, rtt);
    }

    pub(crate) fn rtt(&self, peer: &PeerId) -> Option<Duration> {
        self.inner.lock().unwrap().rtt.get(peer).copied()
    }

    fn timeout(&self, peer: &PeerId) -> Duration {
        self.rtt(peer).map_or(MIN_TIMEOUT, |r| (r * 20).max(MIN_TIMEOUT))
    }

    fn silent_for(&self, peer: &PeerId) -> Duration {
        self.inner
            .lock()
            .unwrap()
            .last_heard
            .get(peer)
            .map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// Routes the blocks and presences of a message from `peer`; the blocks' bytes are moved out
    /// of `msg` to the sessions that wait for them.
    pub(crate) fn received(&self, engine: &Engine, peer: &PeerId, msg: &mut Message) {
        let counters = engine.counters(peer);
        let mut strikes = Vec::new();
        // Hashed before the lock is taken: other peers' messages are routed meanwhile.
        let cids: Vec<std::result::Result<Cid, String>> = msg.blocks.iter().map(message::block_cid).collect();
        {
            let mut g = self.inner.lock().unwrap();
            g.last_heard.insert(*peer, Instant::now());
            for (b, cid) in msg.blocks.iter_mut().zip(cids) {
                let cid = match cid {
                    Ok(c) => c,
                    Err(why) => {
                        strikes.push(why);
                        continue;
                    }
                };
                counters.blocks_in.fetch_add(1, Ordering::Relaxed);
                // A block answers a want-have as well as a HAVE does (small blocks come inlined).
                let probed = match g.probes.remove(&(*peer, cid)) {
                    Some(tx) => {
                        let _ = tx.send((*peer, true));
                        true
                    }
                    None => false,
                };
                match g.waiters.remove(&cid) {
                    Some(ws) => {
                        let last = ws.len().saturating_sub(1);
                        for (i, w) in ws.into_iter().enumerate() {
                            if let Some((_, tx)) = g.sessions.get(&w.session) {
                                // The last waiter takes the bytes; others (rare) get a copy.
                                let data = if i == last {
                                    std::mem::take(&mut b.data)
                                } else {
                                    b.data.clone()
                                };
                                let _ = tx.send(Answer::Block(cid, data));
                            }
                        }
                    }
                    None if probed => {}
                    None => {
                        let n = g.unsolicited.entry(*peer).or_default();
                        *n += 1;
                        if n.is_multiple_of(UNSOLICITED_PER_STRIKE) {
                            strikes.push(format!(
                                "{n} blocks nobody asked for (or that do not hash to a wanted CID)"
                            ));
                        }
                    }
                }
            }
            for d in msg.deltas.iter_mut() {
                let (Ok(cid), Ok(base)) = (Cid::from_bytes(&d.cid), Cid::from_bytes(&d.base)) else {
                    strikes.push("a delta whose CID or base is not a CID shp stores".into());
                    continue;
                };
                counters.blocks_in.fetch_add(1, Ordering::Relaxed);
                match g.waiters.remove(&cid) {
                    Some(ws) => {
                        for w in ws {
                            if let Some((_, tx)) = g.sessions.get(&w.session) {
                                let _ = tx.send(Answer::Delta(cid, base, d.frame.clone()));
                            }
                        }
                    }
                    None => {
                        let n = g.unsolicited.entry(*peer).or_default();
                        *n += 1;
                        if n.is_multiple_of(UNSOLICITED_PER_STRIKE) {
                            strikes.push(format!("{n} blocks nobody asked for"));
                        }
                    }
                }
            }
            for (raw, p) in &msg.presences {
                let Ok(cid) = Cid::from_bytes(raw) else { continue };
                if let Some(tx) = g.probes.remove(&(*peer, cid)) {
                    let _ = tx.send((*peer, *p == Presence::Have));
                }
                if *p != Presence::DontHave {
                    continue;
                }
                if let Some(ws) = g.waiters.get_mut(&cid) {
                    let (mine, others): (Vec<_>, Vec<_>) = ws.drain(..).partition(|w| w.peer == *peer);
                    *ws = others;
                    if ws.is_empty() {
                        g.waiters.remove(&cid);
                    }
                    for w in mine {
                        if let Some((_, tx)) = g.sessions.get(&w.session) {
                            let _ = tx.send(Answer::DontHave(cid));
                        }
                    }
                }
            }
        }
        if !msg.legacy_blocks.is_empty() {
            strikes.push("bitswap 1.0.0 blocks on a 1.2.0 stream".into());
        }
        for s in strikes {
            engine.strike(peer, &s);
        }
    }

    /// Fails every batch waiting on `peer`.
    pub(crate) fn peer_gone(&self, peer: &PeerId, why: &str) {
        let g = self.inner.lock().unwrap();
        for (p, tx) in g.sessions.values() {
            if p == peer {
                let _ = tx.send(Answer::Gone(why.to_string()));
            }
        }
    }
}

/// The longest [`who_has`] waits for answers.
pub const PROBE_WAIT: Duration = Duration::from_secs(3);
/// Once one peer has said HAVE, how long the others still get (at least; or as long again as the
/// first answer took).
pub const PROBE_GRACE: Duration = Duration::from_millis(100);

/// Asks every peer whether it has `cid` (one want-have with send-dont-have each, as a boxo
/// session's first broadcast does) and waits for their answers: `Some(true)` for HAVE (or the
/// block itself), `Some(false)` for DONT_HAVE, `None` for a peer that said nothing in time. It
/// stops waiting when everyone has answered, [`PROBE_GRACE`] (or as long again as the first HAVE
/// took) after the first HAVE, or after `wait`. Peers that did not answer get a cancel.
pub fn who_has(peers: &[BitswapPeer], cid: &Cid, wait: Duration) -> Vec<Option<bool>> {
    let mut answers = vec![None; peers.len()];
    let Some(first) = peers.first() else {
        return answers;
    };
    let client = &first.engine.client;
    let (tx, rx) = mpsc::channel();
    {
        let mut g = client.inner.lock().unwrap();
        for p in peers {
            g.probes.insert((p.peer, *cid), tx.clone());
        }
    }
    drop(tx);
    let index: HashMap<PeerId, usize> = peers.iter().enumerate().map(|(i, p)| (p.peer, i)).collect();
    let started = Instant::now();
    let mut pending = peers.len();
    for (i, p) in peers.iter().enumerate() {
        if p.ask(std::iter::once(*cid), WantType::Have, false).is_err() {
            // Unreachable: no answer will come.
            client.inner.lock().unwrap().probes.remove(&(p.peer, *cid));
            answers[i] = Some(false);
            pending -= 1;
        }
    }
    let mut deadline = started + wait;
    while pending > 0 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok((peer, has)) => {
                let Some(&i) = index.get(&peer) else { continue };
                if answers[i].is_none() {
                    answers[i] = Some(has);
                    pending -= 1;
                }
                if has && answers.iter().filter(|a| **a == Some(true)).count() == 1 {
                    let took = started.elapsed();
                    deadline = deadline.min(Instant::now() + took.max(PROBE_GRACE));
                }
            }
            Err(_) => break,
        }
    }
    {
        let mut g = client.inner.lock().unwrap();
        for p in peers {
            g.probes.remove(&(p.peer, *cid));
        }
    }
    for (p, a) in peers.iter().zip(&answers) {
        if a.is_none() {
            let _ = p.ask(std::iter::once(*cid), WantType::Have, true);
        }
    }
    answers
}

/// One connected peer as a [`Transport`]: blocks by CID over bitswap.
pub struct BitswapPeer {
    engine: Arc<Engine>,
    peer: PeerId,
    requests: AtomicU64,
    deltas: AtomicU64,
    /// Overrides the latency-derived silence timeout (tests).
    pub timeout: Option<Duration>,
}

impl BitswapPeer {
    pub(crate) fn new(engine: Arc<Engine>, peer: PeerId) -> BitswapPeer {
        BitswapPeer {
            engine,
            peer,
            requests: AtomicU64::new(0),
            deltas: AtomicU64::new(0),
            timeout: None,
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer
    }

    /// The same peer, with its own request counter.
    pub fn again(&self) -> BitswapPeer {
        BitswapPeer::new(self.engine.clone(), self.peer)
    }

    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The peer's last measured ping round trip.
    pub fn rtt(&self) -> Option<Duration> {
        self.engine.client.rtt(&self.peer)
    }

    /// Want-blocks for `cids`, each naming its base when `bases` has one (or cancels).
    fn want(&self, cids: impl Iterator<Item = Cid>, bases: &HashMap<Cid, Cid>, cancel: bool) -> Result<()> {
        self.ask_based(cids.map(|c| (c, bases.get(&c).copied())), WantType::Block, cancel)
    }

    /// Sends one wantlist update: `want` entries for `cids` (with send-dont-have), or cancels.
    fn ask(&self, cids: impl Iterator<Item = Cid>, want: WantType, cancel: bool) -> Result<()> {
        self.ask_based(cids.map(|c| (c, None)), want, cancel)
    }

    fn ask_based(&self, cids: impl Iterator<Item = (Cid, Option<Cid>)>, want: WantType, cancel: bool) -> Result<()> {
        let msg = Message {
            wantlist: cids
                .map(|(c, base)| Entry {
                    cid: c.to_bytes().to_vec(),
                    priority: 1,
                    cancel,
                    want_type: want,
                    send_dont_have: !cancel,
                    base: base
                        .filter(|_| !cancel)
                        .map(|b| b.to_bytes().to_vec())
                        .unwrap_or_default(),
                })
                .collect(),
            ..Default::default()
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.engine
            .send_blocking(self.peer, Outgoing { msg, permit: None })
            .map_err(|reason| Error::Peer {
                peer: self.name(),
                reason,
            })
    }
}

impl Transport for BitswapPeer {
    fn name(&self) -> String {
        self.peer.to_string()
    }

    fn kind(&self) -> &'static str {
        "bitswap"
    }

    fn verifies_blocks(&self) -> bool {
        // `received` routes each block by the CID computed from its bytes.
        true
    }

    fn get_block(&self, cid: &Cid) -> Result<Vec<u8>> {
        let mut out = None;
        self.get_blocks(std::slice::from_ref(cid), &mut |_, b| {
            out = Some(b);
            Ok(())
        })?;
        out.ok_or_else(|| Error::NotFound {
            peer: self.name(),
            cid: cid.to_string(),
        })
    }

    fn get_blocks(&self, cids: &[Cid], found: &mut dyn FnMut(Cid, Vec<u8>) -> Result<()>) -> Result<()> {
        self.fetch_batch(cids, &HashMap::new(), &|_| None, found)
    }

    fn get_blocks_based(
        &self,
        wants: &[crate::transport::delta::Want],
        base: &dyn Fn(&Cid) -> Option<Vec<u8>>,
        found: &mut dyn FnMut(Cid, Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let cids = crate::transport::delta::cids(wants);
        let bases: HashMap<Cid, Cid> = wants.iter().filter_map(|w| w.base.map(|b| (w.cid, b))).collect();
        self.fetch_batch(&cids, &bases, base, found)
    }

    fn batch_hint(&self) -> usize {
        64
    }

    fn get_car(&self, root: &Cid, _scope: DagScope) -> Result<Box<dyn std::io::Read + Send>> {
        Err(Error::Peer {
            peer: self.name(),
            reason: format!("bitswap has no CAR requests (asked for {root})"),
        })
    }

    fn stats(&self) -> TransportStats {
        TransportStats {
            wire_bytes: self.engine.counters(&self.peer).bytes_in.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            deltas: self.deltas.load(Ordering::Relaxed),
        }
    }
}

impl BitswapPeer {
    /// One batch of want-blocks (naming `bases` where given), waiting for each block, delta or
    /// DONT_HAVE. A delta is decoded against `base_of`'s bytes and checked against its CID; one
    /// that does not decode to its block is wrong data ([`Error::Corrupt`]).
    fn fetch_batch(
        &self,
        cids: &[Cid],
        bases: &HashMap<Cid, Cid>,
        base_of: &dyn Fn(&Cid) -> Option<Vec<u8>>,
        found: &mut dyn FnMut(Cid, Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let client = &self.engine.client;
        let (tx, rx) = mpsc::channel();
        let mut remaining: HashSet<Cid> = cids.iter().copied().collect();
        let session = client.register(self.peer, cids, tx);
        let timeout = self.timeout.unwrap_or_else(|| client.timeout(&self.peer));
        let sent_at = Instant::now();
        let resend_after = client
            .rtt(&self.peer)
            .map_or(RESEND_AFTER, |r| (r * 4).max(RESEND_AFTER));
        let mut last_ask = Instant::now();
        let mut resends = 0;
        let res = (|| {
            self.want(cids.iter().copied(), bases, false)?;
            while !remaining.is_empty() {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(Answer::Block(cid, data)) => {
                        if remaining.remove(&cid) {
                            found(cid, data)?;
                        }
                    }
                    Ok(Answer::Delta(cid, base, frame)) => {
                        if !remaining.contains(&cid) {
                            continue;
                        }
                        let corrupt = |why: String| {
                            tracing::warn!(peer = %self.peer, %cid, %base, "bitswap: a wrong delta: {why}");
                            Error::Corrupt {
                                peer: self.name(),
                                cid: cid.to_string(),
                            }
                        };
                        // Another fetch of the same block may have named another base: any base
                        // held here will do, as the result is checked against the CID.
                        let Some(held) = base_of(&base) else {
                            if bases.get(&cid) == Some(&base) {
                                return Err(Error::Peer {
                                    peer: self.name(),
                                    reason: format!("block {cid}: the base {base} is no longer held here"),
                                });
                            }
                            continue;
                        };
                        let data = crate::transport::delta::decode(&cid, &held, &frame).map_err(corrupt)?;
                        remaining.remove(&cid);
                        self.deltas.fetch_add(1, Ordering::Relaxed);
                        found(cid, data)?;
                    }
                    Ok(Answer::DontHave(cid)) => {
                        remaining.remove(&cid);
                    }
                    Ok(Answer::Gone(reason)) => {
                        return Err(Error::Peer {
                            peer: self.name(),
                            reason,
                        })
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        // A message can be lost (a stream reset, a peer that dropped our wants):
                        // when the peer has gone quiet, ask again for what is still missing. A peer that is still sending (to this batch
                        // or another) is working through our wants: asking again would only make
                        // it send blocks twice.
                        let quiet = client.silent_for(&self.peer).min(last_ask.elapsed());
                        if quiet >= resend_after && resends < MAX_RESENDS {
                            resends += 1;
                            last_ask = Instant::now();
                            self.want(remaining.iter().copied(), bases, false)?;
                        }
                        if client.silent_for(&self.peer).min(sent_at.elapsed()) >= timeout {
                            return Err(Error::Peer {
                                peer: self.name(),
                                reason: format!(
                                    "no answer over bitswap for {} s ({} of {} blocks outstanding)",
                                    timeout.as_secs(),
                                    remaining.len(),
                                    cids.len()
                                ),
                            });
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => unreachable!("the session holds its sender"),
                }
            }
            Ok(())
        })();
        client.unregister(session, &remaining);
        if res.is_err() && !remaining.is_empty() {
            let _ = self.want(remaining.iter().copied(), bases, true);
        }
        res
    }
}
