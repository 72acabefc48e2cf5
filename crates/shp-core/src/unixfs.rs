//! UnixFS, the file system of IPFS, over dag-pb ([`crate::dagpb`]): what the UnixFS views of layers
//! are made of (built by `shp-rootfs::view`), and what the gateway reads to resolve
//! `/ipfs/<cid>/a/b` and serve files.
//!
//! - [`Data`]: the UnixFS protobuf a dag-pb node's `Data` holds (`Type`, `Data`, `filesize`,
//!   `blocksizes`, `hashType`, `fanout`, and UnixFS 1.5's `mode` and `mtime`), by hand, strict.
//! - Writing ([`Writer`]): files whose leaves are existing raw blocks (a node of at most
//!   [`MAX_LINKS`] links, balanced trees of them beyond), symlinks, and directories: one node when
//!   its links fit [`SHARD_THRESHOLD`] (the estimate Kubo uses: names plus CIDs), else a HAMT of
//!   fanout 256 keyed by murmur3-x64-64 of each name, as go-unixfs and js-ipfs-unixfs build it (a
//!   slot with one entry holds it; a slot with several holds a shard of the next 8 bits). Every
//!   node is a function of its content only, so the same tree always gives the same CIDs.
//! - Reading: [`resolve`] (a path, through directories and HAMT shards, with every block met on
//!   the way), [`list`] (a directory's entries, shards flattened) and [`read_file`] (a file's bytes
//!   in order, streamed leaf by leaf). Every block comes through the caller's `get`, which verifies it.

use crate::cid::{Cid, DAG_PB, RAW};
use crate::dagpb::{self, put_bytes, put_varint, PbLink, PbNode};
use crate::error::{Error, Result};

/// Most links in one file node (Kubo's balanced layout: 174).
pub const MAX_LINKS: usize = 174;
/// A directory whose links' names and CIDs add up to more than this is sharded (Kubo's rule).
pub const SHARD_THRESHOLD: usize = 256 * 1024;
/// Slots per HAMT node.
pub const FANOUT: u64 = 256;
/// The multicodec of murmur3-x64-64, the HAMT's hash.
pub const MURMUR3_X64_64: u64 = 0x22;

/// A UnixFS node's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Raw = 0,
    Directory = 1,
    File = 2,
    Metadata = 3,
    Symlink = 4,
    HamtShard = 5,
}

impl Kind {
    fn from_u64(v: u64) -> Option<Kind> {
        Some(match v {
            0 => Kind::Raw,
            1 => Kind::Directory,
            2 => Kind::File,
            3 => Kind::Metadata,
            4 => Kind::Symlink,
            5 => Kind::HamtShard,
            _ => return None,
        })
    }
}

/// The UnixFS message in a dag-pb node's `Data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    pub kind: Kind,
    /// A file's bytes held in the node itself, a symlink's target, a shard's bitfield.
    pub data: Option<Vec<u8>>,
    pub filesize: Option<u64>,
    /// The file bytes under each link, in order.
    pub blocksizes: Vec<u64>,
    pub hash_type: Option<u64>,
    pub fanout: Option<u64>,
    /// Permission bits (the low 12: setuid, setgid, sticky, rwx).
    pub mode: Option<u32>,
    /// Seconds since the epoch and nanoseconds (1..=999,999,999 when written; 0 is left out).
    pub mtime: Option<(i64, u32)>,
}

impl Data {
    pub fn new(kind: Kind) -> Data {
        Data {
            kind,
            data: None,
            filesize: None,
            blocksizes: Vec::new(),
            hash_type: None,
            fanout: None,
            mode: None,
            mtime: None,
        }
    }

