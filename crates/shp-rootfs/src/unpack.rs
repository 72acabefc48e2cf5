//! `shp unpack IMAGE DIR`: an image's root file system written to a directory.
//!
//! The layers of the image's manifest (or of one platform's, from an index) are applied in order,
//! each read as a tar straight from the store (a tar DAG is concatenated from its chunks, every
//! block verified; the tar's sha256 is checked when it ends), so no layer is rebuilt or
//! recompressed and memory does not grow with layer size. Per entry, as `umoci unpack` does:
//! - names are cleaned and resolved inside DIR ([`crate::path`]); a `..` is refused, naming the
//!   layer and the entry, and nothing is ever written outside DIR;
//! - `.wh.NAME` removes NAME from the layers below (never what its own layer wrote, as the image
//!   spec says); `.wh..wh..opq` empties its directory, at any depth, of what the layers below put
//!   there; whiteouts themselves are never written;
//! - an entry replaces what is at its path (a directory is kept when the entry is a directory);
//! - regular files, directories, symlinks (the target kept as text, never followed), hard links
//!   (to an entry already in the tree), fifos, and — as root — character and block devices;
//! - as root, owners (PAX `uid`/`gid` win over the header's); then modes (setuid bits included),
//!   PAX xattrs (`SCHILY.xattr.*`, `security.capability` among them) and mtimes (PAX fractions
//!   kept). Directories get their mode and mtime last, once nothing more is written into them.
//!
//! What a non-root user cannot do (devices, owners, `security.`/`trusted.` xattrs) is skipped and
//! counted in the report, never silently.

use crate::path::{clean, resolve_parent};
use crate::pax::Pax;
use crate::{Error, Result};
use rustix::fs::{AtFlags, Mode, Timespec, Timestamps, CWD};
use serde::Serialize;
use shp_core::blob::BlobNode;
use shp_core::cid::Cid;
use shp_core::image::{pick_manifest, ImageRoot};
use shp_core::Home;
use std::collections::HashSet;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// How to unpack.
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// `os/arch[/variant]` for an index (default: the host's, else the index's first manifest).
    pub platform: Option<String>,
    /// Set owners and make device nodes; `None`: when running as root.
    pub owners: Option<bool>,
}

/// What an unpack wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnpackReport {
    pub root: String,
    /// The manifest whose layers were applied.
    pub manifest: String,
    pub layers: usize,
    pub entries: u64,
    pub files: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub devices: u64,
    pub fifos: u64,
    /// Paths removed by whiteouts (an opaque directory counts each child it removed).
    pub whiteouts: u64,
    /// What could not be applied, one line each (devices, owners or xattrs a non-root user may not
    /// set), at most 100 lines; `skipped_total` counts them all.
    pub skipped: Vec<String>,
    pub skipped_total: u64,
}

impl UnpackReport {
    fn skip(&mut self, what: String) {
        self.skipped_total += 1;
        if self.skipped.len() < 100 {
            self.skipped.push(what);
        }
    }
}

/// Unpacks `image` (a name, CID or digest the home resolves) into `dir`, which must be absent or
/// an empty directory.
pub fn unpack(home: &Home, image: &str, dir: &Path, opts: &UnpackOptions) -> Result<UnpackReport> {
    let (root, manifest, layers) = image_layers(home, image, opts.platform.as_deref())?;
    let store = home.store();
    prepare(dir)?;
    let owners = opts.owners.unwrap_or_else(|| rustix::process::geteuid().is_root());
    let mut rep = UnpackReport {
        root: root.to_string(),
        manifest,
        layers: layers.len(),
        ..Default::default()
    };
    let mut u = Applier::new(dir, owners, &mut rep);
    for node in &layers {
        let r = node.open_tar(store)?;
        u.layer(&node.digest_str(), r)?;
    }
    u.finish()?;
    Ok(rep)
}

/// The layers (lowest first) of `image`'s manifest — from an index, `platform`'s — with the root
/// and the manifest's digest.
pub(crate) fn image_layers(home: &Home, image: &str, platform: Option<&str>) -> Result<(Cid, String, Vec<BlobNode>)> {
    let root = home.resolve(image)?;
    let (manifest, layers) = image_layers_in(home.store(), &root, platform)?;
    Ok((root, manifest, layers))
}

