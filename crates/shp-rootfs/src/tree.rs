//! The file tree of a layer, or of an image's layers merged, read from the tar DAGs' headers alone.
//!
//! A layer's tar DAG keeps every header byte apart from the file data (entry lists: `m` and
//! `ml`; data lists: each entry's size and chunk links), so the tree is built without reading a
//! single chunk of file data: [`layer_entries`] feeds the headers to the `tar` crate as a seekable
//! stream in which file data are holes of known size (the crate seeks over them), and pairs each
//! entry with the chunk links of its data. Only a long run of headers that the writer stored as a
//! data piece (thousands of symlinks in a row) is read from chunks.
//! [`Tree`] then applies layers in order as the OCI image spec says (`.wh.NAME` hides NAME from
//! the layers below, `.wh..wh..opq` hides everything the layers below put in its directory; never
//! what the whiteout's own layer wrote), with hard links as one inode and parents resolved through
//! symlinks as if the root were `/`, as [`crate::unpack`] does on disk.

use crate::path::clean;
use crate::pax::Pax;
use crate::{Error, Result};
use shp_core::blob::BlobNode;
use shp_core::cbor::Value;
use shp_core::cid::Cid;
use shp_core::dag::{get_node, is_entry_list, load_entry_list};
use shp_core::store::Blockstore;
use std::collections::{BTreeMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Char,
    Block,
}

/// One tar entry of a layer, as its headers describe it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The name as the tar holds it (PAX `path` and GNU long names applied).
    pub name: Vec<u8>,
    pub kind: Kind,
    /// A hard link's target name (`kind` is then the target's, filled in by [`Tree`]).
    pub hardlink: Option<Vec<u8>>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds and nanoseconds (PAX `mtime` fractions kept).
    pub mtime: (i64, u32),
    pub size: u64,
    /// A symlink's target, as text.
    pub target: Vec<u8>,
    pub dev: (u32, u32),
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The chunk links of a regular file's data (raw chunks, or link trees of them).
    pub data: Vec<Cid>,
    /// The bytes under each of two or more links, when the DAG says (schema v3).
    pub data_lens: Option<Vec<u64>>,
}

/// One piece of the tar stream: header bytes, or a file's data (a hole here) with its links.
enum Piece {
    Meta(Vec<u8>),
    Data(u64, Vec<Cid>, Option<Vec<u64>>),
}

/// A file's data piece: its size, links, and the bytes under each link when the DAG says.
type Hole = (u64, Vec<Cid>, Option<Vec<u64>>);

/// The tar stream of a tar DAG with every file's data left out: a `Read + Seek` over the header
/// bytes in which data are holes (zeros if read; the `tar` crate seeks over them). Forward only.
struct Skeleton<'s> {
    store: &'s dyn Blockstore,
    /// Links still to expand (tar node lists, link trees of entry lists), depth first.
    stack: Vec<VecDeque<Cid>>,
    pieces: VecDeque<Piece>,
    tail: Option<Vec<u8>>,
    /// The current piece and how far into it we are.
    cur: Option<(Piece, u64)>,
    pos: u64,
    /// Where each file's data starts in the stream, with its size and links.
    holes: BTreeMap<u64, Hole>,
    err: Option<shp_core::Error>,
}