    /// The protobuf bytes, fields in number order (blocksizes unpacked, as go-unixfs writes them).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        varint_field(&mut out, 1, self.kind as u64);
        if let Some(d) = &self.data {
            put_bytes(&mut out, 2, d);
        }
        if let Some(v) = self.filesize {
            varint_field(&mut out, 3, v);
        }
        for b in &self.blocksizes {
            varint_field(&mut out, 4, *b);
        }
        if let Some(v) = self.hash_type {
            varint_field(&mut out, 5, v);
        }
        if let Some(v) = self.fanout {
            varint_field(&mut out, 6, v);
        }
        if let Some(m) = self.mode {
            varint_field(&mut out, 7, m as u64);
        }
        if let Some((s, ns)) = self.mtime {
            let mut t = Vec::new();
            varint_field(&mut t, 1, s as u64);
            if ns != 0 {
                put_varint(&mut t, 2 << 3 | 5);
                t.extend_from_slice(&ns.to_le_bytes());
            }
            put_bytes(&mut out, 8, &t);
        }
        out
    }

    /// Reads the message; unknown fields, bad wire types, a missing or unknown `Type`, and
    /// nanoseconds over 999,999,999 are errors.
    pub fn decode(b: &[u8]) -> Result<Data> {
        let mut kind = None;
        let mut d = Data::new(Kind::Raw);
        let mut pos = 0;
        while pos < b.len() {
            let key = varint(b, &mut pos)?;
            match (key >> 3, key & 7) {
                (1, 0) => {
                    let v = varint(b, &mut pos)?;
                    kind = Some(Kind::from_u64(v).ok_or_else(|| bad(format!("unknown Type {v}")))?);
                }
                (2, 2) => d.data = Some(delimited(b, &mut pos)?.to_vec()),
                (3, 0) => d.filesize = Some(varint(b, &mut pos)?),
                (4, 0) => d.blocksizes.push(varint(b, &mut pos)?),
                (4, 2) => {
                    // packed, as some writers send it
                    let p = delimited(b, &mut pos)?;
                    let mut q = 0;
                    while q < p.len() {
                        d.blocksizes.push(varint(p, &mut q)?);
                    }
                }
                (5, 0) => d.hash_type = Some(varint(b, &mut pos)?),
                (6, 0) => d.fanout = Some(varint(b, &mut pos)?),
                (7, 0) => d.mode = Some(varint(b, &mut pos)? as u32),
                (8, 2) => {
                    let t = delimited(b, &mut pos)?;
                    let (mut secs, mut ns, mut q) = (None, 0u32, 0);
                    while q < t.len() {
                        match varint(t, &mut q)? {
                            k if k == 1 << 3 => secs = Some(varint(t, &mut q)? as i64),
                            k if k == (2 << 3 | 5) => {
                                let v = t.get(q..q + 4).ok_or_else(|| bad("truncated mtime nanoseconds"))?;
                                ns = u32::from_le_bytes(v.try_into().expect("4 bytes"));
                                q += 4;
                            }
                            k => return Err(bad(format!("unknown mtime field {}", k >> 3))),
                        }
                    }
                    if ns > 999_999_999 {
                        return Err(bad(format!("mtime nanoseconds {ns} over 999999999")));
                    }
                    d.mtime = Some((secs.ok_or_else(|| bad("mtime without Seconds"))?, ns));
                }
                (f, w) => return Err(bad(format!("field {f} with wire type {w}"))),
            }
        }
        d.kind = kind.ok_or_else(|| bad("no Type"))?;
        Ok(d)
    }
}

fn bad(reason: impl Into<String>) -> Error {
    Error::InvalidCid(format!("UnixFS data: {}", reason.into()))
}

fn varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3);
    put_varint(out, v);
}

fn varint(b: &[u8], pos: &mut usize) -> Result<u64> {
    dagpb::read_varint(b, pos).map_err(bad)
}

fn delimited<'a>(b: &'a [u8], pos: &mut usize) -> Result<&'a [u8]> {
    let len = varint(b, pos)? as usize;
    let end = pos
        .checked_add(len)
        .filter(|&e| e <= b.len())
        .ok_or_else(|| bad("truncated field"))?;
    let v = &b[*pos..end];
    *pos = end;
    Ok(v)
}

