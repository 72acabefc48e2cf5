//! The bitswap server: answers what peers want from the home's store.
//!
//! Each peer has a *ledger* (its wantlist, in arrival order, at most [`MAX_WANTS`] entries) and one
//! task that works through it a batch at a time: want-have → HAVE (or the block itself when it is
//! at most [`INLINE_MAX`] bytes, as boxo does) or DONT_HAVE when asked for; want-block → the block,
//! or DONT_HAVE when asked for; cancel removes an entry; a `full` wantlist replaces the ledger.
//! A want-block that names a base this store holds (shp's `base` field) is answered with a delta
//! against it when that is smaller ([`crate::transport::delta::compress_against`]).
//!
//! Fairness and bounds: a batch holds at most [`BATCH_BYTES`] of blocks; store reads take a permit
//! from one semaphore shared by every peer (tokio's semaphore is FIFO, so peers take turns), and a
//! batch holds [`BATCH_BUDGET_KIB`] of a global budget of [`BUDGET_KIB`] until its message has been
//! written to the peer's stream — so what sits in memory waiting for slow peers is bounded whatever
//! the number of peers, and a peer that stops reading only stalls its own task.

use super::{Engine, Outgoing};
use crate::p2p::inflight::Inflight;
use crate::p2p::message::{self, Block, Delta, Entry, Message, Presence, WantType};
use libp2p::PeerId;
use shp_core::cid::Cid;
use shp_core::store::Blockstore;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, Semaphore};

/// Wantlist entries kept per peer; more are ignored (and count as a strike).
pub const MAX_WANTS: usize = 16384;
/// Blocks at most this big are sent in place of a HAVE.
pub const INLINE_MAX: usize = 1024;
/// Block bytes per answer message.
pub const BATCH_BYTES: usize = 1 << 20;
/// Concurrent store reads across all peers.
pub const READERS: usize = 4;
/// KiB of answers in flight across all peers, and what one batch holds of it.
pub const BUDGET_KIB: u32 = 64 * 1024;
pub const BATCH_BUDGET_KIB: u32 = 2 * 1024 + 64;

#[derive(Clone)]
struct Want {
    kind: WantType,
    send_dont_have: bool,
    /// A block the asker holds that the wanted one resembles.
    base: Option<Cid>,
}

#[derive(Default)]
struct Ledger {
    next: u64,
    order: BTreeMap<u64, Vec<u8>>,
    wants: HashMap<Vec<u8>, (u64, Want)>,
    notify: Arc<Notify>,
}

impl Ledger {
    fn take(&mut self, n: usize) -> Vec<(Vec<u8>, Want)> {
        let mut out = Vec::with_capacity(n.min(self.order.len()));
        while out.len() < n {
            let Some((_, cid)) = self.order.pop_first() else { break };
            if let Some((_, w)) = self.wants.remove(&cid) {
                out.push((cid, w));
            }
        }
        out
    }

    /// Puts back what a batch did not get to, ahead of everything else.
    fn put_back(&mut self, rest: Vec<(Vec<u8>, Want)>) {
        let first = self.order.keys().next().copied().unwrap_or(self.next);
        let n = rest.len() as u64;
        for (i, (cid, w)) in rest.into_iter().enumerate() {
            if self.wants.contains_key(&cid) {
                continue;
            }
            // Keys below every existing one keep the batch's order in front.
            let seq = first.wrapping_sub(n).wrapping_add(i as u64);
            self.order.insert(seq, cid.clone());
            self.wants.insert(cid, (seq, w));
        }
    }
}

pub(crate) struct Server {
    ledgers: Mutex<HashMap<PeerId, Ledger>>,
    reads: Arc<Semaphore>,
    budget: Arc<Semaphore>,
}

impl Server {
    pub(crate) fn new() -> Server {
        Server {
            ledgers: Mutex::new(HashMap::new()),
            reads: Arc::new(Semaphore::new(READERS)),
            budget: Arc::new(Semaphore::new(BUDGET_KIB as usize)),
        }
    }

    /// Applies a wantlist update from `peer`, starting its task if it has none.
    pub(crate) fn wantlist(&self, engine: &Arc<Engine>, peer: &PeerId, entries: Vec<Entry>, full: bool) {
        let mut ledgers = self.ledgers.lock().unwrap();
        let fresh = !ledgers.contains_key(peer);
        let l = ledgers.entry(*peer).or_default();
        if full {
            l.order.clear();
            l.wants.clear();
        }
        let mut ignored = 0usize;
        for e in entries {
            if e.cancel {
                if let Some((seq, _)) = l.wants.remove(&e.cid) {
                    l.order.remove(&seq);
                }
                continue;
            }
            let want = Want {
                kind: e.want_type,
                send_dont_have: e.send_dont_have,
                base: Cid::from_bytes(&e.base).ok(),
            };
            if let Some((_, w)) = l.wants.get_mut(&e.cid) {
                // A want-block supersedes a want-have for the same CID.
                if want.kind == WantType::Block {
                    w.kind = WantType::Block;
                }
                if want.base.is_some() {
                    w.base = want.base;
                }
                w.send_dont_have |= want.send_dont_have;
                continue;
            }
            if l.wants.len() >= MAX_WANTS {
                ignored += 1;
                continue;
            }
            let seq = l.next;
            l.next += 1;
            l.order.insert(seq, e.cid.clone());
            l.wants.insert(e.cid, (seq, want));
        }
        let notify = l.notify.clone();
        drop(ledgers);
        if ignored > 0 {
            engine.strike(
                peer,
                &format!("wantlist over {MAX_WANTS} entries: {ignored} wants ignored"),
            );
        }
        if fresh {
            tokio::spawn(serve_peer(engine.clone(), *peer, notify.clone()));
        }
        notify.notify_one();
    }

