//! A blockstore in an S3-compatible bucket (cargo feature `s3`), for stores that outgrow one
//! machine and for several stations in front of one bucket.
//!
//! Layout under `s3://BUCKET/PREFIX/`:
//! ```text
//! packs/<name>.pack      blocks, written a pack (≈ 16 MiB, `pack_size`) at a time: see `pack`
//! packs/<name>.idx       its index; written after the pack; a pack without one is invisible
//! refs.json              the refs, replaced with conditional writes (see `refs`)
//! claims/<name>.json     packs a batch reused blocks from (see `gc`)
//! gc/condemned.json      packs gc has condemned and deleted (see `gc`)
//! gc/lock                held by a running gc
//! ```
//! Cost model: an import of a 250 MB layer is a few dozen PUTs (its packs and their indexes), a
//! read is one ranged GET that also brings the next few MiB of the same pack (imports write a
//! layer's blocks in the order a rebuild reads them), and the home keeps every pack index and a
//! bounded cache of hot blocks (`HOME/cache/s3/`). Every block is checked against its CID when it
//! is read, from the bucket or the cache.
//!
//! Other stations' writes appear without a restart: a block this process does not know is looked
//! for again after listing `packs/`, so a push on one station is pullable from another at once.

mod bucket;
mod cache;
mod gc;
pub mod pack;
mod refs;

pub use bucket::{RequestStats, S3Location, OPTION_KEYS};
pub use refs::BucketRefs;

use super::{check_block, Batch, Blockstore, Compression, SweepStats};
use crate::cid::Cid;
use crate::error::{Error, Result};
use bucket::{Bucket, Client};
use bytes::Bytes;
use pack::{Entry, Index, PackBuilder, REC_HEAD};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Default size of the packs an import writes.
pub const DEFAULT_PACK_SIZE: u64 = 16 << 20;
/// Default bound on the home's cache of hot blocks.
pub const DEFAULT_CACHE_SIZE: u64 = 1 << 30;
/// Default grace period of gc (see the `gc` module): nothing younger is swept, and a batch must
/// commit within half of it.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
/// How far past a wanted block one ranged GET reads.
const READAHEAD: u64 = 4 << 20;
/// Ranged reads kept in memory for the blocks that follow.
const SEGMENTS: usize = 16;
/// Packs a batch uploads while it fills the next one.
const UPLOADS_IN_FLIGHT: usize = 2;

struct Pack {
    name: String,
    index: Index,
    condemned: bool,
}

#[derive(Default)]
struct State {
    packs: Vec<Option<Pack>>,
    known: HashMap<String, u32>,
    /// CID → (pack, entry) — a location in a pack gc has not condemned when there is one.
    index: HashMap<Cid, (u32, u32)>,
}

impl State {
    fn add(&mut self, pack: Pack) -> u32 {
        let id = self.packs.len() as u32;
        self.known.insert(pack.name.clone(), id);
        for (i, e) in pack.index.entries.iter().enumerate() {
            let better = match self.index.get(&e.cid) {
                None => true,
                Some(&(p, _)) => self.packs[p as usize].as_ref().is_none_or(|p| p.condemned) && !pack.condemned,
            };
            if better {
                self.index.insert(e.cid, (id, i as u32));
            }
        }
        self.packs.push(Some(pack));
        id
    }

    fn rebuild_index(&mut self) {
        self.index.clear();
        let packs = std::mem::take(&mut self.packs);
        let mut known = HashMap::new();
        for (id, p) in packs.iter().enumerate() {
            if let Some(p) = p {
                known.insert(p.name.clone(), id as u32);
            }
        }
        self.packs = packs;
        self.known = known;
        for condemned in [true, false] {
            for (id, p) in self.packs.iter().enumerate() {
                let Some(p) = p else { continue };
                if p.condemned != condemned {
                    continue;
                }
                for (i, e) in p.index.entries.iter().enumerate() {
                    self.index.insert(e.cid, (id as u32, i as u32));
                }
            }
        }
    }

