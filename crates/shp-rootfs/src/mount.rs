//! `shp mount IMAGE DIR`: an image's root file system (or one layer's tree) as a read-only FUSE
//! file system served straight from the store.
//!
//! The tree comes from the layers' tar headers alone ([`crate::tree`]): mounting reads no file
//! data. A read fetches only the chunks it touches, each verified against its CID by the store;
//! a chunk that is missing or does not verify makes the read fail with EIO and a log line naming
//! the file and the CID, never with wrong bytes. Everything else a runtime needs is answered from
//! the headers: modes (setuid included), owners, nanosecond mtimes, symlinks, hard links (one
//! inode), devices, fifos and xattrs (`security.capability` among them).
//!
//! A single layer (`--layer`) is shown as overlayfs wants a lower directory: a whiteout
//! `.wh.NAME` becomes a character device 0:0 named NAME and an opaque marker the xattr
//! `trusted.overlay.opaque=y` on its directory, as containerd's overlay snapshotter lays layers
//! out.

use crate::lazy::{BlockSource, LazyStore};
use crate::tree::{layer_entries, Inode, Kind, Tree, ROOT};
use crate::{Error, Result};
use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request, SessionACL,
};
use serde::Serialize;
use shp_core::cid::{Cid, RAW};
use shp_core::store::Blockstore;
use shp_core::Home;
use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// What to mount.
#[derive(Debug, Clone, Default)]
pub struct MountOptions {
    /// `os/arch[/variant]` for an image index (default: the host's, else the index's first).
    pub platform: Option<String>,
    /// One layer only: its index in the manifest (0 is the base layer) or its digest.
    pub layer: Option<String>,
}

/// What a mount serves.
#[derive(Debug, Clone, Serialize)]
pub struct MountInfo {
    pub root: String,
    pub manifest: String,
    /// The layers shown, lowest first (one with `--layer`).
    pub layers: Vec<String>,
    pub inodes: u64,
    /// Paths hidden by whiteouts (merged view).
    pub whiteouts: u64,
    /// How long building the tree took.
    pub tree_ms: u64,
}

/// The chunks of one file known so far: where each starts, its CID and length; and what is left
/// to walk (link-tree nodes and chunks after the last one known, with their depth and length when
/// the DAG says). Built only as far as reads go. Schema v3 data lists say each chunk's length, so
/// a read at any offset fetches only the chunks it touches; for older DAGs a chunk's length is
/// known once it is fetched (a read near a file's end fetches what lies before it).
#[derive(Clone, Default)]
struct ChunkMap {
    /// Each chunk's start in the file, CID and length.
    chunks: Vec<(u64, Cid, u64)>,
    /// Bytes covered by `chunks`.
    end: u64,
    /// Still to walk, next on top, with the bytes under each when the DAG says.
    todo: Vec<(Cid, u8, Option<u64>)>,
}

/// What a mount has served so far.
#[derive(Debug, Default)]
pub struct FsStats {
    pub reads: AtomicU64,
    /// Bytes of file data answered.
    pub bytes: AtomicU64,
    /// Chunks fetched from the store (each verified), and their bytes.
    pub chunks: AtomicU64,
    pub chunk_bytes: AtomicU64,
    /// Reads that failed (EIO).
    pub failed: AtomicU64,
}

/// The file system: a tree and the store it reads chunks from (the home's, and peers for what it
/// lacks when the mount is lazy).
pub struct ShpFs {
    store: Arc<LazyStore>,
    tree: Tree,
    stats: Arc<FsStats>,
    maps: Mutex<HashMap<u64, Arc<ChunkMap>>>,
    /// The last chunks read (sequential reads ask for one chunk many times in 128 KiB pieces).
    recent: Mutex<VecDeque<(Cid, Arc<Vec<u8>>)>>,
    /// The kernel opens files without asking (FUSE_NO_OPEN_SUPPORT, granted at init): no open or
    /// release round trip per file, the page cache kept as FOPEN_KEEP_CACHE keeps it.
    no_open: bool,
}

