//! The snapshots themselves: containerd's snapshotter model (active snapshots written through an
//! overlay upper directory, committed ones read-only, views) kept in [`State`], and remote
//! snapshots — a committed layer that is a read-only FUSE mount of a layer in shp's store, made on
//! `Prepare` when containerd names the layer in its labels, so containerd neither downloads nor
//! unpacks it.

use crate::filter::{any_matches, Filter};
use crate::proto::{Info, Kind, Mount};
use crate::state::{Remote, Snap, SnapKind, State};
use crate::{Error, Result};
use shp_core::home::Home;
use shp_rootfs::lazy::BlockSource;
use shp_rootfs::mount::MountOptions;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The label naming the committed snapshot a `Prepare` would end in (containerd sets it to the
/// layer's chain ID while unpacking).
pub const LABEL_TARGET: &str = "containerd.io/snapshot.ref";
/// The labels containerd's remote-snapshot pull path (CRI, nerdctl, the Go client with
/// `snapshotters.AppendInfoHandlerWrapper`) puts on each layer's `Prepare`.
pub const LABEL_LAYER: &str = "containerd.io/snapshot/cri.layer-digest";
pub const LABEL_MANIFEST: &str = "containerd.io/snapshot/cri.manifest-digest";
pub const LABEL_IMAGE_REF: &str = "containerd.io/snapshot/cri.image-ref";
/// Set by shp on the remote snapshots it makes: the image root CID the layer is read from.
pub const LABEL_SHP_ROOT: &str = "containerd.io/snapshot/shp.root";

fn now() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn timestamp(ns: i128) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ns.div_euclid(1_000_000_000) as i64,
        nanos: ns.rem_euclid(1_000_000_000) as i32,
    }
}

/// What a `Prepare` ended in.
#[derive(Debug)]
pub enum Prepared {
    Mounts(Vec<Mount>),
    /// The target (committed) snapshot exists now: containerd skips the layer.
    Target(String),
}

/// Where images the home does not hold come from: peers that can name an image's root and serve
/// its blocks (the CLI's: stations over HTTP, `--from`).
pub trait Lazy: Send + Sync {
    /// The root CID of the image a pull names — `image_ref` as containerd has it
    /// (`HOST/REPO:TAG` or `…@DIGEST`, the `cri.image-ref` label) and its manifest digest — if a
    /// peer holds it.
    fn resolve(&self, image_ref: Option<&str>, manifest: Option<&str>) -> Option<String>;
    /// Blocks the home lacks, from the peers (the mount checks each against its CID).
    fn source(&self) -> Arc<dyn BlockSource>;
    /// Starts fetching the whole image into the home in the background (once per root), so that
    /// reads become local.
    fn prefetch(&self, root: &str);
}

struct Inner {
    state: State,
    /// The FUSE sessions of remote snapshots, by id.
    sessions: HashMap<u64, fuser::BackgroundSession>,
}

pub struct Snapshotter {
    root: PathBuf,
    home: Arc<Home>,
    lazy: Option<Arc<dyn Lazy>>,
    /// Held (flock) while the snapshotter runs.
    _lock: std::fs::File,
    inner: Mutex<Inner>,
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Io(format!("{what}: {e}"))
}

/// The snapshot named `key`, or NOT_FOUND naming it.
fn named<'a>(st: &'a State, key: &str) -> Result<&'a Snap> {
    st.snaps
        .get(key)
        .ok_or_else(|| Error::NotFound(format!("snapshot {key:?}")))
}

/// A snapshot made now.
fn fresh(id: u64, parent: &str, kind: SnapKind, labels: BTreeMap<String, String>, remote: Option<Remote>) -> Snap {
    let t = now();
    Snap {
        id,
        parent: parent.to_string(),
        kind,
        labels,
        created: t,
        updated: t,
        remote,
    }
}

impl Snapshotter {
    /// Writes `state` to `ROOT/metadata.json` (the caller undoes its change when this fails).
    fn save(&self, state: &State) -> Result<()> {
        state
            .save(&self.root)
            .map_err(|e| Error::Io(format!("saving {}: {e}", self.root.join("metadata.json").display())))
    }

