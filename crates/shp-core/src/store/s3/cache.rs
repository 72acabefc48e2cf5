//! The local side of an S3 store, in the home: pack indexes (immutable, kept for good) and a
//! bounded cache of hot blocks (one file per block, oldest written evicted first). Nothing here is
//! trusted: an index is checked by its checksum, a block against its CID, and a bad file is
//! removed and fetched again.

use crate::cid::Cid;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::store::RequestStats;

const REQUESTS: &str = "requests.json";

pub struct LocalCache {
    dir: PathBuf,
    idx_dir: PathBuf,
    blocks_dir: PathBuf,
    bound: u64,
    used: AtomicU64,
    evicting: Mutex<()>,
}

fn tmp_name(dir: &Path) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Writes a file atomically (temporary name, then rename); failures are ignored by callers: the
/// cache is an optimisation.
fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_name(dir);
    let mut f = fs::File::create(&tmp)?;
    f.write_all(data)?;
    drop(f);
    fs::rename(&tmp, dir.join(name)).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

impl LocalCache {
    /// Opens (creating) `dir/idx` and `dir/blocks`; `bound` caps the blocks' bytes.
    pub fn open(dir: &Path, bound: u64) -> std::io::Result<LocalCache> {
        let idx_dir = dir.join("idx");
        let blocks_dir = dir.join("blocks");
        fs::create_dir_all(&idx_dir)?;
        fs::create_dir_all(&blocks_dir)?;
        let mut used = 0;
        for e in fs::read_dir(&blocks_dir)?.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().starts_with(".tmp-") {
                let _ = fs::remove_file(e.path());
            } else if let Ok(m) = e.metadata() {
                used += m.len();
            }
        }
        Ok(LocalCache {
            dir: dir.to_path_buf(),
            idx_dir,
            blocks_dir,
            bound,
            used: AtomicU64::new(used),
            evicting: Mutex::new(()),
        })
    }

    pub fn index(&self, name: &str) -> Option<Vec<u8>> {
        fs::read(self.idx_dir.join(name)).ok()
    }

    pub fn put_index(&self, name: &str, data: &[u8]) {
        let _ = write_atomic(&self.idx_dir, name, data);
    }

    pub fn drop_index(&self, name: &str) {
        let _ = fs::remove_file(self.idx_dir.join(name));
    }

    /// A cached block, checked against its CID (a bad file is removed).
    pub fn block(&self, cid: &Cid) -> Option<Vec<u8>> {
        if self.bound == 0 {
            return None;
        }
        let path = self.blocks_dir.join(cid.to_string());
        let data = fs::read(&path).ok()?;
        if cid.matches(&data) {
            Some(data)
        } else {
            let _ = fs::remove_file(&path);
            self.used.fetch_sub(data.len() as u64, Ordering::Relaxed);
            None
        }
    }

    pub fn put_block(&self, cid: &Cid, data: &[u8]) {
        if self.bound == 0 || data.len() as u64 > self.bound / 4 {
            return;
        }
        if write_atomic(&self.blocks_dir, &cid.to_string(), data).is_ok() {
            let used = self.used.fetch_add(data.len() as u64, Ordering::Relaxed) + data.len() as u64;
            if used > self.bound {
                self.evict();
            }
        }
    }

    /// Removes the oldest blocks until the cache is at 90 % of its bound.
    fn evict(&self) {
        let Ok(_guard) = self.evicting.try_lock() else { return };
        let Ok(dir) = fs::read_dir(&self.blocks_dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = dir
            .flatten()
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        files.sort();
        let mut used: u64 = files.iter().map(|f| f.1).sum();
        let target = self.bound / 10 * 9;
        for (_, len, path) in files {
            if used <= target {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                used -= len;
            }
        }
        self.used.store(used, Ordering::Relaxed);
    }

    /// The requests every finished command of this home made to the bucket (`requests.json`).
    pub fn requests(&self) -> RequestStats {
        fs::read(self.dir.join(REQUESTS))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Adds one process's requests to `requests.json`, under an exclusive lock so that commands
    /// finishing at once all count. Best effort: the ledger is a report, not state.
    pub fn add_requests(&self, r: &RequestStats) {
        if *r == RequestStats::default() {
            return;
        }
        let Ok(lock) = fs::File::create(self.dir.join(".requests.lock")) else {
            return;
        };
        if lock.lock().is_err() {
            return;
        }
        let total = self.requests() + *r;
        if let Ok(json) = serde_json::to_vec(&total) {
            let _ = write_atomic(&self.dir, REQUESTS, &json);
        }
    }

    #[cfg(test)]
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_checked_and_bounded() {
        let d = tempfile::tempdir().unwrap();
        let c = LocalCache::open(d.path(), 10_000).unwrap();
        let blocks: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 1000]).collect();
        for b in &blocks {
            c.put_block(&Cid::hash(crate::cid::RAW, b), b);
        }
        assert!(c.used() <= 10_000, "{}", c.used());
        let last = blocks.last().unwrap();
        let cid = Cid::hash(crate::cid::RAW, last);
        assert_eq!(c.block(&cid).as_deref(), Some(&last[..]));
        // a changed file is not served
        fs::write(d.path().join("blocks").join(cid.to_string()), b"other").unwrap();
        assert_eq!(c.block(&cid), None);
        assert!(!d.path().join("blocks").join(cid.to_string()).exists());
    }

    #[test]
    fn request_counts_add_up_across_processes() {
        let d = tempfile::tempdir().unwrap();
        let c = LocalCache::open(d.path(), 0).unwrap();
        assert_eq!(c.requests(), RequestStats::default());
        let one = RequestStats {
            get: 3,
            put: 2,
            bytes_out: 100,
            ..Default::default()
        };
        c.add_requests(&one);
        LocalCache::open(d.path(), 0).unwrap().add_requests(&one);
        let t = c.requests();
        assert_eq!((t.get, t.put, t.bytes_out, t.list), (6, 4, 200, 0));
    }
}