const TTL: Duration = Duration::from_secs(3600);
const RECENT: usize = 16;
const MAX_MAPS: usize = 65_536;
/// Linux's ENODATA (no such xattr).
const ENODATA: i32 = 61;

/// Builds the tree `image` (a name, CID or digest the home resolves) shows: its layers merged, or
/// the one layer `opts.layer` names. With a `source`, `image` may be a root CID the home lacks:
/// every block the home lacks (structure first, while the tree is built; file chunks as they are
/// read) comes from the source, verified.
pub fn prepare(
    home: Arc<Home>,
    image: &str,
    opts: &MountOptions,
    source: Option<Arc<dyn BlockSource>>,
) -> Result<(ShpFs, MountInfo)> {
    let started = Instant::now();
    let root = match (home.resolve(image), &source) {
        (Ok(r), _) => r,
        (Err(shp_core::Error::ImageNotFound(_)), Some(_)) if image.parse::<Cid>().is_ok() => {
            image.parse::<Cid>().expect("checked")
        }
        (Err(e), _) => return Err(e.into()),
    };
    let lazy = Arc::new(LazyStore::new(home, source));
    let store: &dyn Blockstore = &*lazy;
    let (manifest, layers) = crate::unpack::image_layers_in(store, &root, opts.platform.as_deref())?;
    let (chosen, overlay) = match opts.layer.as_deref() {
        None => (layers, false),
        Some(sel) => {
            let pick = match sel.parse::<usize>() {
                Ok(i) => layers.get(i).cloned(),
                Err(_) => layers.iter().find(|l| l.digest_str() == sel).cloned(),
            };
            let one = pick.ok_or_else(|| Error::Dest {
                path: sel.to_string(),
                reason: format!(
                    "no such layer in manifest {manifest} (it has {} layers: an index from 0, or a digest)",
                    layers.len()
                ),
            })?;
            (vec![one], true)
        }
    };
    // Layers whose entries a previous mount kept are not walked (nor, lazily, fetched) again.
    let home = lazy.home().clone();
    let mut kept: Vec<Option<Vec<crate::tree::Entry>>> = chosen
        .iter()
        .map(|l| l.tar.and_then(|t| crate::index::load(&home, &t)))
        .collect();
    if lazy.is_lazy() {
        let tars: Vec<Cid> = chosen
            .iter()
            .zip(&kept)
            .filter(|(_, k)| k.is_none())
            .filter_map(|(l, _)| l.tar)
            .collect();
        crate::tree::warm_structure(&lazy, &tars)?;
    }
    let mut tree = Tree::new();
    tree.overlay_whiteouts = overlay;
    for (l, k) in chosen.iter().zip(kept.iter_mut()) {
        let entries = match k.take() {
            Some(e) => e,
            None => {
                let e = layer_entries(store, l)?;
                if let Some(t) = l.tar {
                    crate::index::save(&home, &t, &e);
                }
                e
            }
        };
        tree.apply(&l.digest_str(), entries)?;
    }
    let info = MountInfo {
        root: root.to_string(),
        manifest,
        layers: chosen.iter().map(|l| l.digest_str()).collect(),
        inodes: tree.inodes.len() as u64 - 1,
        whiteouts: tree.whiteouts,
        tree_ms: started.elapsed().as_millis() as u64,
    };
    Ok((ShpFs::new(lazy, tree), info))
}

