//! DAG schema v3: how bytes and tar streams become blocks, and how they are read back.
//!
//! Node shapes (all dag-cbor; see ARCHITECTURE.md for the full schema):
//! - link tree node `{"l": [link…], "s"?: [len…]}`: a run of links too long for one list (fan-out
//!   1024); a tree of data bytes says how many bytes lie under each link (`s`, new in v3);
//! - entry list `{"d": link, "m": bytes, "ml": [meta_len…]}`: a run of tar entries; entry *i* is
//!   `ml[i]` verbatim bytes taken in order from `m`, then the data of the *i*-th entry of the data
//!   list `d`;
//! - data list `{"e": [[size, [link…], [len…]?]…]}`: each entry's `size` bytes of data, whose chunks
//!   are the links (raw blocks, or link tree nodes), with the bytes under each link when there are
//!   two or more (new in v3: a reader finds the chunk holding an offset without fetching the ones
//!   before it). Kept apart from the headers so that a rebuild that changes only metadata (mtimes,
//!   owners) shares every data list with the old layer;
//! - tar node `{"t": "tar", "size", "sha256", "lists": [link…], "tail": bytes}`.
//!
//! Schema v2 (read, never written) is v3 without the lengths. Schema v1 (read, never written): entry lists held the data inline,
//! `{"e": [[meta_len, size, [link…]]…], "m": bytes}`, and ended where a header hashed to a cut.

use crate::cbor::{self, Value};
use crate::chunk::chunk_stream;
use crate::cid::{Cid, DAG_CBOR, RAW};
use crate::error::{Error, Result};
use crate::store::{Batch, Blockstore, MAX_BLOCK};
use crate::tar::TarSink;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::io::{self, Read};

/// Schema version recorded in every image root (and written by this build).
pub const SCHEMA_VERSION: u64 = 3;
/// The schema versions this build reads.
pub const SCHEMA_READ: std::ops::RangeInclusive<u64> = 1..=3;
/// Links per list before a link tree level is added.
pub const FANOUT: usize = 1024;
/// Pending meta bytes beyond this are stored as chunked data instead of inline.
const META_INLINE: usize = 64 * 1024;
/// An entry list is closed at this estimated size, whatever the content says.
const LIST_MAX_BYTES: usize = 512 * 1024;
const LIST_MAX_ENTRIES: usize = 4096;
const LIST_MIN_ENTRIES: usize = 16;
/// 1 in this many files ends a list (decided by the file's first chunk, so lists realign after an
/// insertion and do not move when only headers change).
const LIST_CUT_MASK: u64 = 63;

/// Counts what a write added.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    pub blocks: u64,
    pub bytes: u64,
    pub new_blocks: u64,
    pub new_bytes: u64,
}

/// Writes blocks of a DAG into a batch, counting what was new.
pub struct DagWriter<'b> {
    batch: &'b mut dyn Batch,
    pub stats: WriteStats,
}

impl<'b> DagWriter<'b> {
    pub fn new(batch: &'b mut dyn Batch) -> Self {
        DagWriter {
            batch,
            stats: WriteStats::default(),
        }
    }

    fn put(&mut self, codec: u64, data: &[u8]) -> Result<Cid> {
        let cid = Cid::hash(codec, data);
        if data.len() > MAX_BLOCK {
            return Err(Error::BlockTooLarge {
                cid: cid.to_string(),
                size: data.len(),
                limit: MAX_BLOCK,
            });
        }
        let new = self.batch.put_own(&cid, data)?;
        self.stats.blocks += 1;
        self.stats.bytes += data.len() as u64;
        if new {
            self.stats.new_blocks += 1;
            self.stats.new_bytes += data.len() as u64;
        }
        Ok(cid)
    }

    pub fn put_raw(&mut self, data: &[u8]) -> Result<Cid> {
        self.put(RAW, data)
    }

    pub fn put_node(&mut self, v: &Value) -> Result<Cid> {
        self.put(DAG_CBOR, &cbor::encode(v))
    }

    /// Chunks `size` bytes of `r`; returns the top links (≤ [`FANOUT`]).
    pub fn put_chunked(&mut self, r: &mut dyn Read, size: u64) -> Result<Vec<Cid>> {
        Ok(self.put_chunked_sized(r, size)?.into_iter().map(|(c, _)| c).collect())
    }

    /// [`DagWriter::put_chunked`], with the bytes under each top link.
    pub fn put_chunked_sized(&mut self, r: &mut dyn Read, size: u64) -> Result<Vec<(Cid, u64)>> {
        let mut tree = LinkTree::sized();
        chunk_stream(r, size, &mut |c| {
            let cid = self.put_raw(c)?;
            tree.push_sized(cid, c.len() as u64, self)
        })?;
        tree.finish_sized(self)
    }
}

/// Builds balanced link trees as links stream in; holds at most FANOUT links per level. A sized
/// tree (of data bytes) records the bytes under each link in its nodes (`s`).
#[derive(Default)]
pub struct LinkTree {
    levels: Vec<Vec<(Cid, u64)>>,
    sized: bool,
}

