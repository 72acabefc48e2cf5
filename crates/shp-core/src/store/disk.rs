//! The embedded default store: append-only pack files with sorted indexes, zstd at rest.
//!
//! Layout under the store directory:
//! ```text
//! packs/<name>.pack   records: cid(36) comp(1) stored_len(u32 LE) raw_len(u32 LE) payload
//! packs/<name>.idx    "SHPIDX01", count(u64 LE), entries sorted by CID, sha256 of all before it
//! tmp/                packs being written (never read; swept by gc)
//! gc.lock             shared by every process using the store, exclusive for gc
//! ```
//! Crash safety: a batch writes its pack and index under `tmp/`, fsyncs both, renames the pack and
//! then the index into `packs/`, and fsyncs the directory. A pack without its index is invisible,
//! an index is only renamed after its pack is durable, so a crash never leaves a torn block or an
//! index entry pointing at missing bytes. Refs are written after the batch commits (see `refs`).
//! Many small blocks share one file, so disk use tracks compressed bytes, not filesystem blocks.
//!
//! Compression at rest follows [`Compression`]: by default every block is compressed (zstd level 3) as
//! it is written; with `deferred`, batches write *loose* packs (name ending in `-loose`, every record
//! raw) and garbage collection rewrites them compressed, like git's loose objects and packs. Readers
//! treat both alike (each record says how it is stored).

use super::{check_block, Batch, Blockstore, SweepStats};
use crate::cid::{Cid, CID_LEN};
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

const IDX_MAGIC: &[u8; 8] = b"SHPIDX01";
const PACK_MAGIC: &[u8; 8] = b"SHPPACK1";
const REC_HEAD: usize = CID_LEN + 1 + 4 + 4;
const IDX_ENTRY: usize = CID_LEN + 8 + 4 + 4 + 1;
/// A batch starts a new pack file past this size.
const PACK_ROLL: u64 = 1 << 30;
/// gc merges packs smaller than this.
const SMALL_PACK: u64 = 64 << 20;
/// A pack being written is synced to disk every this many bytes, so that sealing it does not wait
/// for the whole pack to reach the disk at once (the writer thread waits instead, while the import
/// goes on).
const SYNC_EVERY: u64 = 32 << 20;

thread_local! {
    /// One zstd decompression context per thread, kept: making one per block read cost more than
    /// decompressing a small block.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

const COMP_RAW: u8 = 0;
const COMP_ZSTD: u8 = 1;
/// Names of packs written raw, waiting for gc to compress them.
const LOOSE: &str = "-loose";

/// How the store compresses blocks at rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// zstd level (1..=19, or -7..=-1 for zstd's fast levels).
    pub level: i32,
    /// Write new blocks raw and leave compressing them to garbage collection (imports spend no CPU
    /// on it; the store holds raw bytes until the next gc).
    pub deferred: bool,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            level: 3,
            deferred: false,
        }
    }
}

impl Compression {
    /// Parses `zstd:N` or `zstd:N,deferred` (what [`Compression`]'s `Display` writes).
    pub fn parse(s: &str) -> Result<Compression> {
        let bad = || {
            Error::Store(format!(
                "store compression {s:?}: expected zstd:LEVEL or zstd:LEVEL,deferred (LEVEL 1..=19 or -7..=-1)"
            ))
        };
        let (spec, deferred) = match s.strip_suffix(",deferred") {
            Some(spec) => (spec, true),
            None => (s, false),
        };
        let level: i32 = spec.strip_prefix("zstd:").ok_or_else(bad)?.parse().map_err(|_| bad())?;
        if !((1..=19).contains(&level) || (-7..=-1).contains(&level)) {
            return Err(bad());
        }
        Ok(Compression { level, deferred })
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "zstd:{}{}", self.level, if self.deferred { ",deferred" } else { "" })
    }
}

/// How a process holds the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Normal use: many processes at once.
    Shared,
    /// Garbage collection: fails at once if another process uses the store.
    Exclusive,
}

#[derive(Clone, Copy, Debug)]
struct Loc {
    pack: u32,
    offset: u64,
    stored: u32,
    raw: u32,
    comp: u8,
}

#[derive(Default)]
struct State {
    index: HashMap<Cid, Loc>,
    packs: Vec<Option<(String, Arc<File>)>>,
    known: HashMap<String, u32>,
}

