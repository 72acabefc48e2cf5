//! Remote registries on both sides: `shp push docker://HOST/REPO:TAG` imports an image from any
//! OCI Distribution registry ([`import`]), `shp pull IMAGE docker://HOST/REPO:TAG` sends one to a
//! registry ([`export`]).
//!
//! - Import resolves the tag (Accept: OCI manifest and index, docker schema2 manifest and list),
//!   then hands shp-core's ordinary import a [`shp_core::image::BlobSource`] that fetches child
//!   manifests by digest and blobs by digest. Blobs the store already holds are only HEADed (the
//!   `Known` path of the import), never downloaded. Each downloaded blob is spooled to one
//!   temporary file in the home (the import may read a compressed layer up to three times: probe,
//!   decode, opaque fallback) while its sha256 and size are checked against the descriptor; a
//!   blob that does not match is an error naming it and the registry, and the store is left as it
//!   was. One blob is spooled at a time.
//! - Export walks the image's blobs: for each, HEAD (present: skip), else a cross-repository
//!   mount from another repository of the same registry known to hold it (see `mounts`), else
//!   POST + PUT (monolithic) or POST + PATCH… + PUT (chunked, for blobs over
//!   [`RemoteOptions::chunk_size`]), streaming the rebuilt, verified bytes; then the child
//!   manifests by digest (leaves first) and the top manifest by tag. The manifest bytes are the
//!   original ones, so every digest is the same as the source's.
//! - Auth: anonymous, Basic (`--creds`, auth files), and the Bearer token flow.
//! - TLS: rustls. `tls_verify: false` accepts any certificate and, when the registry does not
//!   speak TLS at all, falls back to plain http (docker's "insecure registry" rule).

mod auth;
mod client;
mod mounts;
mod reference;

pub use auth::{Challenge, Credentials};
pub use reference::{RemoteRef, DOCKER_HUB, DOCKER_HUB_API};

pub(crate) use client::Client;
use client::Upload;
use shp_core::cid::format_digest;
use shp_core::image::{BlobSource, ImageRoot, Progress};
use shp_core::oci::{Descriptor, Document, MAX_MANIFEST};
use shp_core::{Cid, Home};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Errors of the remote client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid registry reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{what}: unauthorized: {reason}")]
    Unauthorized { what: String, reason: String },
    #[error("{what}: {reason}")]
    Registry { what: String, reason: String },
    #[error("{what}")]
    Http {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{0}")]
    Auth(String),
    /// A blob the registry sent is not the blob its descriptor names.
    #[error("blob {digest} from {remote}: the registry sent {size} bytes with digest {actual} (the descriptor says {expected_size} bytes)")]
    BlobMismatch {
        digest: String,
        remote: String,
        actual: String,
        size: u64,
        expected_size: u64,
    },
    /// Reading what was to be sent failed (a corrupt store, …): the upload was aborted.
    #[error("{what}: reading the blob failed: {source}")]
    Source {
        what: String,
        #[source]
        source: shp_core::Error,
    },
    #[error(transparent)]
    Core(#[from] shp_core::Error),
}

impl Error {
    /// The shp-core error underneath, if that is what this is.
    pub fn core(&self) -> Option<&shp_core::Error> {
        match self {
            Error::Core(e) | Error::Source { source: e, .. } => Some(e),
            _ => None,
        }
    }
}

/// How to talk to a registry.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Verify the registry's TLS certificate (default). Off: accept any certificate, and use
    /// plain http when the registry does not speak TLS.
    pub tls_verify: bool,
    /// Credentials for Basic auth and for the token service.
    pub creds: Option<Credentials>,
    /// An auth file (containers' auth.json or docker's config.json), used when `creds` is None.
    pub authfile: Option<PathBuf>,
    /// Blobs larger than this are uploaded in PATCH chunks of this many bytes (default 64 MiB).
    pub chunk_size: u64,
    pub connect_timeout: Duration,
    /// How long a connection may stay silent.
    pub read_timeout: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            tls_verify: true,
            creds: None,
            authfile: None,
            chunk_size: 64 << 20,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(300),
        }
    }
}

/// What [`import`] did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub push: shp_core::home::PushReport,
    /// Blobs downloaded (blobs the store already had are not) and their bytes.
    pub fetched_blobs: u64,
    pub fetched_bytes: u64,
}

/// How [`export`] got one blob into the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The repository already had it.
    Present,
    /// Mounted from another repository of the same registry.
    Mounted { from: String },
    /// Uploaded: in one PUT (`chunks` 0) or in that many PATCH chunks.
    Uploaded { chunks: u64 },
    /// A manifest or index, PUT by digest (children) or by tag (the top).
    Manifest,
}

impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sent::Present => write!(f, "present"),
            Sent::Mounted { from } => write!(f, "mounted {from}"),
            Sent::Uploaded { chunks: 0 } => write!(f, "uploaded"),
            Sent::Uploaded { chunks } => write!(f, "uploaded {chunks} chunks"),
            Sent::Manifest => write!(f, "manifest"),
        }
    }
}

/// One blob of an [`export`].
#[derive(Debug, Clone)]
pub struct SentBlob {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub sent: Sent,
}

/// What [`export`] did.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub root: Cid,
    /// The top manifest's digest (what the registry now has under the tag).
    pub digest: String,
    /// Blobs first, then manifests (leaves first, the top last).
    pub blobs: Vec<SentBlob>,
}

fn sha256(b: &[u8]) -> [u8; 32] {
    <sha2::Sha256 as sha2::Digest>::digest(b).into()
}

pub(crate) fn is_manifest_type(mt: &str) -> bool {
    client::MANIFEST_ACCEPT.split(", ").any(|m| m == mt)
}

/// Imports the image `src` names into `home`, named `name` (default: `REGISTRY/REPO:TAG`; an
/// image named by digest alone is pinned). Nothing changes in the store on error.
pub fn import(
    home: &Home,
    src: &RemoteRef,
    name: Option<&str>,
    opts: &RemoteOptions,
    progress: &dyn Fn(Progress),
) -> Result<ImportReport, Error> {
    let client = Client::connect(src, opts, false)?;
    let (bytes, content_type) = client
        .get_manifest(src.manifest_reference())?
        .ok_or_else(|| Error::NotFound(format!("{src} (the registry has no such manifest)")))?;
    let digest = sha256(&bytes);
    let digest_str = format_digest(&digest);
    if let Some(d) = &src.digest {
        if *d != digest_str {
            return Err(Error::Registry {
                what: format!("manifest of {src}"),
                reason: format!("the registry sent a manifest whose digest is {digest_str}"),
            });
        }
    }
    let doc = Document::parse(&bytes, &format!("manifest {digest_str} of {src}"))?;
    let media_type = if is_manifest_type(&content_type) {
        content_type
    } else if !doc.media_type.is_empty() {
        doc.media_type.clone()
    } else {
        return Err(Error::Registry {
            what: format!("manifest of {src}"),
            reason: format!("unknown manifest type {content_type:?} and no mediaType in the document"),
        });
    };
    let top = Descriptor::parse(
        &serde_json::json!({"mediaType": media_type, "digest": digest_str, "size": bytes.len()}),
        "the manifest",
    )?;
    let spool = tempfile::Builder::new()
        .prefix(".remote-spool-")
        .tempdir_in(home.dir())
        .map_err(|e| Error::Io {
            what: format!("create a spool directory in {}", home.dir().display()),
            source: e,
        })?;
    let source = RemoteSource {
        client: &client,
        remote: src.to_string(),
        top: (digest, bytes),
        spool: spool.path().to_path_buf(),
        current: Mutex::new(None),
        failure: Mutex::new(None),
        fetched: Mutex::new((0, 0)),
    };
    let name = name.map(str::to_string).or_else(|| src.default_name());
    let push = home.push_from(&source, &top, name.as_deref(), progress);
    let push = match push {
        Ok(p) => p,
        Err(e) => {
            // A failed download is the cause: report it rather than its I/O echo.
            return Err(source.failure.lock().expect("lock").take().unwrap_or(Error::Core(e)));
        }
    };
    let (fetched_blobs, fetched_bytes) = *source.fetched.lock().expect("lock");
    mounts::record(
        home.dir(),
        &src.registry,
        &src.repository,
        push.import.blobs.iter().map(|b| b.digest.as_str()),
    );
    Ok(ImportReport {
        push,
        fetched_blobs,
        fetched_bytes,
    })
}

/// A registry repository as an import source.
struct RemoteSource<'c> {
    client: &'c Client,
    remote: String,
    top: ([u8; 32], Vec<u8>),
    spool: PathBuf,
    /// The one spooled blob: its digest and file.
    current: Mutex<Option<([u8; 32], PathBuf)>>,
    /// Why a download failed (the import only sees an I/O error).
    failure: Mutex<Option<Error>>,
    fetched: Mutex<(u64, u64)>,
}