impl LinkTree {
    /// A tree of data bytes, whose nodes say how many bytes lie under each link.
    pub fn sized() -> LinkTree {
        LinkTree {
            levels: Vec::new(),
            sized: true,
        }
    }

    pub fn push(&mut self, cid: Cid, w: &mut DagWriter) -> Result<()> {
        self.push_at(0, (cid, 0), w)
    }

    pub fn push_sized(&mut self, cid: Cid, len: u64, w: &mut DagWriter) -> Result<()> {
        self.push_at(0, (cid, len), w)
    }

    fn node(&self, links: &[(Cid, u64)], w: &mut DagWriter) -> Result<(Cid, u64)> {
        let cids: Vec<Cid> = links.iter().map(|(c, _)| *c).collect();
        let total = links.iter().map(|(_, n)| n).sum();
        let node = if self.sized {
            let lens = links.iter().map(|(_, n)| Value::UInt(*n)).collect();
            Value::map([("l", Value::links(&cids)), ("s", Value::Array(lens))])
        } else {
            Value::map([("l", Value::links(&cids))])
        };
        Ok((w.put_node(&node)?, total))
    }

    fn push_at(&mut self, level: usize, link: (Cid, u64), w: &mut DagWriter) -> Result<()> {
        if self.levels.len() <= level {
            self.levels.push(Vec::with_capacity(FANOUT));
        }
        self.levels[level].push(link);
        if self.levels[level].len() == FANOUT {
            let full = std::mem::take(&mut self.levels[level]);
            let node = self.node(&full, w)?;
            self.push_at(level + 1, node, w)?;
        }
        Ok(())
    }

    /// The top list of links.
    pub fn finish(self, w: &mut DagWriter) -> Result<Vec<Cid>> {
        Ok(self.finish_sized(w)?.into_iter().map(|(c, _)| c).collect())
    }

    /// The top list of links, with the bytes under each (0 for a tree that is not sized).
    pub fn finish_sized(mut self, w: &mut DagWriter) -> Result<Vec<(Cid, u64)>> {
        let mut level = 0;
        while level + 1 < self.levels.len() {
            let part = std::mem::take(&mut self.levels[level]);
            if !part.is_empty() {
                let node = self.node(&part, w)?;
                // Not push_at: a partial group must not trigger a flush of the level above
                // ahead of its turn; it only joins it.
                self.levels[level + 1].push(node);
                if self.levels[level + 1].len() == FANOUT {
                    let full = std::mem::take(&mut self.levels[level + 1]);
                    let n = self.node(&full, w)?;
                    self.push_at(level + 2, n, w)?;
                }
            }
            level += 1;
        }
        Ok(self.levels.pop().unwrap_or_default())
    }
}

