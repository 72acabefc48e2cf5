//! The multi-peer fetcher: a DAG from its root, only the blocks the local store lacks.
//!
//! One shared queue of wanted CIDs; every peer gets `workers_per_peer` threads that each take up to
//! the peer's batch hint of CIDs at a time, so a faster peer simply takes more of the work. Every
//! block received is checked against its CID and put into one store batch; a dag-cbor block's links
//! are queued unless the store (or the batch) already has them — a node present locally means its
//! whole DAG is present (stores hold complete DAGs), so shared subtrees are never walked.
//! A peer that lacks a block leaves it to the others; a peer that fails is retried by the others;
//! a peer that sends wrong bytes is reported and not asked again. The batch is committed only when
//! the whole DAG is in: on any error nothing is stored.
//!
//! Peers can *join* a running fetch ([`FetchHooks::join`]): stations pulling the same image at
//! once serve each other the blocks they already have. A bitswap peer (joined or not) may hold
//! only part of the DAG, so its DONT_HAVE is not final: the want is asked of it again after
//! [`MISS_RETRY`], and a peer that has lacked nothing so far is asked first for what the others
//! lacked. A block every peer has lacked fails the fetch at once when no bitswap peer is left, and
//! otherwise after [`STALL`] without any new block. When a fetch has more than one
//! peer (or may have), wants are taken in an order of the fetch's own (see `Queue`), so stations
//! that pull the same DAG at once ask their common seeder for different blocks.
//!
//! Given a *base* ([`FetchOptions::base`]: the root of a previous version held locally, e.g. the
//! image an update replaces), each wanted block is paired with the block at the same place in the
//! base's DAG (the same link position under paired parents), and peers that can send deltas send
//! the changed blocks as differences from those ([`super::delta`]). The pairing is a hint: a block
//! is checked against its CID whatever it was decoded from.

use super::{Error, Result, Transport};
use serde::{Deserialize, Serialize};
use shp_core::cbor;
use shp_core::cid::{Cid, DAG_CBOR};
use shp_core::image::ImageRoot;
use shp_core::refs::{check_name, RefsFile};
use shp_core::store::{Batch, Blockstore};
use shp_core::Home;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long before a joined peer that lacked a block is asked for it again.
pub const MISS_RETRY: Duration = Duration::from_millis(500);
/// A request that takes longer halves what its peer is asked for at once (in a fetch peers may
/// join); one that takes under a quarter of it doubles it again, up to the peer's batch hint.
pub const SLOW_REQUEST: Duration = Duration::from_secs(1);
/// How long a seeder's worker waits for the other peers to say what they lack before it takes
/// wants nobody has been asked for.
pub const SEEDER_WAIT: Duration = Duration::from_millis(250);
/// Wants per request at first in a fetch from several peers (see [`SLOW_REQUEST`]).
pub const FIRST_DEPTH: usize = 2;
/// When a fetch first asks its hooks for more peers.
pub const FIRST_JOIN: Duration = Duration::from_millis(200);
/// How often a fetch asks its hooks for more peers.
pub const JOIN_EVERY: Duration = Duration::from_secs(1);
/// With joined peers about, how long a fetch waits for a block that every peer has lacked before
/// it gives up (each new block received starts the wait again).
pub const STALL: Duration = Duration::from_secs(20);

/// What a fetch tells its caller, and what it may take from it while it runs.
pub trait FetchHooks: Sync {
    /// A block has been received and checked against its CID (called before it is stored).
    fn block(&self, _cid: &Cid, _data: &[u8]) {}
    /// Peers to add to the running fetch; `using` names those already in it. Called about every
    /// [`JOIN_EVERY`] while blocks are still wanted.
    fn join(&self, _using: &[String]) -> Vec<Arc<dyn Transport>> {
        Vec::new()
    }
    /// Whether [`FetchHooks::join`] may ever return a peer.
    fn may_join(&self) -> bool {
        false
    }
}

/// A peer that joined a fetch: its index, itself, and its counters when it joined.
type Joined = (usize, Arc<dyn Transport>, super::TransportStats);

/// No hooks.
pub struct NoHooks;
impl FetchHooks for NoHooks {}

