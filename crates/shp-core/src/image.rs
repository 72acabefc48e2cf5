//! Images: a top manifest or index and every blob under it, as one DAG with an image root.
//!
//! Image root: `{"shp": 3, "t": "image", "profiles": N, "top": link (blob node of the top
//! manifest/index), "desc": text (the top descriptor as JSON, without its ref-name annotation),
//! "archive": optional docker-archive record (see `docker_archive`)}`.

use crate::blob::{import_blob, BlobKind, BlobNode, ImportOptions, ImportedBlob, Storage};
use crate::cbor::Value;
use crate::cid::{format_digest, Cid};
use crate::dag::{get_node, schema_err, DagWriter, WriteStats, SCHEMA_READ, SCHEMA_VERSION};
use crate::error::{Error, Result};
use crate::oci::{Descriptor, DocKind, Document, MAX_MANIFEST};
use crate::store::{Batch, Blockstore};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::io::{Cursor, Read};

/// Version of the recipe-profile set this build knows; recorded in every image root.
pub const PROFILE_SET: u64 = 4;

/// Looks a digest up among blobs the store already holds (a cache; None when unknown).
pub type Known<'a> = &'a dyn Fn(&[u8; 32]) -> Option<BlobNode>;

/// Knows no blobs: every blob is read and imported.
pub fn none_known(_: &[u8; 32]) -> Option<BlobNode> {
    None
}

/// Where an import reads blobs from.
pub trait BlobSource {
    /// The blob's bytes and size, or None if the source lacks it.
    fn open(&self, digest: &Descriptor) -> Result<Option<(Box<dyn Read + '_>, u64)>>;
}

/// Progress of an import or export, for progress bars.
#[derive(Debug, Clone)]
pub enum Progress {
    /// The work ahead: blob count and bytes.
    Planned { blobs: usize, bytes: u64 },
    /// A blob begins.
    Blob { digest: String, size: u64 },
    /// Bytes of the current blob were read.
    Bytes(u64),
}

/// Per-blob outcome of an import.
#[derive(Debug, Clone)]
pub struct BlobReport {
    pub cid: Cid,
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub storage: Storage,
    pub new_bytes: u64,
}

/// What an import produced.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub root: Cid,
    pub top_digest: String,
    pub blobs: Vec<BlobReport>,
    pub stats: WriteStats,
}

enum Plan {
    Json {
        desc: Descriptor,
        bytes: Vec<u8>,
        children: Vec<[u8; 32]>,
    },
    Blob {
        desc: Descriptor,
        layer: bool,
    },
}

fn read_manifest(src: &dyn BlobSource, d: &Descriptor, referrer: &str) -> Result<Vec<u8>> {
    if d.size > MAX_MANIFEST {
        return Err(Error::InvalidManifest {
            what: d.digest_str.clone(),
            reason: format!("{} bytes, over the {MAX_MANIFEST}-byte manifest limit", d.size),
        });
    }
    let (r, _) = src.open(d)?.ok_or_else(|| Error::MissingBlob {
        digest: d.digest_str.clone(),
        referrer: referrer.to_string(),
    })?;
    let mut bytes = Vec::new();
    r.take(MAX_MANIFEST + 1).read_to_end(&mut bytes)?;
    let actual: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&bytes).into();
    if actual != d.digest || bytes.len() as u64 != d.size {
        return Err(Error::DigestMismatch {
            expected: d.digest_str.clone(),
            actual: format_digest(&actual),
            size: bytes.len() as u64,
            expected_size: d.size,
        });
    }
    Ok(bytes)
}