fn fnv1a(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &x in b {
        h ^= x as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// A [`TarSink`] that writes a tar stream as schema-v3 blocks.
pub struct TarDag<'w, 'b> {
    w: &'w mut DagWriter<'b>,
    pending: Vec<u8>,
    m: Vec<u8>,
    ml: Vec<Value>,
    e: Vec<Value>,
    est: usize,
    lists: LinkTree,
    sha: Sha256,
    size: u64,
    /// False once [`TarDag::stop_writing`] was called: the stream is then only hashed.
    writing: bool,
    /// Regular-file bytes and count, for accounting.
    pub file_bytes: u64,
}

impl<'w, 'b> TarDag<'w, 'b> {
    pub fn new(w: &'w mut DagWriter<'b>) -> Self {
        TarDag {
            w,
            pending: Vec::new(),
            m: Vec::new(),
            ml: Vec::new(),
            e: Vec::new(),
            est: 0,
            lists: LinkTree::default(),
            sha: Sha256::new(),
            size: 0,
            writing: true,
            file_bytes: 0,
        }
    }

    /// Stops writing blocks: from here on the stream is only hashed and counted, for a layer
    /// that will be kept another way. Blocks already written stay in the batch, unreferenced
    /// (gc removes them).
    pub fn stop_writing(&mut self) {
        self.writing = false;
        self.pending = Vec::new();
        self.m = Vec::new();
        self.ml = Vec::new();
        self.e = Vec::new();
    }

    pub fn is_writing(&self) -> bool {
        self.writing
    }

    /// The stream's sha256 and size, without writing the tar node.
    pub fn into_digest(self) -> ([u8; 32], u64) {
        (self.sha.finalize().into(), self.size)
    }

    fn entry(&mut self, meta: Vec<u8>, size: u64, links: Vec<(Cid, u64)>) -> Result<()> {
        // The cut depends on the data only: headers change with every rebuild (mtimes), the
        // files mostly do not.
        let cut = links
            .first()
            .is_some_and(|(c, _)| fnv1a(c.digest()) & LIST_CUT_MASK == 0);
        self.est += meta.len() + 16 + links.len() * 46;
        self.ml.push(Value::UInt(meta.len() as u64));
        let cids: Vec<Cid> = links.iter().map(|(c, _)| *c).collect();
        let mut e = vec![Value::UInt(size), Value::links(&cids)];
        // One link holds the whole size: its length is said only when there are more.
        if links.len() > 1 {
            e.push(Value::Array(links.iter().map(|(_, n)| Value::UInt(*n)).collect()));
        }
        self.e.push(Value::Array(e));
        self.m.extend_from_slice(&meta);
        let n = self.e.len();
        if n >= LIST_MAX_ENTRIES || self.est >= LIST_MAX_BYTES || (n >= LIST_MIN_ENTRIES && cut) {
            self.close_list()?;
        }
        Ok(())
    }

    fn close_list(&mut self) -> Result<()> {
        if self.e.is_empty() {
            return Ok(());
        }
        let data = Value::map([("e", Value::Array(std::mem::take(&mut self.e)))]);
        let data = self.w.put_node(&data)?;
        let node = Value::map([
            ("d", Value::Link(data)),
            ("m", Value::Bytes(std::mem::take(&mut self.m))),
            ("ml", Value::Array(std::mem::take(&mut self.ml))),
        ]);
        self.est = 0;
        let cid = self.w.put_node(&node)?;
        self.lists.push(cid, self.w)
    }

    fn flush_pending_as_data(&mut self) -> Result<()> {
        let p = std::mem::take(&mut self.pending);
        let links = self.w.put_chunked_sized(&mut &p[..], p.len() as u64)?;
        self.entry(Vec::new(), p.len() as u64, links)
    }

    /// Closes the stream: returns the tar node's CID, its size and sha256 (the layer's diff_id).
    pub fn finish(mut self) -> Result<(Cid, u64, [u8; 32])> {
        if !self.writing {
            return Err(Error::Store("a tar DAG that stopped writing has no node".into()));
        }
        self.close_list()?;
        let lists = std::mem::take(&mut self.lists).finish(self.w)?;
        let sha: [u8; 32] = self.sha.clone().finalize().into();
        let node = Value::map([
            ("t", Value::text("tar")),
            ("size", Value::UInt(self.size)),
            ("sha256", Value::Bytes(sha.to_vec())),
            ("lists", Value::links(&lists)),
            ("tail", Value::Bytes(std::mem::take(&mut self.pending))),
        ]);
        Ok((self.w.put_node(&node)?, self.size, sha))
    }
}

impl TarSink for TarDag<'_, '_> {
    fn meta(&mut self, bytes: &[u8]) -> Result<()> {
        self.sha.update(bytes);
        self.size += bytes.len() as u64;
        if !self.writing {
            return Ok(());
        }
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= META_INLINE {
            self.flush_pending_as_data()?;
        }
        Ok(())
    }

    fn file(&mut self, size: u64, data: &mut dyn Read) -> Result<()> {
        let mut hashing = HashingReader {
            inner: data,
            sha: &mut self.sha,
        };
        if !self.writing {
            let n = io::copy(&mut (&mut hashing).take(size), &mut io::sink()).map_err(unwrap_io)?;
            if n != size {
                return Err(Error::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            self.size += size;
            self.file_bytes += size;
            return Ok(());
        }
        let links = self.w.put_chunked_sized(&mut hashing, size)?;
        self.size += size;
        self.file_bytes += size;
        let meta = std::mem::take(&mut self.pending);
        self.entry(meta, size, links)
    }
}

struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    sha: &'a mut Sha256,
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
}

/// The links of a block, in order: a dag-cbor node's, a dag-pb node's ([`crate::dagpb`]); none for
/// raw bytes. A node that does not decode is a schema error naming it.
pub fn block_links(cid: &Cid, data: &[u8]) -> Result<Vec<Cid>> {
    let schema = |reason: String| Error::Schema {
        cid: cid.to_string(),
        reason,
    };
    match cid.codec() {
        DAG_CBOR => {
            let v = cbor::decode(data).map_err(|e| schema(e.to_string()))?;
            let mut out = Vec::new();
            v.collect_links(&mut out);
            Ok(out)
        }
        crate::cid::DAG_PB => crate::dagpb::links(data).map_err(|e| schema(e.to_string())),
        _ => Ok(Vec::new()),
    }
}

/// Reads a dag-cbor node, checking its codec.
pub fn get_node(store: &dyn Blockstore, cid: &Cid) -> Result<Value> {
    if cid.codec() != DAG_CBOR {
        return Err(Error::Schema {
            cid: cid.to_string(),
            reason: "expected a dag-cbor node, found a raw block".into(),
        });
    }
    cbor::decode(&store.get(cid)?).map_err(|e| Error::Schema {
        cid: cid.to_string(),
        reason: e.to_string(),
    })
}

pub(crate) fn schema_err(cid: &Cid, reason: impl Into<String>) -> Error {
    Error::Schema {
        cid: cid.to_string(),
        reason: reason.into(),
    }
}

pub(crate) fn links_of(cid: &Cid, v: Option<&Value>, what: &str) -> Result<Vec<Cid>> {
    let arr = v
        .and_then(Value::as_array)
        .ok_or_else(|| schema_err(cid, format!("{what} is not a list")))?;
    arr.iter()
        .map(|x| {
            x.as_link()
                .ok_or_else(|| schema_err(cid, format!("{what} holds a non-link")))
        })
        .collect()
}

enum Item {
    Bytes(Vec<u8>),
    /// A link, its depth, and the bytes its list says lie under it (when the list says).
    Link(Cid, u8, Option<u64>),
}

/// Streams the bytes a DAG stands for: raw leaves, link trees, entry lists and tar nodes, in
/// order. Memory stays bounded by a few blocks. Every block is verified by the store.
pub struct DagReader<'s> {
    store: StoreRef<'s>,
    queue: Vec<VecDeque<Item>>,
    buf: Vec<u8>,
    pos: usize,
    fetches: u64,
    produced: u64,
}

/// Block fetches allowed beyond one per [`BYTES_PER_FETCH`] bytes produced. A DAG shp writes
/// produces far more than that per block (chunks are ≥ 16 KiB but for small files, and every tar
/// entry brings a 512-byte header); a hostile DAG that shares subtrees to fan out over empty work
/// is stopped here instead of running for ever.
const FETCH_ALLOWANCE: u64 = 4096;
const BYTES_PER_FETCH: u64 = 64;

const MAX_DEPTH: u8 = 16;

/// The store a [`DagReader`] reads from: borrowed, or shared (an owned reader, `'static`).
enum StoreRef<'s> {
    Borrowed(&'s dyn Blockstore),
    Shared(std::sync::Arc<dyn Blockstore>),
}

impl DagReader<'static> {
    /// [`DagReader::new`] over a shared store the reader keeps alive: a reader that owns all it
    /// needs (`Send + 'static`), for callers that hand readers to other threads or to C.
    pub fn shared(store: std::sync::Arc<dyn Blockstore>, roots: &[Cid]) -> Self {
        DagReader::with(StoreRef::Shared(store), roots)
    }
}

impl<'s> DagReader<'s> {
    /// Reads the bytes under `roots` (raw chunks, link trees or a tar node).
    pub fn new(store: &'s dyn Blockstore, roots: &[Cid]) -> Self {
        DagReader::with(StoreRef::Borrowed(store), roots)
    }

    fn with(store: StoreRef<'s>, roots: &[Cid]) -> Self {
        let q = roots.iter().map(|c| Item::Link(*c, 0, None)).collect();
        DagReader {
            store,
            queue: vec![q],
            buf: Vec::new(),
            pos: 0,
            fetches: 0,
            produced: 0,
        }
    }

    fn store(&self) -> &dyn Blockstore {
        match &self.store {
            StoreRef::Borrowed(s) => *s,
            StoreRef::Shared(s) => &**s,
        }
    }

    /// Inline bytes to emit before the links (e.g. meta already in hand).
    fn next_piece(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            let Some(top) = self.queue.last_mut() else {
                return Ok(None);
            };
            let Some(item) = top.pop_front() else {
                self.queue.pop();
                continue;
            };
            if let Item::Link(cid, ..) = &item {
                self.fetches += 1;
                if self.fetches > FETCH_ALLOWANCE + self.produced / BYTES_PER_FETCH {
                    return Err(schema_err(
                        cid,
                        "DAG fans out over far more blocks than the bytes it holds (refused)",
                    ));
                }
            }
            match item {
                Item::Bytes(b) => {
                    self.produced += b.len() as u64;
                    return Ok(Some(b));
                }
                Item::Link(cid, _, len) if cid.codec() == RAW => {
                    let b = self.store().get(&cid)?;
                    if b.is_empty() {
                        return Err(schema_err(&cid, "empty raw leaf (shp never writes one)"));
                    }
                    if let Some(n) = len.filter(|n| *n != b.len() as u64) {
                        return Err(schema_err(
                            &cid,
                            format!("the chunk holds {} bytes, its list says {n}", b.len()),
                        ));
                    }
                    self.produced += b.len() as u64;
                    return Ok(Some(b));
                }
                Item::Link(cid, depth, len) => {
                    if depth > MAX_DEPTH {
                        return Err(schema_err(&cid, "DAG deeper than 16 levels"));
                    }
                    let node = get_node(self.store(), &cid)?;
                    let items = if is_entry_list(&node) {
                        let list = load_entry_list(self.store(), &cid, &node)?;
                        if list.data.is_some() {
                            self.fetches += 1;
                        }
                        list.items(depth + 1)
                    } else {
                        expand(&cid, &node, depth + 1, len)?
                    };
                    self.queue.push(items);
                }
            }
        }
    }
}

