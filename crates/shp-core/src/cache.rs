//! A bounded on-disk cache of rebuilt blobs, so serving a hot recipe layer twice does not
//! re-encode it, and the one rebuild that concurrent readers of a cold blob share.
//!
//! Files are `DIR/<sha256 hex>`, read back through the blob's sha256 check and evicted
//! least-recently-used first when the total passes the bound. A cache file is a copy: losing or
//! corrupting it costs a rebuild, never data.
//!
//! **Single flight.** The first reader of a blob that is not cached starts one rebuild on a
//! thread of its own, which writes into a temp file `DIR/.tmp-…`; every reader of that blob (the
//! first included) reads the growing file by position, up to the bytes written so far, and waits
//! on a condvar for more. Nothing goes through memory buffers shared between readers, so memory
//! does not grow with the blob's size or the number of readers. A reader's end of file comes only
//! once the rebuild read to its end, which is when its sha256 and size were proven; if the rebuild
//! fails, every reader gets the same error (at its next read, wherever it stands), and nothing is
//! published. On success the temp file is renamed into the cache.
//!
//! Blobs that the cache cannot keep (cache off, or bigger than half its bound) are shared all the
//! same: their temp file is unlinked as soon as it is open, so it lives exactly as long as its
//! last reader, and the rebuild stops when no reader is left. A blob that fits the cache is
//! rebuilt to its end even after its readers went away: the next request is then a hit. If the
//! temp file cannot be created or written (a full disk), every reader falls back to a rebuild of
//! its own.
//!
//! **Adopted copies.** A blob that arrives whole in a file of the home's (a registry upload, once
//! stored as a recipe) can be put in the cache as it is ([`BlobCache::adopt`]: a hard link, else a
//! copy), so the first pull of a freshly pushed layer is a hit instead of a rebuild. It is read back
//! through the same sha256 check as every cached copy.

use crate::blob::verified;
use crate::cid::format_digest;
use crate::error::Error;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::SystemTime;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Bytes the rebuild thread reads and writes at a time (readers are woken once per chunk).
const CHUNK: usize = 256 * 1024;

/// Opens a fresh rebuild of a blob: a reader that checks the blob's sha256 and size at its end
/// (a mismatch is an error, not an end of file), as [`crate::blob::BlobNode::open`] gives.
pub type Rebuild = Arc<dyn Fn() -> Box<dyn Read + Send> + Send + Sync>;

/// What the cache did since the home was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads served from a cached copy.
    pub hits: u64,
    /// Rebuilds started: one per cold blob however many read it at once.
    pub rebuilds: u64,
    /// Reads that joined a rebuild another read had started.
    pub joined: u64,
}

/// The cache: a directory, how many bytes it may hold (0: off), and the rebuilds in flight.
/// Clones share the same state.
#[derive(Clone)]
pub struct BlobCache {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    max_bytes: u64,
    flights: Mutex<HashMap<[u8; 32], Weak<Flight>>>,
    hits: AtomicU64,
    rebuilds: AtomicU64,
    joined: AtomicU64,
}

impl std::fmt::Debug for BlobCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobCache")
            .field("dir", &self.inner.dir)
            .field("max_bytes", &self.inner.max_bytes)
            .finish_non_exhaustive()
    }
}

/// One rebuild in progress (or finished, while readers hold it).
struct Flight {
    size: u64,
    /// The temp file: written by the rebuild thread at increasing offsets, read by position.
    file: File,
    state: Mutex<FlightState>,
    grew: Condvar,
}

struct FlightState {
    /// Bytes of the blob in the file so far.
    written: u64,
    end: Option<End>,
}