impl<'s> Skeleton<'s> {
    fn new(store: &'s dyn Blockstore, tar: &Cid) -> shp_core::Result<Skeleton<'s>> {
        let node = get_node(store, tar)?;
        if node.get("t").and_then(Value::as_str) != Some("tar") {
            return Err(shp_core::Error::Schema {
                cid: tar.to_string(),
                reason: "not a tar node".into(),
            });
        }
        let lists = links(tar, node.get("lists"), "lists")?;
        let tail = node.get("tail").and_then(Value::as_bytes).map(<[u8]>::to_vec);
        Ok(Skeleton {
            store,
            stack: vec![lists.into()],
            pieces: VecDeque::new(),
            tail,
            cur: None,
            pos: 0,
            holes: BTreeMap::new(),
            err: None,
        })
    }

    /// The next piece, expanding entry lists and link trees as they come.
    fn next_piece(&mut self) -> shp_core::Result<Option<Piece>> {
        loop {
            if let Some(p) = self.pieces.pop_front() {
                return Ok(Some(p));
            }
            let Some(top) = self.stack.last_mut() else {
                return Ok(self.tail.take().map(Piece::Meta));
            };
            let Some(cid) = top.pop_front() else {
                self.stack.pop();
                continue;
            };
            if self.stack.len() > 16 {
                return Err(shp_core::Error::Schema {
                    cid: cid.to_string(),
                    reason: "tar DAG deeper than 16 levels".into(),
                });
            }
            let node = get_node(self.store, &cid)?;
            if is_entry_list(&node) {
                let list = load_entry_list(self.store, &cid, &node)?;
                let mut at = 0;
                for e in list.entries {
                    if e.meta_len > 0 {
                        self.pieces.push_back(Piece::Meta(list.m[at..at + e.meta_len].to_vec()));
                    }
                    at += e.meta_len;
                    if e.size > 0 {
                        let lens = e.lens.filter(|l| l.len() > 1);
                        self.pieces.push_back(Piece::Data(e.size, e.links, lens));
                    }
                }
            } else {
                let l = links(&cid, node.get("l"), "l")?;
                self.stack.push(l.into());
            }
        }
    }

    fn advance(&mut self) -> io::Result<bool> {
        match self.next_piece() {
            Ok(Some(p)) => {
                if let Piece::Data(size, links, lens) = &p {
                    self.holes.insert(self.pos, (*size, links.clone(), lens.clone()));
                }
                self.cur = Some((p, 0));
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => {
                let msg = e.to_string();
                self.err = Some(e);
                Err(io::Error::other(msg))
            }
        }
    }
}

/// The links of a file's data link tree node `cid` (`{"l": [...]}`: chunks, or further trees), as
/// a file's data links name them when they are not raw chunks.
pub fn data_tree_links(store: &dyn Blockstore, cid: &Cid) -> shp_core::Result<Vec<Cid>> {
    Ok(data_tree_sized(store, cid, None)?.into_iter().map(|(c, _)| c).collect())
}

/// [`data_tree_links`] with the bytes under each link when the node says (schema v3), checked to
/// add up to `len` when the parent said how many bytes the node holds.
pub fn data_tree_sized(
    store: &dyn Blockstore,
    cid: &Cid,
    len: Option<u64>,
) -> shp_core::Result<Vec<(Cid, Option<u64>)>> {
    let node = get_node(store, cid)?;
    if node.get("l").is_none() {
        return Err(shp_core::Error::Schema {
            cid: cid.to_string(),
            reason: "a file's data link is neither a chunk nor a link tree".into(),
        });
    }
    let (links, lens) = shp_core::dag::tree_links(cid, &node, len)?;
    Ok(match lens {
        Some(lens) => links.into_iter().zip(lens.into_iter().map(Some)).collect(),
        None => links.into_iter().map(|c| (c, None)).collect(),
    })
}

impl Inode {
    /// A file's top data links, with the bytes under each when known: one link holds the whole
    /// size; more have their lengths when the DAG says (schema v3).
    pub fn sized_data(&self) -> Vec<(Cid, Option<u64>)> {
        match (&self.data[..], &self.data_lens) {
            ([one], _) => vec![(*one, Some(self.size))],
            (links, Some(lens)) if lens.len() == links.len() => {
                links.iter().copied().zip(lens.iter().copied().map(Some)).collect()
            }
            (links, _) => links.iter().map(|c| (*c, None)).collect(),
        }
    }
}

fn links(cid: &Cid, v: Option<&Value>, what: &str) -> shp_core::Result<Vec<Cid>> {
    let bad = || shp_core::Error::Schema {
        cid: cid.to_string(),
        reason: format!("{what} is not a list of links"),
    };
    v.and_then(Value::as_array)
        .ok_or_else(bad)?
        .iter()
        .map(|x| x.as_link().ok_or_else(bad))
        .collect()
}

impl Read for Skeleton<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            // The tar crate reads headers and seeks over file data: a data piece it reads is
            // header bytes the writer stored as data (a long run of headers, see
            // `TarDag::meta`), so its real bytes are needed. A seek that ended exactly at a
            // piece's end (file data with no padding after it) leaves nothing of it to read.
            let unread_data = match &self.cur {
                Some((Piece::Data(len, links, _), at)) if at < len => Some((links.clone(), *at)),
                _ => None,
            };
            if let Some((links, at)) = unread_data {
                let mut b = Vec::new();
                shp_core::dag::DagReader::new(self.store, &links).read_to_end(&mut b)?;
                self.cur = Some((Piece::Meta(b), at));
            }
            if let Some((p, at)) = &mut self.cur {
                let len = match p {
                    Piece::Meta(b) => b.len() as u64,
                    Piece::Data(n, ..) => *n,
                };
                if *at < len {
                    let n = ((len - *at) as usize).min(out.len());
                    match p {
                        Piece::Meta(b) => out[..n].copy_from_slice(&b[*at as usize..*at as usize + n]),
                        Piece::Data(..) => out[..n].fill(0),
                    }
                    *at += n as u64;
                    self.pos += n as u64;
                    return Ok(n);
                }
            }
            if !self.advance()? {
                return Ok(0);
            }
        }
    }
}