/// The on-disk pack store.
pub struct DiskStore {
    dir: PathBuf,
    state: RwLock<State>,
    compression: Compression,
    _lock: File,
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn unique_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "{:032x}-{}-{}",
        now_nanos(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io_path(dir, e))
}

impl DiskStore {
    /// Opens (creating if needed) the store in `dir`, compressing at rest by default.
    pub fn open(dir: &Path, mode: LockMode) -> Result<DiskStore> {
        DiskStore::open_with(dir, mode, Compression::default())
    }

    /// Opens (creating if needed) the store in `dir`; new blocks are compressed as `compression` says.
    pub fn open_with(dir: &Path, mode: LockMode, compression: Compression) -> Result<DiskStore> {
        for sub in ["packs", "tmp"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(|e| Error::io_path(&p, e))?;
        }
        let lock_path = dir.join("gc.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io_path(&lock_path, e))?;
        match mode {
            LockMode::Shared => lock.lock_shared().map_err(|e| Error::io_path(&lock_path, e))?,
            LockMode::Exclusive => lock.try_lock().map_err(|_| {
                Error::Store("the store is in use by another shp process; garbage collection needs it alone".into())
            })?,
        }
        let store = DiskStore {
            dir: dir.to_path_buf(),
            state: RwLock::new(State::default()),
            compression,
            _lock: lock,
        };
        store.refresh()?;
        Ok(store)
    }

    /// How new blocks are compressed.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    fn packs_dir(&self) -> PathBuf {
        self.dir.join("packs")
    }

    /// Loads indexes of packs this process has not seen yet (other processes add packs).
    fn refresh(&self) -> Result<()> {
        let dir = self.packs_dir();
        let mut names = Vec::new();
        for ent in fs::read_dir(&dir).map_err(|e| Error::io_path(&dir, e))? {
            let ent = ent.map_err(|e| Error::io_path(&dir, e))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".idx") {
                names.push(stem.to_string());
            }
        }
        names.sort();
        let new: Vec<String> = {
            let st = self.state.read().unwrap();
            names.into_iter().filter(|n| !st.known.contains_key(n)).collect()
        };
        for name in new {
            let entries = match self.read_idx(&name) {
                Ok(e) => e,
                // gc removed it between listing and reading
                Err(Error::IoPath { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let pack_path = dir.join(format!("{name}.pack"));
            let file = match File::open(&pack_path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io_path(&pack_path, e)),
            };
            let mut st = self.state.write().unwrap();
            if st.known.contains_key(&name) {
                continue;
            }
            let id = st.packs.len() as u32;
            st.packs.push(Some((name.clone(), Arc::new(file))));
            st.known.insert(name, id);
            for (cid, mut loc) in entries {
                loc.pack = id;
                st.index.entry(cid).or_insert(loc);
            }
        }
        Ok(())
    }

    /// Forgets everything and reloads (after another process rewrote packs).
    fn reload(&self) -> Result<()> {
        *self.state.write().unwrap() = State::default();
        self.refresh()
    }

    fn read_idx(&self, name: &str) -> Result<Vec<(Cid, Loc)>> {
        let path = self.packs_dir().join(format!("{name}.idx"));
        let b = fs::read(&path).map_err(|e| Error::io_path(&path, e))?;
        let bad = |r: &str| Error::Store(format!("index {}: {r}", path.display()));
        if b.len() < 16 + 32 || &b[..8] != IDX_MAGIC {
            return Err(bad("not an shp pack index"));
        }
        let (body, sum) = b.split_at(b.len() - 32);
        if Sha256::digest(body).as_slice() != sum {
            return Err(bad("checksum mismatch (torn or corrupt index)"));
        }
        let count = u64::from_le_bytes(body[8..16].try_into().unwrap()) as usize;
        if body.len() != 16 + count * IDX_ENTRY {
            return Err(bad("length does not match its entry count"));
        }
        let mut out = Vec::with_capacity(count);
        for e in body[16..].chunks_exact(IDX_ENTRY) {
            let cid = Cid::from_bytes(&e[..CID_LEN]).map_err(|_| bad("bad CID in entry"))?;
            let r = &e[CID_LEN..];
            out.push((
                cid,
                Loc {
                    pack: 0,
                    offset: u64::from_le_bytes(r[0..8].try_into().unwrap()),
                    stored: u32::from_le_bytes(r[8..12].try_into().unwrap()),
                    raw: u32::from_le_bytes(r[12..16].try_into().unwrap()),
                    comp: r[16],
                },
            ));
        }
        Ok(out)
    }

    fn lookup(&self, cid: &Cid) -> Option<(Loc, Arc<File>)> {
        let st = self.state.read().unwrap();
        let loc = *st.index.get(cid)?;
        let file = st.packs.get(loc.pack as usize)?.as_ref()?.1.clone();
        Some((loc, file))
    }

    fn read_block(&self, cid: &Cid, loc: Loc, file: &File) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; loc.stored as usize];
        file.read_exact_at(&mut buf, loc.offset)?;
        let data = match loc.comp {
            COMP_RAW => buf,
            COMP_ZSTD => DECOMPRESSOR
                .with(|d| {
                    let mut d = d.borrow_mut();
                    let d = match d.as_mut() {
                        Some(d) => d,
                        None => d.insert(zstd::bulk::Decompressor::new()?),
                    };
                    d.decompress(&buf, loc.raw as usize)
                })
                .map_err(|e| Error::CorruptBlock {
                    cid: cid.to_string(),
                    reason: format!("zstd: {e}"),
                })?,
            c => {
                return Err(Error::CorruptBlock {
                    cid: cid.to_string(),
                    reason: format!("unknown compression {c}"),
                })
            }
        };
        if data.len() != loc.raw as usize || !cid.matches(&data) {
            return Err(Error::CorruptBlock {
                cid: cid.to_string(),
                reason: "bytes on disk do not hash to the CID".into(),
            });
        }
        Ok(data)
    }

    fn stale_tmp(&self) -> Result<u64> {
        let tmp = self.dir.join("tmp");
        let mut freed = 0;
        for ent in fs::read_dir(&tmp).map_err(|e| Error::io_path(&tmp, e))? {
            let ent = ent?;
            freed += ent.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = fs::remove_file(ent.path());
        }
        Ok(freed)
    }
}