/// How hard a fetch works.
#[derive(Debug, Clone, Copy)]
pub struct FetchOptions {
    /// Requests in flight per peer.
    pub workers_per_peer: usize,
    /// Consecutive failures after which a peer is dropped.
    pub max_failures: u32,
    /// The root of a DAG held locally that the one fetched probably resembles (a previous version
    /// of the image): its blocks are offered as delta bases for the blocks at the same places.
    pub base: Option<Cid>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            workers_per_peer: 2,
            max_failures: 3,
            base: None,
        }
    }
}

/// What one peer did during a fetch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeerReport {
    /// The peer: an HTTP base URL or a libp2p peer id.
    pub peer: String,
    /// How it was reached: `"http"` or `"bitswap"`.
    pub transport: String,
    /// The same as `peer` (kept for scripts written before bitswap).
    pub url: String,
    /// New blocks this peer supplied.
    pub blocks: u64,
    /// Bytes received from it on the wire (compressed HTTP bodies).
    pub bytes: u64,
    pub requests: u64,
    /// Failed requests (errors other than "not found").
    pub failures: u64,
    /// Blocks it sent whose bytes did not match their CID.
    pub corrupt: u64,
    /// Whether it was dropped (wrong bytes, or too many failures).
    pub dropped: bool,
    /// Whether it joined the fetch on the way (a peer pulling the same DAG).
    #[serde(default)]
    pub joined: bool,
}

/// What a fetch did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FetchReport {
    pub root: String,
    /// The name given, when the root is an image and a name was asked for.
    pub name: Option<String>,
    /// Blocks received from peers and stored.
    pub blocks_fetched: u64,
    /// Of those, blocks that came as deltas against a block of the base ([`FetchOptions::base`]).
    #[serde(default)]
    pub blocks_delta: u64,
    /// Bytes received from peers on the wire (compressed HTTP body bytes).
    pub bytes_fetched: u64,
    /// Payload bytes of the blocks fetched (before transit compression).
    pub block_bytes: u64,
    /// Links not followed because the local store already had them.
    pub blocks_present: u64,
    pub peers: Vec<PeerReport>,
    /// Peer problems met on the way (the fetch still succeeded when another peer could help).
    pub problems: Vec<String>,
    /// How the bitswap peers were chosen (absent when no bitswap peer was asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionReport>,
}

/// The connected bitswap peers asked whether they hold the root before a fetch, and what they said.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SessionReport {
    /// Peers asked (want-have for the root).
    pub asked: u64,
    /// Peers that answered HAVE (or sent the root).
    pub have: u64,
    /// Peers that answered DONT_HAVE (or could not be reached).
    pub dont_have: u64,
    /// Peers that said nothing in time.
    pub silent: u64,
    /// Peers the fetch then used: those with HAVE, fastest first; when none said HAVE, the silent
    /// ones. At most `MAX_SESSION_PEERS`.
    pub used: u64,
    /// Peers that joined on the way: asked again while the fetch ran, they had begun pulling the
    /// same DAG and served the blocks they already had.
    #[serde(default)]
    pub joined: u64,
}

struct Want {
    cid: Cid,
    /// The block at the same place in the base's DAG, when it is held here and differs.
    base: Option<Cid>,
    /// Peers (bit i = peer i) that lacked the block or failed to send it.
    tried: u64,
    /// Joined peers that lacked it (they may have it later), and when one last said so.
    missed: u64,
    missed_at: Option<Instant>,
}

impl Want {
    fn new(cid: Cid, base: Option<Cid>) -> Want {
        Want {
            cid,
            base,
            tried: 0,
            missed: 0,
            missed_at: None,
        }
    }
}

/// The wanted CIDs in the order they are taken. A fetch from one peer takes them first come, first
/// served (the DAG's order, breadth first). A fetch that spreads its wants takes nodes with links
/// first (they lead to more wants), then leaves by their place in the keyspace (the first 8 bytes
/// of the digest) counted from the fetch's own pivot: every station ranks a block the same way, so
/// stations pulling one DAG at once walk it from different places and find each other's parts.
struct Queue {
    map: BTreeMap<(u8, u64, Cid), Want>,
    spread: bool,
    pivot: u64,
    back: u64,
    front: u64,
}

impl Queue {
    fn new(spread: bool, pivot: u64) -> Queue {
        Queue {
            map: BTreeMap::new(),
            spread,
            pivot,
            back: 1 << 63,
            front: (1 << 63) - 1,
        }
    }

