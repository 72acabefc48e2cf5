//! Blockstores: where blocks live. Every implementation verifies a block against its CID on the way
//! in and on the way out, so corruption on disk or on the wire surfaces as an error, never as data.

mod disk;
mod memory;
#[cfg(feature = "s3")]
pub mod s3;

pub use disk::{CompactStats, Compression, DiskStore, LockMode};
pub use memory::MemoryStore;

/// Requests made to a bucket (S3 stores): by one process, or summed over every command a home ran.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RequestStats {
    pub get: u64,
    pub put: u64,
    pub list: u64,
    pub head: u64,
    pub delete: u64,
    /// Requests repeated after a transient failure (counted in the ones above too).
    pub retries: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl std::ops::Add for RequestStats {
    type Output = RequestStats;
    fn add(self, o: RequestStats) -> RequestStats {
        RequestStats {
            get: self.get + o.get,
            put: self.put + o.put,
            list: self.list + o.list,
            head: self.head + o.head,
            delete: self.delete + o.delete,
            retries: self.retries + o.retries,
            bytes_in: self.bytes_in + o.bytes_in,
            bytes_out: self.bytes_out + o.bytes_out,
        }
    }
}

/// What a bucket holds for a store, and what this home's commands have cost so far.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BucketStats {
    /// Pack and index objects.
    pub objects: u64,
    pub object_bytes: u64,
    pub requests: RequestStats,
}

/// A home's store: the embedded pack store on local disk, or (feature `s3`) packs in a bucket.
pub enum HomeStore {
    Disk(DiskStore),
    #[cfg(feature = "s3")]
    S3(s3::S3Store),
}

impl HomeStore {
    fn inner(&self) -> &dyn Blockstore {
        match self {
            HomeStore::Disk(d) => d,
            #[cfg(feature = "s3")]
            HomeStore::S3(s) => s,
        }
    }

    pub fn compression(&self) -> Compression {
        match self {
            HomeStore::Disk(d) => d.compression(),
            #[cfg(feature = "s3")]
            HomeStore::S3(s) => s.compression(),
        }
    }

    /// Bytes written raw and waiting for compaction (disk stores with deferred compression).
    pub fn loose_bytes(&self) -> Result<u64> {
        match self {
            HomeStore::Disk(d) => d.loose_bytes(),
            #[cfg(feature = "s3")]
            HomeStore::S3(_) => Ok(0),
        }
    }

    /// Compresses loose packs (disk stores); an S3 store compresses as it writes.
    pub fn compact(&self) -> Result<CompactStats> {
        match self {
            HomeStore::Disk(d) => d.compact(),
            #[cfg(feature = "s3")]
            HomeStore::S3(_) => Ok(CompactStats::default()),
        }
    }

    /// Objects, bytes and requests of a store in a bucket; None on disk.
    pub fn bucket_stats(&self) -> Result<Option<BucketStats>> {
        match self {
            HomeStore::Disk(_) => Ok(None),
            #[cfg(feature = "s3")]
            HomeStore::S3(s) => {
                let (objects, object_bytes) = s.objects()?;
                Ok(Some(BucketStats {
                    objects,
                    object_bytes,
                    requests: s.requests(),
                }))
            }
        }
    }

    /// Where the blocks are: a directory, or `s3://BUCKET/PREFIX`.
    pub fn location(&self) -> String {
        match self {
            HomeStore::Disk(d) => d.dir().display().to_string(),
            #[cfg(feature = "s3")]
            HomeStore::S3(s) => s.url(),
        }
    }
}