impl Blockstore for DiskStore {
    fn get(&self, cid: &Cid) -> Result<Vec<u8>> {
        for attempt in 0..3 {
            if let Some((loc, file)) = self.lookup(cid) {
                match self.read_block(cid, loc, &file) {
                    Ok(d) => return Ok(d),
                    // The pack may have been rewritten by gc in another process: reload once.
                    Err(Error::Io(_)) if attempt == 0 => self.reload()?,
                    Err(e) => return Err(e),
                }
            } else if attempt == 0 {
                self.refresh()?;
            } else {
                break;
            }
        }
        Err(Error::BlockNotFound { cid: cid.to_string() })
    }

    fn has(&self, cid: &Cid) -> Result<bool> {
        if self.state.read().unwrap().index.contains_key(cid) {
            return Ok(true);
        }
        self.refresh()?;
        Ok(self.state.read().unwrap().index.contains_key(cid))
    }

    fn size_of(&self, cid: &Cid) -> Result<u64> {
        if !self.has(cid)? {
            return Err(Error::BlockNotFound { cid: cid.to_string() });
        }
        Ok(self
            .state
            .read()
            .unwrap()
            .index
            .get(cid)
            .map(|l| l.raw as u64)
            .unwrap_or(0))
    }

    fn cids(&self) -> Result<Vec<Cid>> {
        self.refresh()?;
        Ok(self.state.read().unwrap().index.keys().copied().collect())
    }