impl Seek for Skeleton<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let mut n = match to {
            SeekFrom::Current(n) if n >= 0 => n as u64,
            SeekFrom::Start(p) if p >= self.pos => p - self.pos,
            _ => return Err(io::Error::other("the tar skeleton only seeks forward")),
        };
        while n > 0 {
            if let Some((p, at)) = &mut self.cur {
                let len = match p {
                    Piece::Meta(b) => b.len() as u64,
                    Piece::Data(n, ..) => *n,
                };
                let step = (len - *at).min(n);
                *at += step;
                self.pos += step;
                n -= step;
                if n == 0 {
                    break;
                }
            }
            if !self.advance()? {
                break;
            }
        }
        Ok(self.pos)
    }
}

/// Fetches the structure the trees of `tars` are built from (tar nodes, link trees of their
/// lists, entry lists, data lists) into `lazy`'s cache level by level, each level in one batch:
/// a few round trips per image instead of one per block. Blocks that do not come, or do not
/// decode, are left for the walk that needs them to fetch and to report.
pub fn warm_structure(lazy: &crate::lazy::LazyStore, tars: &[Cid]) -> shp_core::Result<()> {
    let mut level = tars.to_vec();
    // A tar node, up to 16 levels of link trees, the entry lists, their data lists.
    for _ in 0..20 {
        if level.is_empty() {
            break;
        }
        lazy.warm(&level)?;
        let mut next = Vec::new();
        for c in &level {
            let Ok(node) = get_node(lazy, c) else { continue };
            if node.get("t").and_then(Value::as_str) == Some("tar") {
                next.extend(
                    node.get("lists")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_link),
                );
            } else if is_entry_list(&node) {
                next.extend(node.get("d").and_then(Value::as_link));
            } else if let Some(l) = node.get("l").and_then(Value::as_array) {
                next.extend(l.iter().filter_map(Value::as_link));
            }
        }
        level = next;
    }
    Ok(())
}