    fn lookup(&self, cid: &Cid) -> Option<(String, Entry, u64)> {
        let &(p, i) = self.index.get(cid)?;
        let pack = self.packs[p as usize].as_ref()?;
        let e = pack.index.entries[i as usize];
        // Read ahead over the records that follow in the same pack.
        let start = e.offset - REC_HEAD as u64;
        let mut end = e.offset + e.stored as u64;
        for next in &pack.index.entries[i as usize + 1..] {
            let next_end = next.offset + next.stored as u64;
            if next_end - start > READAHEAD {
                break;
            }
            end = next_end;
        }
        Some((pack.name.clone(), e, end))
    }
}

struct Segment {
    pack: String,
    start: u64,
    bytes: Bytes,
}

/// The S3 blockstore.
pub struct S3Store {
    bucket: Arc<Bucket>,
    state: RwLock<State>,
    cache: cache::LocalCache,
    segments: Mutex<VecDeque<Segment>>,
    compression: Compression,
    pack_size: u64,
    grace: Duration,
    /// When the last listing of `packs/` finished.
    refreshed: Mutex<Instant>,
}

fn random_name() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source works");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl S3Store {
    /// Opens the store at `loc`, with its local cache under `cache_dir`; `create` makes the bucket
    /// when it does not exist.
    pub fn open(loc: &S3Location, cache_dir: &Path, compression: Compression, create: bool) -> Result<S3Store> {
        let bucket = Arc::new(Bucket::new(loc)?);
        if create {
            bucket.ensure_exists()?;
        }
        let cache_size = loc.opt_bytes("cache_size", DEFAULT_CACHE_SIZE)?;
        let pack_size = loc.opt_bytes("pack_size", DEFAULT_PACK_SIZE)?;
        if !(1 << 20..=1 << 30).contains(&pack_size) {
            return Err(Error::Store(format!(
                "store option pack_size={pack_size}: must be between 1 MiB and 1 GiB"
            )));
        }
        let cache = cache::LocalCache::open(cache_dir, cache_size).map_err(|e| Error::io_path(cache_dir, e))?;
        let store = S3Store {
            bucket,
            state: RwLock::new(State::default()),
            cache,
            segments: Mutex::new(VecDeque::new()),
            compression: Compression {
                deferred: false,
                ..compression
            },
            pack_size,
            grace: loc.opt_duration("grace", DEFAULT_GRACE)?,
            refreshed: Mutex::new(Instant::now()),
        };
        store.refresh()?;
        Ok(store)
    }

    pub fn url(&self) -> String {
        self.bucket.url()
    }

    pub fn location(&self) -> &S3Location {
        self.bucket.location()
    }

    pub(crate) fn bucket(&self) -> &Arc<Bucket> {
        &self.bucket
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Requests this process made to the bucket so far.
    /// The requests this home has made to the bucket: every finished command's, and this
    /// process's so far.
    pub fn requests(&self) -> RequestStats {
        self.cache.requests() + self.bucket.counters().snapshot()
    }

    /// Objects and bytes of the store's packs and indexes in the bucket.
    pub fn objects(&self) -> Result<(u64, u64)> {
        let list = self.list_packs()?;
        Ok((list.len() as u64, list.iter().map(|m| m.size).sum()))
    }

    /// Every object under `packs/`.
    fn list_packs(&self) -> Result<Vec<object_store::ObjectMeta>> {
        let c = self.bucket.client();
        let prefix = self.bucket.key("packs");
        self.bucket
            .block(async move { c.list(&prefix).await })
            .map_err(|e| self.bucket.fail("LIST", "packs/", &e))
    }

    /// Lists `packs/` and loads the indexes this process has not seen; forgets packs gc removed.
    fn refresh(&self) -> Result<()> {
        let list = self.list_packs()?;
        let condemned = gc::Condemned::load(&self.bucket)?.0;
        let names: BTreeSet<String> = list
            .iter()
            .filter_map(|m| {
                self.bucket
                    .rel(&m.location)
                    .strip_prefix("packs/")?
                    .strip_suffix(".idx")
                    .map(String::from)
            })
            .collect();
        let (new, gone, flips): (Vec<String>, Vec<String>, bool) = {
            let st = self.state.read().unwrap();
            let new = names.iter().filter(|n| !st.known.contains_key(*n)).cloned().collect();
            let gone = st.known.keys().filter(|n| !names.contains(*n)).cloned().collect();
            let flips = st
                .packs
                .iter()
                .flatten()
                .any(|p| p.condemned != condemned.packs.contains_key(&p.name));
            (new, gone, flips)
        };
        let loaded = self.load_indexes(&new)?;
        let mut st = self.state.write().unwrap();
        for name in &gone {
            if let Some(id) = st.known.remove(name) {
                st.packs[id as usize] = None;
            }
            self.cache.drop_index(&format!("{name}.idx"));
        }
        for (name, index) in loaded {
            if st.known.contains_key(&name) {
                continue;
            }
            let condemned = condemned.packs.contains_key(&name);
            st.add(Pack { name, index, condemned });
        }
        if !gone.is_empty() || flips {
            for p in st.packs.iter_mut().flatten() {
                p.condemned = condemned.packs.contains_key(&p.name);
            }
            st.rebuild_index();
        }
        drop(st);
        *self.refreshed.lock().unwrap() = Instant::now();
        Ok(())
    }

    /// Pack indexes by name: from the home's cache when it has them (and they check out), else
    /// from the bucket, 16 at a time.
    fn load_indexes(&self, names: &[String]) -> Result<Vec<(String, Index)>> {
        let mut out = Vec::with_capacity(names.len());
        let mut fetch = Vec::new();
        for n in names {
            let file = format!("{n}.idx");
            match self.cache.index(&file).map(|b| Index::decode(&b, &file)) {
                Some(Ok(idx)) => out.push((n.clone(), idx)),
                _ => fetch.push(n.clone()),
            }
        }
        if fetch.is_empty() {
            return Ok(out);
        }
        let c = self.bucket.client();
        let keys: Vec<_> = fetch
            .iter()
            .map(|n| (n.clone(), self.bucket.key(&format!("packs/{n}.idx"))))
            .collect();
        let got = self.bucket.block(async move {
            use futures_util::StreamExt;
            futures_util::stream::iter(keys)
                .map(|(n, k)| {
                    let c = c.clone();
                    async move { (n, c.get(&k).await) }
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await
        });
        for (n, r) in got {
            let rel = format!("packs/{n}.idx");
            match r {
                // Removed between the listing and the read: gc took it.
                Ok(None) => {}
                Ok(Some((b, _))) => {
                    let idx = Index::decode(&b, &format!("{}/{rel}", self.url()))?;
                    self.cache.put_index(&format!("{n}.idx"), &b);
                    out.push((n, idx));
                }
                Err(e) => return Err(self.bucket.fail("GET", &rel, &e)),
            }
        }
        Ok(out)
    }

    /// Lists again if nothing has listed since `since`.
    fn refresh_since(&self, since: Instant) -> Result<()> {
        if *self.refreshed.lock().unwrap() >= since {
            return Ok(());
        }
        self.refresh()
    }

    fn cached_segment(&self, pack: &str, e: &Entry) -> Option<Bytes> {
        let segs = self.segments.lock().unwrap();
        let end = e.offset + e.stored as u64;
        segs.iter()
            .find(|s| s.pack == pack && s.start <= e.offset && end <= s.start + s.bytes.len() as u64)
            .map(|s| s.bytes.slice((e.offset - s.start) as usize..(end - s.start) as usize))
    }

    fn read_from_bucket(&self, cid: &Cid, pack: &str, e: &Entry, end: u64) -> Result<Vec<u8>> {
        let rel = format!("packs/{pack}.pack");
        let where_ = format!("{}/{rel}", self.url());
        if let Some(payload) = self.cached_segment(pack, e) {
            return pack::open_payload(e, &payload, &where_);
        }
        let start = e.offset - REC_HEAD as u64;
        let c = self.bucket.client();
        let key = self.bucket.key(&rel);
        let bytes = self
            .bucket
            .block(async move { c.get_range(&key, start, end).await })
            .map_err(|err| self.bucket.fail("GET", &rel, &err))?;
        // The record head must name the block the index says is there.
        if bytes.len() < REC_HEAD || bytes[..crate::cid::CID_LEN] != cid.to_bytes() {
            return Err(Error::CorruptBlock {
                cid: cid.to_string(),
                reason: format!("the record at {start} of {where_} is not this block's"),
            });
        }
        let payload = bytes.slice(REC_HEAD..REC_HEAD + e.stored as usize);
        let data = pack::open_payload(e, &payload, &where_)?;
        let mut segs = self.segments.lock().unwrap();
        if segs.len() >= SEGMENTS {
            segs.pop_front();
        }
        segs.push_back(Segment {
            pack: pack.to_string(),
            start: start + REC_HEAD as u64,
            bytes: bytes.slice(REC_HEAD..),
        });
        Ok(data)
    }

    fn lookup(&self, cid: &Cid) -> Option<(String, Entry, u64)> {
        self.state.read().unwrap().lookup(cid)
    }
}

impl Blockstore for S3Store {
    fn get(&self, cid: &Cid) -> Result<Vec<u8>> {
        let asked = Instant::now();
        if let Some(b) = self.cache.block(cid) {
            return Ok(b);
        }
        let mut found = self.lookup(cid);
        if found.is_none() {
            self.refresh_since(asked)?;
            found = self.lookup(cid);
        }
        let Some((pack, e, end)) = found else {
            return Err(Error::BlockNotFound { cid: cid.to_string() });
        };
        let data = match self.read_from_bucket(cid, &pack, &e, end) {
            Ok(d) => d,
            // The pack went away under us (gc moved its blocks): look again, once.
            Err(Error::Store(m)) if m.contains("NotFound") => {
                self.refresh()?;
                let (pack, e, end) = self
                    .lookup(cid)
                    .ok_or_else(|| Error::BlockNotFound { cid: cid.to_string() })?;
                self.read_from_bucket(cid, &pack, &e, end)?
            }
            Err(e) => return Err(e),
        };
        self.cache.put_block(cid, &data);
        Ok(data)
    }

    fn has(&self, cid: &Cid) -> Result<bool> {
        if self.state.read().unwrap().index.contains_key(cid) {
            return Ok(true);
        }
        // At most one listing a second for blocks nobody has.
        self.refresh_since(Instant::now() - Duration::from_secs(1))?;
        Ok(self.state.read().unwrap().index.contains_key(cid))
    }

    fn size_of(&self, cid: &Cid) -> Result<u64> {
        let asked = Instant::now();
        if self.lookup(cid).is_none() {
            self.refresh_since(asked)?;
        }
        self.lookup(cid)
            .map(|(_, e, _)| e.raw as u64)
            .ok_or_else(|| Error::BlockNotFound { cid: cid.to_string() })
    }

    fn cids(&self) -> Result<Vec<Cid>> {
        self.refresh()?;
        Ok(self.state.read().unwrap().index.keys().copied().collect())
    }

    fn batch(&self) -> Result<Box<dyn Batch + '_>> {
        Ok(Box::new(S3Batch::new(self)?))
    }

    fn retain(&self, keep: &dyn Fn(&Cid) -> bool) -> Result<SweepStats> {
        gc::sweep(self, keep)
    }

    fn stored_bytes(&self) -> Result<u64> {
        self.refresh()?;
        let st = self.state.read().unwrap();
        Ok(st
            .packs
            .iter()
            .flatten()
            .filter(|p| !p.condemned)
            .map(|p| p.index.pack_len)
            .sum())
    }
}

/// A pack upload in flight.
struct Upload {
    name: String,
    index: Index,
    done: mpsc::Receiver<std::result::Result<(), String>>,
}

/// A write batch: blocks go into packs uploaded as they fill; commit writes their indexes.
pub struct S3Batch<'a> {
    store: &'a S3Store,
    cur: PackBuilder,
    comp: Option<zstd::bulk::Compressor<'static>>,
    seen: HashSet<Cid>,
    uploads: VecDeque<Upload>,
    done: Vec<(String, Index)>,
    /// Blocks this batch did not write because a pack in the bucket has them: pack → CIDs.
    reused: BTreeMap<String, Vec<Cid>>,
    started: Instant,
    failed: Option<String>,
}