    pub(crate) fn forget(&self, peer: &PeerId) {
        if let Some(l) = self.ledgers.lock().unwrap().remove(peer) {
            l.notify.notify_one();
        }
    }
}

/// One peer's task: batches out of its ledger until the ledger is forgotten.
async fn serve_peer(engine: Arc<Engine>, peer: PeerId, notify: Arc<Notify>) {
    loop {
        let batch = {
            let mut ledgers = engine.server.ledgers.lock().unwrap();
            match ledgers.get_mut(&peer) {
                None => return,
                Some(l) => l.take(256),
            }
        };
        if batch.is_empty() {
            notify.notified().await;
            continue;
        }
        let Ok(permit) = engine.server.budget.clone().acquire_many_owned(BATCH_BUDGET_KIB).await else {
            return;
        };
        let Ok(read) = engine.server.reads.clone().acquire_owned().await else {
            return;
        };
        let e = engine.clone();
        let answered = tokio::task::spawn_blocking(move || {
            let r = answer(e.home.store(), &e.inflight, &peer, batch);
            drop(read);
            r
        })
        .await;
        let (msg, rest) = match answered {
            Ok(x) => x,
            Err(err) => {
                tracing::error!(%peer, error = %err, "bitswap: answering a wantlist failed");
                return;
            }
        };
        if !rest.is_empty() {
            if let Some(l) = engine.server.ledgers.lock().unwrap().get_mut(&peer) {
                l.put_back(rest);
            }
        }
        if msg.is_empty() {
            continue;
        }
        if engine
            .send(
                peer,
                Outgoing {
                    msg,
                    permit: Some(permit),
                },
            )
            .await
            .is_err()
        {
            engine.server.forget(&peer);
            return;
        }
    }
}

/// The answer to a batch of wants, and the wants it had no room for.
fn answer(
    store: &dyn Blockstore,
    inflight: &Inflight,
    peer: &PeerId,
    batch: Vec<(Vec<u8>, Want)>,
) -> (Message, Vec<(Vec<u8>, Want)>) {
    let mut msg = Message::default();
    let mut bytes = 0usize;
    let mut it = batch.into_iter();
    for (raw, w) in it.by_ref() {
        let dont_have = |msg: &mut Message| {
            if w.send_dont_have {
                msg.presences.push((raw.clone(), Presence::DontHave));
            }
        };
        let cid = match Cid::from_bytes(&raw) {
            Ok(c) => c,
            // Codecs and CID versions shp does not store: it cannot have them.
            Err(_) => {
                dont_have(&mut msg);
                continue;
            }
        };
        let has = match store.has(&cid) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(%peer, %cid, error = %e, "bitswap: store lookup failed");
                false
            }
        };
        // Not stored (yet): a fetch running here may have it already.
        let size = if has {
            store.size_of(&cid).ok()
        } else {
            inflight.size_of(&cid)
        };
        if !has && size.is_none() {
            dont_have(&mut msg);
            continue;
        }
        let small = size.is_some_and(|s| s as usize <= INLINE_MAX);
        if w.kind == WantType::Have && !small {
            msg.presences.push((raw, Presence::Have));
            continue;
        }
        let read = || -> Option<Vec<u8>> {
            match store.get(&cid) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::error!(%peer, %cid, error = %e, "bitswap: cannot read a wanted block");
                    None
                }
            }
        };
        // A fetch that lands between the lookup and the read moves its block into the store.
        let got = if has {
            read()
        } else {
            inflight
                .get(&cid)
                .or_else(|| store.has(&cid).unwrap_or(false).then(read).flatten())
        };
        // A base this store holds: a delta when it is smaller.
        let delta = match &got {
            Some(data) if w.kind == WantType::Block => crate::transport::delta::against_held(store, &cid, data, w.base)
                .ok()
                .flatten(),
            _ => None,
        };
        match (got, delta) {
            (Some(_), Some((b, frame))) => {
                bytes += frame.len();
                msg.deltas.push(Delta {
                    cid: raw,
                    base: b.to_bytes().to_vec(),
                    frame,
                });
            }
            (Some(data), None) => {
                bytes += data.len();
                msg.blocks.push(Block {
                    prefix: message::prefix_of(&cid),
                    data,
                });
            }
            // A block that fails verification is never sent.
            (None, _) => dont_have(&mut msg),
        }
        if bytes >= BATCH_BYTES {
            break;
        }
    }
    (msg, it.collect())
}