/// Mounts `fs` on `dir` (read-only; every user may read, the kernel checking modes) and serves it
/// on background threads until the returned session is dropped (which unmounts) or the file
/// system is unmounted from outside.
pub fn mount(fs: ShpFs, dir: &Path, source: &str) -> Result<fuser::BackgroundSession> {
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::RO,
        MountOption::FSName(format!("shp:{source}")),
        MountOption::Subtype("shp".into()),
        MountOption::DefaultPermissions,
        MountOption::Dev,
        MountOption::Suid,
        MountOption::Exec,
    ];
    cfg.acl = SessionACL::All;
    cfg.n_threads = Some(4);
    fuser::spawn_mount(fs, dir, &cfg).map_err(|e| Error::Dest {
        path: dir.display().to_string(),
        reason: format!("cannot mount (FUSE: /dev/fuse and CAP_SYS_ADMIN or fusermount3): {e}"),
    })
}

fn time(t: (i64, u32)) -> SystemTime {
    if t.0 >= 0 {
        SystemTime::UNIX_EPOCH + Duration::new(t.0 as u64, t.1)
    } else {
        SystemTime::UNIX_EPOCH - Duration::new(t.0.unsigned_abs(), 0) + Duration::new(0, t.1)
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Char => FileType::CharDevice,
        Kind::Block => FileType::BlockDevice,
    }
}

impl ShpFs {
    /// A file system of `tree`, reading chunks through `store`, nothing served yet.
    fn new(store: Arc<LazyStore>, tree: Tree) -> ShpFs {
        ShpFs {
            store,
            tree,
            stats: Arc::default(),
            maps: Mutex::new(HashMap::new()),
            recent: Mutex::new(VecDeque::new()),
            no_open: false,
        }
    }

    /// Its counters (shared: they keep counting once the file system is mounted).
    pub fn stats(&self) -> Arc<FsStats> {
        self.stats.clone()
    }

    /// The store it reads (its `fetched` counters say what came from peers).
    pub fn store(&self) -> Arc<LazyStore> {
        self.store.clone()
    }