/// Every entry of a layer, in tar order, from its tar DAG's headers (no chunk is read). `layer`
/// names it in errors. A layer kept opaque (not as a tar DAG) is refused: its files cannot be read
/// by offset.
pub fn layer_entries(store: &dyn Blockstore, layer: &BlobNode) -> Result<Vec<Entry>> {
    let name = layer.digest_str();
    let Some(tar) = layer.tar else {
        return Err(Error::Tar {
            layer: name,
            reason: format!(
                "stored opaque ({} encoding, not a tar DAG): its files cannot be read in place (shp unpack can still write it out)",
                layer.enc
            ),
        });
    };
    tar_entries(store, &tar, &name)
}

/// Every entry of the tar DAG `tar`, in order, from its headers; `name` names it in errors.
pub fn tar_entries(store: &dyn Blockstore, tar: &Cid, name: &str) -> Result<Vec<Entry>> {
    let name = name.to_string();
    let tar_err = |e: io::Error| Error::Tar {
        layer: name.clone(),
        reason: e.to_string(),
    };
    let mut sk = Skeleton::new(store, tar)?;
    let mut out: Vec<Entry> = Vec::new();
    // (entry index, where its data start in the stream)
    let mut starts = Vec::new();
    {
        let mut ar = tar::Archive::new(&mut sk);
        let entries = ar.entries_with_seek().map_err(tar_err)?;
        for e in entries {
            let mut e = e.map_err(tar_err)?;
            let h = e.header().clone();
            let raw = e.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&raw).into_owned();
            let fail = |reason: String| Error::Entry {
                layer: name.clone(),
                entry: shown.clone(),
                reason,
            };
            let pax = Pax::of(&mut e).map_err(tar_err)?;
            let mtime = pax
                .mtime
                .map_or((h.mtime().unwrap_or(0) as i64, 0), |t| (t.tv_sec, t.tv_nsec as u32));
            let uid = pax.uid.or_else(|| h.uid().ok()).unwrap_or(0) as u32;
            let gid = pax.gid.or_else(|| h.gid().ok()).unwrap_or(0) as u32;
            let xattrs = pax.xattrs;
            let t = h.entry_type();
            let kind = if t.is_dir() {
                Kind::Dir
            } else if t.is_symlink() {
                Kind::Symlink
            } else if t.is_fifo() {
                Kind::Fifo
            } else if t.is_character_special() {
                Kind::Char
            } else if t.is_block_special() {
                Kind::Block
            } else if t.is_file() || t.is_contiguous() || t.is_hard_link() {
                Kind::File
            } else {
                // PAX/GNU metadata entries are consumed by the tar crate; anything else is not
                // a file system object.
                return Err(fail(format!("unsupported tar entry type {:?}", t.as_byte() as char)));
            };
            let link = e.link_name_bytes().map(|l| l.into_owned());
            let size = if kind == Kind::File && !t.is_hard_link() {
                e.size()
            } else {
                0
            };
            if size > 0 {
                starts.push((out.len(), e.raw_file_position()));
            }
            out.push(Entry {
                name: raw,
                kind,
                hardlink: if t.is_hard_link() { link.clone() } else { None },
                mode: h.mode().map_err(|e| fail(e.to_string()))? & 0o7777,
                uid,
                gid,
                mtime,
                size,
                target: if kind == Kind::Symlink {
                    link.unwrap_or_default()
                } else {
                    Vec::new()
                },
                dev: (
                    h.device_major().ok().flatten().unwrap_or(0),
                    h.device_minor().ok().flatten().unwrap_or(0),
                ),
                xattrs,
                data: Vec::new(),
                data_lens: None,
            });
        }
    }
    if let Some(e) = sk.err.take() {
        return Err(e.into());
    }
    // Pair each file with the links of the data piece that starts where its data start.
    for (i, at) in starts {
        let ent = &mut out[i];
        let (size, links, lens) = sk.holes.get(&at).cloned().ok_or_else(|| Error::Entry {
            layer: name.clone(),
            entry: String::from_utf8_lossy(&ent.name).into_owned(),
            reason: "its data are not one data entry of the DAG".into(),
        })?;
        if size != ent.size {
            return Err(Error::Entry {
                layer: name.clone(),
                entry: String::from_utf8_lossy(&ent.name).into_owned(),
                reason: format!("the header says {} bytes, the DAG holds {size}", ent.size),
            });
        }
        ent.data = links;
        ent.data_lens = lens;
    }
    Ok(out)
}