fn plan(
    src: &dyn BlobSource,
    d: &Descriptor,
    layer: bool,
    referrer: &str,
    out: &mut Vec<Plan>,
    seen: &mut HashMap<[u8; 32], ()>,
    depth: usize,
) -> Result<()> {
    if seen.contains_key(&d.digest) {
        return Ok(());
    }
    if depth > 8 {
        return Err(Error::InvalidManifest {
            what: d.digest_str.clone(),
            reason: "indexes nested deeper than 8".into(),
        });
    }
    seen.insert(d.digest, ());
    if d.is_index() || d.is_manifest() {
        let bytes = read_manifest(src, d, referrer)?;
        let doc = Document::parse(&bytes, &d.digest_str)?;
        let mut children = Vec::new();
        for (c, is_layer) in doc.children() {
            if doc.kind == DocKind::Index && !(c.is_index() || c.is_manifest()) {
                // An index may name artifacts of other kinds: keep them verbatim.
                plan(src, c, false, &d.digest_str, out, seen, depth + 1)?;
            } else if c.has_urls() && src.open(c)?.is_none() {
                continue; // foreign layer: not distributable, fetched from its URLs by clients
            } else {
                plan(src, c, is_layer, &d.digest_str, out, seen, depth + 1)?;
            }
            if !children.contains(&c.digest) {
                children.push(c.digest);
            }
        }
        out.push(Plan::Json {
            desc: d.clone(),
            bytes,
            children,
        });
    } else {
        out.push(Plan::Blob { desc: d.clone(), layer });
    }
    Ok(())
}

struct Counting<'p, R> {
    inner: R,
    progress: &'p dyn Fn(Progress),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(Progress::Bytes(n as u64));
        Ok(n)
    }
}

/// Imports the image `top` names from `src` into `batch` and writes its root. The caller
/// commits the batch (and only then updates refs).
pub fn import_image(
    batch: &mut dyn Batch,
    src: &dyn BlobSource,
    top: &Descriptor,
    archive: Option<Value>,
    opts: &ImportOptions,
    known: Known,
    progress: &dyn Fn(Progress),
) -> Result<ImportReport> {
    let mut items = Vec::new();
    plan(
        src,
        top,
        false,
        "the image reference",
        &mut items,
        &mut HashMap::new(),
        0,
    )?;
    let total: u64 = items
        .iter()
        .map(|p| match p {
            Plan::Json { desc, .. } | Plan::Blob { desc, .. } => desc.size,
        })
        .sum();
    progress(Progress::Planned {
        blobs: items.len(),
        bytes: total,
    });
    let mut w = DagWriter::new(batch);
    let mut cids: HashMap<[u8; 32], Cid> = HashMap::new();
    let mut reports = Vec::new();
    for item in &items {
        let before = w.stats;
        let (desc, imported) = match item {
            Plan::Json { desc, bytes, children } => {
                progress(Progress::Blob {
                    digest: desc.digest_str.clone(),
                    size: desc.size,
                });
                let kids: Vec<Cid> = children.iter().filter_map(|d| cids.get(d).copied()).collect();
                let open = || -> Result<Box<dyn Read>> { Ok(Box::new(Cursor::new(bytes.as_slice()))) };
                (
                    desc,
                    import_blob(
                        &mut w,
                        BlobKind::Other,
                        &open,
                        Some((&desc.digest, desc.size)),
                        &kids,
                        opts,
                    )?,
                )
            }
            Plan::Blob { desc, layer } => {
                progress(Progress::Blob {
                    digest: desc.digest_str.clone(),
                    size: desc.size,
                });
                let open = || -> Result<Box<dyn Read + '_>> {
                    let (r, _) = src.open(desc)?.ok_or_else(|| Error::MissingBlob {
                        digest: desc.digest_str.clone(),
                        referrer: "its manifest".into(),
                    })?;
                    Ok(Box::new(Counting { inner: r, progress }))
                };
                let kind = if *layer { BlobKind::Layer } else { BlobKind::Other };
                // A blob the store already holds is not read again: the source must still have
                // it, with the size its descriptor states.
                let have = known(&desc.digest).filter(|n| n.size == desc.size);
                match have {
                    Some(node) => {
                        let (_, len) = src.open(desc)?.ok_or_else(|| Error::MissingBlob {
                            digest: desc.digest_str.clone(),
                            referrer: "its manifest".into(),
                        })?;
                        if len != desc.size {
                            return Err(Error::DigestMismatch {
                                expected: desc.digest_str.clone(),
                                actual: "(not read: the store has this digest)".into(),
                                size: len,
                                expected_size: desc.size,
                            });
                        }
                        progress(Progress::Bytes(desc.size));
                        let storage = node.storage(*layer);
                        (
                            desc,
                            ImportedBlob {
                                cid: node.cid,
                                digest: node.digest,
                                size: node.size,
                                storage,
                                diff_id: None,
                            },
                        )
                    }
                    None => (
                        desc,
                        import_blob(&mut w, kind, &open, Some((&desc.digest, desc.size)), &[], opts)?,
                    ),
                }
            }
        };
        cids.insert(desc.digest, imported.cid);
        reports.push(BlobReport {
            cid: imported.cid,
            digest: desc.digest_str.clone(),
            size: desc.size,
            media_type: desc.media_type.clone(),
            storage: imported.storage,
            new_bytes: w.stats.new_bytes - before.new_bytes,
        });
    }
    let mut desc_json = top.json.clone();
    if let Some(ann) = desc_json.get_mut("annotations").and_then(Json::as_object_mut) {
        ann.remove(crate::oci::REF_NAME);
        if ann.is_empty() {
            desc_json
                .as_object_mut()
                .expect("descriptor object")
                .remove("annotations");
        }
    }
    let mut fields = vec![
        ("shp".to_string(), Value::UInt(SCHEMA_VERSION)),
        ("t".to_string(), Value::text("image")),
        ("profiles".to_string(), Value::UInt(PROFILE_SET)),
        ("top".to_string(), Value::Link(cids[&top.digest])),
        (
            "desc".to_string(),
            Value::text(serde_json::to_string(&desc_json).expect("json")),
        ),
    ];
    if let Some(a) = archive {
        fields.push(("archive".to_string(), a));
    }
    let root = w.put_node(&Value::Map(fields))?;
    Ok(ImportReport {
        root,
        top_digest: top.digest_str.clone(),
        blobs: reports,
        stats: w.stats,
    })
}