impl<'a> S3Batch<'a> {
    fn new(store: &'a S3Store) -> Result<Self> {
        let comp = zstd::bulk::Compressor::new(store.compression.level)
            .map_err(|e| Error::Store(format!("zstd level {}: {e}", store.compression.level)))?;
        Ok(S3Batch {
            store,
            cur: PackBuilder::new(0),
            comp: Some(comp),
            seen: HashSet::new(),
            uploads: VecDeque::new(),
            done: Vec::new(),
            reused: BTreeMap::new(),
            started: Instant::now(),
            failed: None,
        })
    }

    fn add(&mut self, cid: &Cid, data: &[u8]) -> Result<bool> {
        if let Some(f) = &self.failed {
            return Err(Error::Store(f.clone()));
        }
        if self.seen.contains(cid) {
            return Ok(false);
        }
        if let Some((pack, _, _)) = self.store.lookup(cid) {
            self.reused.entry(pack).or_default().push(*cid);
            self.seen.insert(*cid);
            return Ok(false);
        }
        self.push_block(cid, data)?;
        Ok(true)
    }

    /// Writes a block into the current pack, whatever the store holds.
    fn push_block(&mut self, cid: &Cid, data: &[u8]) -> Result<()> {
        let z = match &mut self.comp {
            Some(c) => super::compress_block(c, data).map_err(|e| Error::Store(format!("zstd: {e}")))?,
            None => None,
        };
        if self.cur.is_empty() {
            self.cur = PackBuilder::new(self.store.pack_size as usize + (1 << 20));
        }
        self.cur.push(cid, data, z);
        self.seen.insert(*cid);
        if self.cur.len() as u64 >= self.store.pack_size {
            self.seal()?;
        }
        Ok(())
    }