    fn attr(&self, ino: u64, n: &Inode) -> FileAttr {
        let t = time(n.mtime);
        let size = match n.kind {
            Kind::Symlink => n.target.len() as u64,
            Kind::File => n.size,
            _ => 0,
        };
        let (maj, min) = n.dev;
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind: file_type(n.kind),
            perm: (n.mode & 0o7777) as u16,
            nlink: n.nlink.max(1),
            uid: n.uid,
            gid: n.gid,
            // Linux's new_encode_dev.
            rdev: (min & 0xff) | ((maj & 0xfff) << 8) | ((min & !0xff) << 12),
            blksize: 4096,
            flags: 0,
        }
    }

    /// The chunk map of a file, walked at least until it covers byte `upto` (link trees expanded;
    /// chunk sizes from the DAG (schema v3), else from the store's index, or from the chunk itself
    /// when the home lacks it: a v3 file is read at an offset without fetching the chunks before).
    fn chunk_map(&self, ino: u64, n: &Inode, upto: u64) -> shp_core::Result<Arc<ChunkMap>> {
        let known = self.maps.lock().unwrap().get(&ino).cloned();
        let mut m = match known {
            Some(m) if m.end >= upto || m.todo.is_empty() => return Ok(m),
            Some(m) => (*m).clone(),
            None => ChunkMap {
                todo: n.sized_data().into_iter().rev().map(|(c, len)| (c, 0, len)).collect(),
                ..ChunkMap::default()
            },
        };
        let store: &dyn Blockstore = &*self.store;
        while m.end < upto {
            let Some((c, depth, len)) = m.todo.pop() else { break };
            if c.codec() == RAW {
                let len = match len {
                    Some(n) => n,
                    None => store.size_of(&c)?,
                };
                m.chunks.push((m.end, c, len));
                m.end += len;
                continue;
            }
            if depth > 16 {
                return Err(shp_core::Error::Schema {
                    cid: c.to_string(),
                    reason: "link tree deeper than 16 levels".into(),
                });
            }
            let links = crate::tree::data_tree_sized(store, &c, len)?;
            m.todo
                .extend(links.into_iter().rev().map(|(l, len)| (l, depth + 1, len)));
        }
        if (m.todo.is_empty() && m.end != n.size) || m.end > n.size {
            return Err(shp_core::Error::Schema {
                cid: n.data.first().map(|c| c.to_string()).unwrap_or_default(),
                reason: format!("the file's chunks hold {} bytes, its header says {}", m.end, n.size),
            });
        }
        let m = Arc::new(m);
        let mut maps = self.maps.lock().unwrap();
        if maps.len() >= MAX_MAPS {
            maps.clear();
        }
        // Another read may have walked further meanwhile: keep the longer map.
        match maps.get(&ino) {
            Some(other) if other.end >= m.end => Ok(other.clone()),
            _ => {
                maps.insert(ino, m.clone());
                Ok(m)
            }
        }
    }

    fn chunk(&self, cid: &Cid) -> shp_core::Result<Arc<Vec<u8>>> {
        if let Some((_, b)) = self.recent.lock().unwrap().iter().find(|(c, _)| c == cid) {
            return Ok(b.clone());
        }
        // The store verifies the block against its CID.
        let b = Arc::new(self.store.get(cid)?);
        self.stats.chunks.fetch_add(1, Ordering::Relaxed);
        self.stats.chunk_bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
        let mut r = self.recent.lock().unwrap();
        if r.len() >= RECENT {
            r.pop_front();
        }
        r.push_back((*cid, b.clone()));
        Ok(b)
    }

    fn read_at(&self, ino: u64, n: &Inode, offset: u64, size: u32) -> shp_core::Result<Vec<u8>> {
        let end = (offset + size as u64).min(n.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let map = self.chunk_map(ino, n, end)?;
        let map = &map.chunks;
        // The chunk holding `offset`.
        let mut i = map.partition_point(|(start, ..)| *start <= offset).saturating_sub(1);
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut pos = offset;
        while pos < end && i < map.len() {
            let (start, cid, len) = map[i];
            let b = self.chunk(&cid)?;
            if b.len() as u64 != len {
                // The DAG's lengths place the file's bytes: a chunk that disagrees is refused.
                return Err(shp_core::Error::Schema {
                    cid: cid.to_string(),
                    reason: format!("the chunk holds {} bytes, the file's data list says {len}", b.len()),
                });
            }
            let from = (pos - start) as usize;
            let to = ((end - start) as usize).min(b.len());
            if from < to {
                out.extend_from_slice(&b[from..to]);
                pos = start + to as u64;
            }
            i += 1;
        }
        Ok(out)
    }

    fn path_of(&self, ino: u64) -> String {
        let mut parts = Vec::new();
        let mut cur = ino;
        while cur != ROOT {
            let Some(n) = self.tree.get(cur) else { break };
            let Some(p) = self.tree.get(n.parent) else { break };
            match p.children.iter().find(|(_, c)| **c == cur) {
                Some((name, _)) => parts.push(name.to_string_lossy().into_owned()),
                None => break,
            }
            cur = n.parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }
}

fn xattr_reply(value: &[u8], size: u32, reply: ReplyXattr) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if (size as usize) < value.len() {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

impl Filesystem for ShpFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Nothing is ever written, so each file open would be a round trip for nothing: where the
        // kernel can open files on its own (it offers FUSE_NO_OPEN_SUPPORT), let it. Its
        // default for such opens keeps the page cache, as our open reply did.
        if config.add_capabilities(InitFlags::FUSE_NO_OPEN_SUPPORT).is_ok() {
            self.no_open = true;
        }
        // Directory listings that carry each entry's attributes: a walk then looks nothing up.
        let _ = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(p) = self.tree.get(parent.0) else {
            return reply.error(Errno::ENOENT);
        };
        if p.kind != Kind::Dir {
            return reply.error(Errno::ENOTDIR);
        }
        match p.children.get(name).and_then(|c| self.tree.get(*c).map(|n| (*c, n))) {
            Some((c, n)) => reply.entry(&TTL, &self.attr(c, n), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.tree.get(ino.0) {
            Some(n) => reply.attr(&TTL, &self.attr(ino.0, n)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.tree.get(ino.0) {
            Some(n) if n.kind == Kind::Symlink => reply.data(&n.target),
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.tree.get(ino.0) {
            // ENOSYS once tells a kernel that offered FUSE_NO_OPEN_SUPPORT to stop asking.
            Some(_) if self.no_open => reply.error(Errno::ENOSYS),
            // The content never changes: let the kernel keep its page cache across opens.
            Some(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(n) = self.tree.get(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if n.kind != Kind::File {
            return reply.error(Errno::EISDIR);
        }
        self.stats.reads.fetch_add(1, Ordering::Relaxed);
        match self.read_at(ino.0, n, offset, size) {
            Ok(b) => {
                self.stats.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                reply.data(&b)
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "shp mount: read of {} ({} bytes at {offset}) failed: {e}",
                    self.path_of(ino.0),
                    size
                );
                reply.error(Errno::EIO)
            }
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let Some(n) = self.tree.get(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if n.kind != Kind::Dir {
            return reply.error(Errno::ENOTDIR);
        }
        let dots = [
            (ino.0, FileType::Directory, OsStr::new(".")),
            (n.parent, FileType::Directory, OsStr::new("..")),
        ];
        let rest = n
            .children
            .iter()
            .filter_map(|(name, c)| self.tree.get(*c).map(|k| (*c, file_type(k.kind), name.as_os_str())));
        for (i, (c, t, name)) in dots.into_iter().chain(rest).enumerate().skip(offset as usize) {
            if reply.add(INodeNo(c), i as u64 + 1, t, name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let Some(n) = self.tree.get(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if n.kind != Kind::Dir {
            return reply.error(Errno::ENOTDIR);
        }
        let dots = [(ino.0, OsStr::new(".")), (n.parent, OsStr::new(".."))];
        let rest = n.children.iter().map(|(name, c)| (*c, name.as_os_str()));
        for (i, (c, name)) in dots.into_iter().chain(rest).enumerate().skip(offset as usize) {
            let Some(k) = self.tree.get(c) else { continue };
            if reply.add(INodeNo(c), i as u64 + 1, name, &TTL, &self.attr(c, k), Generation(0)) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let bytes: u64 = self
            .tree
            .inodes
            .iter()
            .filter(|n| n.kind == Kind::File)
            .map(|n| n.size)
            .sum();
        let files = self.tree.inodes.len() as u64;
        reply.statfs(bytes.div_ceil(4096), 0, 0, files, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let Some(n) = self.tree.get(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        match n.xattrs.iter().find(|(k, _)| k.as_slice() == name.as_bytes()) {
            Some((_, v)) => xattr_reply(v, size, reply),
            None => reply.error(Errno::from_i32(ENODATA)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let Some(n) = self.tree.get(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let mut names = Vec::new();
        for (k, _) in &n.xattrs {
            names.extend_from_slice(k);
            names.push(0);
        }
        xattr_reply(&names, size, reply);
    }
}

/// A running mount, as `HOME/mounts/` records it (`shp mounts`, `shp umount`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MountRecord {
    /// The mount point (absolute).
    pub dir: String,
    /// The image as it was named on the command line.
    pub image: String,
    pub root: String,
    pub manifest: String,
    pub layers: Vec<String>,
    /// The `shp mount` process serving it.
    pub pid: u32,
    /// When it was mounted (Unix seconds).
    pub started: u64,
}

fn record_path(home_dir: &Path, dir: &str) -> std::path::PathBuf {
    // FNV-1a of the mount point: one stable file name per mount point.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in dir.as_bytes() {
        h = (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    home_dir.join("mounts").join(format!("{h:016x}.json"))
}

fn alive(pid: u32) -> bool {
    rustix::process::Pid::from_raw(pid as i32).is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

impl MountRecord {
    /// Writes the record (atomically) into `home_dir`'s table.
    pub fn save(&self, home_dir: &Path) -> std::io::Result<()> {
        let p = record_path(home_dir, &self.dir);
        std::fs::create_dir_all(p.parent().expect("a parent"))?;
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(tmp, p)
    }

    /// Removes the record of the mount on `dir`, if any.
    pub fn remove(home_dir: &Path, dir: &str) {
        let _ = std::fs::remove_file(record_path(home_dir, dir));
    }

    /// The record of the mount on `dir`, if there is one.
    pub fn find(home_dir: &Path, dir: &str) -> Option<MountRecord> {
        let b = std::fs::read(record_path(home_dir, dir)).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// Whether the process serving it still runs.
    pub fn alive(&self) -> bool {
        alive(self.pid)
    }

    /// Every mount of `home_dir` whose process still runs, by mount point (records of processes
    /// that died are dropped; their mount points are left for `shp umount` to clean).
    pub fn list(home_dir: &Path) -> Vec<MountRecord> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(home_dir.join("mounts")) else {
            return out;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            if let Some(r) = std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<MountRecord>(&b).ok())
            {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.dir.cmp(&b.dir));
        out
    }
}

/// Whether `dir` is a FUSE file system mounted by `shp mount` (per /proc/self/mountinfo).
pub fn is_shp_mount(dir: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = dir.to_string_lossy();
    info.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            return false;
        };
        // Its type is `fuse` or `fuse.shp` (a subtype needs the mount helper), its source `shp:…`.
        f.get(4).map(|m| unescape_mountinfo(m)) == Some(want.to_string())
            && f.get(sep + 1).is_some_and(|t| *t == "fuse" || *t == "fuse.shp")
            && f.get(sep + 2).is_some_and(|s| s.starts_with("shp:"))
    })
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Unmounts `dir` (a mount whose serving process is gone).
pub fn unmount(dir: &Path) -> Result<()> {
    rustix::mount::unmount(dir, rustix::mount::UnmountFlags::empty()).map_err(|e| Error::Dest {
        path: dir.display().to_string(),
        reason: format!("cannot unmount: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shp_core::dag::{DagWriter, TarDag};
    use shp_core::store::MemoryStore;
    use std::sync::atomic::AtomicUsize;

    /// Blocks from a memory store, counted: a peer's view of what a lazy mount asked for.
    struct Counted {
        store: MemoryStore,
        chunk_gets: AtomicUsize,
        gets: AtomicUsize,
        batches: AtomicUsize,
    }

    impl Counted {
        fn new(store: MemoryStore) -> Arc<Counted> {
            Arc::new(Counted {
                store,
                chunk_gets: AtomicUsize::new(0),
                gets: AtomicUsize::new(0),
                batches: AtomicUsize::new(0),
            })
        }
    }

    impl BlockSource for Counted {
        fn get(&self, cid: &Cid) -> std::result::Result<Vec<u8>, String> {
            self.gets.fetch_add(1, Ordering::Relaxed);
            if cid.codec() == shp_core::cid::RAW {
                self.chunk_gets.fetch_add(1, Ordering::Relaxed);
            }
            self.store.get(cid).map_err(|e| e.to_string())
        }
        fn get_many(&self, cids: &[Cid], found: &mut dyn FnMut(Cid, Vec<u8>)) -> std::result::Result<(), String> {
            self.batches.fetch_add(1, Ordering::Relaxed);
            for c in cids {
                if let Ok(b) = self.store.get(c) {
                    found(*c, b);
                }
            }
            Ok(())
        }
        fn name(&self) -> String {
            "test peer".into()
        }
    }

    /// A peer's store holding the tar `t` as a tar DAG, and its tar node.
    fn peer_dag(t: &[u8]) -> (MemoryStore, Cid) {
        let peer = MemoryStore::new();
        let mut batch = peer.batch().unwrap();
        let tar = {
            let mut w = DagWriter::new(&mut *batch);
            let mut sink = TarDag::new(&mut w);
            shp_core::tar::split(&mut &t[..], "test", &mut sink).unwrap();
            sink.finish().unwrap().0
        };
        batch.commit().unwrap();
        (peer, tar)
    }

    /// A read near the end of a file of many chunks, in a lazy mount whose home holds nothing,
    /// fetches the chunks it touches and no other: the data list says where each chunk starts.
    /// The bytes are the file's.
    #[test]
    fn a_lazy_read_at_an_offset_fetches_only_the_chunks_it_touches() {
        let mut x = 0x9e3779b97f4a7c15u64;
        let body: Vec<u8> = (0..2_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(body.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, "usr/lib/libbig.so", &body[..]).unwrap();
        let t = b.into_inner().unwrap();
        let (peer, tar) = peer_dag(&t);
        let dir = tempfile::tempdir().unwrap();
        let home = Arc::new(Home::init(dir.path()).unwrap());
        let source = Counted::new(peer);
        let lazy = Arc::new(LazyStore::new(home, Some(source.clone())));
        let mut tree = Tree::new();
        tree.apply("test", crate::tree::tar_entries(&*lazy, &tar, "test").unwrap())
            .unwrap();
        assert_eq!(source.chunk_gets.load(Ordering::Relaxed), 0, "the tree needs no chunk");
        let fs = ShpFs::new(lazy, tree);
        let (ino, n) = (1..)
            .map_while(|i| fs.tree.get(i).map(|n| (i, n.clone())))
            .find(|(_, n)| n.kind == Kind::File)
            .unwrap();
        assert!(n.data.len() > 8, "{} chunks", n.data.len());
        let at = 1_900_000u64;
        let got = fs.read_at(ino, &n, at, 4096).unwrap();
        assert_eq!(got, &body[at as usize..at as usize + 4096]);
        let fetched = source.chunk_gets.load(Ordering::Relaxed);
        assert!(fetched <= 2, "{fetched} chunks fetched for one 4 KiB read at the end");
        // The whole file reads back exactly, in 128 KiB reads as the kernel asks.
        let mut all = Vec::new();
        while (all.len() as u64) < n.size {
            all.extend(fs.read_at(ino, &n, all.len() as u64, 128 << 10).unwrap());
        }
        assert_eq!(all, body);
    }

    /// The tree of a layer of thousands of files, from a peer, in a few batch requests: its
    /// structure is fetched level by level, not block by block.
    #[test]
    fn a_lazy_tree_is_fetched_in_a_few_batches() {
        let mut b = tar::Builder::new(Vec::new());
        for i in 0..3000u32 {
            let body = format!("file {i} ").repeat(1 + i as usize % 40);
            let mut h = tar::Header::new_ustar();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, format!("usr/share/d{}/f{i}", i % 50), body.as_bytes())
                .unwrap();
        }
        let t = b.into_inner().unwrap();
        let (peer, tar) = peer_dag(&t);
        let dir = tempfile::tempdir().unwrap();
        let home = Arc::new(Home::init(dir.path()).unwrap());
        let source = Counted::new(peer);
        let lazy = LazyStore::new(home, Some(source.clone()));
        crate::tree::warm_structure(&lazy, &[tar]).unwrap();
        let entries = crate::tree::tar_entries(&lazy, &tar, "test").unwrap();
        assert_eq!(entries.iter().filter(|e| e.kind == Kind::File).count(), 3000);
        let lists = lazy.fetched.load(Ordering::Relaxed);
        assert!(lists > 20, "{lists} blocks of structure");
        assert_eq!(source.gets.load(Ordering::Relaxed), 0, "no block asked for alone");
        let batches = source.batches.load(Ordering::Relaxed);
        assert!(batches <= 4, "{batches} batches for {lists} blocks");
    }
}