/// murmur3 x64 128 (seed 0): (h1, h2).
fn murmur3_x64_128(data: &[u8]) -> (u64, u64) {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    fn fmix(mut k: u64) -> u64 {
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^ (k >> 33)
    }
    let (mut h1, mut h2) = (0u64, 0u64);
    let mut blocks = data.chunks_exact(16);
    for b in &mut blocks {
        let k1 = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        let k2 = u64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    let (mut k1, mut k2) = (0u64, 0u64);
    for (i, &byte) in tail.iter().enumerate() {
        if i < 8 {
            k1 |= (byte as u64) << (8 * i);
        } else {
            k2 |= (byte as u64) << (8 * (i - 8));
        }
    }
    if tail.len() > 8 {
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    }
    if !tail.is_empty() {
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    }
    h1 ^= data.len() as u64;
    h2 ^= data.len() as u64;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix(h1);
    h2 = fmix(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}

/// murmur3-x64-64 as UnixFS HAMTs use it: the first 8 bytes of murmur3 x64 128's output.
pub fn murmur3_x64_64(data: &[u8]) -> [u8; 8] {
    murmur3_x64_128(data).0.to_be_bytes()
}

/// The slot of `name` in a HAMT node at `depth` (0 for the root): byte `depth` of its hash; past
/// the 8th byte, of the hash of the name followed by the byte `depth / 8` (as js-ipfs-unixfs
/// extends it).
pub fn hamt_slot(name: &[u8], depth: usize) -> usize {
    let round = depth / 8;
    let h = if round == 0 {
        murmur3_x64_64(name)
    } else {
        let mut v = name.to_vec();
        v.push(round as u8);
        murmur3_x64_64(&v)
    };
    h[depth % 8] as usize
}

/// A directory entry to write.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: Vec<u8>,
    pub cid: Cid,
    /// The cumulative size of its DAG (what the link's `Tsize` says).
    pub tsize: u64,
}

/// Writes UnixFS nodes: each one is handed to `put` as it is made (children before parents).
/// Every function returns the node's CID and its DAG's cumulative size.
pub struct Writer<'a> {
    put: &'a mut dyn FnMut(Cid, Vec<u8>) -> Result<()>,
}