enum End {
    /// Read to its end: sha256 and size matched.
    Proven,
    /// The rebuild failed; every reader gets a copy of this error.
    Failed(Error),
    /// The temp file could not be written: every reader rebuilds on its own.
    Unshared,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere does not make the state unusable: every update is a single assignment.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl BlobCache {
    pub fn new(dir: &Path, max_bytes: u64) -> BlobCache {
        BlobCache {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                max_bytes,
                flights: Mutex::new(HashMap::new()),
                hits: AtomicU64::new(0),
                rebuilds: AtomicU64::new(0),
                joined: AtomicU64::new(0),
            }),
        }
    }

    pub fn max_bytes(&self) -> u64 {
        self.inner.max_bytes
    }

    pub fn stats(&self) -> CacheStats {
        let i = &self.inner;
        CacheStats {
            hits: i.hits.load(Ordering::Relaxed),
            rebuilds: i.rebuilds.load(Ordering::Relaxed),
            joined: i.joined.load(Ordering::Relaxed),
        }
    }

    fn path(&self, digest: &[u8; 32]) -> PathBuf {
        self.inner.dir.join(&format_digest(digest)[7..])
    }

    /// The cached blob, verified as it is read (a mismatch at the end is an error), or None.
    pub fn open(&self, digest: &[u8; 32], size: u64) -> Option<Box<dyn Read + Send>> {
        if self.inner.max_bytes == 0 {
            return None;
        }
        let p = self.path(digest);
        let f = File::options().read(true).write(true).open(&p).ok()?;
        if f.metadata().ok()?.len() != size {
            let _ = fs::remove_file(&p);
            return None;
        }
        let _ = f.set_modified(SystemTime::now()); // recently used
        self.inner.hits.fetch_add(1, Ordering::Relaxed);
        Some(verified(BufReader::with_capacity(CHUNK, f), *digest, size))
    }

    /// The blob from byte `offset` on: from the cache when it is there, else from the rebuild of
    /// it in flight, else from a new rebuild (`rebuild` opens one) that the next readers share.
    /// The reader's end of file means the whole blob's sha256 was proven. A cached copy is
    /// verified from its start, so an offset into it costs a read (not a rebuild) of the bytes
    /// before it.
    pub fn read_at(&self, digest: &[u8; 32], size: u64, offset: u64, rebuild: Rebuild) -> Box<dyn Read + Send> {
        if let Some(r) = self.open(digest, size) {
            return skip(r, offset);
        }
        let flight = {
            let mut flights = lock(&self.inner.flights);
            match flights.get(digest).and_then(Weak::upgrade) {
                Some(f) => {
                    self.inner.joined.fetch_add(1, Ordering::Relaxed);
                    f
                }
                None => {
                    // A rebuild may have been published since the look-up above.
                    if let Some(r) = self.open(digest, size) {
                        return skip(r, offset);
                    }
                    flights.retain(|_, w| w.strong_count() > 0);
                    match self.start(digest, size, rebuild.clone()) {
                        Some(f) => {
                            flights.insert(*digest, Arc::downgrade(&f));
                            f
                        }
                        None => return skip(rebuild(), offset),
                    }
                }
            }
        };
        Box::new(FlightReader {
            flight,
            pos: offset,
            rebuild,
            own: None,
        })
    }

    /// Creates the temp file and starts the rebuild thread; None if either cannot be done.
    fn start(&self, digest: &[u8; 32], size: u64, rebuild: Rebuild) -> Option<Arc<Flight>> {
        let dir = &self.inner.dir;
        fs::create_dir_all(dir).ok()?;
        let tmp = self.temp_path(digest);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .ok()?;
        let keep = self.inner.max_bytes > 0 && size <= self.inner.max_bytes / 2;
        let tmp = if keep {
            Some(tmp)
        } else {
            // Nothing to publish: the file lives as long as the last reader holds it.
            let _ = fs::remove_file(&tmp);
            None
        };
        let flight = Arc::new(Flight {
            size,
            file,
            state: Mutex::new(FlightState { written: 0, end: None }),
            grew: Condvar::new(),
        });
        let (cache, f, d, t) = (self.clone(), flight.clone(), *digest, tmp.clone());
        let spawned = std::thread::Builder::new()
            .name("shp-rebuild".into())
            .spawn(move || cache.run(d, f, t, rebuild));
        if spawned.is_err() {
            if let Some(t) = tmp {
                let _ = fs::remove_file(t);
            }
            return None;
        }
        self.inner.rebuilds.fetch_add(1, Ordering::Relaxed);
        Some(flight)
    }

    /// The rebuild thread: `rebuild` into the flight's file, then the verdict.
    fn run(&self, digest: [u8; 32], flight: Arc<Flight>, tmp: Option<PathBuf>, rebuild: Rebuild) {
        // Whatever happens (a panicking encoder included), the readers get a verdict.
        let mut guard = Verdict {
            cache: self,
            digest,
            flight: &flight,
            tmp: tmp.as_deref(),
            end: None,
        };
        let mut r = rebuild();
        let mut buf = vec![0u8; CHUNK];
        let mut written = 0u64;
        let end = loop {
            match r.read(&mut buf) {
                // The reader checks sha256 and size at its end: a clean end means they matched.
                Ok(0) => break End::Proven,
                Ok(n) => {
                    if flight.file.write_all_at(&buf[..n], written).is_err() {
                        break End::Unshared;
                    }
                    written += n as u64;
                    lock(&flight.state).written = written;
                    flight.grew.notify_all();
                    if tmp.is_none() && self.abandon_if_unread(&digest, &flight) {
                        guard.end = Some(End::Unshared); // nobody left to tell
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break End::Failed(crate::dag::unwrap_io(e)),
            }
        };
        guard.end = Some(end);
    }

    /// True (and the flight forgotten) when only the rebuild thread still holds the flight. The
    /// check runs under the flights lock, so no reader can join at the same moment.
    fn abandon_if_unread(&self, digest: &[u8; 32], flight: &Arc<Flight>) -> bool {
        let mut flights = lock(&self.inner.flights);
        if Arc::strong_count(flight) > 1 {
            return false;
        }
        forget(&mut flights, digest, flight);
        true
    }

    /// A fresh temp file name in the cache: `.tmp-PID-SEQ-HEX` (`evict` reads the PID back to
    /// remove what a process that is gone left behind).
    fn temp_path(&self, digest: &[u8; 32]) -> PathBuf {
        self.inner.dir.join(format!(
            ".tmp-{}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            &format_digest(digest)[7..]
        ))
    }

    /// Keeps the blob in `path` (its bytes already proven to be the blob's, e.g. by an import that
    /// checked its digest) as the blob's cached copy: a hard link when `path` is on the cache's
    /// file system, else a copy. Nothing happens when the cache is off, the blob is bigger than
    /// half its bound, or a copy is already there. True when a copy was added. Reads still check
    /// the copy's sha256, so a file changed behind the cache's back costs a rebuild, never data.
    pub fn adopt(&self, digest: &[u8; 32], size: u64, path: &Path) -> io::Result<bool> {
        let max = self.inner.max_bytes;
        let dest = self.path(digest);
        if max == 0 || size > max / 2 || dest.exists() {
            return Ok(false);
        }
        if fs::metadata(path)?.len() != size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not {size} bytes long", path.display()),
            ));
        }
        fs::create_dir_all(&self.inner.dir)?;
        let tmp = self.temp_path(digest);
        let placed = fs::hard_link(path, &tmp).or_else(|_| fs::copy(path, &tmp).map(|_| ()));
        let published = placed.and_then(|()| fs::rename(&tmp, &dest));
        if let Err(e) = published {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let _ = self.evict();
        Ok(true)
    }

    /// Deletes least-recently-used files until the cache holds at most `max_bytes`.
    pub fn evict(&self) -> io::Result<()> {
        let mut files = Vec::new();
        let mut total = 0u64;
        let procfs = Path::new("/proc/self").exists();
        for e in fs::read_dir(&self.inner.dir)? {
            let e = e?;
            let name = e.file_name();
            if let Some(rest) = name.to_string_lossy().strip_prefix(".tmp-") {
                // A temp file of a process that is gone (killed mid-rebuild or mid-adopt).
                let pid = rest.split('-').next().unwrap_or("");
                if procfs && !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
                    let _ = fs::remove_file(e.path());
                }
                continue;
            }
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let m = e.metadata()?;
            total += m.len();
            files.push((m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len(), e.path()));
        }
        files.sort();
        for (_, len, p) in files {
            if total <= self.inner.max_bytes {
                break;
            }
            if fs::remove_file(&p).is_ok() {
                total -= len;
            }
        }
        Ok(())
    }
}