/// The same for the image under `root` in `store`: the manifest's digest and its layers.
pub(crate) fn image_layers_in(
    store: &dyn shp_core::store::Blockstore,
    root: &Cid,
    platform: Option<&str>,
) -> Result<(String, Vec<BlobNode>)> {
    let img = ImageRoot::load(store, root)?;
    let blobs = img.blobs(store)?;
    let manifest = pick_manifest(&blobs, platform)?;
    let doc = manifest.doc.as_ref().expect("a manifest has its document");
    let mut layers = Vec::new();
    for l in &doc.layers {
        let node = blobs
            .iter()
            .find(|b| b.node.digest == l.digest)
            .ok_or_else(|| shp_core::Error::ImageNotFound(format!("layer {} in the store", l.digest_str)))?;
        layers.push(node.node.clone());
    }
    Ok((manifest.node.digest_str(), layers))
}

/// The digests of the layers of the image whose root is `root` (for an index, the manifest the
/// host's platform picks), lowest first.
pub fn layer_digests(home: &Home, root: &str) -> Result<Vec<String>> {
    let root: Cid = root.parse().map_err(Error::Core)?;
    let (_, layers) = image_layers_in(home.store(), &root, None)?;
    Ok(layers.iter().map(|l| l.digest_str()).collect())
}