impl<'a> Writer<'a> {
    pub fn new(put: &'a mut dyn FnMut(Cid, Vec<u8>) -> Result<()>) -> Writer<'a> {
        Writer { put }
    }

    fn node(&mut self, links: Vec<PbLink>, data: Data) -> Result<(Cid, u64)> {
        let below: u64 = links.iter().map(|l| l.tsize).sum();
        let bytes = dagpb::encode(&PbNode {
            links,
            data: Some(data.encode()),
        });
        let cid = Cid::hash(DAG_PB, &bytes);
        let size = bytes.len() as u64 + below;
        (self.put)(cid, bytes)?;
        Ok((cid, size))
    }

    /// A file of the leaves given in order (raw blocks: their CIDs and sizes), with its mode and
    /// mtime on the top node. Beyond [`MAX_LINKS`] leaves, a balanced tree of file nodes.
    pub fn file(&mut self, leaves: &[(Cid, u64)], mode: Option<u32>, mtime: Option<(i64, u32)>) -> Result<(Cid, u64)> {
        // (cid, file bytes, tsize) of each node of the current level
        let mut level: Vec<(Cid, u64, u64)> = leaves.iter().map(|&(c, n)| (c, n, n)).collect();
        while level.len() > MAX_LINKS {
            let mut up = Vec::with_capacity(level.len() / MAX_LINKS + 1);
            for group in level.chunks(MAX_LINKS) {
                let (cid, tsize) = self.file_node(group, None, None)?;
                up.push((cid, group.iter().map(|g| g.1).sum(), tsize));
            }
            level = up;
        }
        self.file_node(&level, mode, mtime)
    }

    fn file_node(
        &mut self,
        children: &[(Cid, u64, u64)],
        mode: Option<u32>,
        mtime: Option<(i64, u32)>,
    ) -> Result<(Cid, u64)> {
        let mut d = Data::new(Kind::File);
        d.filesize = Some(children.iter().map(|c| c.1).sum());
        d.blocksizes = children.iter().map(|c| c.1).collect();
        d.mode = mode;
        d.mtime = mtime;
        let links = children
            .iter()
            .map(|&(hash, _, tsize)| PbLink {
                hash,
                name: Vec::new(),
                tsize,
            })
            .collect();
        self.node(links, d)
    }

    /// A symlink to `target` (kept as text).
    pub fn symlink(&mut self, target: &[u8], mode: Option<u32>, mtime: Option<(i64, u32)>) -> Result<(Cid, u64)> {
        let mut d = Data::new(Kind::Symlink);
        d.data = Some(target.to_vec());
        d.mode = mode;
        d.mtime = mtime;
        self.node(Vec::new(), d)
    }

    /// A directory of `entries` (names unique), sorted by name; sharded when large.
    pub fn directory(
        &mut self,
        mut entries: Vec<Entry>,
        mode: Option<u32>,
        mtime: Option<(i64, u32)>,
    ) -> Result<(Cid, u64)> {
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let estimate: usize = entries.iter().map(|e| e.name.len() + e.cid.to_bytes().len()).sum();
        if estimate <= SHARD_THRESHOLD {
            let mut d = Data::new(Kind::Directory);
            d.mode = mode;
            d.mtime = mtime;
            let links = entries
                .into_iter()
                .map(|e| PbLink {
                    hash: e.cid,
                    name: e.name,
                    tsize: e.tsize,
                })
                .collect();
            return self.node(links, d);
        }
        self.shard(entries, 0, mode, mtime)
    }

    fn shard(
        &mut self,
        entries: Vec<Entry>,
        depth: usize,
        mode: Option<u32>,
        mtime: Option<(i64, u32)>,
    ) -> Result<(Cid, u64)> {
        let mut slots: Vec<Vec<Entry>> = (0..FANOUT).map(|_| Vec::new()).collect();
        for e in entries {
            slots[hamt_slot(&e.name, depth)].push(e);
        }
        let mut bitfield = [0u8; (FANOUT / 8) as usize];
        let mut links = Vec::new();
        for (i, slot) in slots.into_iter().enumerate() {
            if slot.is_empty() {
                continue;
            }
            bitfield[bitfield.len() - 1 - i / 8] |= 1 << (i % 8);
            let prefix = format!("{i:02X}");
            if slot.len() == 1 {
                let e = slot.into_iter().next().expect("one entry");
                let mut name = prefix.into_bytes();
                name.extend_from_slice(&e.name);
                links.push(PbLink {
                    hash: e.cid,
                    name,
                    tsize: e.tsize,
                });
            } else {
                if depth >= 64 {
                    return Err(bad("HAMT deeper than 64 levels (names whose hashes never part)"));
                }
                let (cid, tsize) = self.shard(slot, depth + 1, None, None)?;
                links.push(PbLink {
                    hash: cid,
                    name: prefix.into_bytes(),
                    tsize,
                });
            }
        }
        let first = bitfield.iter().position(|b| *b != 0).unwrap_or(bitfield.len());
        let mut d = Data::new(Kind::HamtShard);
        d.data = Some(bitfield[first..].to_vec());
        d.hash_type = Some(MURMUR3_X64_64);
        d.fanout = Some(FANOUT);
        d.mode = mode;
        d.mtime = mtime;
        self.node(links, d)
    }
}

/// A UnixFS node read: a raw block is a file of its bytes.
#[derive(Debug, Clone)]
pub enum Node {
    Raw(Vec<u8>),
    Pb(PbNode, Data),
}

/// Reads and decodes the node `cid` names (dag-pb with UnixFS data, or raw).
pub fn load(get: &dyn Fn(&Cid) -> Result<Vec<u8>>, cid: &Cid) -> Result<Node> {
    let bytes = get(cid)?;
    match cid.codec() {
        RAW => Ok(Node::Raw(bytes)),
        DAG_PB => {
            let pb = dagpb::decode(&bytes)?;
            let data = pb
                .data
                .as_deref()
                .ok_or_else(|| bad(format!("{cid} has no UnixFS Data")))
                .and_then(Data::decode)
                .map_err(|e| Error::Schema {
                    cid: cid.to_string(),
                    reason: e.to_string(),
                })?;
            Ok(Node::Pb(pb, data))
        }
        c => Err(Error::Schema {
            cid: cid.to_string(),
            reason: format!("codec 0x{c:x} is not UnixFS (dag-pb or raw)"),
        }),
    }
}

/// Where a path led: the node it names and every block read on the way (the root first, HAMT
/// shards included; not the target).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub cid: Cid,
    pub via: Vec<Cid>,
}