/// The links of a link tree node `{"l": [...], "s"?: [...]}` with the bytes under each when the
/// node says (`s`, schema v3), checked: 1 to [`FANOUT`] links, as many lengths as links, none 0,
/// and their sum `expect` when the parent said how many bytes the node holds.
pub fn tree_links(cid: &Cid, node: &Value, expect: Option<u64>) -> Result<(Vec<Cid>, Option<Vec<u64>>)> {
    let links = links_of(cid, node.get("l"), "l")?;
    if links.is_empty() || links.len() > FANOUT {
        return Err(schema_err(
            cid,
            format!("link tree node with {} links (1 to {FANOUT})", links.len()),
        ));
    }
    let lens = match node.get("s") {
        None => None,
        Some(s) => Some(lengths(cid, s, links.len(), expect)?),
    };
    Ok((links, lens))
}

/// A list of byte lengths for `n` links: numbers, none 0, summing to `total` when it is known.
fn lengths(cid: &Cid, v: &Value, n: usize, total: Option<u64>) -> Result<Vec<u64>> {
    let arr = v
        .as_array()
        .ok_or_else(|| schema_err(cid, "link lengths are not a list"))?;
    if arr.len() != n {
        return Err(schema_err(cid, format!("{} link lengths for {n} links", arr.len())));
    }
    let lens = arr
        .iter()
        .map(|x| x.as_u64().filter(|n| *n > 0))
        .collect::<Option<Vec<u64>>>()
        .ok_or_else(|| schema_err(cid, "a link length is not a number above 0"))?;
    let sum = lens.iter().try_fold(0u64, |a, n| a.checked_add(*n));
    match (sum, total) {
        (None, _) => Err(schema_err(cid, "link lengths overflow")),
        (Some(s), Some(t)) if s != t => Err(schema_err(cid, format!("link lengths add up to {s}, not {t}"))),
        _ => Ok(lens),
    }
}