/// The root inode's number (FUSE's).
pub const ROOT: u64 = 1;

/// One file system object of a tree.
#[derive(Debug, Clone)]
pub struct Inode {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, u32),
    pub size: u64,
    pub target: Vec<u8>,
    pub dev: (u32, u32),
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub data: Vec<Cid>,
    /// The bytes under each of two or more links, when the DAG says (schema v3).
    pub data_lens: Option<Vec<u64>>,
    pub nlink: u32,
    /// A directory's entries.
    pub children: BTreeMap<OsString, u64>,
    pub parent: u64,
    /// The layer that made it (whiteouts only hide what lower layers made).
    layer: usize,
}

impl Inode {
    /// A bare inode of `kind` (mode 0, root-owned, the epoch) under `parent`, made by `layer`.
    fn bare(kind: Kind, parent: u64, layer: usize) -> Inode {
        Inode {
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: (0, 0),
            size: 0,
            target: Vec::new(),
            dev: (0, 0),
            xattrs: Vec::new(),
            data: Vec::new(),
            data_lens: None,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
            children: BTreeMap::new(),
            parent,
            layer,
        }
    }
}

/// A merged (or single-layer) tree: inodes by number, [`ROOT`] first.
#[derive(Debug, Clone)]
pub struct Tree {
    pub inodes: Vec<Inode>,
    /// Paths removed by whiteouts.
    pub whiteouts: u64,
    /// Keep whiteouts as overlayfs has them instead of applying them (a lower directory for an
    /// overlay mount): `.wh.NAME` becomes a character device 0:0 named NAME, `.wh..wh..opq` the
    /// xattr `trusted.overlay.opaque=y` on its directory.
    pub overlay_whiteouts: bool,
}

const MAX_LINKS: usize = 40;

impl Default for Tree {
    fn default() -> Self {
        Tree::new()
    }
}

impl Tree {
    /// An empty root (0755, root-owned, mtime the epoch, as umoci leaves a root no layer names).
    pub fn new() -> Tree {
        let root = Inode {
            mode: 0o755,
            ..Inode::bare(Kind::Dir, ROOT, 0)
        };
        // Index 0 is unused: inode numbers are indexes, and FUSE's root is 1.
        Tree {
            inodes: vec![root.clone(), root],
            whiteouts: 0,
            overlay_whiteouts: false,
        }
    }

    pub fn get(&self, ino: u64) -> Option<&Inode> {
        if ino == 0 {
            return None;
        }
        self.inodes.get(ino as usize)
    }

