//! A bounded on-disk cache of rebuilt blobs, so serving a hot recipe layer twice does not
//! re-encode it. Files are `DIR/<sha256 hex>`, published by rename only after the rebuild was
//! read to its end (which means its sha256 was checked), read back through the same sha256
//! check, and evicted least-recently-used first when the total passes the bound. A cache file is
//! a copy: losing or corrupting it costs a rebuild, never data.

use crate::blob::verified;
use crate::cid::format_digest;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// The cache: a directory and how many bytes it may hold (0: off).
#[derive(Debug, Clone)]
pub struct BlobCache {
    dir: PathBuf,
    max_bytes: u64,
}

impl BlobCache {
    pub fn new(dir: &Path, max_bytes: u64) -> BlobCache {
        BlobCache {
            dir: dir.to_path_buf(),
            max_bytes,
        }
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn path(&self, digest: &[u8; 32]) -> PathBuf {
        self.dir.join(&format_digest(digest)[7..])
    }

    /// The cached blob, verified as it is read (a mismatch at the end is an error), or None.
    pub fn open(&self, digest: &[u8; 32], size: u64) -> Option<Box<dyn Read + Send>> {
        if self.max_bytes == 0 {
            return None;
        }
        let p = self.path(digest);
        let f = File::options().read(true).write(true).open(&p).ok()?;
        if f.metadata().ok()?.len() != size {
            let _ = fs::remove_file(&p);
            return None;
        }
        let _ = f.set_modified(SystemTime::now()); // recently used
        Some(verified(BufReader::with_capacity(256 * 1024, f), *digest, size))
    }

    /// Passes `rebuilt` (a verifying reader of the blob) through, keeping a copy that is published
    /// once it has been read to its end, if the blob fits the cache.
    pub fn fill<'a>(
        &self,
        digest: &[u8; 32],
        size: u64,
        rebuilt: Box<dyn Read + Send + 'a>,
    ) -> Box<dyn Read + Send + 'a> {
        if self.max_bytes == 0 || size > self.max_bytes / 2 || fs::create_dir_all(&self.dir).is_err() {
            return rebuilt;
        }
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            &format_digest(digest)[7..]
        ));
        let Ok(file) = File::create_new(&tmp) else {
            return rebuilt;
        };
        Box::new(Filling {
            inner: rebuilt,
            out: Some(io::BufWriter::with_capacity(256 * 1024, file)),
            tmp,
            dest: self.path(digest),
            cache: self.clone(),
        })
    }

    /// Deletes least-recently-used files until the cache holds at most `max_bytes`.
    pub fn evict(&self) -> io::Result<()> {
        let mut files = Vec::new();
        let mut total = 0u64;
        for e in fs::read_dir(&self.dir)? {
            let e = e?;
            let name = e.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let m = e.metadata()?;
            total += m.len();
            files.push((m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len(), e.path()));
        }
        files.sort();
        for (_, len, p) in files {
            if total <= self.max_bytes {
                break;
            }
            if fs::remove_file(&p).is_ok() {
                total -= len;
            }
        }
        Ok(())
    }
}

struct Filling<'a> {
    inner: Box<dyn Read + Send + 'a>,
    out: Option<io::BufWriter<File>>,
    tmp: PathBuf,
    dest: PathBuf,
    cache: BlobCache,
}

impl Read for Filling<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(out) = &mut self.out {
            if n > 0 {
                if out.write_all(&buf[..n]).is_err() {
                    self.out = None; // a full disk only costs the copy
                }
            } else if !buf.is_empty() {
                // The rebuild ended cleanly, so its sha256 matched: publish the copy.
                let out = self.out.take().expect("checked");
                if out.into_inner().is_ok() && fs::rename(&self.tmp, &self.dest).is_ok() {
                    let _ = self.cache.evict();
                }
            }
        }
        Ok(n)
    }
}

impl Drop for Filling<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn blob(seed: u8, n: usize) -> (Vec<u8>, [u8; 32]) {
        let b: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(seed)).collect();
        let d = Sha256::digest(&b).into();
        (b, d)
    }

    #[test]
    fn fills_serves_verifies_and_evicts() {
        let dir = tempfile::tempdir().unwrap();
        let c = BlobCache::new(dir.path(), 250_000);
        let (a, da) = blob(3, 100_000);
        assert!(c.open(&da, a.len() as u64).is_none());
        // A copy read only halfway is not published.
        let mut half = c.fill(&da, a.len() as u64, verified(&a[..], da, a.len() as u64));
        half.read_exact(&mut [0u8; 1000]).unwrap();
        drop(half);
        assert!(c.open(&da, a.len() as u64).is_none());
        let mut got = Vec::new();
        c.fill(&da, a.len() as u64, verified(&a[..], da, a.len() as u64))
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, a);
        let mut again = Vec::new();
        c.open(&da, a.len() as u64)
            .expect("cached")
            .read_to_end(&mut again)
            .unwrap();
        assert_eq!(again, a);
        // A corrupted copy fails its check at the end.
        let p = c.path(&da);
        let mut bytes = fs::read(&p).unwrap();
        bytes[5] ^= 1;
        fs::write(&p, &bytes).unwrap();
        assert!(c
            .open(&da, a.len() as u64)
            .unwrap()
            .read_to_end(&mut Vec::new())
            .is_err());
        fs::remove_file(&p).unwrap();
        // Three blobs of 100 kB in a 250 kB cache: the least recently used goes.
        for seed in [5u8, 7, 9] {
            let (b, d) = blob(seed, 100_000);
            c.fill(&d, b.len() as u64, verified(&b[..], d, b.len() as u64))
                .read_to_end(&mut Vec::new())
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let (b5, d5) = blob(5, 100_000);
        assert!(c.open(&d5, b5.len() as u64).is_none(), "oldest evicted");
        let (b9, d9) = blob(9, 100_000);
        assert!(c.open(&d9, b9.len() as u64).is_some());
        // A rebuild that fails its check is not published.
        let (x, dx) = blob(11, 1000);
        let wrong = [0u8; 32];
        assert!(c
            .fill(&wrong, x.len() as u64, verified(&x[..], wrong, x.len() as u64))
            .read_to_end(&mut Vec::new())
            .is_err());
        assert!(c.open(&wrong, 1000).is_none());
        let _ = dx;
    }
}