impl RemoteSource<'_> {
    fn open_spooled(&self, d: &[u8; 32]) -> io::Result<Option<std::fs::File>> {
        match &*self.current.lock().expect("lock") {
            Some((cd, p)) if cd == d => std::fs::File::open(p).map(Some),
            _ => Ok(None),
        }
    }

    /// Downloads a blob into the spool, checking digest and size; returns its file.
    fn fetch(&self, d: &Descriptor) -> Result<std::fs::File, Error> {
        if let Some(f) = self.open_spooled(&d.digest).map_err(|e| Error::Io {
            what: "open the spooled blob".into(),
            source: e,
        })? {
            return Ok(f);
        }
        let mut cur = self.current.lock().expect("lock");
        if let Some((_, p)) = cur.take() {
            let _ = std::fs::remove_file(p);
        }
        let path = self.spool.join(&d.digest_str[7..]);
        let io_err = |e: io::Error| Error::Io {
            what: format!("spool blob {} to {}", d.digest_str, path.display()),
            source: e,
        };
        let body = self.client.get_blob(&d.digest_str)?;
        let mut w = HashingWriter {
            inner: io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).map_err(io_err)?),
            sha: <sha2::Sha256 as sha2::Digest>::new(),
        };
        let copied = io::copy(&mut body.take(d.size + 1), &mut w).and_then(|n| w.inner.flush().map(|_| n));
        let n = match copied {
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(Error::Io {
                    what: format!("download blob {} from {}", d.digest_str, self.remote),
                    source: e,
                });
            }
        };
        let actual: [u8; 32] = sha2::Digest::finalize(w.sha).into();
        if actual != d.digest || n != d.size {
            let _ = std::fs::remove_file(&path);
            return Err(Error::BlobMismatch {
                digest: d.digest_str.clone(),
                remote: self.remote.clone(),
                actual: format_digest(&actual),
                size: n,
                expected_size: d.size,
            });
        }
        *cur = Some((d.digest, path.clone()));
        let mut f = self.fetched.lock().expect("lock");
        f.0 += 1;
        f.1 += n;
        std::fs::File::open(&path).map_err(io_err)
    }
}

struct HashingWriter<W> {
    inner: W,
    sha: sha2::Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        sha2::Digest::update(&mut self.sha, &b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A blob that is downloaded (into the spool) only when first read: the import opens blobs the
/// store already has just to learn they are still there.
struct LazyBlob<'s, 'c> {
    src: &'s RemoteSource<'c>,
    desc: Descriptor,
    file: Option<io::BufReader<std::fs::File>>,
}

impl Read for LazyBlob<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.file.is_none() {
            let f = self.src.fetch(&self.desc).map_err(|e| {
                let msg = e.to_string();
                *self.src.failure.lock().expect("lock") = Some(e);
                io::Error::other(msg)
            })?;
            self.file = Some(io::BufReader::with_capacity(256 * 1024, f));
        }
        self.file.as_mut().expect("opened above").read(buf)
    }
}

fn core_io(e: Error) -> shp_core::Error {
    match e {
        Error::Core(c) => c,
        other => shp_core::Error::Io(io::Error::other(other.to_string())),
    }
}

impl BlobSource for RemoteSource<'_> {
    fn open(&self, d: &Descriptor) -> shp_core::Result<Option<(Box<dyn Read + '_>, u64)>> {
        if d.digest == self.top.0 {
            return Ok(Some((Box::new(&self.top.1[..]), self.top.1.len() as u64)));
        }
        if d.is_index() || d.is_manifest() {
            let m = self.client.get_manifest(&d.digest_str).map_err(core_io)?;
            return Ok(m.map(|(b, _)| {
                let n = b.len() as u64;
                (Box::new(io::Cursor::new(b)) as Box<dyn Read>, n)
            }));
        }
        if let Some(f) = self.open_spooled(&d.digest)? {
            let n = f.metadata()?.len();
            return Ok(Some((Box::new(io::BufReader::with_capacity(256 * 1024, f)), n)));
        }
        let size = match self.client.head_blob(&d.digest_str, d.size).map_err(core_io)? {
            None => return Ok(None),
            Some(n) => n,
        };
        Ok(Some((
            Box::new(LazyBlob {
                src: self,
                desc: d.clone(),
                file: None,
            }),
            size,
        )))
    }
}

struct Counting<'p, R> {
    inner: R,
    progress: &'p dyn Fn(Progress),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(Progress::Bytes(n as u64));
        Ok(n)
    }
}