    /// Applies one layer's entries on top of what the tree holds. `layer` names it in errors.
    pub fn apply(&mut self, layer: &str, entries: Vec<Entry>) -> Result<()> {
        let depth = self.inodes.iter().map(|i| i.layer).max().unwrap_or(0) + 1;
        for e in entries {
            let shown = String::from_utf8_lossy(&e.name).into_owned();
            let fail = |reason: String| Error::Entry {
                layer: layer.to_string(),
                entry: shown.clone(),
                reason,
            };
            let comps = clean(&e.name).map_err(&fail)?;
            let Some((base, dirs)) = comps.split_last() else {
                // `./`: the root's own metadata.
                if e.kind == Kind::Dir {
                    let r = &mut self.inodes[ROOT as usize];
                    (r.mode, r.uid, r.gid, r.mtime, r.xattrs) = (e.mode, e.uid, e.gid, e.mtime, e.xattrs);
                }
                continue;
            };
            let parent = self.parent_dir(dirs, depth).map_err(&fail)?;
            let base_b = base.as_bytes();
            if self.overlay_whiteouts && base_b.starts_with(b".wh.") {
                if base_b == b".wh..wh..opq" {
                    let d = &mut self.inodes[parent as usize];
                    d.xattrs.retain(|(k, _)| k != b"trusted.overlay.opaque");
                    d.xattrs.push((b"trusted.overlay.opaque".to_vec(), b"y".to_vec()));
                } else {
                    let name = OsStr::from_bytes(&base_b[4..]).to_os_string();
                    self.unlink(parent, &name);
                    let ino = self.inodes.len() as u64;
                    self.inodes.push(Inode {
                        uid: e.uid,
                        gid: e.gid,
                        mtime: e.mtime,
                        ..Inode::bare(Kind::Char, parent, depth)
                    });
                    self.inodes[parent as usize].children.insert(name, ino);
                }
                self.whiteouts += 1;
                continue;
            }
            if base_b == b".wh..wh..opq" {
                let lower: Vec<OsString> = self.inodes[parent as usize]
                    .children
                    .iter()
                    .filter(|(_, c)| self.inodes[**c as usize].layer < depth)
                    .map(|(n, _)| n.clone())
                    .collect();
                for n in lower {
                    self.unlink(parent, &n);
                    self.whiteouts += 1;
                }
                continue;
            }
            if let Some(hidden) = base_b.strip_prefix(b".wh.") {
                let hidden = OsStr::from_bytes(hidden).to_os_string();
                if let Some(&c) = self.inodes[parent as usize].children.get(&hidden) {
                    if self.inodes[c as usize].layer < depth {
                        self.unlink(parent, &hidden);
                        self.whiteouts += 1;
                    }
                }
                continue;
            }
            if let Some(target) = &e.hardlink {
                let tcomps = clean(target).map_err(&fail)?;
                let ino = self.lookup_path(&tcomps).ok_or_else(|| {
                    fail(format!(
                        "hard link to {:?}, which is not in the tree",
                        String::from_utf8_lossy(target)
                    ))
                })?;
                if self.inodes[ino as usize].kind == Kind::Dir {
                    return Err(fail("hard link to a directory".into()));
                }
                if self.inodes[parent as usize].children.get(base) == Some(&ino) {
                    continue;
                }
                self.unlink(parent, base);
                self.inodes[ino as usize].nlink += 1;
                self.inodes[parent as usize].children.insert(base.clone(), ino);
                continue;
            }
            let existing = self.inodes[parent as usize].children.get(base).copied();
            if let (Some(c), Kind::Dir) = (existing, e.kind) {
                if self.inodes[c as usize].kind == Kind::Dir {
                    // A directory over a directory: new metadata, the same entries.
                    let d = &mut self.inodes[c as usize];
                    (d.mode, d.uid, d.gid, d.mtime, d.xattrs, d.layer) =
                        (e.mode, e.uid, e.gid, e.mtime, e.xattrs, depth);
                    continue;
                }
            }
            self.unlink(parent, base);
            let ino = self.inodes.len() as u64;
            self.inodes.push(Inode {
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                mtime: e.mtime,
                size: e.size,
                target: e.target,
                dev: e.dev,
                xattrs: e.xattrs,
                data: e.data,
                data_lens: e.data_lens,
                ..Inode::bare(e.kind, parent, depth)
            });
            if e.kind == Kind::Dir {
                self.inodes[parent as usize].nlink += 1;
            }
            self.inodes[parent as usize].children.insert(base.clone(), ino);
        }
        Ok(())
    }

    /// Removes `name` from directory `dir` (a subtree goes with it).
    fn unlink(&mut self, dir: u64, name: &OsStr) {
        if let Some(c) = self.inodes[dir as usize].children.remove(name) {
            let n = &mut self.inodes[c as usize];
            n.nlink = n.nlink.saturating_sub(1);
            if n.kind == Kind::Dir {
                let p = &mut self.inodes[dir as usize];
                p.nlink = p.nlink.saturating_sub(1);
            }
        }
    }

