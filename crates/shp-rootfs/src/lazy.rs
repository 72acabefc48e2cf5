//! A store view for lazy mounts: the home's store, and for blocks it lacks, a [`BlockSource`]
//! (peers) asked one block at a time.
//!
//! Every block a source hands over is checked against its CID before anyone sees it; a block
//! that does not match is an error naming the CID and the source, never bytes. Fetched blocks are
//! kept in memory (bounded by [`CACHE_BYTES`], least recently used first out), not written to the
//! home: a mount's background prefetch stores the whole DAG in one batch, as any fetch does.

use shp_core::cid::Cid;
use shp_core::store::{Batch, Blockstore, SweepStats};
use shp_core::{Error, Home, Result};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Where a lazy mount gets the blocks its home lacks.
pub trait BlockSource: Send + Sync {
    /// The block's bytes (the caller checks them against the CID).
    fn get(&self, cid: &Cid) -> std::result::Result<Vec<u8>, String>;
    /// Many blocks at once, in as few round trips as the source can (one batch request to a
    /// station): `found` is called for each block it has (the caller checks them). Blocks it
    /// lacks are not an error here. By default, one [`BlockSource::get`] after another.
    fn get_many(&self, cids: &[Cid], found: &mut dyn FnMut(Cid, Vec<u8>)) -> std::result::Result<(), String> {
        for c in cids {
            if let Ok(b) = self.get(c) {
                found(*c, b);
            }
        }
        Ok(())
    }
    /// Who it is, for errors and logs.
    fn name(&self) -> String;
}

/// Bytes of fetched blocks kept in memory.
pub const CACHE_BYTES: usize = 64 << 20;
/// Blocks asked for in one batch by [`LazyStore::warm`].
const WARM_BATCH: usize = 512;

#[derive(Default)]
struct Cache {
    blocks: HashMap<Cid, Arc<Vec<u8>>>,
    order: VecDeque<Cid>,
    bytes: usize,
}

/// The home's store, falling back to a source.
pub struct LazyStore {
    home: Arc<Home>,
    source: Option<Arc<dyn BlockSource>>,
    cache: Mutex<Cache>,
    /// Blocks and bytes fetched from the source.
    pub fetched: AtomicU64,
    pub fetched_bytes: AtomicU64,
}

impl LazyStore {
    pub fn new(home: Arc<Home>, source: Option<Arc<dyn BlockSource>>) -> LazyStore {
        LazyStore {
            home,
            source,
            cache: Mutex::new(Cache::default()),
            fetched: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
        }
    }

    pub fn home(&self) -> &Arc<Home> {
        &self.home
    }

    /// Whether blocks the home lacks come from a source.
    pub fn is_lazy(&self) -> bool {
        self.source.is_some()
    }

    /// Fetches those of `cids` that neither the home nor the memory cache holds, in one batch
    /// from the source (each block checked against its CID, then kept in the cache): a tree that
    /// needs hundreds of blocks costs a few round trips, not one per block. Blocks the source
    /// does not send are left for [`Blockstore::get`] to fetch, and to report. The blocks fetched.
    pub fn warm(&self, cids: &[Cid]) -> Result<usize> {
        let Some(src) = &self.source else { return Ok(0) };
        let mut want = Vec::new();
        {
            let c = self.cache.lock().unwrap();
            for cid in cids {
                if !c.blocks.contains_key(cid) && !want.contains(cid) {
                    want.push(*cid);
                }
            }
        }
        let store = self.home.store();
        let mut missing = Vec::with_capacity(want.len());
        for cid in want {
            if !store.has(&cid)? {
                missing.push(cid);
            }
        }
        let mut bad = None;
        let mut n = 0;
        for part in missing.chunks(WARM_BATCH) {
            src.get_many(part, &mut |cid, data| {
                if !part.contains(&cid) || !cid.matches(&data) {
                    bad.get_or_insert(cid);
                    return;
                }
                n += 1;
                self.keep(cid, data);
            })
            .map_err(|reason| Error::Store(format!("blocks from {}: {reason}", src.name())))?;
            if let Some(cid) = bad {
                return Err(Error::Store(format!(
                    "block {cid} from {}: not asked for, or its bytes do not hash to the CID (refused)",
                    src.name()
                )));
            }
        }
        Ok(n)
    }

    /// Counts a fetched block and keeps a copy in the cache (unless it is too big for it).
    fn keep(&self, cid: Cid, data: Vec<u8>) -> Vec<u8> {
        self.fetched.fetch_add(1, Ordering::Relaxed);
        self.fetched_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        let mut c = self.cache.lock().unwrap();
        if data.len() <= CACHE_BYTES / 4 && !c.blocks.contains_key(&cid) {
            while c.bytes + data.len() > CACHE_BYTES {
                let Some(old) = c.order.pop_front() else { break };
                if let Some(b) = c.blocks.remove(&old) {
                    c.bytes -= b.len();
                }
            }
            c.bytes += data.len();
            c.order.push_back(cid);
            c.blocks.insert(cid, Arc::new(data.clone()));
        }
        data
    }

    fn fetch_missing(&self, cid: &Cid) -> Result<Vec<u8>> {
        if let Some(b) = self.cache.lock().unwrap().blocks.get(cid) {
            return Ok(b.as_ref().clone());
        }
        let Some(src) = &self.source else {
            return Err(Error::BlockNotFound { cid: cid.to_string() });
        };
        let data = src
            .get(cid)
            .map_err(|reason| Error::Store(format!("block {cid} from {}: {reason}", src.name())))?;
        if !cid.matches(&data) {
            return Err(Error::Store(format!(
                "block {cid} from {}: the bytes do not hash to the CID (refused)",
                src.name()
            )));
        }
        Ok(self.keep(*cid, data))
    }
}

impl Blockstore for LazyStore {
    fn get(&self, cid: &Cid) -> Result<Vec<u8>> {
        match self.home.store().get(cid) {
            Err(Error::BlockNotFound { .. }) => self.fetch_missing(cid),
            r => r,
        }
    }
    fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(self.home.store().has(cid)? || self.cache.lock().unwrap().blocks.contains_key(cid))
    }
    fn size_of(&self, cid: &Cid) -> Result<u64> {
        match self.home.store().size_of(cid) {
            // A block we do not hold: its size is its length once fetched.
            Err(Error::BlockNotFound { .. }) => Ok(self.fetch_missing(cid)?.len() as u64),
            r => r,
        }
    }
    fn cids(&self) -> Result<Vec<Cid>> {
        self.home.store().cids()
    }
    fn batch(&self) -> Result<Box<dyn Batch + '_>> {
        self.home.store().batch()
    }
    fn retain(&self, keep: &dyn Fn(&Cid) -> bool) -> Result<SweepStats> {
        self.home.store().retain(keep)
    }
    fn stored_bytes(&self) -> Result<u64> {
        self.home.store().stored_bytes()
    }
}