    fn key(&mut self, w: &Want, front: bool) -> (u8, u64, Cid) {
        if self.spread {
            let d = u64::from_be_bytes(w.cid.digest()[..8].try_into().expect("8 bytes"));
            let leaf = (w.cid.codec() == shp_core::cid::RAW) as u8;
            (leaf, d.wrapping_sub(self.pivot), w.cid)
        } else if front {
            self.front -= 1;
            (0, self.front + 1, w.cid)
        } else {
            self.back += 1;
            (0, self.back - 1, w.cid)
        }
    }

    fn push_back(&mut self, w: Want) {
        let k = self.key(&w, false);
        self.map.insert(k, w);
    }

    fn push_front(&mut self, w: Want) {
        let k = self.key(&w, true);
        self.map.insert(k, w);
    }

    fn front(&self) -> Option<&Want> {
        self.map.values().next()
    }

    fn iter(&self) -> impl Iterator<Item = &Want> {
        self.map.values()
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

struct State<'b> {
    batch: Option<Box<dyn Batch + 'b>>,
    queue: Queue,
    seen: HashSet<Cid>,
    in_flight: usize,
    /// Peers in the fetch (the first ones, then those that joined), and which of them joined.
    npeers: usize,
    joined: u64,
    /// Peers whose DONT_HAVE is not final (bitswap peers: they may be pulling the DAG themselves),
    /// and how many blocks each peer has lacked so far.
    soft: u64,
    lacked: Vec<u64>,
    dropped: u64,
    failures: Vec<u32>,
    peers: Vec<PeerReport>,
    /// Worker threads still running.
    workers: usize,
    /// More than one peer (or some may join): see [`Queue`].
    spread: bool,
    /// How many wants each peer gets per request now. When peers may join: halved when a request
    /// is slow, doubled when it is quick, so a slow peer holds few wants that faster ones could
    /// serve.
    depth: Vec<usize>,
    last_progress: Instant,
    error: Option<Error>,
    report: FetchReport,
}

impl State<'_> {
    fn all(&self) -> u64 {
        if self.npeers >= 64 {
            u64::MAX
        } else {
            (1u64 << self.npeers) - 1
        }
    }

    fn finished(&self) -> bool {
        self.error.is_some() || self.workers == 0 || (self.queue.is_empty() && self.in_flight == 0)
    }
}

/// Fetches the DAG under `root` from `peers` into `store`. `check_root` sees the root block before
/// anything is stored (it may refuse it). Nothing is stored unless the whole DAG arrived.
pub fn fetch(
    store: &dyn Blockstore,
    root: &Cid,
    peers: &[&dyn Transport],
    opts: FetchOptions,
    check_root: &(dyn Fn(&[u8]) -> Result<()> + Sync),
) -> Result<FetchReport> {
    fetch_with(store, root, peers, opts, check_root, &NoHooks)
}

