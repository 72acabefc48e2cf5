//! An in-memory blockstore, for tests and for embedding where nothing should touch disk.

use super::{check_block, Batch, Blockstore, SweepStats};
use crate::cid::Cid;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Blocks in a hash map. Cloning shares the same map.
#[derive(Clone, Default)]
pub struct MemoryStore {
    blocks: Arc<RwLock<HashMap<Cid, Arc<[u8]>>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Blockstore for MemoryStore {
    fn get(&self, cid: &Cid) -> Result<Vec<u8>> {
        let data = self.blocks.read().unwrap().get(cid).cloned();
        let data = data.ok_or_else(|| Error::BlockNotFound { cid: cid.to_string() })?;
        if !cid.matches(&data) {
            return Err(Error::CorruptBlock {
                cid: cid.to_string(),
                reason: "bytes do not hash to the CID".into(),
            });
        }
        Ok(data.to_vec())
    }
    fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(self.blocks.read().unwrap().contains_key(cid))
    }
    fn cids(&self) -> Result<Vec<Cid>> {
        Ok(self.blocks.read().unwrap().keys().copied().collect())
    }
    fn batch(&self) -> Result<Box<dyn Batch + '_>> {
        Ok(Box::new(MemoryBatch {
            store: self,
            staged: HashMap::new(),
        }))
    }
    fn retain(&self, keep: &dyn Fn(&Cid) -> bool) -> Result<SweepStats> {
        let mut stats = SweepStats::default();
        self.blocks.write().unwrap().retain(|c, d| {
            let k = keep(c);
            if !k {
                stats.blocks_removed += 1;
                stats.bytes_freed += d.len() as u64;
            }
            k
        });
        Ok(stats)
    }
    fn stored_bytes(&self) -> Result<u64> {
        Ok(self.blocks.read().unwrap().values().map(|d| d.len() as u64).sum())
    }
}

struct MemoryBatch<'a> {
    store: &'a MemoryStore,
    staged: HashMap<Cid, Arc<[u8]>>,
}

impl Batch for MemoryBatch<'_> {
    fn put(&mut self, cid: &Cid, data: &[u8]) -> Result<bool> {
        check_block(cid, data)?;
        if self.has(cid)? {
            return Ok(false);
        }
        self.staged.insert(*cid, data.into());
        Ok(true)
    }
    fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(self.staged.contains_key(cid) || self.store.has(cid)?)
    }
    fn commit(self: Box<Self>) -> Result<()> {
        self.store.blocks.write().unwrap().extend(self.staged);
        Ok(())
    }
}