fn expand(cid: &Cid, node: &Value, depth: u8, len: Option<u64>) -> Result<VecDeque<Item>> {
    let mut out = VecDeque::new();
    if node.get("l").is_some() {
        let (links, lens) = tree_links(cid, node, len)?;
        match lens {
            Some(lens) => out.extend(links.into_iter().zip(lens).map(|(c, n)| Item::Link(c, depth, Some(n)))),
            None => out.extend(links.into_iter().map(|c| Item::Link(c, depth, None))),
        }
    } else if node.get("t").and_then(Value::as_str) == Some("tar") {
        for c in links_of(cid, node.get("lists"), "lists")? {
            out.push_back(Item::Link(c, depth, None));
        }
        let tail = node
            .get("tail")
            .and_then(Value::as_bytes)
            .ok_or_else(|| schema_err(cid, "tail is not bytes"))?;
        if !tail.is_empty() {
            out.push_back(Item::Bytes(tail.to_vec()));
        }
    } else {
        return Err(schema_err(cid, "not a byte-stream node (link tree, entry list or tar)"));
    }
    Ok(out)
}

/// One tar entry of an entry list: `meta_len` bytes of the list's `m`, then `size` bytes of data
/// in the chunks `links`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub meta_len: usize,
    pub size: u64,
    pub links: Vec<Cid>,
    /// The bytes under each link, when known: from the list (schema v3, two or more links), or
    /// the size itself for one link; `None` for several links of an older list.
    pub lens: Option<Vec<u64>>,
}

/// An entry list read and checked, whichever schema wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryList {
    /// Every entry's meta bytes, concatenated.
    pub m: Vec<u8>,
    pub entries: Vec<ListEntry>,
    /// The data list (schema v2 and later); `None` for a v1 list, which holds its data inline.
    pub data: Option<Cid>,
}

impl EntryList {
    fn items(self, depth: u8) -> VecDeque<Item> {
        let mut out = VecDeque::new();
        let mut pos = 0usize;
        for e in self.entries {
            if e.meta_len > 0 {
                out.push_back(Item::Bytes(self.m[pos..pos + e.meta_len].to_vec()));
            }
            pos += e.meta_len;
            match e.lens {
                Some(lens) => out.extend(
                    e.links
                        .into_iter()
                        .zip(lens)
                        .map(|(c, n)| Item::Link(c, depth, Some(n))),
                ),
                None => out.extend(e.links.into_iter().map(|c| Item::Link(c, depth, None))),
            }
        }
        out
    }
}

/// Whether a node is an entry list (v2 `{"d", "m", "ml"}` or v1 `{"e", "m"}`).
pub fn is_entry_list(node: &Value) -> bool {
    node.get("m").is_some() && (node.get("d").is_some() || node.get("e").is_some()) && node.get("t").is_none()
}

/// The lengths of an entry's links its list need not say: none for no link, the size for one.
fn single_len(links: &[Cid], size: u64) -> Option<Vec<u64>> {
    match links.len() {
        0 => Some(Vec::new()),
        1 => Some(vec![size]),
        _ => None,
    }
}

