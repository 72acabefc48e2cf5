//! A home directory: the embedded store plus its refs, and the operations the CLI and the FFI
//! offer on them. This is the library's front door.
//!
//! ```text
//! HOME/config.json   its presence marks an initialised home: the store and its compression (see config)
//! HOME/store/        the pack store (see store::DiskStore), unless config.json names a bucket
//!                    (store::s3: then blocks and refs are in the bucket, HOME/cache/s3 caches them)
//! HOME/refs.json     names, blob refs and pins (see refs)
//! ```

use crate::blob::{import_blob, BlobKind, BlobNode, ImportOptions, ImportedBlob};
use crate::car;
use crate::cid::{format_digest, Cid};
use crate::config::{HomeConfig, StoreSpec};
use crate::dag::DagWriter;
use crate::dedup::{self, DedupRow};
use crate::docker_archive;
use crate::error::{Error, Result};
use crate::image::{export_oci, import_image, ImageRoot, ImportReport, OciLayout, Progress};
use crate::oci::{DocKind, Document};
use crate::reference::{ArchiveRef, ImageId, ImageRef};
use crate::refs::{check_name, Refs, RefsStore};
use crate::store::{Blockstore, Compression, HomeStore, LockMode};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a blob put on its own is taken for (see [`Home::put_blob_as`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutKind {
    /// A layer (tar, tar+gzip, tar+zstd): decoded, chunked per file, rebuilt bit-exact. A blob
    /// that is no valid layer is refused ([`Error::Tar`], [`Error::Compression`], ...).
    Layer,
    /// Anything else (manifest, config, index, artifact): chunked verbatim.
    Other,
    /// Decided by the first bytes: gzip or zstd magic, or a valid tar header, make a layer;
    /// anything else is kept verbatim, and so is a blob that looks like a layer but is none (a
    /// gzip file that holds no tar, a corrupt stream, a layer past the size limit).
    Auto,
}

/// An open home.
pub struct Home {
    dir: PathBuf,
    store: HomeStore,
    refs: RefsStore,
    pub options: ImportOptions,
    cache: crate::cache::BlobCache,
}

/// Default bound of the rebuilt-blob cache (`Home::set_cache_bytes` changes it; 0 turns it off).
/// A home's `station.json` may set another (`cache_size`): every process that opens the home (the
/// station, the CLI, the C ABI) then keeps the cache to that same bound, so none trims what another
/// keeps.
pub const DEFAULT_CACHE_BYTES: u64 = 10 << 30;

/// What `push` did.
#[derive(Debug, Clone)]
pub struct PushReport {
    pub import: ImportReport,
    pub name: Option<String>,
    /// What the image gets wrong that a runtime would refuse (layers whose uncompressed sha256 is
    /// not what the config's `rootfs.diff_ids` lists): it is stored as it is, exactly, all the same.
    pub warnings: Vec<String>,
}

/// One line of `ls`.
#[derive(Debug, Clone, Serialize)]
pub struct ListEntry {
    pub name: Option<String>,
    pub root: String,
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

/// A layer as `inspect` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LayerInfo {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub storage: String,
}

/// An image manifest as `inspect` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestInfo {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub platform: Option<String>,
    pub config: Option<LayerInfo>,
    pub layers: Vec<LayerInfo>,
}

/// `inspect` output.
#[derive(Debug, Clone, Serialize)]
pub struct Inspect {
    pub root: String,
    pub names: Vec<String>,
    pub schema: u64,
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub source: String,
    pub manifests: Vec<ManifestInfo>,
    pub layers: Vec<LayerInfo>,
    pub blobs: usize,
}

/// `stats` output.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub blocks: u64,
    pub stored_bytes: u64,
    pub logical_bytes: u64,
    pub images: usize,
    pub names: usize,
    pub blob_refs: usize,
    pub blobs: usize,
    /// Of `stored_bytes`, those written raw by a deferred store and not yet compressed by gc.
    pub loose_bytes: u64,
    /// The store's compression setting (`zstd:3`, `zstd:3,deferred`, ...).
    pub compression: String,
    /// Where the blocks are: the store's directory, or `s3://BUCKET/PREFIX`.
    pub store: String,
    /// A store in a bucket: its objects, their bytes, and the requests this process made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<crate::store::BucketStats>,
}

/// `verify` output.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub blocks_checked: u64,
    pub roots_checked: u64,
    pub blobs_rebuilt: u64,
    /// Layers whose uncompressed sha256 was checked against their config's `rootfs.diff_ids`.
    pub diff_ids_checked: u64,
    /// Layers kept opaque: their diff_id is not stored and they are not decoded for this.
    pub diff_ids_skipped: u64,
    pub problems: Vec<String>,
}

/// `gc` output.
#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    pub live_blocks: u64,
    pub blocks_removed: u64,
    pub bytes_freed: u64,
}

fn no_progress(_: Progress) {}

/// How many times `Home::push` runs a push that a concurrent gc raced.
const PUSH_RACE_ATTEMPTS: usize = 3;

impl Home {
    /// The home a user means: `--home`, else `$SHP_HOME`, else `~/.shp`.
    pub fn default_dir() -> PathBuf {
        if let Some(h) = std::env::var_os("SHP_HOME").filter(|h| !h.is_empty()) {
            return h.into();
        }
        let base = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        base.join(".shp")
    }

    /// Creates the home if needed and opens it. Idempotent.
    pub fn init(dir: &Path) -> Result<Home> {
        Home::init_with(dir, None)
    }

    /// Creates the home if needed and opens it; `compression`, when given, becomes how its store
    /// compresses blocks from now on (blocks already stored stay as they are until gc rewrites them).
    pub fn init_with(dir: &Path, compression: Option<Compression>) -> Result<Home> {
        Home::init_on(dir, compression, None)
    }