    /// Starts uploading the current pack; waits for the oldest upload when too many are in flight.
    fn seal(&mut self) -> Result<()> {
        if self.cur.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.cur, PackBuilder::new(0));
        let index = full.index();
        let name = random_name();
        let (tx, rx) = mpsc::sync_channel(1);
        let c = self.store.bucket.client();
        let key = self.store.bucket.key(&format!("packs/{name}.pack"));
        let bytes = Bytes::from(full.bytes);
        self.store.bucket.spawn(async move {
            let _ = tx.send(c.put(&key, bytes).await);
        });
        self.uploads.push_back(Upload { name, index, done: rx });
        while self.uploads.len() > UPLOADS_IN_FLIGHT {
            self.wait_oldest()?;
        }
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<()> {
        let Some(u) = self.uploads.pop_front() else {
            return Ok(());
        };
        let r = u.done.recv().unwrap_or_else(|_| Err("the upload was dropped".into()));
        let rel = format!("packs/{}.pack", u.name);
        match r {
            Ok(()) => {
                self.done.push((u.name, u.index));
                Ok(())
            }
            Err(e) => {
                let err = self.store.bucket.fail("PUT", &rel, &e);
                self.failed = Some(err.to_string());
                self.done.push((u.name, u.index));
                Err(err)
            }
        }
    }