/// [`fetch`], telling `hooks` of every block and taking the peers they add on the way.
pub fn fetch_with(
    store: &dyn Blockstore,
    root: &Cid,
    peers: &[&dyn Transport],
    opts: FetchOptions,
    check_root: &(dyn Fn(&[u8]) -> Result<()> + Sync),
    hooks: &dyn FetchHooks,
) -> Result<FetchReport> {
    if peers.is_empty() || peers.len() > 64 {
        return Err(Error::Unavailable {
            cid: root.to_string(),
            not_found: false,
            reason: format!("{} peers given (1 to 64 are supported)", peers.len()),
        });
    }
    let start: Vec<_> = peers.iter().map(|p| p.stats()).collect();
    let spread = peers.len() > 1 || hooks.may_join();
    let mut seed = [0u8; 8];
    let _ = getrandom::fill(&mut seed);
    let mut st = State {
        batch: Some(store.batch()?),
        queue: Queue::new(spread, u64::from_le_bytes(seed)),
        seen: HashSet::new(),
        in_flight: 0,
        npeers: peers.len(),
        joined: 0,
        soft: peers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.kind() == "bitswap")
            .fold(0, |m, (i, _)| m | 1 << i),
        lacked: vec![0; peers.len()],
        dropped: 0,
        failures: vec![0; peers.len()],
        peers: peers
            .iter()
            .map(|p| PeerReport {
                peer: p.name(),
                transport: p.kind().to_string(),
                url: p.name(),
                ..Default::default()
            })
            .collect(),
        workers: peers.len() * opts.workers_per_peer.max(1),
        spread,
        depth: peers.iter().map(|p| first_depth(*p, hooks.may_join())).collect(),
        last_progress: Instant::now(),
        error: None,
        report: FetchReport {
            root: root.to_string(),
            ..Default::default()
        },
    };
    st.seen.insert(*root);
    if store.has(root)? {
        check_root(&store.get(root)?)?;
        st.report.blocks_present += 1;
    } else {
        let base = opts.base.filter(|b| b != root && store.has(b).unwrap_or(false));
        st.queue.push_back(Want::new(*root, base));
    }
    let shared = (Mutex::new(st), Condvar::new());
    // Peers that joined: kept here so their counters can be read at the end.
    let joined: Mutex<Vec<Joined>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for (i, peer) in peers.iter().enumerate() {
            for _ in 0..opts.workers_per_peer.max(1) {
                let shared = &shared;
                s.spawn(move || worker(shared, store, i, *peer, root, opts, check_root, hooks));
            }
        }
        if hooks.may_join() {
            let (shared, joined) = (&shared, &joined);
            s.spawn(move || loop {
                let (lock, cv) = shared;
                let mut st = lock.lock().unwrap();
                let until = Instant::now()
                    + if st.npeers == peers.len() {
                        FIRST_JOIN
                    } else {
                        JOIN_EVERY
                    };
                while !st.finished() && Instant::now() < until {
                    st = cv.wait_timeout(st, until - Instant::now()).unwrap().0;
                }
                if st.finished() || st.npeers >= 64 {
                    return;
                }
                let using: Vec<String> = st.peers.iter().map(|p| p.peer.clone()).collect();
                drop(st);
                let new = hooks.join(&using);
                let mut st = lock.lock().unwrap();
                if st.finished() {
                    return;
                }
                for p in new {
                    if st.npeers >= 64 || using.contains(&p.name()) {
                        continue;
                    }
                    let i = st.npeers;
                    st.npeers += 1;
                    st.joined |= 1 << i;
                    st.soft |= 1 << i;
                    st.lacked.push(0);
                    st.depth.push(first_depth(&*p, true));
                    st.failures.push(0);
                    st.peers.push(PeerReport {
                        peer: p.name(),
                        transport: p.kind().to_string(),
                        url: p.name(),
                        joined: true,
                        ..Default::default()
                    });
                    tracing::info!(peer = %p.name(), root = %root, "a peer pulling the same DAG joins the fetch");
                    st.workers += opts.workers_per_peer.max(1);
                    joined.lock().unwrap().push((i, p.clone(), p.stats()));
                    for _ in 0..opts.workers_per_peer.max(1) {
                        let p = p.clone();
                        s.spawn(move || worker(shared, store, i, &*p, root, opts, check_root, hooks));
                    }
                }
                cv.notify_all();
            });
        }
    });
    let mut st = shared.0.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut deltas = 0;
    for (i, p) in peers.iter().enumerate() {
        let now = p.stats();
        deltas += now.deltas - start[i].deltas;
        st.peers[i].bytes = now.wire_bytes - start[i].wire_bytes;
        st.peers[i].requests = now.requests - start[i].requests;
    }
    for (i, p, start) in joined.into_inner().unwrap_or_else(|p| p.into_inner()) {
        let now = p.stats();
        deltas += now.deltas - start.deltas;
        st.peers[i].bytes = now.wire_bytes - start.wire_bytes;
        st.peers[i].requests = now.requests - start.requests;
    }
    if st.error.is_none() {
        // Every worker left (their peers were dropped) with blocks still wanted.
        if let Some(w) = st.queue.front() {
            st.error = Some(Error::Unavailable {
                cid: w.cid.to_string(),
                not_found: false,
                reason: format!("every peer was dropped: {}", st.report.problems.join("; ")),
            });
        }
    }
    if let Some(e) = st.error.take() {
        return Err(e);
    }
    st.batch.take().expect("batch").commit()?;
    let mut report = st.report;
    report.bytes_fetched = st.peers.iter().map(|p| p.bytes).sum();
    report.blocks_delta = deltas;
    report.peers = st.peers;
    Ok(report)
}

/// What a peer is asked for at once at first: its batch hint, or (when peers may join the fetch)
/// [`FIRST_DEPTH`], grown as its answers come quickly: a slow seeder must not take most of the
/// DAG in its first requests before faster peers join.
fn first_depth(p: &dyn Transport, joinable: bool) -> usize {
    if joinable {
        p.batch_hint().clamp(1, FIRST_DEPTH)
    } else {
        p.batch_hint()
    }
}