    /// The directory `dirs` names, made (0755, as umoci does) where missing; symlinks on the way
    /// are followed inside the tree.
    fn parent_dir(&mut self, dirs: &[OsString], depth: usize) -> std::result::Result<u64, String> {
        let mut links = 0;
        let mut todo: VecDeque<OsString> = dirs.iter().cloned().collect();
        let mut cur = ROOT;
        while let Some(c) = todo.pop_front() {
            if c == ".." {
                cur = self.inodes[cur as usize].parent;
                continue;
            }
            match self.inodes[cur as usize].children.get(&c).copied() {
                Some(n) if self.inodes[n as usize].kind == Kind::Dir => cur = n,
                Some(n) if self.inodes[n as usize].kind == Kind::Symlink => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err("too many levels of symbolic links in its parents".into());
                    }
                    let t = self.inodes[n as usize].target.clone();
                    if t.first() == Some(&b'/') {
                        cur = ROOT;
                    }
                    let mut more: VecDeque<OsString> = t
                        .split(|b| *b == b'/')
                        .filter(|s| !s.is_empty() && *s != b".")
                        .map(|s| OsStr::from_bytes(s).to_os_string())
                        .collect();
                    more.extend(todo.drain(..));
                    todo = more;
                }
                Some(_) => {
                    return Err(format!("a parent, {:?}, is not a directory", c));
                }
                None => {
                    let ino = self.inodes.len() as u64;
                    self.inodes.push(Inode {
                        mode: 0o755,
                        ..Inode::bare(Kind::Dir, cur, depth)
                    });
                    self.inodes[cur as usize].nlink += 1;
                    self.inodes[cur as usize].children.insert(c, ino);
                    cur = ino;
                }
            }
        }
        Ok(cur)
    }

    /// The inode a cleaned path names (its last component not followed), if any.
    fn lookup_path(&self, comps: &[OsString]) -> Option<u64> {
        let mut cur = ROOT;
        for c in comps {
            cur = *self.inodes[cur as usize].children.get(c)?;
        }
        Some(cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shp_core::dag::{DagWriter, TarDag};
    use shp_core::store::{Blockstore, MemoryStore};

    /// A tar DAG of `files` (name, bytes) in a memory store, and its tar node.
    fn tar_dag(files: &[(&str, Vec<u8>)]) -> (MemoryStore, Cid) {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        let t = b.into_inner().unwrap();
        let store = MemoryStore::new();
        let mut batch = store.batch().unwrap();
        let mut w = DagWriter::new(&mut *batch);
        let mut sink = TarDag::new(&mut w);
        shp_core::tar::split(&mut &t[..], "test", &mut sink).unwrap();
        let (cid, _, _) = sink.finish().unwrap();
        batch.commit().unwrap();
        (store, cid)
    }

    #[test]
    fn entries_come_from_headers_alone_even_when_file_data_ends_on_a_block_boundary() {
        // 4096 and 300000 bytes: no padding after the first, so a seek over it ends exactly at
        // the end of its data piece; the old skeleton then read (and hashed) the whole piece.
        let a: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
        let b: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let c: Vec<u8> = (0..512u32).map(|i| (i % 13) as u8).collect();
        let (store, tar) = tar_dag(&[("a", a), ("b", b), ("c", c)]);
        // Every chunk gone: only the DAG's own nodes are left to read.
        for cid in store.cids().unwrap() {
            if cid.codec() == shp_core::cid::RAW {
                store.delete(&cid).unwrap();
            }
        }
        let entries = tar_entries(&store, &tar, "test").expect("no chunk is read");
        let names: Vec<&[u8]> = entries.iter().map(|e| &e.name[..]).collect();
        assert_eq!(names, [&b"a"[..], b"b", b"c"]);
        assert_eq!(entries.iter().map(|e| e.size).collect::<Vec<_>>(), [4096, 300_000, 512]);
    }
}