/// A decoded image root.
#[derive(Debug, Clone)]
pub struct ImageRoot {
    pub cid: Cid,
    /// The DAG schema version that wrote it (one of [`SCHEMA_READ`]).
    pub schema: u64,
    pub top: Cid,
    pub desc: Json,
    pub archive: Option<Value>,
}

impl ImageRoot {
    pub fn load(store: &dyn Blockstore, cid: &Cid) -> Result<ImageRoot> {
        let v = get_node(store, cid)?;
        if v.get("t").and_then(Value::as_str) != Some("image") {
            return Err(schema_err(cid, "not an image root"));
        }
        let schema = match v.get("shp").and_then(Value::as_u64) {
            Some(n) if SCHEMA_READ.contains(&n) => n,
            Some(n) => {
                return Err(schema_err(
                    cid,
                    format!(
                        "schema version {n}; this build reads versions {} to {}",
                        SCHEMA_READ.start(),
                        SCHEMA_READ.end()
                    ),
                ))
            }
            None => return Err(schema_err(cid, "no schema version")),
        };
        let top = v
            .get("top")
            .and_then(Value::as_link)
            .ok_or_else(|| schema_err(cid, "top link missing"))?;
        let desc = v
            .get("desc")
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| schema_err(cid, "desc is not descriptor JSON"))?;
        Ok(ImageRoot {
            cid: *cid,
            schema,
            top,
            desc,
            archive: v.get("archive").cloned(),
        })
    }

    /// Every blob of the image, top first, each once, with whether it is a layer and the media
    /// type its parent gives it.
    pub fn blobs(&self, store: &dyn Blockstore) -> Result<Vec<ImageBlob>> {
        let top = BlobNode::load(store, &self.top)?;
        let mt = self
            .desc
            .get("mediaType")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string();
        let mut out = Vec::new();
        let mut seen = HashMap::new();
        walk(store, top, mt, false, None, &mut out, &mut seen, 0)?;
        Ok(out)
    }
}

/// The platform this build runs on, as image indexes name it (`linux/amd64`, `linux/arm64`).
pub fn host_platform() -> String {
    format!(
        "linux/{}",
        if cfg!(target_arch = "aarch64") {
            "arm64"
        } else {
            "amd64"
        }
    )
}