/// Takes up to `limit` wants peer `me` may ask for, in the queue's order. A peer that has lacked
/// nothing so far (a seeder), when other bitswap peers have lacked blocks (they are pulling the
/// DAG themselves), takes first what every one of them lacked lately, so it spends its uplink on
/// what nobody else can give; the others look through the whole queue (a peer pulling the same
/// DAG has its own part of it).
fn take(st: &mut State, me: usize, limit: usize, waited: bool) -> Vec<Want> {
    let bit = 1u64 << me;
    let others_soft = st.soft & !st.dropped & st.all() & !bit;
    // Other bitswap peers that have lacked blocks: peers pulling the DAG themselves.
    let partial = (0..st.npeers)
        .filter(|&i| others_soft & (1 << i) != 0 && st.lacked[i] > 0)
        .fold(0u64, |m, i| m | 1 << i);
    let seeder = st.lacked[me] == 0 && partial != 0;
    let now = Instant::now();
    let may =
        |w: &Want| w.tried & bit == 0 && !(w.missed & bit != 0 && w.missed_at.is_some_and(|t| now - t < MISS_RETRY));
    let scan = if st.spread { 8192 } else { 4 * limit.max(64) };
    let mut picked: Vec<(u8, u64, Cid)> = Vec::new();
    if seeder {
        // What the others lacked lately (they may have got it since).
        let lacked_lately = |w: &Want| w.missed_at.is_some_and(|t| now - t < 2 * MISS_RETRY);
        picked.extend(
            st.queue
                .map
                .iter()
                .take(8192)
                .filter(|(_, w)| w.missed & partial == partial && lacked_lately(w) && may(w))
                .take(limit)
                .map(|(k, _)| *k),
        );
        // Nothing yet: the others are asked first (they answer in a moment); then anything.
        if picked.is_empty() && !waited {
            return Vec::new();
        }
    }
    if picked.len() < limit {
        let mut skipped = 0;
        for (k, w) in st.queue.map.iter() {
            if picked.len() >= limit || skipped >= scan {
                break;
            }
            if picked.contains(k) {
                continue;
            }
            if may(w) {
                picked.push(*k);
            } else {
                skipped += 1;
            }
        }
    }
    picked.iter().filter_map(|k| st.queue.map.remove(k)).collect()
}