    /// Writes the indexes of `packs` (their packs are in the bucket), and registers them.
    fn publish(&self, packs: Vec<(String, Index)>) -> Result<()> {
        let c = self.store.bucket.client();
        let jobs: Vec<_> = packs
            .iter()
            .map(|(n, idx)| {
                (
                    n.clone(),
                    self.store.bucket.key(&format!("packs/{n}.idx")),
                    Bytes::from(idx.encode()),
                )
            })
            .collect();
        let results = self.store.bucket.block(async move {
            let mut out = Vec::new();
            let futs = jobs.into_iter().map(|(n, k, b)| {
                let c = c.clone();
                async move { (n, b.clone(), c.put(&k, b).await) }
            });
            for r in futures::future::join_all(futs).await {
                out.push(r);
            }
            out
        });
        for (n, _, r) in &results {
            if let Err(e) = r {
                return Err(self.store.bucket.fail("PUT", &format!("packs/{n}.idx"), e));
            }
        }
        let mut st = self.store.state.write().unwrap();
        for ((n, idx), (_, bytes, _)) in packs.into_iter().zip(results) {
            self.store.cache.put_index(&format!("{n}.idx"), &bytes);
            if !st.known.contains_key(&n) {
                st.add(Pack {
                    name: n,
                    index: idx,
                    condemned: false,
                });
            }
        }
        Ok(())
    }
}