    fn batch(&self) -> Result<Box<dyn Batch + '_>> {
        Ok(Box::new(PackBatch::new(self)?))
    }

    fn retain(&self, keep: &dyn Fn(&Cid) -> bool) -> Result<SweepStats> {
        self.reload()?;
        let mut stats = SweepStats::default();
        stats.bytes_freed += self.stale_tmp()?;
        let packs = self.loaded_packs();
        let dir = self.packs_dir();
        // Rewrite packs holding garbage, and merge small packs (every import adds one; merging
        // keeps the number of open files and index loads bounded).
        let small: Vec<bool> = packs.iter().map(|(_, n, _)| self.pack_size(n) < SMALL_PACK).collect();
        let merge_small = small.iter().filter(|s| **s).count() >= 2;
        let mut w = PackWriter::new(&self.dir, Some(self.compression.level))?;
        let mut rewritten = Vec::new();
        let mut old_bytes = 0;
        for ((id, name, file), small) in packs.iter().zip(small) {
            let entries: Vec<(Cid, Loc)> = self.read_idx(name)?;
            let live: Vec<&(Cid, Loc)> = entries.iter().filter(|(c, _)| keep(c)).collect();
            // Loose packs are compressed now, whatever their size.
            if live.len() == entries.len() && !(small && merge_small) && !name.ends_with(LOOSE) {
                continue;
            }
            for (cid, loc) in &live {
                let data = self.read_block(cid, Loc { pack: *id, ..*loc }, file)?;
                w.put(cid, &data)?;
            }
            stats.blocks_removed += (entries.len() - live.len()) as u64;
            old_bytes += self.pack_size(name);
            rewritten.push(name.clone());
        }
        let new_bytes = w.seal()?;
        drop(w);
        // The live blocks are durable in the new pack now: drop each old index, then its pack.
        for name in &rewritten {
            let idx = dir.join(format!("{name}.idx"));
            fs::remove_file(&idx).map_err(|e| Error::io_path(&idx, e))?;
            let _ = fs::remove_file(dir.join(format!("{name}.pack")));
        }
        fsync_dir(&dir)?;
        stats.bytes_freed += old_bytes.saturating_sub(new_bytes);
        self.reload()?;
        Ok(stats)
    }

    fn stored_bytes(&self) -> Result<u64> {
        self.pack_bytes(|_| true)
    }
}

