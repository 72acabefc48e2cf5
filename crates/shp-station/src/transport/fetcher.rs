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

use super::{Error, Result, Transport};
use serde::{Deserialize, Serialize};
use shp_core::cbor;
use shp_core::cid::{Cid, DAG_CBOR};
use shp_core::image::ImageRoot;
use shp_core::refs::{check_name, RefsFile};
use shp_core::store::{Batch, Blockstore};
use shp_core::Home;
use std::collections::{HashSet, VecDeque};
use std::sync::{Condvar, Mutex};

/// How hard a fetch works.
#[derive(Debug, Clone, Copy)]
pub struct FetchOptions {
    /// Requests in flight per peer.
    pub workers_per_peer: usize,
    /// Consecutive failures after which a peer is dropped.
    pub max_failures: u32,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            workers_per_peer: 2,
            max_failures: 3,
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
}

/// What a fetch did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FetchReport {
    pub root: String,
    /// The name given, when the root is an image and a name was asked for.
    pub name: Option<String>,
    /// Blocks received from peers and stored.
    pub blocks_fetched: u64,
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
}

struct Want {
    cid: Cid,
    /// Peers (bit i = peer i) that lacked the block or failed to send it.
    tried: u64,
}

struct State<'b> {
    batch: Option<Box<dyn Batch + 'b>>,
    queue: VecDeque<Want>,
    seen: HashSet<Cid>,
    in_flight: usize,
    dropped: u64,
    failures: Vec<u32>,
    peers: Vec<PeerReport>,
    error: Option<Error>,
    report: FetchReport,
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
    if peers.is_empty() || peers.len() > 64 {
        return Err(Error::Unavailable {
            cid: root.to_string(),
            not_found: false,
            reason: format!("{} peers given (1 to 64 are supported)", peers.len()),
        });
    }
    let start: Vec<_> = peers.iter().map(|p| p.stats()).collect();
    let mut st = State {
        batch: Some(store.batch()?),
        queue: VecDeque::new(),
        seen: HashSet::new(),
        in_flight: 0,
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
        st.queue.push_back(Want { cid: *root, tried: 0 });
    }
    let shared = (Mutex::new(st), Condvar::new());
    std::thread::scope(|s| {
        for (i, peer) in peers.iter().enumerate() {
            for _ in 0..opts.workers_per_peer.max(1) {
                let shared = &shared;
                s.spawn(move || worker(shared, i, *peer, peers.len(), root, opts, check_root));
            }
        }
    });
    let mut st = shared.0.into_inner().unwrap_or_else(|p| p.into_inner());
    for (i, p) in peers.iter().enumerate() {
        let now = p.stats();
        st.peers[i].bytes = now.wire_bytes - start[i].wire_bytes;
        st.peers[i].requests = now.requests - start[i].requests;
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
    report.peers = st.peers;
    Ok(report)
}

fn worker(
    shared: &(Mutex<State>, Condvar),
    me: usize,
    peer: &dyn Transport,
    npeers: usize,
    root: &Cid,
    opts: FetchOptions,
    check_root: &(dyn Fn(&[u8]) -> Result<()> + Sync),
) {
    let (lock, cv) = shared;
    let bit = 1u64 << me;
    let all = if npeers == 64 { u64::MAX } else { (1u64 << npeers) - 1 };
    loop {
        // Take work.
        let mut cids = Vec::new();
        {
            let mut st = lock.lock().unwrap();
            loop {
                if st.error.is_some() || st.dropped & bit != 0 {
                    cv.notify_all();
                    return;
                }
                if st.queue.is_empty() && st.in_flight == 0 {
                    cv.notify_all();
                    return;
                }
                // Blocks every live peer has already failed on: nobody can supply them.
                let live = all & !st.dropped;
                if let Some(w) = st.queue.iter().take(1024).find(|w| w.tried & live == live) {
                    let problems = &st.report.problems;
                    let reason = if problems.is_empty() {
                        "not found on any peer".to_string()
                    } else if live == 0 {
                        format!("every peer was dropped: {}", problems.join("; "))
                    } else {
                        format!("the peers that could lack it or failed: {}", problems.join("; "))
                    };
                    st.error = Some(Error::Unavailable {
                        cid: w.cid.to_string(),
                        not_found: problems.is_empty(),
                        reason,
                    });
                    continue;
                }
                // An even share of what is queued, so every worker (and every peer) gets some.
                let workers = (live.count_ones() as usize * opts.workers_per_peer.max(1)).max(1);
                let share = st.queue.len().div_ceil(workers);
                let limit = peer.batch_hint().clamp(1, super::http::MAX_BATCH).min(share.max(1));
                let mut skipped = Vec::new();
                while cids.len() < limit && skipped.len() < 4 * limit {
                    match st.queue.pop_front() {
                        Some(w) if w.tried & bit == 0 => cids.push(w),
                        Some(w) => skipped.push(w),
                        None => break,
                    }
                }
                for w in skipped.into_iter().rev() {
                    st.queue.push_front(w);
                }
                if !cids.is_empty() {
                    st.in_flight += 1;
                    break;
                }
                st = cv.wait(st).unwrap();
            }
        }
        // Fetch them.
        let asked: Vec<Cid> = cids.iter().map(|w| w.cid).collect();
        let mut got: HashSet<Cid> = HashSet::new();
        let res = peer.get_blocks(&asked, &mut |cid, data| {
            if !cid.matches(&data) {
                return Err(Error::Corrupt {
                    peer: peer.name(),
                    cid: cid.to_string(),
                });
            }
            if !got.insert(cid) {
                return Ok(());
            }
            store_block(lock, cv, me, &cid, &data, root, check_root)
        });
        // Account for what did not come.
        let mut st = lock.lock().unwrap();
        st.in_flight -= 1;
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
        for mut w in cids {
            if !got.contains(&w.cid) {
                w.tried |= bit;
                st.queue.push_front(w);
            }
        }
        cv.notify_all();
    }
}

/// Stores one verified block and queues the links the store lacks.
fn store_block(
    lock: &Mutex<State>,
    cv: &Condvar,
    me: usize,
    cid: &Cid,
    data: &[u8],
    root: &Cid,
    check_root: &(dyn Fn(&[u8]) -> Result<()> + Sync),
) -> Result<()> {
    if cid == root {
        check_root(data)?;
    }
    let links = shp_core::dag::block_links(cid, data)?;
    let mut st = lock.lock().unwrap();
    let st = &mut *st;
    let batch = st.batch.as_mut().expect("batch");
    // The caller has just checked the bytes against the CID.
    if batch.put_own(cid, data)? {
        st.report.blocks_fetched += 1;
        st.report.block_bytes += data.len() as u64;
        st.peers[me].blocks += 1;
    }
    for l in links {
        if !st.seen.insert(l) {
            continue;
        }
        if batch.has(&l)? {
            st.report.blocks_present += 1;
        } else {
            st.queue.push_back(Want { cid: l, tried: 0 });
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
        let mut report = fetch(home.store(), root, peers, opts, &check_root)?;
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