/// Sends the image `id` names (a name or root CID) to the registry repository `dest`, bit-exact:
/// the registry ends up with the original manifest bytes under `dest`'s tag (or digest).
/// Recipe layers are read through the home's rebuilt-blob cache ([`Home::blob_reader`]).
pub fn export(
    home: &std::sync::Arc<Home>,
    id: &str,
    dest: &RemoteRef,
    opts: &RemoteOptions,
    progress: &dyn Fn(Progress),
) -> Result<ExportReport, Error> {
    let store = home.store();
    let root = ImageRoot::load(store, &home.resolve(id)?)?;
    let blobs = root.blobs(store)?;
    let top = blobs.first().ok_or_else(|| Error::Registry {
        what: format!("image {id}"),
        reason: "it has no blobs".into(),
    })?;
    let top_digest = top.node.digest_str();
    if let Some(d) = &dest.digest {
        if *d != top_digest {
            return Err(Error::InvalidReference {
                reference: dest.to_string(),
                reason: format!("image {id} is {top_digest}, not {d}"),
            });
        }
    }
    let top_type = root
        .desc
        .get("mediaType")
        .and_then(|v| v.as_str())
        .unwrap_or(&top.media_type)
        .to_string();
    let client = Client::connect(dest, opts, true)?;
    progress(Progress::Planned {
        blobs: blobs.len(),
        bytes: blobs.iter().map(|b| b.node.size).sum(),
    });
    let known = mounts::load(home.dir());
    let prefix = format!("{}/", dest.registry);
    let mut out = Vec::new();
    for b in blobs.iter().filter(|b| b.doc.is_none()) {
        let digest = b.node.digest_str();
        progress(Progress::Blob {
            digest: digest.clone(),
            size: b.node.size,
        });
        let sent = if client.head_blob(&digest, b.node.size)?.is_some() {
            Sent::Present
        } else {
            let from = known.get(&digest).and_then(|repos| {
                repos
                    .iter()
                    .filter_map(|r| r.strip_prefix(&prefix))
                    .find(|r| *r != dest.repository)
            });
            match client.start_upload(&digest, from)? {
                Upload::Mounted => Sent::Mounted {
                    from: from.expect("mounted only when asked").to_string(),
                },
                Upload::Session(url) => {
                    let mut r = Counting {
                        inner: home.blob_reader(&b.node),
                        progress,
                    };
                    if b.node.size > opts.chunk_size {
                        let chunks = client.put_blob_chunked(url, &digest, b.node.size, opts.chunk_size, &mut r)?;
                        Sent::Uploaded { chunks }
                    } else {
                        client.put_blob(url, &digest, b.node.size, &mut r)?;
                        Sent::Uploaded { chunks: 0 }
                    }
                }
            }
        };
        if !matches!(sent, Sent::Uploaded { .. }) {
            progress(Progress::Bytes(b.node.size));
        }
        out.push(SentBlob {
            digest,
            size: b.node.size,
            media_type: b.media_type.clone(),
            sent,
        });
    }
    // Manifests: children (by digest) before their parents, the top (by tag) last.
    for b in blobs.iter().filter(|b| b.doc.is_some()).rev() {
        let digest = b.node.digest_str();
        progress(Progress::Blob {
            digest: digest.clone(),
            size: b.node.size,
        });
        let mut bytes = Vec::new();
        b.node
            .open(store)
            .take(MAX_MANIFEST + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::Source {
                what: format!("manifest {digest}"),
                source: shp_core::dag::unwrap_io(e),
            })?;
        let is_top = b.node.digest == top.node.digest;
        let (reference, media_type) = if is_top {
            (dest.tag.as_deref().unwrap_or(&top_digest), top_type.as_str())
        } else {
            (digest.as_str(), b.media_type.as_str())
        };
        let got = client.put_manifest(reference, media_type, &bytes)?;
        if let Some(g) = got.filter(|g| *g != digest) {
            return Err(Error::Registry {
                what: format!("PUT manifest {digest} to {dest}"),
                reason: format!("the registry stored it as {g}"),
            });
        }
        progress(Progress::Bytes(b.node.size));
        out.push(SentBlob {
            digest,
            size: b.node.size,
            media_type: media_type.to_string(),
            sent: Sent::Manifest,
        });
    }
    mounts::record(
        home.dir(),
        &dest.registry,
        &dest.repository,
        out.iter().map(|b| b.digest.as_str()),
    );
    Ok(ExportReport {
        root: root.cid,
        digest: top_digest,
        blobs: out,
    })
}

/// Where [`import`] and [`export`] remember which repositories hold which blobs.
pub fn mounts_file(home: &Path) -> PathBuf {
    mounts::path(home)
}