/// The image manifest to use from an image's blobs ([`ImageRoot::blobs`]): the top one, or from an
/// index the one for `platform` (`os/arch[/variant]`; `None`: the host's, else the index's first).
/// A platform asked for that the index lacks is an error naming the ones it has.
pub fn pick_manifest<'a>(blobs: &'a [ImageBlob], platform: Option<&str>) -> Result<&'a ImageBlob> {
    let top = blobs
        .first()
        .ok_or_else(|| Error::ImageNotFound("an image with blobs".into()))?;
    match top.doc.as_ref().map(|d| d.kind) {
        Some(DocKind::Manifest) => Ok(top),
        Some(DocKind::Index) => {
            let doc = top.doc.as_ref().expect("checked");
            let plat = |d: &Descriptor| Document::platform_of(d);
            let pick = match platform {
                Some(want) => doc
                    .manifests
                    .iter()
                    .find(|d| plat(d).as_deref() == Some(want))
                    .ok_or_else(|| {
                        let have: Vec<String> = doc.manifests.iter().filter_map(plat).collect();
                        Error::ImageNotFound(format!(
                            "platform {want} in the index {} (it has: {})",
                            top.node.digest_str(),
                            if have.is_empty() {
                                "none named".to_string()
                            } else {
                                have.join(", ")
                            }
                        ))
                    })?,
                None => {
                    let host = host_platform();
                    doc.manifests
                        .iter()
                        .find(|d| plat(d).as_deref() == Some(host.as_str()))
                        .or(doc.manifests.first())
                        .ok_or_else(|| Error::ImageNotFound("an image manifest in the index".into()))?
                }
            };
            blobs
                .iter()
                .find(|b| b.node.digest == pick.digest && b.doc.as_ref().map(|d| d.kind) == Some(DocKind::Manifest))
                .ok_or_else(|| Error::ImageNotFound(format!("manifest {} of the index", pick.digest_str)))
        }
        None => Err(Error::InvalidManifest {
            what: top.node.digest_str(),
            reason: "not a manifest or index".into(),
        }),
    }
}

/// One blob of an image, as its parent describes it.
#[derive(Debug, Clone)]
pub struct ImageBlob {
    pub node: BlobNode,
    pub media_type: String,
    pub is_layer: bool,
    /// For manifests/indexes: the parsed document.
    pub doc: Option<Document>,
    /// The manifest digest this blob belongs to (None for the top).
    pub parent: Option<String>,
}

#[allow(clippy::too_many_arguments)]
fn walk(
    store: &dyn Blockstore,
    node: BlobNode,
    media_type: String,
    is_layer: bool,
    parent: Option<String>,
    out: &mut Vec<ImageBlob>,
    seen: &mut HashMap<[u8; 32], ()>,
    depth: usize,
) -> Result<()> {
    if seen.insert(node.digest, ()).is_some() {
        return Ok(());
    }
    if depth > 10 {
        return Err(schema_err(&node.cid, "image nested deeper than 10"));
    }
    let doc = if !node.children.is_empty() || media_type.contains("manifest") || media_type.contains("index") {
        if node.size > MAX_MANIFEST {
            return Err(schema_err(
                &node.cid,
                format!("manifest of {} bytes, over the limit", node.size),
            ));
        }
        let mut bytes = Vec::new();
        node.open(store)
            .read_to_end(&mut bytes)
            .map_err(crate::dag::unwrap_io)?;
        Some(Document::parse(&bytes, &node.digest_str())?)
    } else {
        None
    };
    let kids: Vec<BlobNode> = node
        .children
        .iter()
        .map(|c| BlobNode::load(store, c))
        .collect::<Result<_>>()?;
    let digest = node.digest_str();
    out.push(ImageBlob {
        node,
        media_type,
        is_layer,
        doc: doc.clone(),
        parent,
    });
    if let Some(doc) = doc {
        for (d, layer) in doc.children() {
            if let Some(k) = kids.iter().find(|k| k.digest == d.digest) {
                walk(
                    store,
                    k.clone(),
                    d.media_type.clone(),
                    layer,
                    Some(digest.clone()),
                    out,
                    seen,
                    depth + 1,
                )?;
            }
        }
    }
    Ok(())
}

/// Config media types whose `rootfs.diff_ids` name the manifest's layers.
const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// What [`check_diff_ids`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffIdCheck {
    /// Layers whose diff_id was compared with their config's.
    pub checked: u64,
    /// Layers kept opaque (their diff_id is not stored; finding it means decoding them).
    pub skipped: u64,
    pub problems: Vec<String>,
}