/// What [`DiskStore::compact`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CompactStats {
    /// Loose packs rewritten compressed.
    pub packs_compacted: u64,
    /// Blocks they held.
    pub blocks: u64,
    /// Bytes of the loose packs, and of what replaced them.
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl DiskStore {
    /// Compresses every loose pack (what a `deferred` store wrote raw) into one new pack at the
    /// store's level, then removes the loose packs. No block is dropped or changed, so unlike
    /// garbage collection this runs while other processes use the store: the new pack is durable
    /// and published before a loose one goes; a process still reading a loose pack keeps its open
    /// file, and one that misses a block reloads the indexes. Two compactions at once only store
    /// some blocks twice (the next gc merges them).
    pub fn compact(&self) -> Result<CompactStats> {
        self.refresh()?;
        let mut loose = self.loaded_packs();
        loose.retain(|(_, n, _)| n.ends_with(LOOSE));
        let dir = self.packs_dir();
        let mut stats = CompactStats::default();
        let mut w = PackWriter::new(&self.dir, Some(self.compression.level))?;
        let mut done = Vec::new();
        for (id, name, file) in &loose {
            let entries = match self.read_idx(name) {
                Ok(e) => e,
                // Another process compacted it meanwhile.
                Err(Error::IoPath { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for (cid, loc) in &entries {
                let data = self.read_block(cid, Loc { pack: *id, ..*loc }, file)?;
                w.put(cid, &data)?;
            }
            stats.packs_compacted += 1;
            stats.blocks += entries.len() as u64;
            stats.bytes_before += self.pack_size(name);
            done.push(name.clone());
        }
        stats.bytes_after = w.seal()?;
        drop(w);
        for name in &done {
            // Index first: a pack without its index is invisible.
            let _ = fs::remove_file(dir.join(format!("{name}.idx")));
            let _ = fs::remove_file(dir.join(format!("{name}.pack")));
        }
        fsync_dir(&dir)?;
        self.reload()?;
        Ok(stats)
    }

    /// The packs this process has loaded: (id, name, file).
    fn loaded_packs(&self) -> Vec<(u32, String, Arc<File>)> {
        let st = self.state.read().unwrap();
        st.packs
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|(n, f)| (i as u32, n.clone(), f.clone())))
            .collect()
    }

    /// Bytes of a pack and its index on disk (0 for what is gone).
    fn pack_size(&self, name: &str) -> u64 {
        let dir = self.packs_dir();
        ["pack", "idx"]
            .iter()
            .map(|ext| fs::metadata(dir.join(format!("{name}.{ext}"))).map_or(0, |m| m.len()))
            .sum()
    }

    /// Bytes of loose packs (written raw by a `deferred` store): what the next gc will compress.
    pub fn loose_bytes(&self) -> Result<u64> {
        self.pack_bytes(|name| name.contains(&format!("{LOOSE}.")))
    }

    fn pack_bytes(&self, which: impl Fn(&str) -> bool) -> Result<u64> {
        let dir = self.packs_dir();
        let mut total = 0;
        for ent in fs::read_dir(&dir).map_err(|e| Error::io_path(&dir, e))? {
            let ent = ent?;
            if which(&ent.file_name().to_string_lossy()) {
                total += ent.metadata()?.len();
            }
        }
        Ok(total)
    }
}

/// Writes blocks into a fresh pack under `tmp/`; `seal` publishes it. Used synchronously by gc and
/// on a worker thread by [`PackBatch`].
struct PackWriter {
    dir: PathBuf,
    name: String,
    pack_tmp: PathBuf,
    w: Option<BufWriter<File>>,
    offset: u64,
    /// `offset` when the pack was last synced.
    synced: u64,
    entries: Vec<(Cid, Loc)>,
    /// None: a loose pack (records raw).
    comp: Option<zstd::bulk::Compressor<'static>>,
}

impl PackWriter {
    /// A writer compressing at `level`, or writing a loose pack (None).
    fn new(dir: &Path, level: Option<i32>) -> Result<Self> {
        Ok(PackWriter {
            dir: dir.to_path_buf(),
            name: String::new(),
            pack_tmp: PathBuf::new(),
            w: None,
            offset: 0,
            synced: 0,
            entries: Vec::new(),
            comp: level.map(zstd::bulk::Compressor::new).transpose()?,
        })
    }

    fn start(&mut self) -> Result<()> {
        self.name = unique_name();
        if self.comp.is_none() {
            self.name.push_str(LOOSE);
        }
        self.pack_tmp = self.dir.join("tmp").join(format!("{}.pack", self.name));
        let f = File::create(&self.pack_tmp).map_err(|e| Error::io_path(&self.pack_tmp, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        w.write_all(PACK_MAGIC)?;
        self.offset = PACK_MAGIC.len() as u64;
        self.synced = 0;
        self.w = Some(w);
        Ok(())
    }

    fn put(&mut self, cid: &Cid, data: &[u8]) -> Result<()> {
        if self.w.is_none() {
            self.start()?;
        }
        let compressed = match &mut self.comp {
            Some(c) => super::compress_block(c, data)?,
            None => None,
        };
        let (comp, payload) = match &compressed {
            Some(z) if z.len() < data.len() => (COMP_ZSTD, &z[..]),
            _ => (COMP_RAW, data),
        };
        let mut head = [0u8; REC_HEAD];
        head[..CID_LEN].copy_from_slice(&cid.to_bytes());
        head[CID_LEN] = comp;
        head[CID_LEN + 1..CID_LEN + 5].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        head[CID_LEN + 5..].copy_from_slice(&(data.len() as u32).to_le_bytes());
        let w = self.w.as_mut().expect("started");
        w.write_all(&head)?;
        w.write_all(payload)?;
        let loc = Loc {
            pack: 0,
            offset: self.offset + REC_HEAD as u64,
            stored: payload.len() as u32,
            raw: data.len() as u32,
            comp,
        };
        self.offset += (REC_HEAD + payload.len()) as u64;
        if self.offset - self.synced >= SYNC_EVERY {
            w.flush()?;
            w.get_ref().sync_data()?;
            self.synced = self.offset;
        }
        self.entries.push((*cid, loc));
        if self.offset >= PACK_ROLL {
            self.seal()?;
        }
        Ok(())
    }

    /// Publishes the current pack (if any); returns the bytes it occupies.
    fn seal(&mut self) -> Result<u64> {
        let Some(w) = self.w.take() else { return Ok(0) };
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        drop(f);
        let mut entries = std::mem::take(&mut self.entries);
        entries.sort_by_key(|(c, _)| c.to_bytes());
        let mut idx = Vec::with_capacity(16 + entries.len() * IDX_ENTRY + 32);
        idx.extend_from_slice(IDX_MAGIC);
        idx.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        for (cid, loc) in &entries {
            idx.extend_from_slice(&cid.to_bytes());
            idx.extend_from_slice(&loc.offset.to_le_bytes());
            idx.extend_from_slice(&loc.stored.to_le_bytes());
            idx.extend_from_slice(&loc.raw.to_le_bytes());
            idx.push(loc.comp);
        }
        let sum = Sha256::digest(&idx);
        idx.extend_from_slice(&sum);
        let tmp = self.dir.join("tmp");
        let idx_tmp = tmp.join(format!("{}.idx", self.name));
        {
            let mut f = File::create(&idx_tmp).map_err(|e| Error::io_path(&idx_tmp, e))?;
            f.write_all(&idx)?;
            f.sync_all()?;
        }
        fsync_dir(&tmp)?;
        let packs = self.dir.join("packs");
        let pack_final = packs.join(format!("{}.pack", self.name));
        fs::rename(&self.pack_tmp, &pack_final).map_err(|e| Error::io_path(&pack_final, e))?;
        fsync_dir(&packs)?;
        let idx_final = packs.join(format!("{}.idx", self.name));
        fs::rename(&idx_tmp, &idx_final).map_err(|e| Error::io_path(&idx_final, e))?;
        fsync_dir(&packs)?;
        Ok(self.offset + idx.len() as u64)
    }

    /// Removes an unpublished pack.
    fn abort(&mut self) {
        if self.w.take().is_some() {
            let _ = fs::remove_file(&self.pack_tmp);
        }
    }
}

impl Drop for PackWriter {
    fn drop(&mut self) {
        self.abort();
    }
}

enum Msg {
    Block(Cid, Vec<u8>),
    Finish,
}

/// A batch: dedup and bookkeeping on the caller's thread, compression and writing on a worker
/// thread, so importing uses both cores.
struct PackBatch<'a> {
    store: &'a DiskStore,
    seen: HashSet<Cid>,
    tx: Option<std::sync::mpsc::SyncSender<Msg>>,
    worker: Option<std::thread::JoinHandle<Result<()>>>,
    /// Why the worker stopped, once it has: every later put reports the same error (a full disk
    /// stays a full disk for every caller, not "pack writer stopped" for all but the first).
    failed: Option<Error>,
}

impl<'a> PackBatch<'a> {
    fn new(store: &'a DiskStore) -> Result<Self> {
        let c = store.compression;
        let mut writer = PackWriter::new(&store.dir, (!c.deferred).then_some(c.level))?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Msg>(256);
        let worker = std::thread::Builder::new()
            .name("shp-pack-writer".into())
            .spawn(move || {
                loop {
                    match rx.recv() {
                        Ok(Msg::Block(cid, data)) => {
                            if let Err(e) = writer.put(&cid, &data) {
                                writer.abort();
                                return Err(e);
                            }
                        }
                        Ok(Msg::Finish) => return writer.seal().map(|_| ()),
                        // The batch was dropped: discard what was written.
                        Err(_) => {
                            writer.abort();
                            return Ok(());
                        }
                    }
                }
            })?;
        Ok(PackBatch {
            store,
            seen: HashSet::new(),
            tx: Some(tx),
            worker: Some(worker),
            failed: None,
        })
    }

    /// Waits for the worker and returns its outcome.
    fn join(&mut self) -> Result<()> {
        self.tx.take();
        match self.worker.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(Error::Store("pack writer thread panicked".into()))),
            None => Ok(()),
        }
    }

    fn send(&mut self, msg: Msg) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.duplicate());
        }
        let sent = self.tx.as_ref().map(|tx| tx.send(msg).is_ok()).unwrap_or(false);
        if !sent {
            // The worker stopped: it failed; report why, now and to every later put.
            let e = match self.join() {
                Err(e) => e,
                Ok(()) => Error::Store("pack writer stopped".into()),
            };
            self.failed = Some(e.duplicate());
            return Err(e);
        }
        Ok(())
    }

    /// Whether a block of `len` bytes is new to the store and this batch (too big: an error).
    fn is_new(&self, cid: &Cid, len: usize) -> Result<bool> {
        if len > super::MAX_BLOCK {
            return Err(Error::BlockTooLarge {
                cid: cid.to_string(),
                size: len,
                limit: super::MAX_BLOCK,
            });
        }
        Ok(!self.has(cid)?)
    }

    /// Hands a new block to the pack writer.
    fn queue(&mut self, cid: &Cid, data: Vec<u8>) -> Result<bool> {
        self.seen.insert(*cid);
        self.send(Msg::Block(*cid, data))?;
        Ok(true)
    }
}