/// Follows `path` (components separated by `/`; empty ones ignored) from `root` through
/// directories and HAMT shards. Symlinks are not followed (a component under one is not found).
pub fn resolve(get: &dyn Fn(&Cid) -> Result<Vec<u8>>, root: &Cid, path: &str) -> Result<Resolved> {
    let mut cur = *root;
    let mut via = Vec::new();
    let mut walked = String::new();
    let not_found = |walked: &str, reason: String| Error::PathNotFound {
        root: root.to_string(),
        path: walked.trim_start_matches('/').to_string(),
        reason,
    };
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        walked.push('/');
        walked.push_str(comp);
        via.push(cur);
        let (pb, data) = match load(get, &cur)? {
            Node::Pb(pb, d) => (pb, d),
            Node::Raw(_) => return Err(not_found(&walked, "a parent is a file".into())),
        };
        let found = match data.kind {
            Kind::Directory => pb.links.iter().find(|l| l.name == comp.as_bytes()).map(|l| l.hash),
            Kind::HamtShard => find_in_shard(get, pb, &data, comp.as_bytes(), &mut via)?,
            Kind::Symlink => return Err(not_found(&walked, "a parent is a symlink (not followed)".into())),
            _ => return Err(not_found(&walked, "a parent is not a directory".into())),
        };
        cur = found.ok_or_else(|| not_found(&walked, "no such file or directory".into()))?;
    }
    Ok(Resolved { cid: cur, via })
}

fn shard_prefix(data: &Data) -> Result<usize> {
    if data.hash_type != Some(MURMUR3_X64_64) {
        return Err(bad(format!("HAMT hash {:?} is not murmur3-x64-64", data.hash_type)));
    }
    match data.fanout {
        Some(f) if f.is_power_of_two() && (2..=1024).contains(&f) => Ok(format!("{:X}", f - 1).len()),
        f => Err(bad(format!("HAMT fanout {f:?} is not a power of two in 2..=1024"))),
    }
}

/// Finds `name` in a HAMT whose root node is `pb`; sub-shards read are added to `via`.
fn find_in_shard(
    get: &dyn Fn(&Cid) -> Result<Vec<u8>>,
    mut pb: PbNode,
    data: &Data,
    name: &[u8],
    via: &mut Vec<Cid>,
) -> Result<Option<Cid>> {
    let fanout = data.fanout.unwrap_or(0);
    let prefix_len = shard_prefix(data)?;
    let bits = fanout.trailing_zeros() as usize;
    if bits != 8 {
        return Err(bad(format!("HAMT fanout {fanout}: only 256 is read")));
    }
    for depth in 0..64 {
        let want = format!("{:0w$X}", hamt_slot(name, depth), w = prefix_len);
        let Some(link) = pb.links.iter().find(|l| l.name.starts_with(want.as_bytes())) else {
            return Ok(None);
        };
        if link.name.len() == prefix_len {
            let next = link.hash;
            via.push(next);
            match load(get, &next)? {
                Node::Pb(p, d) if d.kind == Kind::HamtShard => {
                    shard_prefix(&d)?;
                    pb = p;
                }
                _ => return Err(bad(format!("HAMT link {want} to {next} is not a shard"))),
            }
            continue;
        }
        return Ok(pb
            .links
            .iter()
            .find(|l| l.name.len() > prefix_len && l.name.starts_with(want.as_bytes()) && &l.name[prefix_len..] == name)
            .map(|l| l.hash));
    }
    Ok(None)
}