/// Reads an entry list (fetching its data list for schema v2 and v3) and checks that its parts agree:
/// as many meta lengths as data entries, and meta lengths that use `m` exactly.
pub fn load_entry_list(store: &dyn Blockstore, cid: &Cid, node: &Value) -> Result<EntryList> {
    let m = node
        .get("m")
        .and_then(Value::as_bytes)
        .ok_or_else(|| schema_err(cid, "m is not bytes"))?
        .to_vec();
    let as_len = |v: &Value, what: &str| {
        v.as_u64()
            .ok_or_else(|| schema_err(cid, format!("{what} is not a number")))
    };
    let mut entries = Vec::new();
    let data = match node.get("d") {
        Some(d) => {
            let dc = d.as_link().ok_or_else(|| schema_err(cid, "d is not a link"))?;
            let dn = get_node(store, &dc)?;
            let ml = node
                .get("ml")
                .and_then(Value::as_array)
                .ok_or_else(|| schema_err(cid, "ml is not a list"))?;
            let e = dn
                .get("e")
                .and_then(Value::as_array)
                .ok_or_else(|| schema_err(&dc, "data list: e is not a list"))?;
            if e.len() != ml.len() {
                return Err(schema_err(
                    cid,
                    format!(
                        "{} meta lengths but its data list {dc} has {} entries",
                        ml.len(),
                        e.len()
                    ),
                ));
            }
            for (l, ent) in ml.iter().zip(e) {
                let f = ent
                    .as_array()
                    .filter(|f| f.len() == 2 || f.len() == 3)
                    .ok_or_else(|| schema_err(&dc, "data entry is not [size, links] or [size, links, lengths]"))?;
                let size = as_len(&f[0], "size")?;
                let links = links_of(&dc, Some(&f[1]), "entry links")?;
                let lens = match f.get(2) {
                    Some(_) if links.len() < 2 => {
                        return Err(schema_err(
                            &dc,
                            "a data entry of fewer than two links says their lengths",
                        ))
                    }
                    Some(v) => Some(lengths(&dc, v, links.len(), Some(size))?),
                    None => single_len(&links, size),
                };
                entries.push(ListEntry {
                    meta_len: as_len(l, "meta_len")? as usize,
                    size,
                    links,
                    lens,
                });
            }
            Some(dc)
        }
        None => {
            let e = node
                .get("e")
                .and_then(Value::as_array)
                .ok_or_else(|| schema_err(cid, "e is not a list"))?;
            for ent in e {
                let f = ent
                    .as_array()
                    .filter(|f| f.len() == 3)
                    .ok_or_else(|| schema_err(cid, "entry is not [meta_len, size, links]"))?;
                let size = as_len(&f[1], "size")?;
                let links = links_of(cid, Some(&f[2]), "entry links")?;
                entries.push(ListEntry {
                    meta_len: as_len(&f[0], "meta_len")? as usize,
                    size,
                    lens: single_len(&links, size),
                    links,
                });
            }
            None
        }
    };
    let used = entries.iter().try_fold(0usize, |a, e| a.checked_add(e.meta_len));
    if used != Some(m.len()) {
        return Err(schema_err(cid, "meta lengths do not add up to m"));
    }
    Ok(EntryList { m, entries, data })
}