/// Drops the table's entry for `digest` if it is `flight` (a newer flight may have replaced it).
fn forget(flights: &mut HashMap<[u8; 32], Weak<Flight>>, digest: &[u8; 32], flight: &Arc<Flight>) {
    if flights
        .get(digest)
        .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(flight)))
    {
        flights.remove(digest);
    }
}

/// Publishes the rebuild's verdict when the rebuild thread ends, however it ends.
struct Verdict<'a> {
    cache: &'a BlobCache,
    digest: [u8; 32],
    flight: &'a Arc<Flight>,
    tmp: Option<&'a Path>,
    end: Option<End>,
}

impl Drop for Verdict<'_> {
    fn drop(&mut self) {
        let end = self.end.take().unwrap_or_else(|| {
            End::Failed(Error::Store(format!(
                "rebuilding blob {} panicked",
                format_digest(&self.digest)
            )))
        });
        let proven = matches!(end, End::Proven);
        if let Some(tmp) = self.tmp {
            // Published before the flight is forgotten, so a new reader finds one or the other.
            if proven && fs::rename(tmp, self.cache.path(&self.digest)).is_ok() {
                let _ = self.cache.evict();
            } else {
                let _ = fs::remove_file(tmp);
            }
        }
        if !proven || self.tmp.is_some() {
            // A proven blob the cache does not keep stays joinable while its readers hold it.
            forget(&mut lock(&self.cache.inner.flights), &self.digest, self.flight);
        }
        lock(&self.flight.state).end = Some(end);
        self.flight.grew.notify_all();
    }
}