#[allow(clippy::too_many_arguments)]
fn worker(
    shared: &(Mutex<State>, Condvar),
    store: &dyn Blockstore,
    me: usize,
    peer: &dyn Transport,
    root: &Cid,
    opts: FetchOptions,
    check_root: &(dyn Fn(&[u8]) -> Result<()> + Sync),
    hooks: &dyn FetchHooks,
) {
    let (lock, cv) = shared;
    let bit = 1u64 << me;
    let leave = |mut st: std::sync::MutexGuard<State>| {
        st.workers -= 1;
        drop(st);
        cv.notify_all();
    };
    let mut idle_since: Option<Instant> = None;
    loop {
        // Take work.
        let mut cids;
        {
            let mut st = lock.lock().unwrap();
            loop {
                if st.error.is_some() || st.dropped & bit != 0 {
                    return leave(st);
                }
                if st.queue.is_empty() && st.in_flight == 0 {
                    return leave(st);
                }
                // Blocks every live peer has already failed on (or lacked): nobody can supply
                // them. With joined peers about, they may still get them: wait a while.
                let live = st.all() & !st.dropped;
                let waiting = live & st.soft != 0 && st.last_progress.elapsed() < STALL;
                let stuck = st
                    .queue
                    .iter()
                    .take(1024)
                    .find(|w| (w.tried | w.missed) & live == live && !waiting)
                    .map(|w| w.cid);
                if let Some(cid) = stuck {
                    let problems = &st.report.problems;
                    let reason = if problems.is_empty() {
                        "not found on any peer".to_string()
                    } else if live == 0 {
                        format!("every peer was dropped: {}", problems.join("; "))
                    } else {
                        format!("the peers that could lack it or failed: {}", problems.join("; "))
                    };
                    st.error = Some(Error::Unavailable {
                        cid: cid.to_string(),
                        not_found: problems.is_empty(),
                        reason,
                    });
                    continue;
                }
                // An even share of what is queued, so every worker (and every peer) gets some.
                let workers = (live.count_ones() as usize * opts.workers_per_peer.max(1)).max(1);
                let share = st.queue.len().div_ceil(workers);
                let limit = st.depth[me].clamp(1, super::http::MAX_BATCH).min(share.max(1));
                let waited = idle_since.get_or_insert_with(Instant::now).elapsed() >= SEEDER_WAIT;
                cids = take(&mut st, me, limit, waited);
                if !cids.is_empty() {
                    st.in_flight += 1;
                    idle_since = None;
                    break;
                }
                st = cv.wait_timeout(st, SEEDER_WAIT).unwrap().0;
            }
        }
        // Fetch them.
        let asked: Vec<super::delta::Want> = cids
            .iter()
            .map(|w| super::delta::Want {
                cid: w.cid,
                base: w.base,
            })
            .collect();
        let bases: std::collections::HashMap<Cid, Cid> =
            cids.iter().filter_map(|w| w.base.map(|b| (w.cid, b))).collect();
        let asked_at = Instant::now();
        let mut got: HashSet<Cid> = HashSet::new();
        let verified = peer.verifies_blocks();
        let read_base = |b: &Cid| store.get(b).ok();
        let res = peer.get_blocks_based(&asked, &read_base, &mut |cid, data| {
            if !verified && !cid.matches(&data) {
                return Err(Error::Corrupt {
                    peer: peer.name(),
                    cid: cid.to_string(),
                });
            }
            if !got.insert(cid) {
                return Ok(());
            }
            let base = bases.get(&cid).copied();
            store_block(lock, cv, store, me, &cid, data, base, root, check_root, hooks)
        });
        // Account for what did not come.
        let mut st = lock.lock().unwrap();
        st.in_flight -= 1;
        if hooks.may_join() {
            let took = asked_at.elapsed();
            let d = &mut st.depth[me];
            if took > SLOW_REQUEST {
                *d = (*d / 2).max(2);
            } else if took < SLOW_REQUEST / 4 && asked.len() >= *d {
                *d = (*d * 2).min(peer.batch_hint().max(2));
            }
        }
        let lacked = res.is_ok() && st.soft & bit != 0;
        match res {
            Ok(()) => st.failures[me] = 0,
            Err(e @ Error::Corrupt { .. }) => {
                st.peers[me].corrupt += 1;
                st.peers[me].dropped = true;
                st.dropped |= bit;
                st.report.problems.push(format!("{e}; peer dropped"));
            }
            Err(e @ (Error::Core(_) | Error::Unavailable { .. })) => {
                // A store failure or a bad DAG: no other peer can fix that.
                if st.error.is_none() {
                    st.error = Some(e);
                }
            }
            Err(e) => {
                st.peers[me].failures += 1;
                st.failures[me] += 1;
                let drop = st.failures[me] >= opts.max_failures;
                if drop {
                    st.peers[me].dropped = true;
                    st.dropped |= bit;
                }
                st.report
                    .problems
                    .push(format!("{e}{}", if drop { "; peer dropped" } else { "" }));
            }
        }
        let now = Instant::now();
        for mut w in cids {
            if got.contains(&w.cid) {
                continue;
            }
            st.lacked[me] += 1;
            if lacked {
                // A peer pulling the same DAG: it may have the block in a moment.
                w.missed |= bit;
                w.missed_at = Some(now);
                st.queue.push_back(w);
            } else {
                w.tried |= bit;
                st.queue.push_front(w);
            }
        }
        cv.notify_all();
    }
}