    /// [`Home::init_with`], and with `store`, the home keeps its blocks and refs there (an S3
    /// bucket, created when absent) instead of `HOME/store`. A home's store is chosen once:
    /// another URL for an initialised home is an error; the same URL updates its options.
    pub fn init_on(dir: &Path, compression: Option<Compression>, store: Option<StoreSpec>) -> Result<Home> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io_path(dir, e))?;
        let path = dir.join("config.json");
        let current = if path.exists() {
            Some(HomeConfig::read(&path)?)
        } else {
            None
        };
        if let Some(s) = &store {
            HomeConfig::check_store(s)?;
            let was = current.as_ref().and_then(|c| c.store.as_ref()).map(|s| s.url.as_str());
            let ever_used = current.is_some() && (dir.join("store").exists() || dir.join("refs.json").exists());
            match was {
                Some(u) if u != s.url => {
                    return Err(Error::Store(format!(
                        "{}: this home's store is {u}; a home's store cannot change (use another home)",
                        dir.display()
                    )))
                }
                None if ever_used => {
                    return Err(Error::Store(format!(
                    "{}: this home already keeps its store on disk; a home's store cannot change (use another home)",
                    dir.display()
                )))
                }
                _ => {}
            }
        }
        let mut cfg = current.clone().unwrap_or_default();
        if compression.is_some() {
            cfg.compression = compression;
        }
        if store.is_some() {
            cfg.store = store;
        }
        if current.as_ref() == Some(&cfg) {
            return Home::open_mode(dir, LockMode::Shared, true);
        }
        cfg.write(&path)?;
        // A store that cannot be opened (wrong credentials, no endpoint) leaves the home's
        // configuration as it was.
        Home::open_mode(dir, LockMode::Shared, true).inspect_err(|_| {
            let _ = match &current {
                Some(c) => c.write(&path),
                None => std::fs::remove_file(&path).map_err(|e| Error::io_path(&path, e)),
            };
        })
    }

    /// How this home's store compresses new blocks.
    pub fn compression(&self) -> Compression {
        self.store.compression()
    }

    /// Opens an initialised home for normal (shared) use.
    pub fn open(dir: &Path) -> Result<Home> {
        Home::open_mode(dir, LockMode::Shared, false)
    }

    /// Opens a home for garbage collection: fails if another process uses it.
    pub fn open_exclusive(dir: &Path) -> Result<Home> {
        Home::open_mode(dir, LockMode::Exclusive, false)
    }

    fn open_mode(dir: &Path, mode: LockMode, create: bool) -> Result<Home> {
        let cfg = dir.join("config.json");
        if !cfg.exists() {
            return Err(Error::Store(format!(
                "{} is not an shp home (run `shp init` first)",
                dir.display()
            )));
        }
        let (store, refs) = crate::config::open_backend(dir, mode, &HomeConfig::read(&cfg)?, create)?;
        Ok(Home {
            dir: dir.to_path_buf(),
            store,
            refs,
            options: ImportOptions::default(),
            cache: crate::cache::BlobCache::new(&dir.join("cache").join("blobs"), cache_bound(dir)),
        })
    }

    /// Names the home in an error that means its file system is full (`ENOSPC`, `EDQUOT`); other
    /// errors pass unchanged. Every operation that writes into the home reports through it.
    pub fn explain(&self, e: Error) -> Error {
        if e.is_no_space() && !matches!(e, Error::NoSpace { .. }) {
            Error::NoSpace {
                home: self.dir.display().to_string(),
                detail: e.to_string(),
            }
        } else {
            e
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn store(&self) -> &dyn Blockstore {
        &self.store
    }

    pub fn refs(&self) -> Result<Refs> {
        self.refs.load()
    }

    /// Imports an image and names it (or pins it when it has no name). Nothing changes on error.
    pub fn push(&self, src: &ImageRef, tag: Option<&str>, progress: &dyn Fn(Progress)) -> Result<PushReport> {
        // A push a concurrent gc raced on a shared bucket committed nothing; its source is a file
        // on disk, so it is run again (a few times) rather than handed back to the user.
        let mut raced = Vec::new();
        loop {
            match self.push_once(src, tag, progress) {
                Err(Error::Raced(why)) if raced.len() < PUSH_RACE_ATTEMPTS - 1 => raced.push(why),
                Ok(mut report) => {
                    report.warnings.extend(
                        raced
                            .into_iter()
                            .map(|why| format!("a gc on the shared store raced this push ({why}); it was run again")),
                    );
                    return Ok(report);
                }
                Err(e) => return Err(self.explain(e)),
            }
        }
    }

    fn push_once(&self, src: &ImageRef, tag: Option<&str>, progress: &dyn Fn(Progress)) -> Result<PushReport> {
        (|| -> Result<PushReport> {
            if let Some(t) = tag {
                check_name(t)?;
            }
            match src {
                ImageRef::Oci { path, reference } => {
                    let layout = OciLayout { path: path.clone() };
                    let top = layout.resolve(reference.as_deref())?;
                    let (name, note) = source_name(tag, reference.clone());
                    let mut report = self.push_from(&layout, &top, name.as_deref(), progress)?;
                    report.warnings.extend(note);
                    Ok(report)
                }
                ImageRef::DockerArchive { path, reference } => {
                    let index = self.refs.load()?.index;
                    let known = |d: &[u8; 32]| -> Option<BlobNode> {
                        let cid: Cid = index.get(&format_digest(d))?.parse().ok()?;
                        BlobNode::load(&self.store, &cid).ok().filter(|n| &n.digest == d)
                    };
                    let mut batch = self.store.batch()?;
                    let (import, tags) = docker_archive::import_archive(
                        &mut *batch,
                        path,
                        reference.as_ref(),
                        &self.options,
                        &known,
                        progress,
                    )?;
                    batch.commit()?;
                    let default_name = match reference {
                        Some(ArchiveRef::Tag(t)) => Some(t.clone()),
                        _ => tags.into_iter().next(),
                    };
                    let (name, note) = source_name(tag, default_name);
                    let mut report = self.recorded(import, name.as_deref())?;
                    report.warnings.extend(note);
                    Ok(report)
                }
            }
        })()
    }

    /// Imports the image `top` describes from any blob source (an OCI layout, a remote registry,
    /// …) and names it `name` (or pins it). Blobs the store already holds are not read again (the
    /// source must still have them, with the right size); every blob read is checked against its
    /// descriptor's digest and size. Nothing changes on error.
    pub fn push_from(
        &self,
        src: &dyn crate::image::BlobSource,
        top: &crate::oci::Descriptor,
        name: Option<&str>,
        progress: &dyn Fn(Progress),
    ) -> Result<PushReport> {
        (|| -> Result<PushReport> {
            if let Some(n) = name {
                check_name(n)?;
            }
            let index = self.refs.load()?.index;
            let known = |d: &[u8; 32]| -> Option<BlobNode> {
                let cid: Cid = index.get(&format_digest(d))?.parse().ok()?;
                BlobNode::load(&self.store, &cid).ok().filter(|n| &n.digest == d)
            };
            let mut batch = self.store.batch()?;
            let import = import_image(&mut *batch, src, top, None, &self.options, &known, progress)?;
            batch.commit()?;
            self.recorded(import, name)
        })()
        .map_err(|e| self.explain(e))
    }

    /// After a committed import: records it (see [`Home::record`]) and checks the image's layers
    /// against its configs' diff_ids (the warnings of the report).
    fn recorded(&self, import: ImportReport, name: Option<&str>) -> Result<PushReport> {
        self.record(&import, name)?;
        let warnings = match ImageRoot::load(&self.store, &import.root)
            .and_then(|img| img.blobs(&self.store))
            .and_then(|blobs| crate::image::check_diff_ids(&self.store, &blobs))
        {
            Ok(check) => check.problems,
            Err(e) => vec![format!("diff_ids not checked: {e}")],
        };
        Ok(PushReport {
            import,
            name: name.map(str::to_string),
            warnings,
        })
    }

    /// After a committed import: names (or pins) its root and indexes its blobs by digest.
    fn record(&self, import: &ImportReport, name: Option<&str>) -> Result<()> {
        let root = import.root.to_string();
        self.refs.update(|r| {
            match name {
                Some(n) => r.set_name(n, root.clone()),
                None => {
                    r.pins.insert(root.clone());
                }
            }
            for b in &import.blobs {
                r.index.insert(b.digest.clone(), b.cid.to_string());
            }
            Ok(())
        })
    }

    /// The root CID an identifier names: a CID present in the store, or a name.
    pub fn resolve(&self, id: &str) -> Result<Cid> {
        match ImageId::parse(id) {
            ImageId::Cid(c) => {
                if !self.store.has(&c)? {
                    return Err(Error::ImageNotFound(format!("{c} (no such block in this store)")));
                }
                Ok(c)
            }
            ImageId::Name(n) => {
                let refs = self.refs.load()?;
                let s = refs
                    .lookup(&n)?
                    .ok_or_else(|| Error::ImageNotFound(format!("{n:?} (no such name; see `shp ls`)")))?;
                s.parse()
            }
        }
    }

    /// Writes the image `id` names to `dest`, bit-exact. Returns its root. Recipe layers are read
    /// as [`Home::blob_reader`] reads them: from the rebuilt-blob cache when a station (or an
    /// earlier pull) left them there, else rebuilt once and cached for the next reader.
    pub fn pull(self: &Arc<Self>, id: &str, dest: &ImageRef, progress: &dyn Fn(Progress)) -> Result<Cid> {
        let root = ImageRoot::load(&self.store, &self.resolve(id)?)?;
        let open = |n: &BlobNode| self.blob_reader(n);
        match dest {
            ImageRef::Oci { path, reference } => {
                export_oci(&self.store, &root, path, reference.as_deref(), progress, &open)?
            }
            ImageRef::DockerArchive { path, reference } => {
                let tag = match reference {
                    Some(ArchiveRef::Tag(t)) => Some(t.as_str()),
                    Some(ArchiveRef::Index(_)) => {
                        return Err(Error::InvalidReference {
                            reference: format!("docker-archive:{}", path.display()),
                            reason: "@INDEX only selects images when reading".into(),
                        })
                    }
                    None => None,
                };
                docker_archive::export_archive(&self.store, &root, path, tag, progress, &open)?
            }
        }
        Ok(root.cid)
    }

    /// Named and pinned images.
    pub fn list(&self) -> Result<Vec<ListEntry>> {
        let refs = self.refs.load()?;
        let mut out = Vec::new();
        let entries = refs
            .names
            .iter()
            .map(|(n, c)| (Some(n.clone()), c.clone()))
            .chain(refs.pins.iter().map(|c| (None, c.clone())));
        for (name, root) in entries {
            let cid: Cid = root.parse()?;
            let img = ImageRoot::load(&self.store, &cid)?;
            let s = |k: &str| img.desc.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            out.push(ListEntry {
                name,
                root,
                digest: s("digest"),
                media_type: s("mediaType"),
                size: img.desc.get("size").and_then(|v| v.as_u64()).unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// What an image holds and how each layer is stored.
    pub fn inspect(&self, id: &str) -> Result<Inspect> {
        let cid = self.resolve(id)?;
        let root = ImageRoot::load(&self.store, &cid)?;
        let blobs = root.blobs(&self.store)?;
        let refs = self.refs.load()?;
        let names = refs
            .names
            .iter()
            .filter(|(_, c)| **c == cid.to_string())
            .map(|(n, _)| n.clone())
            .collect();
        let info = |d: &crate::oci::Descriptor| -> LayerInfo {
            let storage = blobs
                .iter()
                .find(|b| b.node.digest == d.digest)
                .map(|b| b.node.storage(d.is_layer()).to_string())
                .unwrap_or_else(|| "absent".into());
            LayerInfo {
                digest: d.digest_str.clone(),
                size: d.size,
                media_type: d.media_type.clone(),
                storage,
            }
        };
        let mut manifests = Vec::new();
        let platforms: BTreeMap<[u8; 32], String> = blobs
            .iter()
            .filter_map(|b| b.doc.as_ref().filter(|d| d.kind == DocKind::Index))
            .flat_map(|d| {
                d.manifests
                    .iter()
                    .filter_map(|m| Document::platform_of(m).map(|p| (m.digest, p)))
            })
            .collect();
        for b in &blobs {
            if let Some(doc) = b.doc.as_ref().filter(|d| d.kind == DocKind::Manifest) {
                manifests.push(ManifestInfo {
                    digest: b.node.digest_str(),
                    size: b.node.size,
                    media_type: b.media_type.clone(),
                    platform: platforms.get(&b.node.digest).cloned(),
                    config: doc.config.as_ref().map(info),
                    layers: doc.layers.iter().map(info).collect(),
                });
            }
        }
        let layers = manifests.iter().flat_map(|m| m.layers.clone()).collect::<Vec<_>>();
        let s = |k: &str| root.desc.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        Ok(Inspect {
            root: cid.to_string(),
            names,
            schema: root.schema,
            digest: s("digest"),
            size: root.desc.get("size").and_then(|v| v.as_u64()).unwrap_or(0),
            media_type: s("mediaType"),
            source: if root.archive.is_some() {
                "docker-archive".into()
            } else {
                "oci".into()
            },
            manifests,
            layers,
            blobs: blobs.len(),
        })
    }

    fn image_roots(&self, refs: &Refs) -> Result<Vec<Cid>> {
        let mut out = Vec::new();
        for s in refs.names.values().chain(refs.pins.iter()) {
            let c: Cid = s.parse()?;
            if ImageRoot::load(&self.store, &c).is_ok() {
                out.push(c);
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub fn stats(&self) -> Result<Stats> {
        let refs = self.refs.load()?;
        let roots = self.image_roots(&refs)?;
        let mut seen = HashSet::new();
        let mut logical = 0;
        for r in &roots {
            for b in ImageRoot::load(&self.store, r)?.blobs(&self.store)? {
                if seen.insert(b.node.digest) {
                    logical += b.node.size;
                }
            }
        }
        for c in refs.blobs.values() {
            let node = BlobNode::load(&self.store, &c.parse()?)?;
            if seen.insert(node.digest) {
                logical += node.size;
            }
        }
        Ok(Stats {
            blocks: self.store.cids()?.len() as u64,
            stored_bytes: self.store.stored_bytes()?,
            logical_bytes: logical,
            images: roots.len(),
            names: refs.names.len(),
            blob_refs: refs.blobs.len(),
            blobs: seen.len(),
            loose_bytes: self.store.loose_bytes()?,
            compression: self.compression().to_string(),
            store: self.store.location(),
            bucket: self.store.bucket_stats()?,
        })
    }

    /// Checks every block against its CID and that every ref's DAG is complete; with
    /// `rebuild`, also rebuilds every blob and checks its sha256.
    pub fn verify(&self, rebuild: bool) -> Result<VerifyReport> {
        let mut rep = VerifyReport::default();
        let mut cids = self.store.cids()?;
        cids.sort();
        for c in &cids {
            rep.blocks_checked += 1;
            if let Err(e) = self.store.get(c) {
                rep.problems.push(e.to_string());
            }
        }
        let refs = self.refs.load()?;
        for (label, s) in refs
            .names
            .iter()
            .map(|(n, c)| (n.clone(), c))
            .chain(refs.blobs.iter().map(|(d, c)| (d.clone(), c)))
            .chain(refs.pins.iter().map(|c| (c.clone(), c)))
        {
            rep.roots_checked += 1;
            let res = s
                .parse::<Cid>()
                .and_then(|c| car::walk(&self.store, &c, &mut |_, _| Ok(())).map(|_| c));
            let c = match res {
                Err(e) => {
                    rep.problems.push(format!("ref {label}: {e}"));
                    continue;
                }
                Ok(c) => c,
            };
            let blobs = match ImageRoot::load(&self.store, &c) {
                Ok(img) => Some(img.blobs(&self.store)?),
                Err(_) => None,
            };
            if let Some(blobs) = &blobs {
                match crate::image::check_diff_ids(&self.store, blobs) {
                    Ok(d) => {
                        rep.diff_ids_checked += d.checked;
                        rep.diff_ids_skipped += d.skipped;
                        rep.problems
                            .extend(d.problems.into_iter().map(|p| format!("ref {label}: {p}")));
                    }
                    Err(e) => rep.problems.push(format!("ref {label}: {e}")),
                }
            }
            if rebuild {
                let nodes: Vec<BlobNode> = match blobs {
                    Some(blobs) => blobs.into_iter().map(|b| b.node).collect(),
                    None => vec![BlobNode::load(&self.store, &c)?],
                };
                for n in nodes {
                    rep.blobs_rebuilt += 1;
                    if let Err(e) = std::io::copy(&mut n.open(&self.store), &mut std::io::sink()) {
                        rep.problems.push(format!(
                            "ref {label}: blob {}: {}",
                            n.digest_str(),
                            crate::dag::unwrap_io(e)
                        ));
                    }
                }
            }
        }
        Ok(rep)
    }

    /// Removes every block no ref reaches. Needs the home opened with [`Home::open_exclusive`].
    pub fn gc(&self) -> Result<GcReport> {
        (|| -> Result<GcReport> {
            let refs = self.refs.load()?;
            let mut live = HashSet::new();
            for root in refs.roots()? {
                car::walk(&self.store, &root, &mut |c, _| {
                    live.insert(*c);
                    Ok(())
                })?;
            }
            // A view lives while what it was built from does.
            let mut dead_views = Vec::new();
            for (key, view) in &refs.views {
                match (key.parse::<Cid>(), view.parse::<Cid>()) {
                    (Ok(k), Ok(v)) if live.contains(&k) => {
                        let walked = car::walk(&self.store, &v, &mut |c, _| {
                            live.insert(*c);
                            Ok(())
                        });
                        if walked.is_err() {
                            // A view missing blocks is built again on request; it must not stop gc.
                            dead_views.push((key.clone(), view.clone()));
                        }
                    }
                    _ => dead_views.push((key.clone(), view.clone())),
                }
            }
            let swept = self.store.retain(&|c| live.contains(c))?;
            // Only entries this mark saw can be dead: on a shared bucket another station may have
            // added some since, for blocks this mark did not walk.
            let marked = refs.index.clone();
            let refs = self.refs.update(|r| {
                r.index
                    .retain(|k, c| marked.get(k) != Some(c) || c.parse::<Cid>().is_ok_and(|c| live.contains(&c)));
                for (k, v) in &dead_views {
                    if r.views.get(k) == Some(v) {
                        r.views.remove(k);
                    }
                }
                Ok(r.clone())
            })?;
            // Cached rebuilds of blobs no longer held go too.
            if let Ok(dir) = std::fs::read_dir(self.dir.join("cache").join("blobs")) {
                for e in dir.flatten() {
                    let key = format!("sha256:{}", e.file_name().to_string_lossy());
                    if !refs.index.contains_key(&key) && !refs.blobs.contains_key(&key) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
            Ok(GcReport {
                live_blocks: live.len() as u64,
                blocks_removed: swept.blocks_removed,
                bytes_freed: swept.bytes_freed,
            })
        })()
        .map_err(|e| self.explain(e))
    }

    /// The UnixFS view recorded for `key` (see [`Refs::views`]), if its root is in the store.
    pub fn view(&self, key: &Cid) -> Result<Option<Cid>> {
        let refs = self.refs.load()?;
        match refs.views.get(&key.to_string()) {
            Some(v) => {
                let v: Cid = v.parse()?;
                Ok(self.store.has(&v)?.then_some(v))
            }
            None => Ok(None),
        }
    }

    /// Records `view` (its blocks already committed) as the UnixFS view of `key`, so gc keeps it
    /// while `key` lives.
    pub fn record_view(&self, key: &Cid, view: &Cid) -> Result<()> {
        self.refs
            .update(|r| {
                r.views.insert(key.to_string(), view.to_string());
                Ok(())
            })
            .map_err(|e| self.explain(e))
    }

    /// Bytes a `deferred` store wrote raw and has not compressed yet.
    pub fn loose_bytes(&self) -> Result<u64> {
        self.store.loose_bytes()
    }

    /// Compresses what a `deferred` store wrote raw (its loose packs); safe while other processes
    /// use the home, unlike [`Home::gc`], which also does this.
    pub fn compact(&self) -> Result<crate::store::CompactStats> {
        self.store.compact().map_err(|e| self.explain(e))
    }

    /// Writes the DAG under an image (or any CID) as a CARv1 file.
    pub fn car_export(&self, id: &str, path: &Path) -> Result<u64> {
        let cid = self.resolve(id)?;
        crate::publish::publish(path, |w| car::export(&self.store, &cid, w))
    }

    /// Imports a CARv1 file; its roots are pinned. Nothing is stored unless all of it is valid.
    pub fn car_import(&self, path: &Path) -> Result<(Vec<Cid>, u64)> {
        (|| -> Result<(Vec<Cid>, u64)> {
            let f = std::fs::File::open(path).map_err(|e| Error::io_path(path, e))?;
            let mut batch = self.store.batch()?;
            let (roots, n) = car::import(&mut *batch, &mut std::io::BufReader::with_capacity(1 << 20, f))?;
            batch.commit()?;
            self.refs.update(|r| {
                r.pins.extend(roots.iter().map(|c| c.to_string()));
                Ok(())
            })?;
            Ok((roots, n))
        })()
        .map_err(|e| self.explain(e))
    }

    /// Dedup accounting for images in the given order.
    pub fn dedup(&self, ids: &[String]) -> Result<Vec<DedupRow>> {
        let images = ids
            .iter()
            .map(|i| Ok((i.clone(), self.resolve(i)?)))
            .collect::<Result<Vec<_>>>()?;
        dedup::account(&self.store, &images)
    }

    /// Stores one blob on its own under its digest (what a content store does). A layer is
    /// decomposed like any pushed layer. `expected` digest is checked; nothing changes on error.
    pub fn put_blob(&self, r: &mut dyn Read, expected: Option<&str>, layer: bool) -> Result<ImportedBlob> {
        self.put_blob_as(r, expected, if layer { PutKind::Layer } else { PutKind::Other })
    }

    /// [`Home::put_blob`] with [`PutKind::Auto`]: the first bytes decide whether the blob is a
    /// layer, and a blob that looks like a layer but is none is kept verbatim (a content store
    /// never refuses bytes that match their digest).
    pub fn put_blob_auto(&self, r: &mut dyn Read, expected: Option<&str>) -> Result<ImportedBlob> {
        self.put_blob_as(r, expected, PutKind::Auto)
    }

    /// Stores one blob read from a stream, as `kind` says. The stream is spooled to a file under
    /// `HOME/store/tmp` (the import may read it twice) and the spool removed afterwards.
    pub fn put_blob_as(&self, r: &mut dyn Read, expected: Option<&str>, kind: PutKind) -> Result<ImportedBlob> {
        (|| -> Result<ImportedBlob> {
            let expected = expected.map(crate::cid::parse_digest).transpose()?;
            // Blobs arrive as a stream: spool them so the opaque fallback can read twice.
            let spool_dir = self.dir.join("store").join("tmp");
            let spool = tempfile_in(&spool_dir)?;
            let path = spool.0.clone();
            let mut w = SpoolWriter {
                file: std::io::BufWriter::new(spool.1),
                sha: <sha2::Sha256 as sha2::Digest>::new(),
            };
            let copied = std::io::copy(r, &mut w).and_then(|n| w.file.flush().map(|_| n));
            let size = match copied {
                Ok(n) => n,
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(e.into());
                }
            };
            // Without an expected digest the content's own is used, so the import streams either way.
            let computed: [u8; 32] = sha2::Digest::finalize(w.sha).into();
            let res = self.import_file(&path, size, &expected.unwrap_or(computed), kind);
            let _ = std::fs::remove_file(&spool.0);
            res
        })()
        .map_err(|e| self.explain(e))
    }

    /// Stores the blob in the file at `path` (left in place), as `kind` says, without copying it
    /// first: for callers that already spooled the bytes (the C ABI's writer). `expected` digest
    /// is checked; without one the file is hashed first. Nothing changes on error.
    pub fn put_blob_file(&self, path: &Path, expected: Option<&str>, kind: PutKind) -> Result<ImportedBlob> {
        (|| -> Result<ImportedBlob> {
            let expected = expected.map(crate::cid::parse_digest).transpose()?;
            let (digest, size) = match expected {
                Some(d) => (d, std::fs::metadata(path).map_err(|e| Error::io_path(path, e))?.len()),
                None => {
                    let mut f = std::fs::File::open(path).map_err(|e| Error::io_path(path, e))?;
                    let mut sha = <sha2::Sha256 as sha2::Digest>::new();
                    let (mut buf, mut n) = (vec![0u8; 1 << 20], 0u64);
                    loop {
                        match f.read(&mut buf) {
                            Ok(0) => break,
                            Ok(k) => {
                                sha2::Digest::update(&mut sha, &buf[..k]);
                                n += k as u64;
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(Error::io_path(path, e)),
                        }
                    }
                    (sha2::Digest::finalize(sha).into(), n)
                }
            };
            self.import_file(path, size, &digest, kind)
        })()
        .map_err(|e| self.explain(e))
    }

    /// Imports the blob in `path` (`size` bytes, which must hash to `digest`) and records it.
    fn import_file(&self, path: &Path, size: u64, digest: &[u8; 32], kind: PutKind) -> Result<ImportedBlob> {
        let open = || -> Result<Box<dyn Read>> {
            let f = std::fs::File::open(path).map_err(|e| Error::io_path(path, e))?;
            Ok(Box::new(std::io::BufReader::new(f)))
        };
        let layer = match kind {
            PutKind::Layer => true,
            PutKind::Other => false,
            PutKind::Auto => {
                let mut head = Vec::with_capacity(512);
                open()?.take(512).read_to_end(&mut head)?;
                looks_like_layer(&head)
            }
        };
        let import = |layer: bool| -> Result<ImportedBlob> {
            let mut batch = self.store.batch()?;
            let kind = if layer { BlobKind::Layer } else { BlobKind::Other };
            let imported = {
                let mut w = DagWriter::new(&mut *batch);
                import_blob(&mut w, kind, &open, Some((digest, size)), &[], &self.options)?
            };
            batch.commit()?;
            Ok(imported)
        };
        let imported = match import(layer) {
            // It looked like a layer but is none: a content store keeps any bytes.
            Err(e) if layer && kind == PutKind::Auto && not_a_layer(&e) => import(false)?,
            r => r?,
        };
        let (d, c) = (format_digest(&imported.digest), imported.cid.to_string());
        self.refs.update(|r| {
            r.blobs.insert(d.clone(), c.clone());
            Ok(())
        })?;
        Ok(imported)
    }

    /// A blob stored by digest (by `put_blob` or as part of any image). [`Error::BlobNotFound`]
    /// when the store has no blob with that digest.
    pub fn blob(&self, digest: &str) -> Result<BlobNode> {
        let d = crate::cid::parse_digest(digest)?;
        self.find_blob(&self.refs.load()?, &d)?
            .ok_or_else(|| Error::BlobNotFound(format_digest(&d)))
    }

    /// Opens the blob with this digest for reading, verified (see [`BlobNode::open`]). The reader
    /// owns a reference to the home, so it is `Send + 'static`: it may outlive the caller's
    /// borrow and move between threads (the C ABI hands it to C; servers to a blocking task).
    /// Recipe layers go through the rebuilt-blob cache, as with [`Home::blob_reader`].
    pub fn open_blob(self: &Arc<Self>, digest: &str) -> Result<Box<dyn Read + Send>> {
        Ok(self.blob_reader(&self.blob(digest)?))
    }

    /// Looks a blob up by digest: blobs stored on their own, then the digest index, then (for
    /// homes written before the index existed) every image. A node is trusted only if it loads
    /// and carries that digest.
    fn find_blob(&self, refs: &Refs, d: &[u8; 32]) -> Result<Option<BlobNode>> {
        let key = format_digest(d);
        for c in [refs.blobs.get(&key), refs.index.get(&key)].into_iter().flatten() {
            if let Ok(n) = BlobNode::load(&self.store, &c.parse()?) {
                if &n.digest == d {
                    return Ok(Some(n));
                }
            }
        }
        for r in self.image_roots(refs)? {
            for b in ImageRoot::load(&self.store, &r)?.blobs(&self.store)? {
                if &b.node.digest == d {
                    return Ok(Some(b.node));
                }
            }
        }
        Ok(None)
    }

    /// Bounds the cache of rebuilt blobs (0 turns it off).
    pub fn set_cache_bytes(&mut self, max_bytes: u64) {
        self.cache = crate::cache::BlobCache::new(&self.dir.join("cache").join("blobs"), max_bytes);
    }

    /// The rebuilt-blob cache (e.g. to [`crate::cache::BlobCache::adopt`] a freshly uploaded layer).
    pub fn blob_cache(&self) -> &crate::cache::BlobCache {
        &self.cache
    }

    /// What the rebuilt-blob cache did since the home was opened (hits, rebuilds, shared reads).
    pub fn cache_stats(&self) -> crate::cache::CacheStats {
        self.cache.stats()
    }

    /// The blob's bytes, verified as they are read: this is the read path for serving blobs again
    /// and again (registry, C ABI). Recipe layers come from the rebuilt-blob cache when a previous
    /// read left them there; else concurrent readers share one rebuild, which fills the cache
    /// (see [`crate::cache`]). The reader owns a reference to the home (`Send + 'static`).
    pub fn blob_reader(self: &Arc<Self>, node: &BlobNode) -> Box<dyn Read + Send> {
        self.blob_reader_at(node, 0)
    }

    /// [`Home::blob_reader`] from byte `offset` on (an HTTP Range). Its end of file still means the
    /// whole blob's sha256 was proven: a cold recipe layer is served as its shared rebuild gets
    /// there (the bytes before `offset` are not re-encoded for this reader alone); other blobs
    /// read, and check, the bytes before `offset` first.
    pub fn blob_reader_at(self: &Arc<Self>, node: &BlobNode, offset: u64) -> Box<dyn Read + Send> {
        let store: Arc<dyn Blockstore> = Arc::new(SharedStore(self.clone()));
        if node.recipe.is_none() {
            return crate::cache::skip(node.open_shared(store), offset);
        }
        let n = node.clone();
        let rebuild: crate::cache::Rebuild = Arc::new(move || n.open_shared(store.clone()));
        self.cache.read_at(&node.digest, node.size, offset, rebuild)
    }

    /// Makes an image of a manifest or index whose blobs the store already holds (put with
    /// `put_blob`, or part of any image) and names it `name` (or pins it). This is how a registry
    /// push or a containers/image destination ends: blobs first, then the manifest. The manifest
    /// bytes are kept exactly as given; `media_type` is the type the client declared (else the
    /// document's own `mediaType`). A blob the store lacks is `Error::MissingBlob` naming it.
    /// Nothing changes on error.
    pub fn commit_image(&self, manifest: &[u8], media_type: Option<&str>, name: Option<&str>) -> Result<PushReport> {
        (|| -> Result<PushReport> {
            if let Some(n) = name {
                check_name(n)?;
            }
            if manifest.len() as u64 > crate::oci::MAX_MANIFEST {
                return Err(Error::InvalidManifest {
                    what: "the manifest".into(),
                    reason: format!("over the {}-byte manifest limit", crate::oci::MAX_MANIFEST),
                });
            }
            let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(manifest).into();
            let digest_str = format_digest(&digest);
            let doc = Document::parse(manifest, &digest_str)?;
            let media_type = match media_type.filter(|m| !m.is_empty()) {
                Some(m) => m.to_string(),
                None if !doc.media_type.is_empty() => doc.media_type.clone(),
                None => {
                    return Err(Error::InvalidManifest {
                        what: digest_str,
                        reason: "no media type: neither declared nor in the document".into(),
                    })
                }
            };
            let top_json = serde_json::json!({"mediaType": media_type, "digest": digest_str, "size": manifest.len()});
            let top = crate::oci::Descriptor::parse(&top_json, "the manifest")?;
            if !(top.is_index() || top.is_manifest()) {
                return Err(Error::InvalidManifest {
                    what: digest_str,
                    reason: format!("media type {media_type:?} is not a manifest or index"),
                });
            }
            let refs = self.refs.load()?;
            let src = StoredBlobs {
                home: self,
                refs: &refs,
                top: (digest, manifest),
            };
            let known = |d: &[u8; 32]| -> Option<BlobNode> { self.find_blob(&refs, d).ok().flatten() };
            let mut batch = self.store.batch()?;
            let import = import_image(&mut *batch, &src, &top, None, &self.options, &known, &no_progress)?;
            batch.commit()?;
            self.recorded(import, name)
        })()
        .map_err(|e| self.explain(e))
    }

    /// The digest of the manifest or index at the top of the image `id` names.
    pub fn top_digest(&self, id: &str) -> Result<String> {
        let root = ImageRoot::load(&self.store, &self.resolve(id)?)?;
        Ok(BlobNode::load(&self.store, &root.top)?.digest_str())
    }

    /// Removes a name (in every spelling, see [`Refs::lookup`]), a pin or a blob ref (the blocks go
    /// at the next gc).
    pub fn remove(&self, id: &str) -> Result<bool> {
        self.refs
            .update(|r| Ok(r.remove_name(id) | r.pins.remove(id) | r.blobs.remove(id).is_some()))
    }

    #[doc(hidden)]
    pub fn no_progress() -> &'static dyn Fn(Progress) {
        &no_progress
    }
}

/// The name a push gives: `--tag` (already checked), else the source's own name (an OCI ref
/// name, a docker-archive tag) if it is a valid image name; else none, with a note saying why.
fn source_name(tag: Option<&str>, from_source: Option<String>) -> (Option<String>, Option<String>) {
    if let Some(t) = tag {
        return (Some(t.to_string()), None);
    }
    match from_source.map(|n| check_name(&n).map(|_| n)) {
        Some(Ok(n)) => (Some(n), None),
        Some(Err(e)) => (
            None,
            Some(format!("not named after its source: {e}; pinned unnamed (give --tag)")),
        ),
        None => (None, None),
    }
}

/// The store's own blobs as an import source (for `commit_image`), plus the new top manifest.
struct StoredBlobs<'h> {
    home: &'h Home,
    refs: &'h Refs,
    top: ([u8; 32], &'h [u8]),
}

impl crate::image::BlobSource for StoredBlobs<'_> {
    fn open(&self, d: &crate::oci::Descriptor) -> Result<Option<(Box<dyn Read + '_>, u64)>> {
        if d.digest == self.top.0 {
            return Ok(Some((Box::new(self.top.1), self.top.1.len() as u64)));
        }
        Ok(self
            .home
            .find_blob(self.refs, &d.digest)?
            .map(|n| -> (Box<dyn Read + '_>, u64) { (n.open(&self.home.store), n.size) }))
    }
}

/// Gzip or zstd magic, or a 512-byte tar header (not all zeros) whose checksum holds.
fn looks_like_layer(head: &[u8]) -> bool {
    if head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return true;
    }
    match <&[u8; 512]>::try_from(head) {
        Ok(h) => h.iter().any(|&b| b != 0) && crate::tar::check_checksum(h).is_ok(),
        Err(_) => false,
    }
}

/// Errors that say "these bytes are not a layer", as opposed to "they are not what was promised"
/// (a digest mismatch) or "the store failed" (I/O).
fn not_a_layer(e: &Error) -> bool {
    let e = match e {
        Error::Io(io) => match io.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
            Some(inner) => inner,
            None => return false,
        },
        e => e,
    };
    matches!(
        e,
        Error::Tar { .. } | Error::Compression { .. } | Error::TooLarge { .. }
    )
}

/// The home's store as a shared [`Blockstore`] that keeps the home open (for owned readers).
struct SharedStore(Arc<Home>);

impl Blockstore for SharedStore {
    fn get(&self, cid: &Cid) -> Result<Vec<u8>> {
        self.0.store.get(cid)
    }
    fn has(&self, cid: &Cid) -> Result<bool> {
        self.0.store.has(cid)
    }
    fn size_of(&self, cid: &Cid) -> Result<u64> {
        self.0.store.size_of(cid)
    }
    fn put(&self, cid: &Cid, data: &[u8]) -> Result<()> {
        self.0.store.put(cid, data)
    }
    fn delete(&self, cid: &Cid) -> Result<()> {
        self.0.store.delete(cid)
    }
    fn cids(&self) -> Result<Vec<Cid>> {
        self.0.store.cids()
    }
    fn batch(&self) -> Result<Box<dyn crate::store::Batch + '_>> {
        self.0.store.batch()
    }
    fn retain(&self, keep: &dyn Fn(&Cid) -> bool) -> Result<crate::store::SweepStats> {
        self.0.store.retain(keep)
    }
    fn stored_bytes(&self) -> Result<u64> {
        self.0.store.stored_bytes()
    }
}

struct SpoolWriter {
    file: std::io::BufWriter<std::fs::File>,
    sha: sha2::Sha256,
}

impl std::io::Write for SpoolWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(b)?;
        sha2::Digest::update(&mut self.sha, &b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

fn tempfile_in(dir: &Path) -> Result<(PathBuf, std::fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    std::fs::create_dir_all(dir).map_err(|e| Error::io_path(dir, e))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Unique per process, thread and call; create_new so two writers can never share a spool.
    let p = dir.join(format!(
        "spool-{}-{nanos:x}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .map_err(|e| Error::io_path(&p, e))?;
    Ok((p, f))
}

/// The blob cache's bound for a home: `cache_size` in its `station.json` when that file says so, else
/// [`DEFAULT_CACHE_BYTES`]. A `station.json` that does not parse is the station's to report.
fn cache_bound(dir: &Path) -> u64 {
    #[derive(serde::Deserialize)]
    struct StationFile {
        cache_size: Option<u64>,
    }
    std::fs::read(dir.join("station.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<StationFile>(&b).ok())
        .and_then(|f| f.cache_size)
        .unwrap_or(DEFAULT_CACHE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_bound_is_the_station_files_for_every_opener() {
        let dir = tempfile::tempdir().unwrap();
        let h = dir.path().join("h");
        drop(Home::init(&h).unwrap());
        assert_eq!(Home::open(&h).unwrap().blob_cache().max_bytes(), DEFAULT_CACHE_BYTES);
        std::fs::write(
            h.join("station.json"),
            br#"{"listen": "127.0.0.1:5000", "cache_size": 12345}"#,
        )
        .unwrap();
        assert_eq!(Home::open(&h).unwrap().blob_cache().max_bytes(), 12345);
        // Not the home's to judge: a broken station.json leaves the default.
        std::fs::write(h.join("station.json"), b"{not json").unwrap();
        assert_eq!(Home::open(&h).unwrap().blob_cache().max_bytes(), DEFAULT_CACHE_BYTES);
    }

    #[test]
    fn config_names_what_is_wrong_and_keeps_the_compression() {
        let dir = tempfile::tempdir().unwrap();
        let h = dir.path().join("home");
        let home = Home::init_with(&h, Some(Compression::parse("zstd:-3,deferred").unwrap())).unwrap();
        assert_eq!(home.compression().to_string(), "zstd:-3,deferred");
        drop(home);
        // A plain init keeps the setting; a reopen reads it.
        assert_eq!(Home::init(&h).unwrap().compression().to_string(), "zstd:-3,deferred");
        assert_eq!(Home::open(&h).unwrap().compression().to_string(), "zstd:-3,deferred");
        let cfg = h.join("config.json");
        for (text, needle) in [
            ("{\"version\": 2}", "unsupported config version"),
            ("{\"version\": 1, \"compression\": 3}", "must be a string"),
            ("{\"version\": 1, \"compression\": \"zstd:99\"}", "\"zstd:99\""),
            ("not json", "not JSON"),
        ] {
            std::fs::write(&cfg, text).unwrap();
            let e = Home::open(&h).err().expect("bad config refused").to_string();
            assert!(e.contains(needle) && e.contains("config.json"), "{e}");
        }
    }

    #[test]
    fn blobs_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::init(dir.path()).unwrap();
        let json = br#"{"architecture":"amd64","os":"linux"}"#.repeat(5000);
        let b = home.put_blob(&mut &json[..], None, false).unwrap();
        let digest = format_digest(&b.digest);
        assert_eq!(
            digest,
            format_digest(&<sha2::Sha256 as sha2::Digest>::digest(&json).into())
        );
        let mut back = Vec::new();
        home.blob(&digest)
            .unwrap()
            .open(home.store())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, json);
        // A wrong expected digest changes nothing.
        let blocks = home.store().cids().unwrap().len();
        let wrong = format_digest(&[1u8; 32]);
        let e = home.put_blob(&mut &b"other"[..], Some(&wrong), false).unwrap_err();
        assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
        assert_eq!(home.store().cids().unwrap().len(), blocks);
        assert!(home.blob(&wrong).is_err());
        assert_eq!(std::fs::read_dir(dir.path().join("store/tmp")).unwrap().count(), 0);
        // A layer is decomposed.
        let mut tar = crate::tar::tests::header(b"f", b'0', 5, false).to_vec();
        tar.extend_from_slice(b"hello");
        tar.resize(2048, 0);
        let l = home.put_blob(&mut &tar[..], None, true).unwrap();
        assert_eq!(l.storage, crate::blob::Storage::Uncompressed);
        assert_eq!(home.verify(true).unwrap().problems, Vec::<String>::new());
    }

    #[test]
    fn owned_readers_file_puts_and_auto_kind() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let home = Arc::new(Home::init(&dir.path().join("home")).unwrap());
        let sha = |b: &[u8]| format_digest(&<sha2::Sha256 as sha2::Digest>::digest(b).into());

        // A file put in place: hashed when no digest is given, left where it is.
        let json = br#"{"os":"linux","architecture":"amd64"}"#.repeat(3000);
        let file = dir.path().join("config.json");
        std::fs::write(&file, &json).unwrap();
        let b = home.put_blob_file(&file, None, PutKind::Auto).unwrap();
        assert_eq!(format_digest(&b.digest), sha(&json));
        assert_eq!(b.storage, crate::blob::Storage::Verbatim);
        assert_eq!(std::fs::read(&file).unwrap(), json);

        // The owned reader outlives this scope's borrows and reads on another thread.
        let reader = home.open_blob(&sha(&json)).unwrap();
        let back = std::thread::spawn(move || {
            let mut reader = reader;
            let mut v = Vec::new();
            reader.read_to_end(&mut v).map(|_| v)
        })
        .join()
        .unwrap()
        .unwrap();
        assert_eq!(back, json);

        // No such blob: its own error, naming the digest.
        let absent = sha(b"absent");
        match home.open_blob(&absent) {
            Err(Error::BlobNotFound(d)) => assert_eq!(d, absent),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("found a blob never stored"),
        }

        // A gzip stream that holds no tar: Layer refuses it and stores nothing; Auto keeps it verbatim.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&b"not a tar archive, just text. ".repeat(100)).unwrap();
        let gz = gz.finish().unwrap();
        let gz_file = dir.path().join("blob.gz");
        std::fs::write(&gz_file, &gz).unwrap();
        let blocks = home.store().cids().unwrap().len();
        let e = home
            .put_blob_file(&gz_file, Some(&sha(&gz)), PutKind::Layer)
            .unwrap_err();
        assert!(not_a_layer(&e), "{e}");
        assert_eq!(home.store().cids().unwrap().len(), blocks);
        assert!(matches!(home.blob(&sha(&gz)), Err(Error::BlobNotFound(_))));
        let b = home.put_blob_auto(&mut &gz[..], Some(&sha(&gz))).unwrap();
        assert_eq!(b.storage, crate::blob::Storage::Verbatim);
        let mut back = Vec::new();
        home.open_blob(&sha(&gz)).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, gz);

        // A tar is a layer in Auto mode.
        let mut tar = crate::tar::tests::header(b"f", b'0', 5, false).to_vec();
        tar.extend_from_slice(b"hello");
        tar.resize(2048, 0);
        let l = home.put_blob_auto(&mut &tar[..], None).unwrap();
        assert_eq!(l.storage, crate::blob::Storage::Uncompressed);

        // A wrong digest is a mismatch (Layer refuses the non-layer first), and changes nothing.
        let blocks = home.store().cids().unwrap().len();
        let refs = std::fs::read(dir.path().join("home/refs.json")).unwrap();
        for kind in [PutKind::Auto, PutKind::Other] {
            let e = home.put_blob_file(&gz_file, Some(&sha(b"x")), kind).unwrap_err();
            assert!(matches!(e, Error::DigestMismatch { .. }), "{kind:?}: {e}");
        }
        assert!(home.put_blob_file(&gz_file, Some(&sha(b"x")), PutKind::Layer).is_err());
        let e = home.put_blob_file(&file, Some(&sha(b"x")), PutKind::Layer).unwrap_err();
        assert!(not_a_layer(&e), "{e}");
        assert_eq!(home.store().cids().unwrap().len(), blocks);
        assert_eq!(std::fs::read(dir.path().join("home/refs.json")).unwrap(), refs);
        assert_eq!(home.verify(true).unwrap().problems, Vec::<String>::new());
    }
}