/// One reader of a flight, at its own position in the file.
struct FlightReader {
    flight: Arc<Flight>,
    pos: u64,
    rebuild: Rebuild,
    /// A rebuild of this reader's own, once the flight could not be shared.
    own: Option<Box<dyn Read + Send>>,
}

impl Read for FlightReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(r) = &mut self.own {
            return r.read(buf);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let f = &self.flight;
        let mut st = lock(&f.state);
        let avail = loop {
            match &st.end {
                Some(End::Failed(e)) => return Err(io::Error::other(e.duplicate())),
                Some(End::Unshared) => {
                    drop(st);
                    return self.own.insert(skip((self.rebuild)(), self.pos)).read(buf);
                }
                _ if self.pos < st.written => break st.written - self.pos,
                Some(End::Proven) => return Ok(0),
                None => st = f.grew.wait(st).unwrap_or_else(|e| e.into_inner()),
            }
        };
        drop(st);
        let n = (buf.len() as u64).min(avail) as usize;
        let k = f.file.read_at(&mut buf[..n], self.pos)?;
        if k == 0 {
            return Err(io::Error::other(Error::Store(format!(
                "the shared rebuild's temp file ends before its {} bytes",
                f.size
            ))));
        }
        self.pos += k as u64;
        Ok(k)
    }
}

/// `inner` without its first `n` bytes (read and dropped on the first read, so a verifying
/// reader still sees them).
pub(crate) fn skip(inner: Box<dyn Read + Send>, n: u64) -> Box<dyn Read + Send> {
    if n == 0 {
        return inner;
    }
    Box::new(Skip { inner, left: n })
}

struct Skip {
    inner: Box<dyn Read + Send>,
    left: u64,
}

impl Read for Skip {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left > 0 {
            // Short only past the end, where the inner reader has ended (and given its verdict).
            io::copy(&mut (&mut self.inner).take(self.left), &mut io::sink())?;
            self.left = 0;
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::io::Write;
    use std::sync::Barrier;
    use std::time::Duration;

    fn blob(seed: u8, n: usize) -> (Arc<Vec<u8>>, [u8; 32]) {
        let b: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(seed) ^ (i >> 9) as u8).collect();
        let d = Sha256::digest(&b).into();
        (Arc::new(b), d)
    }

    /// A verified rebuild of `b` that counts how often it was opened and sleeps `pause` per read.
    fn rebuild_of(b: &Arc<Vec<u8>>, d: [u8; 32], pause: Duration, opened: &Arc<AtomicU64>) -> Rebuild {
        let (b, opened) = (b.clone(), opened.clone());
        Arc::new(move || {
            opened.fetch_add(1, Ordering::SeqCst);
            let slow = Slow {
                data: b.clone(),
                pos: 0,
                pause,
                fail_at: None,
            };
            verified(slow, d, b.len() as u64)
        })
    }

    struct Slow {
        data: Arc<Vec<u8>>,
        pos: usize,
        pause: Duration,
        fail_at: Option<usize>,
    }

    impl Read for Slow {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(self.pause);
            if self.fail_at.is_some_and(|f| self.pos >= f) {
                return Err(io::Error::other(Error::CorruptBlock {
                    cid: "bafytest".into(),
                    reason: "flipped bit".into(),
                }));
            }
            let n = buf.len().min(10_000).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn read_all(mut r: Box<dyn Read + Send>) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        r.read_to_end(&mut v)?;
        Ok(v)
    }