/// `dir` absent (made, 0755) or an empty directory.
fn prepare(dir: &Path) -> Result<()> {
    let bad = |reason: String| Error::Dest {
        path: dir.display().to_string(),
        reason,
    };
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            if std::fs::read_dir(dir).map_err(|e| bad(e.to_string()))?.next().is_some() {
                return Err(bad(
                    "not empty (unpack writes a whole root file system into an empty directory)".into(),
                ));
            }
            Ok(())
        }
        Ok(_) => Err(bad("exists and is not a directory".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| bad(e.to_string()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(|e| bad(e.to_string()))
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

/// A directory's mode and mtime, applied once everything is written.
struct DirMeta {
    path: PathBuf,
    mode: u32,
    mtime: Timespec,
}

/// Applies layer tars, one after the other, to a root directory (what [`unpack`] does per image;
/// public for the fuzz target and for callers with tars of their own). Call [`Applier::finish`]
/// after the last layer: it sets the directories' modes and mtimes.
pub struct Applier<'r> {
    root: PathBuf,
    owners: bool,
    dirs: Vec<DirMeta>,
    /// Host paths this layer wrote (an opaque directory keeps them).
    created: HashSet<PathBuf>,
    rep: &'r mut UnpackReport,
}

impl<'r> Applier<'r> {
    /// An applier writing into `root` (an existing directory); `owners`: set owners and make
    /// device nodes (root only).
    pub fn new(root: &Path, owners: bool, rep: &'r mut UnpackReport) -> Applier<'r> {
        Applier {
            root: root.to_path_buf(),
            owners,
            dirs: Vec::new(),
            created: HashSet::new(),
            rep,
        }
    }

    /// Applies one layer's tar; `layer` names it in errors.
    pub fn layer(&mut self, layer: &str, r: impl Read) -> Result<()> {
        self.created.clear();
        let tar_err = |e: std::io::Error| Error::Tar {
            layer: layer.to_string(),
            reason: e.to_string(),
        };
        let mut ar = tar::Archive::new(r);
        for entry in ar.entries().map_err(tar_err)? {
            let mut entry = entry.map_err(tar_err)?;
            let name = entry.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&name).into_owned();
            let fail = |reason: String| Error::Entry {
                layer: layer.to_string(),
                entry: shown.clone(),
                reason,
            };
            let pax = Pax::of(&mut entry).map_err(tar_err)?;
            self.rep.entries += 1;
            self.entry(&mut entry, &name, &pax).map_err(fail)?;
        }
        // The archive stops at its end-of-archive blocks: read the rest, so the tar's sha256 is
        // checked (a verified reader fails at its end, never before).
        let mut rest = ar.into_inner();
        std::io::copy(&mut rest, &mut std::io::sink()).map_err(tar_err)?;
        Ok(())
    }

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>, name: &[u8], pax: &Pax) -> std::result::Result<(), String> {
        let h = e.header().clone();
        let kind = h.entry_type();
        let comps = clean(name)?;
        let mode = h.mode().map_err(|e| e.to_string())? & 0o7777;
        let mtime = pax.mtime.unwrap_or(Timespec {
            tv_sec: h.mtime().unwrap_or(0) as i64,
            tv_nsec: 0,
        });
        let uid = pax.uid.or_else(|| h.uid().ok()).unwrap_or(0);
        let gid = pax.gid.or_else(|| h.gid().ok()).unwrap_or(0);
        if comps.is_empty() {
            // `./`: the root directory's own metadata.
            if kind.is_dir() {
                let root = self.root.clone();
                self.meta(&root, uid, gid, &pax.xattrs)?;
                self.dirs.push(DirMeta {
                    path: root,
                    mode,
                    mtime,
                });
            }
            return Ok(());
        }
        let (parent, base) = resolve_parent(&self.root, &comps)?;
        let b = base.as_bytes();
        if b == b".wh..wh..opq" {
            return self.opaque(&parent);
        }
        if let Some(gone) = b.strip_prefix(b".wh.") {
            let p = parent.join(std::ffi::OsStr::from_bytes(gone));
            // A whiteout hides what the layers below hold, never what its own layer wrote: of a
            // directory this layer made, only what lower layers left inside goes.
            if self.created.contains(&p) {
                if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                    self.opaque(&p)?;
                }
                return Ok(());
            }
            if remove(&p, false)? {
                self.rep.whiteouts += 1;
            }
            return Ok(());
        }
        let path = parent.join(&base);
        let err = |what: &str, e: std::io::Error| format!("{what} {}: {e}", path.display());
        match kind {
            tar::EntryType::Directory => {
                remove(&path, true)?;
                match std::fs::create_dir(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(err("mkdir", e)),
                }
                // Writable for the owner until the end, whatever the layer says.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700 | mode))
                    .map_err(|e| err("chmod", e))?;
                self.meta(&path, uid, gid, &pax.xattrs)?;
                self.dirs.push(DirMeta {
                    path: path.clone(),
                    mode,
                    mtime,
                });
                self.rep.dirs += 1;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove(&path, false)?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode_owner_only()
                    .open(&path)
                    .map_err(|e| err("create", e))?;
                let n = copy(e, &mut f).map_err(|e| err("write", e))?;
                drop(f);
                self.rep.files += 1;
                self.rep.bytes += n;
                self.meta(&path, uid, gid, &pax.xattrs)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(|e| err("chmod", e))?;
                set_mtime(&path, mtime)?;
            }
            tar::EntryType::Symlink => {
                let target = e.link_name_bytes().ok_or("a symlink without a target")?.into_owned();
                remove(&path, false)?;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &path)
                    .map_err(|e| err("symlink", e))?;
                self.meta(&path, uid, gid, &pax.xattrs)?;
                set_mtime(&path, mtime)?;
                self.rep.symlinks += 1;
            }
            tar::EntryType::Link => {
                let target = e.link_name_bytes().ok_or("a hard link without a target")?.into_owned();
                let tcomps = clean(&target).map_err(|r| format!("hard link target: {r}"))?;
                if tcomps.is_empty() {
                    return Err("a hard link to the root".into());
                }
                let (tp, tb) = resolve_parent(&self.root, &tcomps)?;
                let tpath = tp.join(tb);
                match std::fs::symlink_metadata(&tpath) {
                    Ok(m) if m.is_dir() => return Err("a hard link to a directory".into()),
                    Ok(_) => {}
                    Err(_) => {
                        return Err(format!(
                            "a hard link to {:?}, which is not in the tree (yet)",
                            String::from_utf8_lossy(&target)
                        ))
                    }
                }
                if tpath == path {
                    return Ok(());
                }
                remove(&path, false)?;
                std::fs::hard_link(&tpath, &path).map_err(|e| err("link", e))?;
                self.rep.hardlinks += 1;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (ft, what) = match kind {
                    tar::EntryType::Char => (rustix::fs::FileType::CharacterDevice, "character device"),
                    tar::EntryType::Block => (rustix::fs::FileType::BlockDevice, "block device"),
                    _ => (rustix::fs::FileType::Fifo, "fifo"),
                };
                let is_fifo = matches!(kind, tar::EntryType::Fifo);
                if !is_fifo && !self.owners {
                    self.rep
                        .skip(format!("{}: a {what} (only root makes device nodes)", path.display()));
                    return Ok(());
                }
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                remove(&path, false)?;
                rustix::fs::mknodat(
                    CWD,
                    &path,
                    ft,
                    Mode::from_raw_mode(mode),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(|e| format!("mknod {}: {e}", path.display()))?;
                self.meta(&path, uid, gid, &pax.xattrs)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(|e| err("chmod", e))?;
                set_mtime(&path, mtime)?;
                if is_fifo {
                    self.rep.fifos += 1;
                } else {
                    self.rep.devices += 1;
                }
            }
            // Extension headers the reader has already applied to the entries they describe.
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => return Ok(()),
            other => {
                return Err(format!(
                    "an entry of type {:?}, which a root file system cannot hold",
                    other.as_byte() as char
                ))
            }
        }
        self.created.insert(path);
        Ok(())
    }

    /// Owner and xattrs (before the mode: a chown clears setuid bits).
    fn meta(
        &mut self,
        path: &Path,
        uid: u64,
        gid: u64,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> std::result::Result<(), String> {
        if self.owners {
            rustix::fs::chownat(
                CWD,
                path,
                Some(rustix::fs::Uid::from_raw(uid as u32)),
                Some(rustix::fs::Gid::from_raw(gid as u32)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| format!("chown {}: {e}", path.display()))?;
        } else if uid != 0 || gid != 0 {
            self.rep
                .skip(format!("{}: owner {uid}:{gid} (only root sets owners)", path.display()));
        }
        for (k, v) in xattrs {
            let name = std::ffi::OsStr::from_bytes(k);
            match rustix::fs::lsetxattr(path, name, v, rustix::fs::XattrFlags::empty()) {
                Ok(()) => {}
                Err(e) if e == rustix::io::Errno::PERM || e == rustix::io::Errno::NOTSUP => {
                    self.rep
                        .skip(format!("{}: xattr {}: {e}", path.display(), String::from_utf8_lossy(k)))
                }
                Err(e) => {
                    return Err(format!(
                        "xattr {} on {}: {e}",
                        String::from_utf8_lossy(k),
                        path.display()
                    ))
                }
            }
        }
        Ok(())
    }

    /// `.wh..wh..opq` in `dir`: remove what the layers below put there, at any depth; what this
    /// layer wrote stays (a marker after the directory's entries, as some tools write it).
    fn opaque(&mut self, dir: &Path) -> std::result::Result<(), String> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        };
        for child in rd {
            let p = child.map_err(|e| format!("{}: {e}", dir.display()))?.path();
            if !self.created.contains(&p) {
                if remove(&p, false)? {
                    self.rep.whiteouts += 1;
                }
            } else if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                self.opaque(&p)?;
            }
        }
        Ok(())
    }

    /// Directories' modes and mtimes, deepest first (writing into a directory changes its mtime).
    pub fn finish(&mut self) -> Result<()> {
        let mut dirs = std::mem::take(&mut self.dirs);
        // No layer named the root (`./`): it gets the epoch as its mtime, as umoci gives it, so an
        // unpack does not depend on when it ran.
        if !dirs.iter().any(|d| d.path == self.root) {
            dirs.insert(
                0,
                DirMeta {
                    path: self.root.clone(),
                    mode: 0o755,
                    mtime: Timespec { tv_sec: 0, tv_nsec: 0 },
                },
            );
        }
        // The last entry for a directory wins; deepest paths first.
        dirs.reverse();
        let mut done = HashSet::new();
        let mut order: Vec<DirMeta> = dirs.into_iter().filter(|d| done.insert(d.path.clone())).collect();
        order.sort_by_key(|d| std::cmp::Reverse(d.path.components().count()));
        for d in order {
            let fail = |reason: String| Error::Dest {
                path: d.path.display().to_string(),
                reason,
            };
            match std::fs::symlink_metadata(&d.path) {
                Ok(m) if m.is_dir() => {}
                // Removed or replaced by a later layer.
                _ => continue,
            }
            std::fs::set_permissions(&d.path, std::fs::Permissions::from_mode(d.mode))
                .map_err(|e| fail(e.to_string()))?;
            set_mtime(&d.path, d.mtime).map_err(fail)?;
        }
        Ok(())
    }
}

trait OwnerOnly {
    fn mode_owner_only(&mut self) -> &mut Self;
}

impl OwnerOnly for std::fs::OpenOptions {
    /// Files are made 0600 and get their mode once written.
    fn mode_owner_only(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

fn copy(r: &mut dyn Read, w: &mut std::fs::File) -> std::io::Result<u64> {
    use std::io::Write;
    let mut buf = vec![0u8; 256 << 10];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..k])?;
        n += k as u64;
    }
}

/// Removes what is at `p` (a directory with all it holds), unless it is a directory and
/// `keep_dir`. Returns whether something was removed.
fn remove(p: &Path, keep_dir: bool) -> std::result::Result<bool, String> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            if keep_dir {
                return Ok(false);
            }
            std::fs::remove_dir_all(p).map_err(|e| format!("remove {}: {e}", p.display()))?;
            Ok(true)
        }
        Ok(_) => {
            std::fs::remove_file(p).map_err(|e| format!("remove {}: {e}", p.display()))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

/// Sets access and modification times of `p` itself (a symlink's own).
fn set_mtime(p: &Path, t: Timespec) -> std::result::Result<(), String> {
    rustix::fs::utimensat(
        CWD,
        p,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| format!("set times of {}: {e}", p.display()))
}