/// Checks each image manifest among `blobs` (from [`ImageRoot::blobs`]) against its config: the
/// config's `rootfs.diff_ids` must list, in order, the sha256 of each layer's uncompressed tar
/// (what container runtimes check when they unpack an image). Manifests whose config is not an
/// image config (artifacts) are left alone. The stored images stay as they are either way: this
/// reports, it does not judge what a registry accepted.
pub fn check_diff_ids(store: &dyn Blockstore, blobs: &[ImageBlob]) -> Result<DiffIdCheck> {
    let by_digest: HashMap<[u8; 32], &ImageBlob> = blobs.iter().map(|b| (b.node.digest, b)).collect();
    let mut out = DiffIdCheck::default();
    for b in blobs {
        let Some(doc) = &b.doc else { continue };
        let Some(cfg) = &doc.config else { continue };
        if !IMAGE_CONFIGS.contains(&cfg.media_type.as_str()) {
            continue;
        }
        let Some(cnode) = by_digest.get(&cfg.digest) else {
            continue; // a missing config is the walk's problem, reported there
        };
        let manifest = b.node.digest_str();
        if cnode.node.size > MAX_MANIFEST {
            out.problems.push(format!(
                "manifest {manifest}: config {} is {} bytes, over the limit",
                cfg.digest_str, cnode.node.size
            ));
            continue;
        }
        let mut bytes = Vec::new();
        cnode
            .node
            .open(store)
            .read_to_end(&mut bytes)
            .map_err(crate::dag::unwrap_io)?;
        let listed: Option<Vec<String>> = serde_json::from_slice::<Json>(&bytes).ok().and_then(|c| {
            c.get("rootfs")?
                .get("diff_ids")?
                .as_array()?
                .iter()
                .map(|d| d.as_str().map(str::to_string))
                .collect()
        });
        let Some(listed) = listed else {
            out.problems.push(format!(
                "manifest {manifest}: config {} has no rootfs.diff_ids list of strings",
                cfg.digest_str
            ));
            continue;
        };
        let layers: Vec<&Descriptor> = doc.layers.iter().filter(|d| d.is_layer()).collect();
        if listed.len() != layers.len() {
            out.problems.push(format!(
                "manifest {manifest}: config {} lists {} diff_ids for {} layers",
                cfg.digest_str,
                listed.len(),
                layers.len()
            ));
            continue;
        }
        for (i, (l, want)) in layers.iter().zip(&listed).enumerate() {
            let Some(node) = by_digest.get(&l.digest) else { continue };
            match node.node.diff_id(store)? {
                None => out.skipped += 1,
                Some(d) => {
                    out.checked += 1;
                    let got = format_digest(&d);
                    if &got != want {
                        out.problems.push(format!(
                            "manifest {manifest}: layer {i} ({}) unpacks to {got}, but config {} lists {want}",
                            l.digest_str, cfg.digest_str
                        ));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// An OCI image layout directory as a blob source.
pub struct OciLayout {
    pub path: std::path::PathBuf,
}

impl OciLayout {
    fn blob_path(&self, d: &[u8; 32]) -> std::path::PathBuf {
        self.path.join("blobs/sha256").join(&format_digest(d)[7..])
    }

    /// The descriptor `reference` names in index.json (or the only one when None).
    pub fn resolve(&self, reference: Option<&str>) -> Result<Descriptor> {
        let p = self.path.join("index.json");
        let bytes = std::fs::read(&p).map_err(|e| Error::io_path(&p, e))?;
        let what = p.display().to_string();
        let doc = Document::parse(&bytes, &what)?;
        let named = |d: &&Descriptor| {
            d.json
                .get("annotations")
                .and_then(|a| a.get(crate::oci::REF_NAME))
                .and_then(Json::as_str)
                .map(str::to_string)
        };
        match reference {
            Some(r) => doc
                .manifests
                .iter()
                .find(|d| named(d).as_deref() == Some(r))
                .cloned()
                .ok_or_else(|| {
                    let names: Vec<String> = doc.manifests.iter().filter_map(|d| named(&d)).collect();
                    Error::ImageNotFound(format!(
                        "{r:?} in {} (it has: {})",
                        self.path.display(),
                        names.join(", ")
                    ))
                }),
            None if doc.manifests.len() == 1 => Ok(doc.manifests[0].clone()),
            None if doc.manifests.is_empty() => {
                Err(Error::ImageNotFound(format!("{} has no images", self.path.display())))
            }
            None => Err(Error::InvalidReference {
                reference: format!("oci:{}", self.path.display()),
                reason: format!(
                    "the layout holds {} images: name one with oci:PATH:REF",
                    doc.manifests.len()
                ),
            }),
        }
    }
}

impl BlobSource for OciLayout {
    fn open(&self, d: &Descriptor) -> Result<Option<(Box<dyn Read + '_>, u64)>> {
        let p = self.blob_path(&d.digest);
        match std::fs::File::open(&p) {
            Ok(f) => {
                let len = f.metadata()?.len();
                Ok(Some((Box::new(std::io::BufReader::with_capacity(256 * 1024, f)), len)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io_path(&p, e)),
        }
    }
}

/// Writes `r` to `path` through a temporary file, publishing it only if the reader (which
/// verifies digests) ends cleanly.
pub fn write_verified(path: &std::path::Path, r: &mut dyn Read) -> Result<u64> {
    crate::publish::publish(path, |w| std::io::copy(r, w).map_err(crate::dag::unwrap_io))
}

/// Opens a blob for an export, verified as it is read: [`BlobNode::open`] over the store, or a
/// reader that goes through a cache of rebuilt blobs ([`crate::home::Home::blob_reader`]).
pub type OpenBlob<'s> = dyn Fn(&BlobNode) -> Box<dyn Read + Send + 's> + 's;

/// Writes the image into an OCI layout at `path` (created if absent), naming it `reference`.
/// Blob bytes come from `open`.
pub fn export_oci<'s>(
    store: &dyn Blockstore,
    root: &ImageRoot,
    path: &std::path::Path,
    reference: Option<&str>,
    progress: &dyn Fn(Progress),
    open: &OpenBlob<'s>,
) -> Result<()> {
    let blobs = root.blobs(store)?;
    progress(Progress::Planned {
        blobs: blobs.len(),
        bytes: blobs.iter().map(|b| b.node.size).sum(),
    });
    let layout = OciLayout {
        path: path.to_path_buf(),
    };
    for b in &blobs {
        progress(Progress::Blob {
            digest: b.node.digest_str(),
            size: b.node.size,
        });
        let p = layout.blob_path(&b.node.digest);
        if let Ok(existing) = std::fs::File::open(&p) {
            // Keep a present blob only if it really is this blob.
            let mut h = <sha2::Sha256 as sha2::Digest>::new();
            std::io::copy(&mut std::io::BufReader::new(existing), &mut h)?;
            if <[u8; 32]>::from(sha2::Digest::finalize(h)) == b.node.digest {
                progress(Progress::Bytes(b.node.size));
                continue;
            }
        }
        let mut r = Counting {
            inner: open(&b.node),
            progress,
        };
        write_verified(&p, &mut r)?;
    }
    std::fs::write(path.join("oci-layout"), b"{\"imageLayoutVersion\":\"1.0.0\"}")?;
    let idx_path = path.join("index.json");
    let mut index: Json = match std::fs::read(&idx_path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::InvalidManifest {
            what: idx_path.display().to_string(),
            reason: e.to_string(),
        })?,
        Err(_) => {
            serde_json::json!({"schemaVersion": 2, "mediaType": crate::oci::OCI_INDEX, "manifests": []})
        }
    };
    let mut desc = root.desc.clone();
    let digest = desc.get("digest").cloned();
    if let Some(r) = reference {
        let obj = desc
            .as_object_mut()
            .ok_or_else(|| schema_err(&root.cid, "desc is not an object"))?;
        let ann = obj.entry("annotations").or_insert_with(|| serde_json::json!({}));
        ann.as_object_mut()
            .ok_or_else(|| schema_err(&root.cid, "annotations is not an object"))?
            .insert(crate::oci::REF_NAME.into(), Json::String(r.into()));
    }
    let list = index
        .get_mut("manifests")
        .and_then(Json::as_array_mut)
        .ok_or_else(|| Error::InvalidManifest {
            what: idx_path.display().to_string(),
            reason: "manifests is not a list".into(),
        })?;
    list.retain(|d| {
        let name = d
            .get("annotations")
            .and_then(|a| a.get(crate::oci::REF_NAME))
            .and_then(Json::as_str);
        match reference {
            Some(r) => name != Some(r),
            None => !(name.is_none() && d.get("digest") == digest.as_ref()),
        }
    });
    list.push(desc);
    let bytes = serde_json::to_vec(&index).expect("json");
    write_verified(&idx_path, &mut &bytes[..])?;
    Ok(())
}