    #[test]
    fn fills_serves_verifies_and_evicts() {
        let dir = tempfile::tempdir().unwrap();
        let c = BlobCache::new(dir.path(), 250_000);
        let (a, da) = blob(3, 100_000);
        let n = a.len() as u64;
        let opened = Arc::new(AtomicU64::new(0));
        assert!(c.open(&da, n).is_none());
        let got = read_all(c.read_at(&da, n, 0, rebuild_of(&a, da, Duration::ZERO, &opened))).unwrap();
        assert_eq!(got, *a);
        // Published by the time the reader saw its end.
        assert_eq!(read_all(c.open(&da, n).expect("cached")).unwrap(), *a);
        // An offset into a cached copy.
        let tail = read_all(c.read_at(&da, n, 99_000, rebuild_of(&a, da, Duration::ZERO, &opened))).unwrap();
        assert_eq!(tail, a[99_000..]);
        assert_eq!(opened.load(Ordering::SeqCst), 1);
        assert_eq!(
            c.stats(),
            CacheStats {
                hits: 2,
                rebuilds: 1,
                joined: 0
            }
        );
        // A corrupted copy fails its check at the end.
        let p = c.path(&da);
        let mut bytes = fs::read(&p).unwrap();
        bytes[5] ^= 1;
        fs::write(&p, &bytes).unwrap();
        assert!(read_all(c.open(&da, n).unwrap()).is_err());
        fs::remove_file(&p).unwrap();
        // Three blobs of 100 kB in a 250 kB cache: the least recently used goes.
        for seed in [5u8, 7, 9] {
            let (b, d) = blob(seed, 100_000);
            read_all(c.read_at(&d, 100_000, 0, rebuild_of(&b, d, Duration::ZERO, &opened))).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(c.open(&blob(5, 100_000).1, 100_000).is_none(), "oldest evicted");
        assert!(c.open(&blob(9, 100_000).1, 100_000).is_some());
        // A rebuild that fails its check is not published.
        let (x, _) = blob(11, 1000);
        let wrong = [0u8; 32];
        assert!(read_all(c.read_at(&wrong, 1000, 0, rebuild_of(&x, wrong, Duration::ZERO, &opened))).is_err());
        assert!(c.open(&wrong, 1000).is_none());
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(left.is_empty(), "no temp file left behind");
    }

    #[test]
    fn concurrent_readers_share_one_rebuild() {
        for max in [10_000_000u64, 0] {
            let dir = tempfile::tempdir().unwrap();
            let c = BlobCache::new(dir.path(), max);
            let (a, da) = blob(13, 1_000_000);
            let opened = Arc::new(AtomicU64::new(0));
            let rebuild = rebuild_of(&a, da, Duration::from_millis(2), &opened);
            let barrier = Arc::new(Barrier::new(8));
            let readers: Vec<_> = (0..8u64)
                .map(|i| {
                    let (c, rebuild, barrier) = (c.clone(), rebuild.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        // Reader 7 starts mid-blob, as a Range request does.
                        let off = if i == 7 { 600_000 } else { 0 };
                        (off, read_all(c.read_at(&da, 1_000_000, off, rebuild)).unwrap())
                    })
                })
                .collect();
            for r in readers {
                let (off, got) = r.join().unwrap();
                assert!(got == a[off as usize..], "reader at {off} got other bytes");
            }
            assert_eq!(opened.load(Ordering::SeqCst), 1, "one rebuild (cache bound {max})");
            let s = c.stats();
            assert_eq!((s.rebuilds, s.joined + s.hits), (1, 7));
            assert_eq!(c.open(&da, 1_000_000).is_some(), max > 0);
        }
    }

    #[test]
    fn a_failed_rebuild_fails_every_reader_alike() {
        let dir = tempfile::tempdir().unwrap();
        let c = BlobCache::new(dir.path(), 10_000_000);
        let (a, da) = blob(17, 500_000);
        let data = a.clone();
        let rebuild: Rebuild = Arc::new(move || {
            let slow = Slow {
                data: data.clone(),
                pos: 0,
                pause: Duration::from_millis(2),
                fail_at: Some(300_000),
            };
            verified(slow, da, 500_000)
        });
        let readers: Vec<_> = (0..6u64)
            .map(|i| {
                let (c, rebuild) = (c.clone(), rebuild.clone());
                std::thread::spawn(move || {
                    let mut r = c.read_at(&da, 500_000, i * 50_000, rebuild);
                    let mut got = Vec::new();
                    let e = r.read_to_end(&mut got).expect_err("no clean end");
                    assert!(got.len() as u64 + i * 50_000 <= 300_000);
                    assert!(r.read(&mut [0u8; 10]).is_err(), "still an error after the first");
                    crate::dag::unwrap_io(e).to_string()
                })
            })
            .collect();
        let errs: Vec<String> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        assert!(errs.iter().all(|e| *e == errs[0]), "{errs:?}");
        assert!(
            errs[0].contains("bafytest") && errs[0].contains("flipped bit"),
            "{}",
            errs[0]
        );
        assert!(c.open(&da, 500_000).is_none(), "nothing published");
        assert_eq!(c.stats().rebuilds, 1);
    }