/// The links a dag-pb block's *entity* follows (the trustless gateway's `dag-scope=entity`): for
/// a UnixFS directory none (the directory node is the entity), for a HAMT shard its sub-shards
/// (not the entries), for anything else (files, dag-pb that is not UnixFS) every link.
pub fn entity_links(block: &[u8]) -> Result<Vec<Cid>> {
    let pb = dagpb::decode(block)?;
    let data = pb.data.as_deref().and_then(|d| Data::decode(d).ok());
    Ok(match data {
        Some(d) if d.kind == Kind::Directory => Vec::new(),
        Some(d) if d.kind == Kind::HamtShard => {
            let p = shard_prefix(&d)?;
            pb.links
                .into_iter()
                .filter(|l| l.name.len() == p)
                .map(|l| l.hash)
                .collect()
        }
        _ => pb.links.into_iter().map(|l| l.hash).collect(),
    })
}

/// The entries of a directory (a plain one or a HAMT, flattened), sorted by name.
pub fn list(get: &dyn Fn(&Cid) -> Result<Vec<u8>>, dir: &Cid) -> Result<Vec<Entry>> {
    let (pb, data) = match load(get, dir)? {
        Node::Pb(pb, d) => (pb, d),
        Node::Raw(_) => return Err(bad(format!("{dir} is a file, not a directory"))),
    };
    let mut out = Vec::new();
    match data.kind {
        Kind::Directory => out.extend(pb.links.into_iter().map(|l| Entry {
            name: l.name,
            cid: l.hash,
            tsize: l.tsize,
        })),
        Kind::HamtShard => {
            let mut todo = vec![(pb, data)];
            while let Some((pb, data)) = todo.pop() {
                let p = shard_prefix(&data)?;
                for l in pb.links {
                    if l.name.len() == p {
                        match load(get, &l.hash)? {
                            Node::Pb(sp, sd) if sd.kind == Kind::HamtShard => todo.push((sp, sd)),
                            _ => return Err(bad(format!("HAMT link to {} is not a shard", l.hash))),
                        }
                    } else if l.name.len() > p {
                        out.push(Entry {
                            name: l.name[p..].to_vec(),
                            cid: l.hash,
                            tsize: l.tsize,
                        });
                    }
                }
            }
        }
        k => return Err(bad(format!("{dir} is a {k:?} node, not a directory"))),
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Hands a file's bytes to `out` in order, one leaf (or inline `Data`) at a time; `dir` or symlink
/// nodes are an error. Depth is bounded (a DAG deeper than 64 file levels is refused).
pub fn read_file(
    get: &dyn Fn(&Cid) -> Result<Vec<u8>>,
    file: &Cid,
    out: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    fn walk(
        get: &dyn Fn(&Cid) -> Result<Vec<u8>>,
        cid: &Cid,
        depth: usize,
        out: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<u64> {
        if depth > 64 {
            return Err(bad(format!("file DAG deeper than 64 levels at {cid}")));
        }
        match load(get, cid)? {
            Node::Raw(b) => {
                out(&b)?;
                Ok(b.len() as u64)
            }
            Node::Pb(pb, d) => {
                if !matches!(d.kind, Kind::File | Kind::Raw) {
                    return Err(bad(format!("{cid} is a {:?} node, not a file", d.kind)));
                }
                let mut n = 0;
                if let Some(b) = d.data.as_deref().filter(|b| !b.is_empty()) {
                    out(b)?;
                    n += b.len() as u64;
                }
                for l in &pb.links {
                    n += walk(get, &l.hash, depth + 1, out)?;
                }
                Ok(n)
            }
        }
    }
    walk(get, file, 0, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn murmur3_matches_the_reference() {
        // Vectors from @multiformats/murmur3's murmur3128 (what js-ipfs-unixfs hashes names with).
        let h = |s: &str| {
            let (a, b) = murmur3_x64_128(s.as_bytes());
            format!("{a:016x}{b:016x}")
        };
        assert_eq!(h(""), "00000000000000000000000000000000");
        assert_eq!(h("hello"), "cbd8a7b341bd9b025b1e906a48ae1d19");
        assert_eq!(h("bin"), "f5e71bf01ec40f2c8fee2255471ff6d1");
        assert_eq!(
            h("a-rather-longer-name-than-sixteen-bytes.so.6"),
            "f1c6ece92bfc0375a3cdfb562a4bd5c4"
        );
        assert_eq!(hamt_slot(b"hello", 0), 0xcb);
        assert_eq!(hamt_slot(b"hello", 1), 0xd8);
    }

    #[test]
    fn data_round_trips() {
        let mut d = Data::new(Kind::File);
        d.filesize = Some(300_000);
        d.blocksizes = vec![262_144, 37_856];
        d.mode = Some(0o4755);
        d.mtime = Some((-2, 750_000_000));
        assert_eq!(Data::decode(&d.encode()).unwrap(), d);
        let mut s = Data::new(Kind::HamtShard);
        s.data = Some(vec![1, 0]);
        s.hash_type = Some(MURMUR3_X64_64);
        s.fanout = Some(256);
        assert_eq!(Data::decode(&s.encode()).unwrap(), s);
        assert!(Data::decode(&[0x08, 0x09]).is_err(), "unknown type");
        assert!(Data::decode(&[0x18, 0x01]).is_err(), "no type");
    }

    type Blocks = HashMap<Cid, Vec<u8>>;

    fn get_in(m: &Blocks, c: &Cid) -> Result<Vec<u8>> {
        m.get(c).cloned().ok_or(Error::BlockNotFound { cid: c.to_string() })
    }

    #[test]
    fn big_directories_shard_and_resolve() {
        let mut m = Blocks::new();
        let leaf = b"contents".to_vec();
        let lc = Cid::hash(RAW, &leaf);
        m.insert(lc, leaf.clone());
        let mut blocks = Vec::new();
        let mut put = |c: Cid, b: Vec<u8>| {
            blocks.push((c, b));
            Ok(())
        };
        let mut w = Writer::new(&mut put);
        let (file, _) = w.file(&[(lc, 8)], Some(0o644), Some((1_700_000_000, 0))).unwrap();
        // 6000 names of ~40 bytes: ~450 KiB of links, so a HAMT.
        let entries: Vec<Entry> = (0..6000)
            .map(|i| Entry {
                name: format!("a-file-with-a-longish-name-number-{i:06}").into_bytes(),
                cid: file,
                tsize: 60,
            })
            .collect();
        let (dir, _) = w.directory(entries.clone(), Some(0o755), None).unwrap();
        let (top, _) = w
            .directory(
                vec![Entry {
                    name: b"d".to_vec(),
                    cid: dir,
                    tsize: 1,
                }],
                None,
                None,
            )
            .unwrap();
        m.extend(blocks);
        let get = |c: &Cid| get_in(&m, c);
        match load(&get, &dir).unwrap() {
            Node::Pb(_, d) => assert_eq!(d.kind, Kind::HamtShard),
            _ => panic!(),
        }
        let r = resolve(&get, &top, "/d/a-file-with-a-longish-name-number-004321").unwrap();
        assert_eq!(r.cid, file);
        assert_eq!(r.via[0], top);
        assert_eq!(r.via[1], dir);
        let e = resolve(&get, &top, "d/nope").unwrap_err().to_string();
        assert!(e.contains("d/nope") && e.contains("no such file"), "{e}");
        let listed = list(&get, &dir).unwrap();
        assert_eq!(listed.len(), 6000);
        assert_eq!(listed[0].name, entries[0].name);
        let mut bytes = Vec::new();
        read_file(&get, &r.cid, &mut |b| {
            bytes.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(bytes, leaf);
    }

    #[test]
    fn big_files_are_balanced_trees() {
        let mut m = Blocks::new();
        let mut leaves = Vec::new();
        let mut want = Vec::new();
        for i in 0..400u32 {
            let b = i.to_le_bytes().repeat(3);
            let c = Cid::hash(RAW, &b);
            want.extend_from_slice(&b);
            leaves.push((c, b.len() as u64));
            m.insert(c, b);
        }
        let mut blocks = Vec::new();
        let mut put = |c: Cid, b: Vec<u8>| {
            blocks.push((c, b));
            Ok(())
        };
        let (root, tsize) = Writer::new(&mut put).file(&leaves, None, None).unwrap();
        assert_eq!(blocks.len(), 4, "3 nodes of ≤ 174 leaves and their parent");
        let pb_bytes: u64 = blocks.iter().map(|b| b.1.len() as u64).sum();
        assert_eq!(tsize, pb_bytes + want.len() as u64);
        m.extend(blocks);
        let mut got = Vec::new();
        let n = read_file(&|c| get_in(&m, c), &root, &mut |b| {
            got.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert_eq!((n, got), (want.len() as u64, want));
    }

    mod props {
        use super::super::*;
        use super::{get_in, Blocks};
        use proptest::prelude::*;

        fn kind() -> impl Strategy<Value = Kind> {
            prop_oneof![
                Just(Kind::Raw),
                Just(Kind::Directory),
                Just(Kind::File),
                Just(Kind::Metadata),
                Just(Kind::Symlink),
                Just(Kind::HamtShard)
            ]
        }

        fn data() -> impl Strategy<Value = Data> {
            (
                kind(),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
                proptest::option::of(any::<u64>()),
                proptest::collection::vec(any::<u64>(), 0..8),
                proptest::option::of(any::<u64>()),
                proptest::option::of(any::<u64>()),
                proptest::option::of(any::<u32>()),
                proptest::option::of((any::<i64>(), 0u32..1_000_000_000)),
            )
                .prop_map(
                    |(kind, data, filesize, blocksizes, hash_type, fanout, mode, mtime)| Data {
                        kind,
                        data,
                        filesize,
                        blocksizes,
                        hash_type,
                        fanout,
                        mode,
                        mtime,
                    },
                )
        }

        fn node() -> impl Strategy<Value = PbNode> {
            let link = (
                any::<[u8; 32]>(),
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..24),
                any::<u64>(),
            )
                .prop_map(|(d, pb, name, tsize)| PbLink {
                    hash: Cid::from_digest(if pb { DAG_PB } else { RAW }, d),
                    name,
                    tsize,
                });
            (
                proptest::collection::vec(link, 0..12),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
            )
                .prop_map(|(links, data)| PbNode { links, data })
        }

        proptest! {
            #[test]
            fn unixfs_data_round_trips(d in data()) {
                prop_assert_eq!(Data::decode(&d.encode()).unwrap(), d);
            }

            #[test]
            fn dagpb_nodes_round_trip(n in node()) {
                let b = dagpb::encode(&n);
                prop_assert_eq!(dagpb::decode(&b).unwrap(), n.clone());
                prop_assert_eq!(dagpb::links(&b).unwrap(), n.links.iter().map(|l| l.hash).collect::<Vec<_>>());
            }

            #[test]
            fn any_directory_resolves_every_name(count in 1usize..3000, long in 0usize..80) {
                // Small and large (sharded) directories alike find each of their names.
                let mut m = Blocks::new();
                let mut put = |c: Cid, b: Vec<u8>| {
                    m.insert(c, b);
                    Ok(())
                };
                let leaf = Cid::hash(RAW, b"x");
                let entries: Vec<Entry> = (0..count)
                    .map(|i| Entry { name: format!("{}{i}", "n".repeat(long)).into_bytes(), cid: leaf, tsize: 1 })
                    .collect();
                let (dir, _) = Writer::new(&mut put).directory(entries.clone(), None, None).unwrap();
                let get = |c: &Cid| get_in(&m, c);
                for e in entries.iter().step_by(97) {
                    let r = resolve(&get, &dir, std::str::from_utf8(&e.name).unwrap()).unwrap();
                    prop_assert_eq!(r.cid, leaf);
                }
                prop_assert_eq!(list(&get, &dir).unwrap().len(), count);
            }
        }
    }
}
