//! Blocks of fetches still in progress, served to other peers before the fetch lands.
//!
//! A fetch stores its blocks in one batch that becomes visible only when the whole DAG is in, so
//! stations that pull the same image at once could not help each other: each would ask the seeder
//! for everything. Here every verified block a running fetch receives is also written to a *spill*
//! file of that fetch (an unnamed file under `HOME/store/tmp`, gone when the fetch ends or the
//! process dies), with only its offset kept in memory; the bitswap server looks here when the
//! store lacks a block. Memory grows with the number of blocks (a few dozen bytes each), never
//! with their bytes. A block read back from a spill is checked against its CID before it is sent.

use shp_core::cid::Cid;
use shp_core::Home;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// The spills of the fetches running in this process.
#[derive(Default)]
pub struct Inflight {
    spills: Mutex<Vec<Weak<Spill>>>,
}

/// One fetch's received blocks. Dropping it forgets them (and frees the file).
pub struct Spill {
    file: File,
    end: AtomicU64,
    index: Mutex<HashMap<Cid, (u64, u32)>>,
    /// Set when a write failed (a full disk): the spill then serves what it has and takes no more.
    broken: std::sync::atomic::AtomicBool,
}

impl Inflight {
    /// A spill for a new fetch into `home`, registered until it is dropped.
    pub fn begin(&self, home: &Home) -> std::io::Result<Arc<Spill>> {
        let dir = home.dir().join("store").join("tmp");
        let file = if dir.is_dir() {
            tempfile::tempfile_in(&dir)?
        } else {
            tempfile::tempfile_in(home.dir())?
        };
        let spill = Arc::new(Spill {
            file,
            end: AtomicU64::new(0),
            index: Mutex::new(HashMap::new()),
            broken: Default::default(),
        });
        let mut g = self.spills.lock().unwrap();
        g.retain(|w| w.strong_count() > 0);
        g.push(Arc::downgrade(&spill));
        Ok(spill)
    }

    fn live(&self) -> Vec<Arc<Spill>> {
        self.spills.lock().unwrap().iter().filter_map(Weak::upgrade).collect()
    }

    /// Whether a running fetch has the block, and its size.
    pub fn size_of(&self, cid: &Cid) -> Option<u64> {
        self.live().iter().find_map(|s| s.size_of(cid))
    }

    /// The block, when a running fetch has it and its bytes still hash to its CID.
    pub fn get(&self, cid: &Cid) -> Option<Vec<u8>> {
        self.live().iter().find_map(|s| s.get(cid))
    }
}

impl Spill {
    /// Keeps a block the fetch has just verified. A failed write is logged once; the fetch itself
    /// goes on (serving others is a courtesy, storing is the job).
    pub fn put(&self, cid: &Cid, data: &[u8]) {
        if self.broken.load(Ordering::Relaxed) || self.index.lock().unwrap().contains_key(cid) {
            return;
        }
        let at = self.end.fetch_add(data.len() as u64, Ordering::Relaxed);
        match self.file.write_all_at(data, at) {
            Ok(()) => {
                self.index.lock().unwrap().insert(*cid, (at, data.len() as u32));
            }
            Err(e) => {
                if !self.broken.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "cannot keep fetched blocks for other peers; serving only what is stored");
                }
            }
        }
    }

    pub fn size_of(&self, cid: &Cid) -> Option<u64> {
        self.index.lock().unwrap().get(cid).map(|&(_, n)| n as u64)
    }

    pub fn get(&self, cid: &Cid) -> Option<Vec<u8>> {
        let (at, n) = *self.index.lock().unwrap().get(cid)?;
        let mut buf = vec![0u8; n as usize];
        if let Err(e) = self.file.read_exact_at(&mut buf, at) {
            tracing::error!(%cid, error = %e, "cannot read a fetched block back");
            return None;
        }
        if !cid.matches(&buf) {
            tracing::error!(%cid, "a fetched block changed on disk before it was stored; not serving it");
            return None;
        }
        Some(buf)
    }

    /// Blocks kept.
    pub fn len(&self) -> usize {
        self.index.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shp_core::cid::RAW;

    #[test]
    fn blocks_are_served_while_the_spill_lives_and_checked_on_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::init(dir.path()).unwrap();
        let inflight = Inflight::default();
        let a = b"first block".to_vec();
        let b = vec![7u8; 100_000];
        let (ca, cb) = (Cid::hash(RAW, &a), Cid::hash(RAW, &b));
        let spill = inflight.begin(&home).unwrap();
        assert!(inflight.get(&ca).is_none());
        spill.put(&ca, &a);
        spill.put(&cb, &b);
        spill.put(&ca, &a);
        assert_eq!(spill.len(), 2);
        assert_eq!(inflight.size_of(&cb), Some(100_000));
        assert_eq!(inflight.get(&ca).as_deref(), Some(&a[..]));
        assert_eq!(inflight.get(&cb).as_deref(), Some(&b[..]));
        // Bytes changed behind its back are never served.
        spill.file.write_all_at(b"X", 0).unwrap();
        assert!(inflight.get(&ca).is_none());
        assert_eq!(inflight.get(&cb).as_deref(), Some(&b[..]));
        drop(spill);
        assert!(inflight.get(&cb).is_none());
        assert!(inflight.size_of(&cb).is_none());
    }
}