    #[test]
    fn readers_dropped_early_do_not_stop_the_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let c = BlobCache::new(dir.path(), 10_000_000);
        let (a, da) = blob(19, 400_000);
        let opened = Arc::new(AtomicU64::new(0));
        let rebuild = rebuild_of(&a, da, Duration::from_millis(1), &opened);
        // The first reader reads a little and goes away; a second one reads it all.
        let mut first = c.read_at(&da, 400_000, 0, rebuild.clone());
        first.read_exact(&mut [0u8; 1000]).unwrap();
        let second = c.read_at(&da, 400_000, 0, rebuild.clone());
        drop(first);
        assert_eq!(read_all(second).unwrap(), *a);
        // With every reader gone, a blob that fits is still rebuilt into the cache.
        let (b, db) = blob(23, 400_000);
        let mut only = c.read_at(&db, 400_000, 0, rebuild_of(&b, db, Duration::from_millis(1), &opened));
        only.read_exact(&mut [0u8; 10]).unwrap();
        drop(only);
        for _ in 0..500 {
            if c.open(&db, 400_000).is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(read_all(c.open(&db, 400_000).expect("cached")).unwrap(), *b);
        assert_eq!(opened.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn adopted_copies_are_hits_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let c = BlobCache::new(&dir.path().join("cache"), 1_000_000);
        let (a, da) = blob(31, 200_000);
        let upload = dir.path().join("upload");
        fs::write(&upload, &*a).unwrap();
        assert!(c.adopt(&da, 200_000, &upload).unwrap());
        assert!(!c.adopt(&da, 200_000, &upload).unwrap(), "already there");
        // The upload goes away, as a spooled upload does; the copy stays.
        fs::remove_file(&upload).unwrap();
        let opened = Arc::new(AtomicU64::new(0));
        let got = read_all(c.read_at(&da, 200_000, 0, rebuild_of(&a, da, Duration::ZERO, &opened))).unwrap();
        assert_eq!(
            (got == *a, opened.load(Ordering::SeqCst)),
            (true, 0),
            "a hit, no rebuild"
        );
        // Too big for the bound, or the wrong length: not adopted.
        let (b, db) = blob(37, 600_000);
        fs::write(&upload, &*b).unwrap();
        assert!(!c.adopt(&db, 600_000, &upload).unwrap());
        assert!(c.adopt(&db, 5, &upload).is_err());
        // Wrong bytes under a digest fail their check at the end, as any corrupted copy does.
        let (x, dx) = blob(41, 1000);
        fs::write(&upload, &x[..999]).unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(&upload)
            .unwrap()
            .write_all(&[!x[999]])
            .unwrap();
        assert!(c.adopt(&dx, 1000, &upload).unwrap());
        assert!(read_all(c.open(&dx, 1000).unwrap()).is_err());
        let tmp_left = fs::read_dir(dir.path().join("cache"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with('.'));
        assert!(!tmp_left);
        // A temp file left by a process that is gone goes at the next eviction; ours stay.
        let stale = dir.path().join("cache/.tmp-999999999-0-ab");
        let ours = dir.path().join(format!("cache/.tmp-{}-0-cd", std::process::id()));
        fs::write(&stale, b"x").unwrap();
        fs::write(&ours, b"x").unwrap();
        c.evict().unwrap();
        assert!(!stale.exists() && ours.exists());
    }

    #[test]
    fn an_unwritable_temp_file_means_a_rebuild_per_reader() {
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("not-a-dir");
        fs::write(&blocked, b"").unwrap();
        let c = BlobCache::new(&blocked.join("blobs"), 10_000_000);
        let (a, da) = blob(29, 50_000);
        let opened = Arc::new(AtomicU64::new(0));
        let rebuild = rebuild_of(&a, da, Duration::ZERO, &opened);
        assert_eq!(read_all(c.read_at(&da, 50_000, 0, rebuild.clone())).unwrap(), *a);
        assert_eq!(read_all(c.read_at(&da, 50_000, 10, rebuild)).unwrap(), a[10..]);
        assert_eq!((opened.load(Ordering::SeqCst), c.stats().rebuilds), (2, 0));
    }
}
