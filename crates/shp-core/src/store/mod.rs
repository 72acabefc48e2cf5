//! Blockstores: where blocks live. Every implementation verifies a block against its CID on the way
//! in and on the way out, so corruption on disk or on the wire surfaces as an error, never as data.

mod disk;
mod memory;

pub use disk::{CompactStats, Compression, DiskStore, LockMode};
pub use memory::MemoryStore;

use crate::cid::Cid;
use crate::error::{Error, Result};

/// Largest block shp writes or accepts: what bitswap and Kubo accept.
pub const MAX_BLOCK: usize = 1 << 20;

/// A content-addressed block store. Object-safe; shared between threads.
pub trait Blockstore: Send + Sync {
    /// The block's bytes, verified against `cid`. [`Error::BlockNotFound`] when absent.
    fn get(&self, cid: &Cid) -> Result<Vec<u8>>;
    /// Whether the block is present (not verified).
    fn has(&self, cid: &Cid) -> Result<bool>;
    /// The block's size in bytes, without reading it when the store can tell.
    fn size_of(&self, cid: &Cid) -> Result<u64> {
        Ok(self.get(cid)?.len() as u64)
    }
    /// Stores one block durably. Prefer [`Blockstore::batch`] for many.
    fn put(&self, cid: &Cid, data: &[u8]) -> Result<()> {
        let mut b = self.batch()?;
        b.put(cid, data)?;
        b.commit()
    }
    /// Removes one block if present.
    fn delete(&self, cid: &Cid) -> Result<()> {
        let cid = *cid;
        self.retain(&|c| *c != cid).map(|_| ())
    }
    /// Every CID in the store, in no particular order.
    fn cids(&self) -> Result<Vec<Cid>>;
    /// A write batch: nothing it holds is visible until [`Batch::commit`]; dropping it discards all.
    fn batch(&self) -> Result<Box<dyn Batch + '_>>;
    /// Keeps the blocks `keep` accepts and removes the rest (garbage collection's sweep).
    fn retain(&self, keep: &dyn Fn(&Cid) -> bool) -> Result<SweepStats>;
    /// Bytes the store occupies on its medium.
    fn stored_bytes(&self) -> Result<u64>;
}

/// A group of block writes that lands all at once.
pub trait Batch: Send {
    /// Adds a block; returns false when the store or this batch already has it.
    fn put(&mut self, cid: &Cid, data: &[u8]) -> Result<bool>;
    /// Adds a block whose CID the caller has just computed from these very bytes (skips the
    /// re-hash; the size limit still applies). Everything else must use [`Batch::put`].
    fn put_own(&mut self, cid: &Cid, data: &[u8]) -> Result<bool> {
        self.put(cid, data)
    }
    /// Whether the store or this batch has the block.
    fn has(&self, cid: &Cid) -> Result<bool>;
    /// Makes every block of the batch durable and visible.
    fn commit(self: Box<Self>) -> Result<()>;
}

/// What a sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepStats {
    pub blocks_removed: u64,
    pub bytes_freed: u64,
}

/// Checks a block about to be stored: size limit and hash.
pub(crate) fn check_block(cid: &Cid, data: &[u8]) -> Result<()> {
    if data.len() > MAX_BLOCK {
        return Err(Error::BlockTooLarge {
            cid: cid.to_string(),
            size: data.len(),
            limit: MAX_BLOCK,
        });
    }
    if !cid.matches(data) {
        return Err(Error::CorruptBlock {
            cid: cid.to_string(),
            reason: "bytes do not hash to the CID".into(),
        });
    }
    Ok(())
}