impl Batch for S3Batch<'_> {
    fn put(&mut self, cid: &Cid, data: &[u8]) -> Result<bool> {
        check_block(cid, data)?;
        self.add(cid, data)
    }

    fn put_own(&mut self, cid: &Cid, data: &[u8]) -> Result<bool> {
        if data.len() > super::MAX_BLOCK {
            return check_block(cid, data).map(|_| false);
        }
        self.add(cid, data)
    }

    fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(self.seen.contains(cid) || self.store.state.read().unwrap().index.contains_key(cid))
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        if let Some(f) = &self.failed {
            return Err(Error::Store(f.clone()));
        }
        if self.started.elapsed() > self.store.grace / 2 {
            return Err(Error::Raced(format!(
                "{}: this write took {} s, more than half of gc's grace period ({} s), so blocks it reuses may have been collected; nothing was committed: run the command again",
                self.store.url(),
                self.started.elapsed().as_secs(),
                self.store.grace.as_secs()
            )));
        }
        self.seal()?;
        while !self.uploads.is_empty() {
            self.wait_oldest()?;
        }
        let packs = std::mem::take(&mut self.done);
        self.publish(packs)?;
        let reused = std::mem::take(&mut self.reused);
        if !reused.is_empty() {
            let store = self.store;
            gc::claim(store, &reused, &mut |cid, data| self.push_block(cid, data))?;
            self.seal()?;
            while !self.uploads.is_empty() {
                self.wait_oldest()?;
            }
            let rescued = std::mem::take(&mut self.done);
            self.publish(rescued)?;
        }
        Ok(())
    }
}

impl Drop for S3Store {
    fn drop(&mut self) {
        self.cache.add_requests(&self.bucket.counters().snapshot());
    }
}

impl Drop for S3Batch<'_> {
    fn drop(&mut self) {
        // Packs of a batch that did not commit: remove them now rather than wait for gc.
        let mut names: Vec<String> = self.uploads.drain(..).map(|u| u.name).collect();
        let committed: HashSet<String> = self.store.state.read().unwrap().known.keys().cloned().collect();
        names.extend(self.done.drain(..).map(|(n, _)| n).filter(|n| !committed.contains(n)));
        if names.is_empty() {
            return;
        }
        let c: Client = self.store.bucket.client();
        let keys: Vec<_> = names
            .iter()
            .map(|n| self.store.bucket.key(&format!("packs/{n}.pack")))
            .collect();
        self.store.bucket.spawn(async move {
            for k in keys {
                let _ = c.delete(&k).await;
            }
        });
    }
}