impl Blockstore for HomeStore {
    fn get(&self, cid: &Cid) -> Result<Vec<u8>> {
        self.inner().get(cid)
    }
    fn has(&self, cid: &Cid) -> Result<bool> {
        self.inner().has(cid)
    }
    fn size_of(&self, cid: &Cid) -> Result<u64> {
        self.inner().size_of(cid)
    }
    fn put(&self, cid: &Cid, data: &[u8]) -> Result<()> {
        self.inner().put(cid, data)
    }
    fn delete(&self, cid: &Cid) -> Result<()> {
        self.inner().delete(cid)
    }
    fn cids(&self) -> Result<Vec<Cid>> {
        self.inner().cids()
    }
    fn batch(&self) -> Result<Box<dyn Batch + '_>> {
        self.inner().batch()
    }
    fn retain(&self, keep: &dyn Fn(&Cid) -> bool) -> Result<SweepStats> {
        self.inner().retain(keep)
    }
    fn stored_bytes(&self) -> Result<u64> {
        self.inner().stored_bytes()
    }
}

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
    /// [`Batch::put_own`] of bytes the caller hands over (a store that queues blocks keeps them
    /// instead of copying them).
    fn put_own_vec(&mut self, cid: &Cid, data: Vec<u8>) -> Result<bool> {
        self.put_own(cid, &data)
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

/// Blocks at least this big are probed before they are compressed whole.
const PROBE_MIN: usize = 32 * 1024;
/// Bytes of each probe (one at the block's start, one at its middle).
const PROBE_LEN: usize = 4 * 1024;

/// A block compressed for storage at rest (or for the wire), or None when compression does not
/// pay (keep it raw).
///
/// A block of [`PROBE_MIN`] bytes or more is first probed: two samples of [`PROBE_LEN`] (its start
/// and its middle) are compressed, and unless one of them saves at least 1/32 of its size the block
/// is taken as incompressible (random bytes, or a chunk of an already compressed file) and is not
/// compressed whole. That costs a compressible block 1/32 more work and spares an incompressible
/// one the whole pass (zstd runs about as fast on random bytes as on anything else).
pub fn compress_block(c: &mut zstd::bulk::Compressor<'static>, data: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
    if data.len() >= PROBE_MIN {
        let mut out = [0u8; PROBE_LEN];
        let mid = data.len() / 2;
        let mut pays = |sample: &[u8]| {
            // Room for 31/32 of the sample: a sample that does not fit did not pay.
            let room = sample.len() - sample.len() / 32;
            c.compress_to_buffer(sample, &mut out[..room]).is_ok()
        };
        if !pays(&data[..PROBE_LEN]) && !pays(&data[mid..mid + PROBE_LEN]) {
            return Ok(None);
        }
    }
    let z = c.compress(data)?;
    Ok((z.len() < data.len()).then_some(z))
}

#[cfg(test)]
mod tests {
    use super::compress_block;

    /// Bytes no compressor can shrink (xorshift64*), deterministic.
    fn noise(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }

    fn text(n: usize) -> Vec<u8> {
        let line = b"usr/share/doc/libc6/changelog.Debian.gz: 0644 root root\n";
        line.iter().copied().cycle().take(n).collect()
    }

    fn roundtrip(z: &[u8], n: usize) -> Vec<u8> {
        zstd::bulk::decompress(z, n).unwrap()
    }

    #[test]
    fn incompressible_blocks_are_stored_raw_and_others_compressed() {
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        // Random bytes, big (probed) and small (tried whole): raw.
        assert_eq!(compress_block(&mut c, &noise(256 * 1024, 1)).unwrap(), None);
        assert_eq!(compress_block(&mut c, &noise(1000, 2)).unwrap(), None);
        // Text, big and small: compressed, and it decompresses to the block.
        for n in [100, 64 * 1024, 1 << 20] {
            let t = text(n);
            let z = compress_block(&mut c, &t).unwrap().expect("text compresses");
            assert!(z.len() < if n > 1000 { n / 4 } else { n }, "{n} -> {}", z.len());
            assert_eq!(roundtrip(&z, n), t);
        }
    }

    #[test]
    fn a_block_that_only_compresses_past_its_start_is_still_compressed() {
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        // A compressed member's bytes first, then plain text: the middle probe sees the text.
        let mut b = noise(40 * 1024, 3);
        b.extend(text(88 * 1024));
        let z = compress_block(&mut c, &b).unwrap().expect("the text half pays");
        assert!(z.len() < 48 * 1024);
        assert_eq!(roundtrip(&z, b.len()), b);
        // And the other way round: text first.
        let mut b = text(8 * 1024);
        b.extend(noise(120 * 1024, 4));
        let z = compress_block(&mut c, &b).unwrap().expect("the text start pays");
        assert_eq!(roundtrip(&z, b.len()), b);
    }
}