impl Read for DagReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.next_piece() {
                Ok(Some(b)) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Ok(None) => return Ok(0),
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Turns an io::Error that wraps an shp error back into it.
pub fn unwrap_io(e: io::Error) -> Error {
    if e.get_ref().is_some_and(|i| i.is::<Error>()) {
        *e.into_inner().unwrap().downcast::<Error>().unwrap()
    } else {
        Error::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use crate::tar::{split, tests::header};

    fn roundtrip_tar(t: &[u8]) -> (MemoryStore, Cid) {
        let store = MemoryStore::new();
        let mut b = store.batch().unwrap();
        let mut w = DagWriter::new(&mut *b);
        let mut sink = TarDag::new(&mut w);
        split(&mut &t[..], "t", &mut sink).unwrap();
        let (cid, size, sha) = sink.finish().unwrap();
        assert_eq!(size, t.len() as u64);
        assert_eq!(sha, <[u8; 32]>::from(Sha256::digest(t)));
        b.commit().unwrap();
        let mut back = Vec::new();
        DagReader::new(&store, &[cid]).read_to_end(&mut back).unwrap();
        assert_eq!(back, t);
        (store, cid)
    }

    #[test]
    fn many_entries_and_big_meta() {
        let mut t = Vec::new();
        for i in 0..5000u32 {
            t.extend_from_slice(&header(format!("d{i}/").as_bytes(), b'5', 0, false));
            if i % 7 == 0 {
                let body = format!("file {i}").repeat(i as usize % 300);
                t.extend_from_slice(&header(format!("f{i}").as_bytes(), b'0', body.len() as u64, false));
                t.extend_from_slice(body.as_bytes());
                t.resize(t.len().div_ceil(512) * 512, 0);
            }
        }
        t.extend_from_slice(&[0u8; 10240]);
        let (store, _) = roundtrip_tar(&t);
        assert!(store.cids().unwrap().len() > 10);
    }

    #[test]
    fn link_tree_levels() {
        let store = MemoryStore::new();
        for n in [0usize, 1, FANOUT - 1, FANOUT, FANOUT + 1, 3 * FANOUT * FANOUT / 2 + 3] {
            let leaves: Vec<Cid> = (0..n).map(|i| Cid::hash(RAW, &(i as u64).to_le_bytes())).collect();
            let mut b = store.batch().unwrap();
            let top = {
                let mut w = DagWriter::new(&mut *b);
                let mut t = LinkTree::default();
                for c in &leaves {
                    t.push(*c, &mut w).unwrap();
                }
                t.finish(&mut w).unwrap()
            };
            b.commit().unwrap();
            assert!(top.len() <= FANOUT, "n={n}");
            let mut got = Vec::new();
            let mut stack: Vec<Cid> = top.into_iter().rev().collect();
            while let Some(c) = stack.pop() {
                if c.codec() == RAW {
                    got.push(c);
                } else {
                    let node = get_node(&store, &c).unwrap();
                    let kids = links_of(&c, node.get("l"), "l").unwrap();
                    assert!(kids.len() <= FANOUT);
                    stack.extend(kids.into_iter().rev());
                }
            }
            assert_eq!(got, leaves, "n={n}");
        }
    }

    /// A tar of `n` files whose headers carry `mtime` (a rebuild changes only that).
    fn files_tar(n: u32, mtime: u64) -> Vec<u8> {
        let mut t = Vec::new();
        for i in 0..n {
            let body: Vec<u8> = (0..(i * 37 % 3000 + 1)).map(|j| (i ^ j) as u8).collect();
            let h = crate::tar::HeaderBuilder {
                mtime,
                ..crate::tar::HeaderBuilder::new(format!("usr/lib/f{i}").as_bytes(), b'0', body.len() as u64)
            }
            .block();
            t.extend_from_slice(&h);
            t.extend_from_slice(&body);
            t.resize(t.len().div_ceil(512) * 512, 0);
        }
        t.extend_from_slice(&[0u8; 1024]);
        t
    }

    fn data_lists(store: &MemoryStore, tar: &Cid) -> Vec<Cid> {
        let node = get_node(store, tar).unwrap();
        links_of(tar, node.get("lists"), "lists")
            .unwrap()
            .iter()
            .map(|l| {
                let list = load_entry_list(store, l, &get_node(store, l).unwrap()).unwrap();
                list.data.expect("v2 lists have a data list")
            })
            .collect()
    }

    /// Every header changes (a rebuild's mtimes), no file does: the entry lists are new, every
    /// data list — the chunk links — is the same block as before.
    #[test]
    fn header_only_change_shares_every_data_list() {
        let (a, ta) = roundtrip_tar(&files_tar(600, 0o14000000000));
        let (b, tb) = roundtrip_tar(&files_tar(600, 0o14000001234));
        assert_ne!(ta, tb);
        let (da, db) = (data_lists(&a, &ta), data_lists(&b, &tb));
        assert!(da.len() > 3, "{} lists", da.len());
        assert_eq!(da, db);
    }

    /// A schema-v1 entry list (data inline) still reads back, and a v2 list whose parts disagree
    /// is refused with a schema error.
    #[test]
    fn reads_v1_lists_and_checks_v2_ones() {
        let store = MemoryStore::new();
        let mut b = store.batch().unwrap();
        let mut w = DagWriter::new(&mut *b);
        let chunk = w.put_raw(b"hello").unwrap();
        let meta = vec![7u8; 512];
        let v1 = Value::map([
            (
                "e",
                Value::Array(vec![Value::Array(vec![
                    Value::UInt(512),
                    Value::UInt(5),
                    Value::links(&[chunk]),
                ])]),
            ),
            ("m", Value::Bytes(meta.clone())),
        ]);
        let v1 = w.put_node(&v1).unwrap();
        let data = w
            .put_node(&Value::map([(
                "e",
                Value::Array(vec![Value::Array(vec![Value::UInt(5), Value::links(&[chunk])])]),
            )]))
            .unwrap();
        let bad = w
            .put_node(&Value::map([
                ("d", Value::Link(data)),
                ("m", Value::Bytes(meta.clone())),
                ("ml", Value::Array(vec![Value::UInt(512), Value::UInt(0)])),
            ]))
            .unwrap();
        b.commit().unwrap();
        let mut back = Vec::new();
        DagReader::new(&store, &[v1]).read_to_end(&mut back).unwrap();
        assert_eq!(back, [meta, b"hello".to_vec()].concat());
        let err = DagReader::new(&store, &[bad]).read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("2 meta lengths"), "{err}");
    }

    /// Random bytes (incompressible, so FastCDC cuts them into many chunks).
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Schema v3: a file of several chunks has its data entry say the bytes under each link (its
    /// chunks' real lengths); a file of one chunk does not (the size says it).
    #[test]
    fn data_entries_of_several_chunks_say_each_chunks_length() {
        let big = noise(900_000, 7);
        let mut t = Vec::new();
        for (name, body) in [("big", &big[..]), ("small", &b"tiny"[..])] {
            t.extend_from_slice(&header(name.as_bytes(), b'0', body.len() as u64, false));
            t.extend_from_slice(body);
            t.resize(t.len().div_ceil(512) * 512, 0);
        }
        t.extend_from_slice(&[0u8; 1024]);
        let (store, tar) = roundtrip_tar(&t);
        let list = links_of(&tar, get_node(&store, &tar).unwrap().get("lists"), "lists").unwrap()[0];
        let list = load_entry_list(&store, &list, &get_node(&store, &list).unwrap()).unwrap();
        let raw = get_node(&store, &list.data.unwrap()).unwrap();
        let e = raw.get("e").and_then(Value::as_array).unwrap();
        assert_eq!(e[0].as_array().unwrap().len(), 3, "several chunks: lengths said");
        assert_eq!(e[1].as_array().unwrap().len(), 2, "one chunk: the size says it");
        let big_entry = &list.entries[0];
        assert!(big_entry.links.len() > 3, "{} chunks", big_entry.links.len());
        let real: Vec<u64> = big_entry
            .links
            .iter()
            .map(|c| store.get(c).unwrap().len() as u64)
            .collect();
        assert_eq!(big_entry.lens.as_ref(), Some(&real));
        assert_eq!(list.entries[1].lens, Some(vec![4]));
    }

    /// Lengths that disagree with their links are refused: a list whose lengths do not add up to
    /// the entry's size when it is read, and lengths that add up but place the bytes wrongly
    /// when the chunk that shows it is read; nothing is returned past the error.
    #[test]
    fn data_lengths_that_disagree_are_refused() {
        let store = MemoryStore::new();
        let mut b = store.batch().unwrap();
        let mut w = DagWriter::new(&mut *b);
        let (x, y) = (w.put_raw(b"hello").unwrap(), w.put_raw(b"world!").unwrap());
        let mut list = |lens: &[u64]| {
            let data = w
                .put_node(&Value::map([(
                    "e",
                    Value::Array(vec![Value::Array(vec![
                        Value::UInt(11),
                        Value::links(&[x, y]),
                        Value::Array(lens.iter().map(|n| Value::UInt(*n)).collect()),
                    ])]),
                )]))
                .unwrap();
            w.put_node(&Value::map([
                ("d", Value::Link(data)),
                ("m", Value::Bytes(Vec::new())),
                ("ml", Value::Array(vec![Value::UInt(0)])),
            ]))
            .unwrap()
        };
        let (good, short, wrong, zero, count) =
            (list(&[5, 6]), list(&[5, 5]), list(&[6, 5]), list(&[0, 11]), list(&[11]));
        b.commit().unwrap();
        let mut back = Vec::new();
        DagReader::new(&store, &[good]).read_to_end(&mut back).unwrap();
        assert_eq!(back, b"helloworld!");
        for (cid, says) in [
            (short, "add up to 10, not 11"),
            (wrong, "holds 5 bytes, its list says 6"),
            (zero, "not a number above 0"),
            (count, "1 link lengths for 2 links"),
        ] {
            let mut out = Vec::new();
            let err = DagReader::new(&store, &[cid]).read_to_end(&mut out).unwrap_err();
            assert!(err.to_string().contains(says), "{err}");
            assert!(out.is_empty(), "no byte before the error: {out:?}");
        }
    }

    /// A sized link tree's nodes say the bytes under each of their links, at every level.
    #[test]
    fn sized_link_trees_say_the_bytes_under_each_link() {
        let store = MemoryStore::new();
        let n = 3 * FANOUT / 2 + 7;
        let leaves: Vec<(Cid, u64)> = (0..n)
            .map(|i| {
                (
                    Cid::hash(RAW, &(i as u64).to_le_bytes()),
                    1 + (i as u64 * 7919) % 70_000,
                )
            })
            .collect();
        let mut b = store.batch().unwrap();
        let top = {
            let mut w = DagWriter::new(&mut *b);
            let mut t = LinkTree::sized();
            for (c, len) in &leaves {
                t.push_sized(*c, *len, &mut w).unwrap();
            }
            t.finish_sized(&mut w).unwrap()
        };
        b.commit().unwrap();
        let total: u64 = leaves.iter().map(|l| l.1).sum();
        assert_eq!(top.iter().map(|l| l.1).sum::<u64>(), total);
        // Walk it back with the checks a reader makes.
        let mut got = Vec::new();
        let mut stack: Vec<(Cid, u64)> = top.into_iter().rev().collect();
        while let Some((c, len)) = stack.pop() {
            if c.codec() == RAW {
                got.push((c, len));
                continue;
            }
            let node = get_node(&store, &c).unwrap();
            let (links, lens) = tree_links(&c, &node, Some(len)).unwrap();
            stack.extend(
                links
                    .into_iter()
                    .zip(lens.expect("a sized tree says its lengths"))
                    .rev(),
            );
        }
        assert_eq!(got, leaves);
        let node = get_node(&store, &stack_top(&store, &leaves)).unwrap();
        assert!(
            tree_links(&Cid::hash(DAG_CBOR, b"x"), &node, Some(1)).is_err(),
            "a wrong total is refused"
        );
    }

    /// The first link tree node over `leaves` (as a sized tree writes it).
    fn stack_top(store: &MemoryStore, leaves: &[(Cid, u64)]) -> Cid {
        let first: Vec<Cid> = leaves[..FANOUT].iter().map(|l| l.0).collect();
        let lens = leaves[..FANOUT].iter().map(|l| Value::UInt(l.1)).collect();
        let cid = Cid::hash(
            DAG_CBOR,
            &cbor::encode(&Value::map([("l", Value::links(&first)), ("s", Value::Array(lens))])),
        );
        assert!(store.has(&cid).unwrap());
        cid
    }
}