/// Stores one verified block and queues the links the store lacks.
#[allow(clippy::too_many_arguments)]
fn store_block(
    lock: &Mutex<State>,
    cv: &Condvar,
    store: &dyn Blockstore,
    me: usize,
    cid: &Cid,
    data: Vec<u8>,
    base: Option<Cid>,
    root: &Cid,
    check_root: &(dyn Fn(&[u8]) -> Result<()> + Sync),
    hooks: &dyn FetchHooks,
) -> Result<()> {
    if cid == root {
        check_root(&data)?;
    }
    let links = shp_core::dag::block_links(cid, &data)?;
    // The base's links, paired with these by position: each is the base of the link in its place.
    let base_links = match base {
        Some(b) if !links.is_empty() && b.codec() == cid.codec() => store
            .get(&b)
            .ok()
            .and_then(|d| shp_core::dag::block_links(&b, &d).ok())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    hooks.block(cid, &data);
    let size = data.len() as u64;
    let mut st = lock.lock().unwrap();
    let st = &mut *st;
    st.last_progress = Instant::now();
    let batch = st.batch.as_mut().expect("batch");
    // The caller has just checked the bytes against the CID.
    if batch.put_own_vec(cid, data)? {
        st.report.blocks_fetched += 1;
        st.report.block_bytes += size;
        st.peers[me].blocks += 1;
    }
    for (i, l) in links.into_iter().enumerate() {
        if !st.seen.insert(l) {
            continue;
        }
        if batch.has(&l)? {
            st.report.blocks_present += 1;
        } else {
            // A base block is one the store holds (stores hold whole DAGs under what they hold).
            let b = base_links.get(i).copied().filter(|b| *b != l && b.codec() == l.codec());
            st.queue.push_back(Want::new(l, b));
        }
    }
    cv.notify_all();
    Ok(())
}

/// Fetches `root` into `home` and keeps it: an image root is named `name` (or pinned when no name is
/// given) and its blobs are indexed by digest, as a push would; any other CID is pinned (a name
/// needs an image root, which is checked before anything is stored).
pub fn fetch_into_home(
    home: &Home,
    root: &Cid,
    peers: &[&dyn Transport],
    name: Option<&str>,
    opts: FetchOptions,
) -> Result<FetchReport> {
    fetch_into_home_with(home, root, peers, name, opts, &NoHooks)
}

/// The image in `home` that a fetch of `root` as `name` most likely updates, for
/// [`FetchOptions::base`]: the image `name` names now, else the last (by name) of its repository's.
pub fn previous_version(home: &Home, name: &str, root: &Cid) -> Option<Cid> {
    let refs = RefsFile::new(home.dir()).load().ok()?;
    let named = refs.lookup(name).ok().flatten().and_then(|r| r.parse::<Cid>().ok());
    named.filter(|r| r != root).or_else(|| {
        refs.of_repository(name)
            .into_iter()
            .rev()
            .filter_map(|(_, r)| r.parse::<Cid>().ok())
            .find(|r| r != root)
    })
}

/// [`fetch_into_home`] with [`FetchHooks`]. A fetch that names the image and gives no
/// [`FetchOptions::base`] takes [`previous_version`] as its base.
pub fn fetch_into_home_with(
    home: &Home,
    root: &Cid,
    peers: &[&dyn Transport],
    name: Option<&str>,
    opts: FetchOptions,
    hooks: &dyn FetchHooks,
) -> Result<FetchReport> {
    (|| -> Result<FetchReport> {
        if let Some(n) = name {
            check_name(n)?;
        }
        let check_root = |data: &[u8]| -> Result<()> {
            if name.is_none() {
                return Ok(());
            }
            let is_image = root.codec() == DAG_CBOR
                && cbor::decode(data)
                    .ok()
                    .and_then(|v| v.get("t").and_then(|t| t.as_str()).map(|t| t == "image"))
                    .unwrap_or(false);
            if is_image {
                Ok(())
            } else {
                Err(Error::Core(shp_core::Error::InvalidReference {
                    reference: root.to_string(),
                    reason: "not an image root: only images can be named (fetch it without --tag to pin it)".into(),
                }))
            }
        };
        let mut opts = opts;
        if opts.base.is_none() {
            opts.base = name.and_then(|n| previous_version(home, n, root));
        }
        let mut report = fetch_with(home.store(), root, peers, opts, &check_root, hooks)?;
        let image = ImageRoot::load(home.store(), root).ok();
        let blobs = match &image {
            Some(img) => img.blobs(home.store())?,
            None => Vec::new(),
        };
        let root_s = root.to_string();
        RefsFile::new(home.dir()).update(|r| {
            match name {
                Some(n) => r.set_name(n, root_s.clone()),
                None => {
                    r.pins.insert(root_s.clone());
                }
            }
            for b in &blobs {
                r.index.insert(b.node.digest_str(), b.node.cid.to_string());
            }
            Ok(())
        })?;
        report.name = name.map(str::to_string);
        Ok(report)
    })()
    // A full disk names the home.
    .map_err(|e| match e {
        Error::Core(c) => Error::Core(home.explain(c)),
        e => e,
    })
}