impl Batch for PackBatch<'_> {
    fn put(&mut self, cid: &Cid, data: &[u8]) -> Result<bool> {
        check_block(cid, data)?;
        self.put_own(cid, data)
    }

    fn put_own(&mut self, cid: &Cid, data: &[u8]) -> Result<bool> {
        if !self.is_new(cid, data.len())? {
            return Ok(false);
        }
        self.queue(cid, data.to_vec())
    }

    fn put_own_vec(&mut self, cid: &Cid, data: Vec<u8>) -> Result<bool> {
        if !self.is_new(cid, data.len())? {
            return Ok(false);
        }
        self.queue(cid, data)
    }

    fn has(&self, cid: &Cid) -> Result<bool> {
        // The index as loaded when the batch began (plus what it wrote): no directory scan per
        // block. A block another process adds meanwhile may be stored twice; gc merges it away.
        Ok(self.seen.contains(cid) || self.store.state.read().unwrap().index.contains_key(cid))
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        self.send(Msg::Finish)?;
        self.join()?;
        self.store.refresh()
    }
}

impl Drop for PackBatch<'_> {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::RAW;

    #[test]
    fn put_get_persist_and_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let blocks: Vec<Vec<u8>> = (0..100u32)
            .map(|i| format!("block {i} ").repeat(i as usize + 1).into_bytes())
            .collect();
        let cids: Vec<Cid> = blocks.iter().map(|b| Cid::hash(RAW, b)).collect();
        {
            let s = DiskStore::open(dir.path(), LockMode::Shared).unwrap();
            let mut b = s.batch().unwrap();
            for (c, d) in cids.iter().zip(&blocks) {
                assert!(b.put(c, d).unwrap());
            }
            assert!(!b.put(&cids[0], &blocks[0]).unwrap());
            // not visible before commit
            assert!(!s.has(&cids[0]).unwrap());
            b.commit().unwrap();
            assert_eq!(s.get(&cids[7]).unwrap(), blocks[7]);
        }
        let s = DiskStore::open(dir.path(), LockMode::Exclusive).unwrap();
        assert_eq!(s.cids().unwrap().len(), 100);
        let stats = s.retain(&|c| *c != cids[3]).unwrap();
        assert_eq!(stats.blocks_removed, 1);
        assert!(matches!(s.get(&cids[3]), Err(Error::BlockNotFound { .. })));
        assert_eq!(s.get(&cids[99]).unwrap(), blocks[99]);
    }

    #[test]
    fn dropped_batch_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskStore::open(dir.path(), LockMode::Shared).unwrap();
        let mut b = s.batch().unwrap();
        b.put(&Cid::hash(RAW, b"x"), b"x").unwrap();
        drop(b);
        assert_eq!(s.cids().unwrap().len(), 0);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskStore::open(dir.path(), LockMode::Shared).unwrap();
        let data = vec![7u8; 5000];
        let cid = Cid::hash(RAW, &data);
        s.put(&cid, &data).unwrap();
        let pack = fs::read_dir(dir.path().join("packs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().unwrap() == "pack")
            .unwrap();
        let mut bytes = fs::read(&pack).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0xff;
        fs::write(&pack, bytes).unwrap();
        let s2 = DiskStore::open(dir.path(), LockMode::Shared).unwrap();
        assert!(matches!(s2.get(&cid), Err(Error::CorruptBlock { .. })));
        assert!(matches!(
            s.put(&Cid::hash(RAW, b"a"), b"b"),
            Err(Error::CorruptBlock { .. })
        ));
    }

    fn pack_names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir.join("packs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".pack"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn deferred_compression_writes_loose_packs_that_gc_compresses() {
        let dir = tempfile::tempdir().unwrap();
        let blocks: Vec<Vec<u8>> = (0..40u32)
            .map(|i| format!("line {i} of a compressible block\n").repeat(300).into_bytes())
            .collect();
        let cids: Vec<Cid> = blocks.iter().map(|b| Cid::hash(RAW, b)).collect();
        let raw_total: u64 = blocks.iter().map(|b| b.len() as u64).sum();
        let deferred = Compression::parse("zstd:3,deferred").unwrap();
        {
            let s = DiskStore::open_with(dir.path(), LockMode::Shared, deferred).unwrap();
            let mut b = s.batch().unwrap();
            for (c, d) in cids.iter().zip(&blocks) {
                b.put(c, d).unwrap();
            }
            b.commit().unwrap();
            // One loose pack, every record raw: the pack holds at least the raw bytes.
            let names = pack_names(dir.path());
            assert_eq!(names.len(), 1);
            assert!(names[0].ends_with("-loose.pack"), "{names:?}");
            assert!(s.stored_bytes().unwrap() > raw_total);
            assert_eq!(s.loose_bytes().unwrap(), s.stored_bytes().unwrap());
            assert_eq!(s.get(&cids[5]).unwrap(), blocks[5]);
        }
        // gc (under any compression setting) rewrites the loose pack compressed, keeping every block.
        let s = DiskStore::open_with(dir.path(), LockMode::Exclusive, deferred).unwrap();
        let stats = s.retain(&|_| true).unwrap();
        assert_eq!(stats.blocks_removed, 0);
        let names = pack_names(dir.path());
        assert_eq!(names.len(), 1);
        assert!(!names[0].contains("-loose"), "{names:?}");
        let after = s.stored_bytes().unwrap();
        assert_eq!(s.loose_bytes().unwrap(), 0);
        assert!(after * 10 < raw_total, "compressed {after} of {raw_total}");
        assert!(stats.bytes_freed > raw_total - after - 4096);
        for (c, d) in cids.iter().zip(&blocks) {
            assert_eq!(&s.get(c).unwrap(), d);
        }
        // A further gc has nothing to compress.
        let again = s.retain(&|_| true).unwrap();
        assert_eq!((again.blocks_removed, pack_names(dir.path())), (0, names));
    }

    #[test]
    fn compression_specs() {
        for (spec, level, deferred) in [
            ("zstd:3", 3, false),
            ("zstd:19,deferred", 19, true),
            ("zstd:-7", -7, false),
        ] {
            let c = Compression::parse(spec).unwrap();
            assert_eq!((c.level, c.deferred), (level, deferred));
            assert_eq!(c.to_string(), spec);
        }
        assert_eq!(Compression::default().to_string(), "zstd:3");
        for bad in [
            "",
            "zstd",
            "zstd:0",
            "zstd:20",
            "zstd:-8",
            "gzip:6",
            "zstd:3,lazy",
            "zstd: 3",
            "deferred",
        ] {
            let e = Compression::parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn compaction_runs_beside_other_users_of_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let deferred = Compression::parse("zstd:3,deferred").unwrap();
        let blocks: Vec<Vec<u8>> = (0..30u32)
            .map(|i| format!("entry {i}: some repetitive text\n").repeat(200).into_bytes())
            .collect();
        let cids: Vec<Cid> = blocks.iter().map(|b| Cid::hash(RAW, b)).collect();
        let writer = DiskStore::open_with(dir.path(), LockMode::Shared, deferred).unwrap();
        for half in [&cids[..15], &cids[15..]] {
            let mut b = writer.batch().unwrap();
            for c in half {
                let i = cids.iter().position(|x| x == c).unwrap();
                b.put(c, &blocks[i]).unwrap();
            }
            b.commit().unwrap();
        }
        // Another user has loaded the loose packs' indexes before the compaction.
        let reader = DiskStore::open(dir.path(), LockMode::Shared).unwrap();
        assert_eq!(reader.cids().unwrap().len(), 30);
        let loose = writer.loose_bytes().unwrap();
        let stats = writer.compact().unwrap();
        assert_eq!(
            (stats.packs_compacted, stats.blocks, stats.bytes_before),
            (2, 30, loose)
        );
        assert!(stats.bytes_after * 5 < stats.bytes_before, "{stats:?}");
        assert_eq!(writer.loose_bytes().unwrap(), 0);
        assert_eq!(pack_names(dir.path()).len(), 1);
        // The old reader (its files are gone from the directory) and a new one read every block.
        let fresh = DiskStore::open(dir.path(), LockMode::Shared).unwrap();
        for (c, d) in cids.iter().zip(&blocks) {
            assert_eq!(&reader.get(c).unwrap(), d);
            assert_eq!(&fresh.get(c).unwrap(), d);
        }
        reader.reload().unwrap();
        assert_eq!(reader.get(&cids[29]).unwrap(), blocks[29]);
        assert_eq!(writer.compact().unwrap(), CompactStats::default());
    }
}