    /// Opens the snapshotter kept in `root` over `home`'s store, mounting again every remote
    /// snapshot it had (a stale mount left by a killed process is unmounted first).
    pub fn open(root: &Path, home: Arc<Home>, lazy: Option<Arc<dyn Lazy>>) -> Result<Snapshotter> {
        for d in ["snapshots", "layers"] {
            std::fs::create_dir_all(root.join(d)).map_err(io(root.join(d).display()))?;
        }
        let root = std::fs::canonicalize(root).map_err(io(root.display()))?;
        // One snapshotter per root: a second one would mount over the first's layers.
        let lock_path = root.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(lock_path.display()))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(|_| {
            Error::FailedPrecondition(format!(
                "{}: another snapshotter is using this root (one process per root)",
                root.display()
            ))
        })?;
        let state = State::load(&root).map_err(|e| Error::Io(e.to_string()))?;
        let s = Snapshotter {
            root,
            home,
            lazy,
            _lock: lock,
            inner: Mutex::new(Inner {
                state,
                sessions: HashMap::new(),
            }),
        };
        let remotes: Vec<(String, u64, Remote)> = {
            let g = s.inner.lock().expect("lock");
            g.state
                .snaps
                .iter()
                .filter_map(|(n, sn)| sn.remote.clone().map(|r| (n.clone(), sn.id, r)))
                .collect()
        };
        for (name, id, r) in remotes {
            match s.mount_layer(id, &r) {
                Ok(sess) => {
                    s.inner.lock().expect("lock").sessions.insert(id, sess);
                }
                // Kept (Remove still works); a container over it gets EIO, and the log says why.
                Err(e) => tracing::error!(snapshot = %name, layer = %r.layer, "cannot mount again: {e}"),
            }
        }
        Ok(s)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn upper(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string()).join("fs")
    }
    fn work(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string()).join("work")
    }
    fn layer_dir(&self, id: u64) -> PathBuf {
        self.root.join("layers").join(id.to_string())
    }
    /// The directory a committed snapshot's tree is in.
    fn tree_of(&self, s: &Snap) -> PathBuf {
        if s.remote.is_some() {
            self.layer_dir(s.id)
        } else {
            self.upper(s.id)
        }
    }

    fn mount_layer(&self, id: u64, r: &Remote) -> Result<fuser::BackgroundSession> {
        let dir = self.layer_dir(id);
        if shp_rootfs::mount::is_shp_mount(&dir) {
            shp_rootfs::mount::unmount(&dir).map_err(|e| Error::Io(e.to_string()))?;
        }
        std::fs::create_dir_all(&dir).map_err(io(dir.display()))?;
        let opts = MountOptions {
            platform: None,
            layer: Some(r.layer.clone()),
        };
        let source = self.lazy.as_ref().filter(|_| r.lazy).map(|l| l.source());
        let (fs, info) = shp_rootfs::mount::prepare(self.home.clone(), &r.image, &opts, source)?;
        let sess = shp_rootfs::mount::mount(fs, &dir, &r.layer)?;
        tracing::info!(layer = %r.layer, image = %r.image, dir = %dir.display(), inodes = info.inodes, tree_ms = info.tree_ms, "layer mounted from the store");
        Ok(sess)
    }

    /// The image in the home that holds `layer`: the one whose manifest is `manifest` first,
    /// then any other.
    fn find_layer(&self, manifest: Option<&str>, layer: &str) -> Option<String> {
        let mut images = match self.home.list() {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("listing the home's images: {e}");
                return None;
            }
        };
        images.sort_by_key(|e| Some(e.digest.as_str()) != manifest);
        let mut seen = std::collections::HashSet::new();
        for e in images {
            if !seen.insert(e.root.clone()) {
                continue;
            }
            match shp_rootfs::unpack::layer_digests(&self.home, &e.root) {
                Ok(ls) if ls.iter().any(|l| l == layer) => return Some(e.root),
                Ok(_) => {}
                Err(err) => tracing::debug!(root = %e.root, "not searched: {err}"),
            }
        }
        None
    }

    pub fn prepare(&self, key: &str, parent: &str, labels: BTreeMap<String, String>) -> Result<Prepared> {
        self.create(key, parent, labels, SnapKind::Active)
    }

    pub fn view(&self, key: &str, parent: &str, labels: BTreeMap<String, String>) -> Result<Vec<Mount>> {
        match self.create(key, parent, labels, SnapKind::View)? {
            Prepared::Mounts(m) => Ok(m),
            Prepared::Target(t) => Err(Error::AlreadyExists(t)),
        }
    }

    fn create(&self, key: &str, parent: &str, labels: BTreeMap<String, String>, kind: SnapKind) -> Result<Prepared> {
        if key.is_empty() {
            return Err(Error::InvalidArgument("a snapshot needs a key".into()));
        }
        let mut g = self.inner.lock().expect("lock");
        if g.state.snaps.contains_key(key) {
            return Err(Error::AlreadyExists(format!("snapshot {key:?}")));
        }
        if !parent.is_empty() {
            match g.state.snaps.get(parent) {
                None => return Err(Error::NotFound(format!("parent snapshot {parent:?}"))),
                Some(p) if p.kind != SnapKind::Committed => {
                    return Err(Error::FailedPrecondition(format!(
                        "parent {parent:?} is not committed (only committed snapshots can be parents)"
                    )))
                }
                Some(_) => {}
            }
        }
        if kind == SnapKind::Active {
            if let Some(target) = labels.get(LABEL_TARGET).cloned() {
                if let Some(t) = g.state.snaps.get(&target) {
                    if t.kind == SnapKind::Committed && t.parent == parent {
                        return Ok(Prepared::Target(target));
                    }
                }
                if let Some(layer) = labels.get(LABEL_LAYER).cloned() {
                    let manifest = labels.get(LABEL_MANIFEST).map(String::as_str);
                    let found = match self.find_layer(manifest, &layer) {
                        Some(image) => Some((image, false)),
                        None => self.lazy.as_ref().and_then(|l| {
                            l.resolve(labels.get(LABEL_IMAGE_REF).map(String::as_str), manifest)
                                .map(|image| (image, true))
                        }),
                    };
                    match found {
                        Some((image, lazy)) => {
                            let r = Remote { image, layer, lazy };
                            match self.remote(&mut g, &target, parent, labels.clone(), r.clone()) {
                                Ok(p) => {
                                    if let (true, Some(l)) = (lazy, &self.lazy) {
                                        l.prefetch(&r.image);
                                    }
                                    return Ok(p);
                                }
                                // containerd can still fetch and unpack it: slower, not broken.
                                Err(e) => tracing::warn!(layer = %r.layer, image = %r.image,
                                    "cannot serve the layer from the store, containerd unpacks it: {e}"),
                            }
                        }
                        None => tracing::info!(%layer, "not in the store: containerd fetches and unpacks it"),
                    }
                }
            }
        }
        let id = g.state.next_id;
        g.state.next_id += 1;
        let (upper, work) = (self.upper(id), self.work(id));
        std::fs::create_dir_all(&upper).map_err(io(upper.display()))?;
        if kind == SnapKind::Active {
            std::fs::create_dir_all(&work).map_err(io(work.display()))?;
        }
        g.state
            .snaps
            .insert(key.to_string(), fresh(id, parent, kind, labels, None));
        if let Err(e) = self.save(&g.state) {
            g.state.snaps.remove(key);
            let _ = std::fs::remove_dir_all(self.root.join("snapshots").join(id.to_string()));
            return Err(e);
        }
        Ok(Prepared::Mounts(self.mounts_of(&g.state, key)?))
    }

    fn remote(
        &self,
        g: &mut Inner,
        target: &str,
        parent: &str,
        mut labels: BTreeMap<String, String>,
        r: Remote,
    ) -> Result<Prepared> {
        if g.state.snaps.contains_key(target) {
            return Err(Error::AlreadyExists(format!(
                "snapshot {target:?} exists with another parent or kind"
            )));
        }
        let id = g.state.next_id;
        g.state.next_id += 1;
        let sess = self.mount_layer(id, &r)?;
        labels.insert(LABEL_SHP_ROOT.into(), r.image.clone());
        g.state.snaps.insert(
            target.to_string(),
            fresh(id, parent, SnapKind::Committed, labels, Some(r.clone())),
        );
        if let Err(e) = self.save(&g.state) {
            g.state.snaps.remove(target);
            let _ = sess.umount_and_join();
            let _ = std::fs::remove_dir(self.layer_dir(id));
            return Err(e);
        }
        g.sessions.insert(id, sess);
        tracing::info!(%target, layer = %r.layer, "remote snapshot: the layer is read from the store, not unpacked");
        Ok(Prepared::Target(target.to_string()))
    }

    fn mounts_of(&self, st: &State, key: &str) -> Result<Vec<Mount>> {
        let s = named(st, key)?;
        let lowers: Vec<String> = st
            .ancestors(key)
            .iter()
            .map(|n| self.tree_of(&st.snaps[n]).display().to_string())
            .collect();
        let bind = |src: String, ro: bool| Mount {
            r#type: "bind".into(),
            source: src,
            target: String::new(),
            options: vec![if ro { "ro" } else { "rw" }.into(), "rbind".into()],
        };
        let overlay = |mut options: Vec<String>| {
            // index=off: the lower layers may be FUSE mounts, which cannot give overlayfs the
            // file handles its inode index needs.
            options.insert(0, "index=off".into());
            Mount {
                r#type: "overlay".into(),
                source: "overlay".into(),
                target: String::new(),
                options,
            }
        };
        Ok(match s.kind {
            SnapKind::Active if lowers.is_empty() => vec![bind(self.upper(s.id).display().to_string(), false)],
            SnapKind::Active => vec![overlay(vec![
                format!("workdir={}", self.work(s.id).display()),
                format!("upperdir={}", self.upper(s.id).display()),
                format!("lowerdir={}", lowers.join(":")),
            ])],
            SnapKind::View if lowers.is_empty() => vec![bind(self.upper(s.id).display().to_string(), true)],
            SnapKind::View if lowers.len() == 1 => vec![bind(lowers[0].clone(), true)],
            SnapKind::View => vec![overlay(vec![format!("lowerdir={}", lowers.join(":"))])],
            SnapKind::Committed => {
                return Err(Error::FailedPrecondition(format!(
                    "snapshot {key:?} is committed: mounts are for active snapshots and views"
                )))
            }
        })
    }

    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let g = self.inner.lock().expect("lock");
        self.mounts_of(&g.state, key)
    }

    pub fn commit(&self, name: &str, key: &str, labels: BTreeMap<String, String>) -> Result<()> {
        let mut g = self.inner.lock().expect("lock");
        match g.state.snaps.get(key) {
            None => return Err(Error::NotFound(format!("snapshot {key:?}"))),
            Some(s) if s.kind != SnapKind::Active => {
                return Err(Error::FailedPrecondition(format!("snapshot {key:?} is not active")))
            }
            Some(_) => {}
        }
        if g.state.snaps.contains_key(name) {
            return Err(Error::AlreadyExists(format!("snapshot {name:?}")));
        }
        let before = g.state.clone();
        let mut s = g.state.snaps.remove(key).expect("checked");
        s.kind = SnapKind::Committed;
        s.labels = labels;
        s.updated = now();
        let id = s.id;
        g.state.snaps.insert(name.to_string(), s);
        if let Err(e) = self.save(&g.state) {
            g.state = before;
            return Err(e);
        }
        // Its overlay work directory is not needed any more.
        let _ = std::fs::remove_dir_all(self.work(id));
        Ok(())
    }

    pub fn remove(&self, key: &str) -> Result<()> {
        let mut g = self.inner.lock().expect("lock");
        let s = named(&g.state, key)?.clone();
        if g.state.has_children(key) {
            return Err(Error::FailedPrecondition(format!("snapshot {key:?} has children")));
        }
        g.state.snaps.remove(key);
        if let Err(e) = self.save(&g.state) {
            g.state.snaps.insert(key.to_string(), s);
            return Err(e);
        }
        if let Some(sess) = g.sessions.remove(&s.id) {
            if let Err(e) = sess.umount_and_join() {
                tracing::warn!(snapshot = %key, "unmounting its layer: {e}");
            }
        }
        self.remove_dirs(s.id);
        Ok(())
    }

    fn remove_dirs(&self, id: u64) {
        let layer = self.layer_dir(id);
        if shp_rootfs::mount::is_shp_mount(&layer) {
            let _ = shp_rootfs::mount::unmount(&layer);
        }
        let _ = std::fs::remove_dir(&layer);
        let dir = self.root.join("snapshots").join(id.to_string());
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), "removing: {e}");
            }
        }
    }

    fn info_of(name: &str, s: &Snap) -> Info {
        Info {
            name: name.to_string(),
            parent: s.parent.clone(),
            kind: match s.kind {
                SnapKind::View => Kind::View,
                SnapKind::Active => Kind::Active,
                SnapKind::Committed => Kind::Committed,
            } as i32,
            created_at: Some(timestamp(s.created)),
            updated_at: Some(timestamp(s.updated)),
            labels: s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }

    pub fn stat(&self, key: &str) -> Result<Info> {
        let g = self.inner.lock().expect("lock");
        Ok(Self::info_of(key, named(&g.state, key)?))
    }

    /// Updates labels (the only thing containerd may change): all of them with no field paths,
    /// else `labels` (all) or `labels.KEY` (one; removed when the new info lacks it).
    pub fn update(&self, info: Info, paths: &[String]) -> Result<Info> {
        let mut g = self.inner.lock().expect("lock");
        let before = g.state.clone();
        let s = g
            .state
            .snaps
            .get_mut(&info.name)
            .ok_or_else(|| Error::NotFound(format!("snapshot {:?}", info.name)))?;
        let new: BTreeMap<String, String> = info.labels.into_iter().collect();
        if paths.is_empty() {
            s.labels = new;
        } else {
            for p in paths {
                if p == "labels" {
                    s.labels = new.clone();
                } else if let Some(k) = p.strip_prefix("labels.") {
                    match new.get(k) {
                        Some(v) => s.labels.insert(k.to_string(), v.clone()),
                        None => s.labels.remove(k),
                    };
                } else {
                    g.state = before;
                    return Err(Error::InvalidArgument(format!(
                        "cannot update field {p:?} (only labels and labels.KEY)"
                    )));
                }
            }
        }
        s.updated = now();
        let out = Self::info_of(&info.name, s);
        if let Err(e) = self.save(&g.state) {
            g.state = before;
            return Err(e);
        }
        Ok(out)
    }

    pub fn list(&self, filters: &[String]) -> Result<Vec<Info>> {
        let fs = filters
            .iter()
            .map(|f| Filter::parse(f))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let g = self.inner.lock().expect("lock");
        Ok(g.state
            .snaps
            .iter()
            .map(|(n, s)| Self::info_of(n, s))
            .filter(|i| any_matches(&fs, i))
            .collect())
    }

    /// Disk used by a snapshot's own directory (a remote snapshot's bytes are the store's: 0).
    pub fn usage(&self, key: &str) -> Result<(i64, i64)> {
        let dir = {
            let g = self.inner.lock().expect("lock");
            let s = named(&g.state, key)?;
            if s.remote.is_some() {
                return Ok((0, 0));
            }
            self.upper(s.id)
        };
        let mut seen = std::collections::HashSet::new();
        let (mut size, mut inodes) = (0i64, 0i64);
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            let rd = match std::fs::read_dir(&d) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::Io(format!("{}: {e}", d.display()))),
            };
            for e in rd.flatten() {
                let Ok(m) = e.metadata() else { continue };
                use std::os::unix::fs::MetadataExt;
                if !seen.insert((m.dev(), m.ino())) {
                    continue;
                }
                inodes += 1;
                if m.is_dir() {
                    stack.push(e.path());
                } else {
                    size += (m.blocks() * 512) as i64;
                }
            }
        }
        Ok((size, inodes))
    }

    /// Removes directories (and stale mounts) no snapshot owns: what a kill between a change and
    /// its cleanup left.
    pub fn cleanup(&self) -> Result<usize> {
        let g = self.inner.lock().expect("lock");
        let ids: std::collections::HashSet<u64> = g.state.snaps.values().map(|s| s.id).collect();
        let mut removed = 0;
        for d in ["snapshots", "layers"] {
            let rd = std::fs::read_dir(self.root.join(d)).map_err(io(self.root.join(d).display()))?;
            for e in rd.flatten() {
                let Some(id) = e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else {
                    continue;
                };
                if !ids.contains(&id) {
                    self.remove_dirs(id);
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Unmounts every layer (a clean stop; they are mounted again when the snapshotter opens).
    pub fn shutdown(&self) {
        let mut g = self.inner.lock().expect("lock");
        for (id, sess) in g.sessions.drain() {
            if let Err(e) = sess.umount_and_join() {
                tracing::warn!(id, "unmounting a layer: {e}");
            }
        }
    }

    /// How many remote snapshots are mounted now.
    pub fn mounted(&self) -> usize {
        self.inner.lock().expect("lock").sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(root: &Path, home: &Path) -> Snapshotter {
        let h = if home.exists() {
            Home::open(home).unwrap()
        } else {
            Home::init(home).unwrap()
        };
        Snapshotter::open(root, Arc::new(h), None).unwrap()
    }

    fn opt<'a>(m: &'a Mount, key: &str) -> Option<&'a str> {
        m.options.iter().find_map(|o| o.strip_prefix(key))
    }

    fn mounts(p: Prepared) -> Vec<Mount> {
        match p {
            Prepared::Mounts(m) => m,
            Prepared::Target(t) => panic!("unexpected target {t}"),
        }
    }

    #[test]
    fn prepare_commit_view_and_their_mounts() {
        let d = tempfile::tempdir().unwrap();
        let s = open(&d.path().join("sn"), &d.path().join("home"));
        let m = mounts(s.prepare("a", "", BTreeMap::new()).unwrap());
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].r#type, "bind");
        assert_eq!(m[0].options, vec!["rw", "rbind"]);
        let upper_a = PathBuf::from(&m[0].source);
        std::fs::write(upper_a.join("file"), b"x").unwrap();
        // Only committed snapshots are parents; keys are unique.
        assert!(matches!(
            s.prepare("b", "a", BTreeMap::new()),
            Err(Error::FailedPrecondition(_))
        ));
        assert!(matches!(
            s.prepare("a", "", BTreeMap::new()),
            Err(Error::AlreadyExists(_))
        ));
        assert!(matches!(
            s.prepare("c", "nope", BTreeMap::new()),
            Err(Error::NotFound(_))
        ));
        s.commit("A", "a", [("l".to_string(), "1".to_string())].into()).unwrap();
        assert!(matches!(s.stat("a"), Err(Error::NotFound(_))));
        let i = s.stat("A").unwrap();
        assert_eq!((i.kind, i.labels["l"].as_str()), (Kind::Committed as i32, "1"));
        assert!(matches!(s.mounts("A"), Err(Error::FailedPrecondition(_))));

        // An active child is an overlay over A; a second level lists lowers nearest first.
        let m = mounts(s.prepare("b", "A", BTreeMap::new()).unwrap());
        assert_eq!(m[0].r#type, "overlay");
        assert_eq!(m[0].options[0], "index=off");
        assert_eq!(opt(&m[0], "lowerdir="), Some(upper_a.to_str().unwrap()));
        s.commit("B", "b", BTreeMap::new()).unwrap();
        let m = mounts(s.prepare("c", "B", BTreeMap::new()).unwrap());
        let lowers: Vec<&str> = opt(&m[0], "lowerdir=").unwrap().split(':').collect();
        assert_eq!(lowers.len(), 2);
        assert_eq!(lowers[1], upper_a.to_str().unwrap());
        assert!(opt(&m[0], "upperdir=").is_some() && opt(&m[0], "workdir=").is_some());

        // Views: a read-only bind of one parent, an overlay of several.
        let v = s.view("v1", "A", BTreeMap::new()).unwrap();
        assert_eq!(
            (v[0].r#type.as_str(), v[0].source.as_str()),
            ("bind", upper_a.to_str().unwrap())
        );
        assert_eq!(v[0].options[0], "ro");
        let v = s.view("v2", "B", BTreeMap::new()).unwrap();
        assert_eq!(v[0].r#type, "overlay");
        assert!(opt(&v[0], "upperdir=").is_none());
        assert_eq!(s.mounts("v2").unwrap(), v);

        // Removal: not while children exist.
        assert!(matches!(s.remove("A"), Err(Error::FailedPrecondition(_))));
        for k in ["c", "v2", "B", "v1"] {
            s.remove(k).unwrap();
        }
        s.remove("A").unwrap();
        assert!(!upper_a.exists(), "a removed snapshot's directory is gone");
        assert!(s.list(&[]).unwrap().is_empty());
    }

    #[test]
    fn state_survives_a_restart_and_cleanup_removes_orphans() {
        let d = tempfile::tempdir().unwrap();
        let (root, home) = (d.path().join("sn"), d.path().join("home"));
        {
            let s = open(&root, &home);
            s.prepare("a", "", BTreeMap::new()).unwrap();
            s.commit("A", "a", BTreeMap::new()).unwrap();
            s.prepare("b", "A", [("x".to_string(), "y".to_string())].into())
                .unwrap();
        }
        let s = open(&root, &home);
        let again = Snapshotter::open(&root, Arc::new(Home::open(&home).unwrap()), None);
        assert!(matches!(again, Err(Error::FailedPrecondition(ref m)) if m.contains("another snapshotter")));
        let names: Vec<String> = s.list(&[]).unwrap().into_iter().map(|i| i.name).collect();
        assert_eq!(names, vec!["A", "b"]);
        assert_eq!(s.stat("b").unwrap().parent, "A");
        // A directory no snapshot owns (a kill between creating it and recording it).
        std::fs::create_dir_all(root.join("snapshots/999/fs")).unwrap();
        assert_eq!(s.cleanup().unwrap(), 1);
        assert!(!root.join("snapshots/999").exists());
        assert!(s.mounts("b").is_ok());
    }

    #[test]
    fn labels_update_by_mask_and_filters_select() {
        let d = tempfile::tempdir().unwrap();
        let s = open(&d.path().join("sn"), &d.path().join("home"));
        s.prepare(
            "a",
            "",
            [("k1".to_string(), "1".to_string()), ("k2".to_string(), "2".to_string())].into(),
        )
        .unwrap();
        let mut i = s.stat("a").unwrap();
        i.labels = [("k1".to_string(), "one".to_string())].into();
        // One label by path: k1 changes, k2 stays.
        let got = s.update(i.clone(), &["labels.k1".to_string()]).unwrap();
        assert_eq!((got.labels["k1"].as_str(), got.labels["k2"].as_str()), ("one", "2"));
        // A label path the new info lacks removes it.
        let got = s.update(i.clone(), &["labels.k2".to_string()]).unwrap();
        assert!(!got.labels.contains_key("k2"));
        // No mask: every label replaced.
        i.labels = [("only".to_string(), "x".to_string())].into();
        assert_eq!(s.update(i.clone(), &[]).unwrap().labels.len(), 1);
        assert!(matches!(
            s.update(i.clone(), &["parent".to_string()]),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(s.stat("a").unwrap().labels.len(), 1, "a refused update changed nothing");
        s.prepare("b", "", BTreeMap::new()).unwrap();
        assert_eq!(s.list(&["labels.only==x".to_string()]).unwrap().len(), 1);
        assert_eq!(s.list(&["kind==active".to_string()]).unwrap().len(), 2);
        assert!(matches!(
            s.list(&["name~=a".to_string()]),
            Err(Error::InvalidArgument(_))
        ));
        let (size, inodes) = s.usage("a").unwrap();
        assert_eq!((size, inodes), (0, 0));
        std::fs::write(
            PathBuf::from(&s.mounts("a").unwrap()[0].source).join("f"),
            vec![7u8; 10_000],
        )
        .unwrap();
        let (size, inodes) = s.usage("a").unwrap();
        assert!(size >= 10_000 && inodes == 1, "{size} {inodes}");
    }

    #[test]
    fn a_target_label_for_a_layer_the_home_lacks_is_an_ordinary_snapshot() {
        let d = tempfile::tempdir().unwrap();
        let s = open(&d.path().join("sn"), &d.path().join("home"));
        let labels: BTreeMap<String, String> = [
            (LABEL_TARGET.to_string(), "sha256:chain".to_string()),
            (LABEL_LAYER.to_string(), format!("sha256:{}", "0".repeat(64))),
        ]
        .into();
        let m = mounts(s.prepare("extract-1 sha256:chain", "", labels.clone()).unwrap());
        assert_eq!(m[0].r#type, "bind");
        s.commit("sha256:chain", "extract-1 sha256:chain", labels.clone())
            .unwrap();
        // The next Prepare for the same target with the same parent finds it.
        match s.prepare("extract-2 sha256:chain", "", labels).unwrap() {
            Prepared::Target(t) => assert_eq!(t, "sha256:chain"),
            Prepared::Mounts(_) => panic!("the committed target was not found"),
        }
        assert_eq!(s.mounted(), 0);
    }
}
