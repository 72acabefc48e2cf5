//! The station as a pull-through registry mirror (`shp start --mirror HOST=URL`): the registry
//! answers manifest and blob requests for images it does not hold by fetching them from the
//! upstream registry, serves them while they arrive, and keeps them as shp's DAG.
//!
//! - **Which upstream**: containerd's `?ns=HOST` query parameter; else a first repository
//!   component naming a configured host (`/v2/quay.io/org/app/…`, what a registries.conf mirror
//!   `location = "STATION/quay.io"` sends); else the first `--mirror`. Docker Hub's spellings
//!   (`index.docker.io`, `registry-1.docker.io`) are `docker.io`.
//! - **Manifests**: by digest, served from `HOME/mirror` (see `state`) or fetched and checked
//!   against the digest. A tag is resolved against the upstream (a HEAD; a GET only for a digest
//!   not kept yet) unless the mirror confirmed it less than the tag TTL ago; while the upstream is
//!   unreachable, the last digest it gave is served (a warning is logged).
//! - **Blobs**: through the home's blob cache (`shp_core::cache`), whose single flight is the
//!   upstream fetch: concurrent requests for one blob share one upstream GET and read the bytes
//!   as they arrive, and every byte is checked against the digest before a reader sees its end (a
//!   wrong blob aborts every response and is never kept).
//! - **Into the DAG**: an image manifest served by GET starts a background import of the image
//!   (`Home::push_from`) that reads its blobs through the same cache, so it joins the clients'
//!   downloads instead of repeating them; the image is then named `HOST/REPO@DIGEST` (kept by gc;
//!   `shp rm` lets it go) and later requests are ordinary reads of the home.
//! - Writes through the mirror path (with `?ns=` or an upstream host prefix) are refused: the
//!   mirror is read-only. The station's own repositories keep their usual rules.

mod state;

pub use reqwest::Url;
pub use state::Manifest;

use crate::remote::{Client, RemoteOptions};
use sha2::{Digest, Sha256};
use shp_core::cache::Rebuild;
use shp_core::cid::format_digest;
use shp_core::image::{BlobSource, Progress};
use shp_core::oci::{Descriptor, DocKind, Document};
use shp_core::Home;
use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a tag resolved against the upstream is served without asking again, by default.
pub const DEFAULT_TAG_TTL: Duration = Duration::from_secs(300);
/// Upstream clients kept (one per upstream repository: tokens are per repository).
const MAX_CLIENTS: usize = 64;

/// One `--mirror HOST=URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The registry as image names spell it (`docker.io`, `quay.io`, `127.0.0.1:5001`).
    pub host: String,
    /// Where its API is served (`https://registry-1.docker.io`, `http://127.0.0.1:5001`).
    pub url: reqwest::Url,
}

/// Docker Hub's other spellings are `docker.io`.
fn canonical_host(h: &str) -> String {
    let h = h.to_ascii_lowercase();
    match h.as_str() {
        "index.docker.io" | "registry-1.docker.io" => shp_core::name::DOCKER_HUB.to_string(),
        _ => h,
    }
}

impl Upstream {
    /// Parses `HOST=URL` (`docker.io=https://registry-1.docker.io`). The URL is http or https,
    /// with no path, query or credentials.
    pub fn parse(s: &str) -> Result<Upstream, MirrorError> {
        let bad = |why: &str| MirrorError::Spec {
            spec: s.to_string(),
            reason: why.to_string(),
        };
        let (host, url) = s.split_once('=').ok_or_else(|| bad("expected HOST=URL, e.g. docker.io=https://registry-1.docker.io"))?;
        let host = host.trim();
        if host.is_empty() || host.contains('/') || host.chars().any(char::is_whitespace) {
            return Err(bad("HOST is a registry host name such as docker.io or quay.io (with :PORT if any)"));
        }
        let url = reqwest::Url::parse(url.trim()).map_err(|e| bad(&format!("URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad("URL must be http://HOST[:PORT] or https://HOST[:PORT]"));
        }
        if url.path() != "/" || url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(bad("URL takes no path, query or credentials (the registry's /v2/ is found at its root)"));
        }
        Ok(Upstream {
            host: canonical_host(host),
            url,
        })
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.host, self.url.as_str().trim_end_matches('/'))
    }
}

/// The mirror's settings.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    pub upstreams: Vec<Upstream>,
    pub tag_ttl: Duration,
}

/// Mirror errors; each names the upstream (and what was asked of it) where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    #[error("--mirror {spec:?}: {reason}")]
    Spec { spec: String, reason: String },
    #[error("no upstream is configured for {ns:?} (this mirror has: {have})")]
    NoUpstream { ns: String, have: String },
    #[error("{what}: not held here, and the upstream {upstream} has none")]
    NotFound { upstream: String, what: String },
    #[error("{what}: not held here, and the upstream {upstream} failed: {reason}")]
    Unavailable {
        upstream: String,
        what: String,
        reason: String,
    },
    #[error("{what}: the upstream {upstream} sent a manifest whose digest is {actual}: refused")]
    Mismatch {
        upstream: String,
        what: String,
        actual: String,
    },
    #[error("mirror state in {path}: {source}")]
    State { path: String, source: io::Error },
}

/// What the mirror did since the station started (for logs and `stats`).
#[derive(Debug, Default)]
pub struct MirrorCounters {
    /// Manifest requests sent to upstreams (HEAD and GET).
    pub upstream_manifests: AtomicU64,
    /// Blob GETs sent to upstreams.
    pub upstream_blobs: AtomicU64,
    /// Images imported into the DAG.
    pub imported: AtomicU64,
}

/// Where a request goes: upstream index and repository path there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub upstream: usize,
    pub repo: String,
}

pub struct Mirror {
    home: Arc<Home>,
    cfg: MirrorConfig,
    opts: RemoteOptions,
    state: state::State,
    clients: Mutex<HashMap<(usize, String), Arc<Client>>>,
    /// Blob sizes from the manifests served (saves a HEAD per blob).
    sizes: Mutex<HashMap<[u8; 32], u64>>,
    /// Image imports running (by manifest digest).
    importing: Mutex<HashSet<String>>,
    pub counters: Arc<MirrorCounters>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Mirror {
    pub fn new(home: Arc<Home>, cfg: MirrorConfig) -> Result<Arc<Mirror>, MirrorError> {
        let state = state::State::open(home.dir()).map_err(|source| MirrorError::State {
            path: home.dir().join("mirror").display().to_string(),
            source,
        })?;
        Ok(Arc::new(Mirror {
            home,
            cfg,
            opts: RemoteOptions {
                // A mirror answers a waiting client: fail over to an error (or a cached tag)
                // quickly rather than after the CLI's 30 s.
                connect_timeout: Duration::from_secs(5),
                read_timeout: Duration::from_secs(60),
                ..RemoteOptions::default()
            },
            state,
            clients: Mutex::new(HashMap::new()),
            sizes: Mutex::new(HashMap::new()),
            importing: Mutex::new(HashSet::new()),
            counters: Arc::default(),
        }))
    }

    pub fn config(&self) -> &MirrorConfig {
        &self.cfg
    }

    fn upstream(&self, t: &Target) -> &Upstream {
        &self.cfg.upstreams[t.upstream]
    }

    /// Whether a request is on the mirror path (and so may not write).
    pub fn is_mirror_path(&self, ns: Option<&str>, repo: &str) -> bool {
        ns.is_some() || self.prefixed(repo).is_some()
    }

    fn prefixed(&self, repo: &str) -> Option<(usize, String)> {
        let (first, rest) = repo.split_once('/')?;
        let first = canonical_host(first);
        self.cfg
            .upstreams
            .iter()
            .position(|u| u.host == first)
            .map(|i| (i, rest.to_string()))
    }

    /// Picks the upstream for a request (see the module docs).
    pub fn select(&self, ns: Option<&str>, repo: &str) -> Result<Target, MirrorError> {
        if let Some(ns) = ns {
            let host = canonical_host(ns);
            return match self.cfg.upstreams.iter().position(|u| u.host == host) {
                Some(i) => Ok(Target {
                    upstream: i,
                    repo: repo.to_string(),
                }),
                None => Err(MirrorError::NoUpstream {
                    ns: ns.to_string(),
                    have: self.cfg.upstreams.iter().map(|u| u.host.as_str()).collect::<Vec<_>>().join(", "),
                }),
            };
        }
        if let Some((i, rest)) = self.prefixed(repo) {
            return Ok(Target { upstream: i, repo: rest });
        }
        Ok(Target {
            upstream: 0,
            repo: repo.to_string(),
        })
    }

    /// The name the image gets in refs: `HOST/REPO@DIGEST`.
    fn ref_name(&self, t: &Target, digest: &str) -> String {
        format!("{}/{}@{digest}", self.upstream(t).host, t.repo)
    }

    fn client(&self, t: &Target) -> Result<Arc<Client>, crate::remote::Error> {
        let key = (t.upstream, t.repo.clone());
        if let Some(c) = lock(&self.clients).get(&key) {
            return Ok(c.clone());
        }
        let up = self.upstream(t);
        let c = Arc::new(Client::connect_url(up.url.clone(), &up.host, &t.repo, &self.opts)?);
        let mut clients = lock(&self.clients);
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(key, c.clone());
        Ok(c)
    }

    fn unavailable(&self, t: &Target, what: &str, e: impl std::fmt::Display) -> MirrorError {
        MirrorError::Unavailable {
            upstream: self.upstream(t).to_string(),
            what: what.to_string(),
            reason: e.to_string(),
        }
    }

    fn not_found(&self, t: &Target, what: &str) -> MirrorError {
        MirrorError::NotFound {
            upstream: self.upstream(t).to_string(),
            what: what.to_string(),
        }
    }

    fn state_err(&self, source: io::Error) -> MirrorError {
        MirrorError::State {
            path: self.home.dir().join("mirror").display().to_string(),
            source,
        }
    }

    /// A manifest by tag or digest (see the module docs). `get`: the client will read it (a HEAD
    /// does not start an import).
    pub fn manifest(self: &Arc<Self>, t: &Target, reference: &str, get: bool) -> Result<Manifest, MirrorError> {
        let what = format!("manifest {}:{reference}", t.repo);
        let m = if crate::registry::paths::is_digest(reference) {
            match self.state.manifest(reference) {
                Some(m) => m,
                None => self.fetch_manifest(t, reference, &what)?,
            }
        } else {
            self.resolve_tag(t, reference, &what)?
        };
        self.note(t, &m, get);
        Ok(m)
    }

    fn resolve_tag(&self, t: &Target, tag: &str, what: &str) -> Result<Manifest, MirrorError> {
        let key = format!("{}/{}:{tag}", self.upstream(t).host, t.repo);
        let cached = self
            .state
            .tag(&key)
            .and_then(|e| self.state.manifest(&e.digest).map(|m| (e.fetched, m)));
        if let Some((fetched, m)) = &cached {
            if state::now_secs().saturating_sub(*fetched) < self.cfg.tag_ttl.as_secs() {
                return Ok(m.clone());
            }
        }
        let asked = (|| -> Result<Option<Manifest>, MirrorError> {
            let c = self.client(t).map_err(|e| self.unavailable(t, what, e))?;
            self.counters.upstream_manifests.fetch_add(1, Ordering::Relaxed);
            let head = c.head_manifest(tag).map_err(|e| self.unavailable(t, what, e))?;
            let Some((digest, _)) = head else { return Ok(None) };
            if let Some(m) = digest.as_deref().and_then(|d| self.state.manifest(d)) {
                return Ok(Some(m));
            }
            self.counters.upstream_manifests.fetch_add(1, Ordering::Relaxed);
            let got = c.get_manifest(tag).map_err(|e| self.unavailable(t, what, e))?;
            let Some((bytes, ct)) = got else { return Ok(None) };
            let m = self.checked(t, bytes, ct, None, what)?;
            self.state.put_manifest(&m).map_err(|e| self.state_err(e))?;
            Ok(Some(m))
        })();
        match asked {
            Ok(Some(m)) => {
                self.state.set_tag(&key, &m.digest).map_err(|e| self.state_err(e))?;
                Ok(m)
            }
            Ok(None) => {
                self.state.drop_tag(&key).map_err(|e| self.state_err(e))?;
                Err(self.not_found(t, what))
            }
            Err(e @ MirrorError::Unavailable { .. }) => match cached {
                Some((fetched, m)) => {
                    tracing::warn!(
                        tag = %key,
                        digest = %m.digest,
                        age_secs = state::now_secs().saturating_sub(fetched),
                        "serving a cached tag: {e}"
                    );
                    Ok(m)
                }
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    fn fetch_manifest(&self, t: &Target, digest: &str, what: &str) -> Result<Manifest, MirrorError> {
        let c = self.client(t).map_err(|e| self.unavailable(t, what, e))?;
        self.counters.upstream_manifests.fetch_add(1, Ordering::Relaxed);
        let got = c.get_manifest(digest).map_err(|e| self.unavailable(t, what, e))?;
        let Some((bytes, ct)) = got else {
            return Err(self.not_found(t, what));
        };
        let m = self.checked(t, bytes, ct, Some(digest), what)?;
        self.state.put_manifest(&m).map_err(|e| self.state_err(e))?;
        Ok(m)
    }

    /// The manifest an upstream sent, checked: its digest (against `expect`), that it parses, and
    /// its media type (the upstream's Content-Type when it is a manifest type, else the document's).
    fn checked(
        &self,
        t: &Target,
        bytes: Vec<u8>,
        content_type: String,
        expect: Option<&str>,
        what: &str,
    ) -> Result<Manifest, MirrorError> {
        let digest = format_digest(&Sha256::digest(&bytes).into());
        if let Some(e) = expect {
            if e != digest {
                return Err(MirrorError::Mismatch {
                    upstream: self.upstream(t).to_string(),
                    what: what.to_string(),
                    actual: digest,
                });
            }
        }
        let doc = Document::parse(&bytes, what).map_err(|e| self.unavailable(t, what, e))?;
        let media_type = if crate::remote::is_manifest_type(&content_type) {
            content_type
        } else if !doc.media_type.is_empty() {
            doc.media_type.clone()
        } else {
            return Err(self.unavailable(
                t,
                what,
                format!("unknown manifest type {content_type:?} and no mediaType in the document"),
            ));
        };
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Learns the blob sizes of a manifest served; a GET of an image manifest starts its import.
    fn note(self: &Arc<Self>, t: &Target, m: &Manifest, get: bool) {
        let Ok(doc) = Document::parse(&m.bytes, "a kept manifest") else { return };
        {
            let mut sizes = lock(&self.sizes);
            if sizes.len() > 100_000 {
                sizes.clear();
            }
            for d in doc.config.iter().chain(&doc.layers) {
                sizes.insert(d.digest, d.size);
            }
        }
        if get && doc.kind != DocKind::Index {
            self.start_import(t, m.clone());
        }
    }

    /// The size of a blob the upstream has (None: it has none).
    pub fn blob_size(&self, t: &Target, digest: &str) -> Result<Option<u64>, MirrorError> {
        let d = shp_core::cid::parse_digest(digest).map_err(|e| self.unavailable(t, digest, e))?;
        if let Some(n) = lock(&self.sizes).get(&d) {
            return Ok(Some(*n));
        }
        let what = format!("blob {digest} in {}", t.repo);
        let c = self.client(t).map_err(|e| self.unavailable(t, &what, e))?;
        c.head_blob(digest, 0).map_err(|e| self.unavailable(t, &what, e))
    }

    /// A blob from byte `offset` on, through the blob cache: a cached copy, the upstream GET in
    /// flight, or a new one that the next readers share. The reader's end of file means the whole
    /// blob's sha256 was proven.
    pub fn open_blob(&self, t: &Target, digest: [u8; 32], size: u64, offset: u64) -> Box<dyn Read + Send> {
        let digest_str = format_digest(&digest);
        let what = format!("blob {digest_str} from {}", self.upstream(t));
        let client = self.client(t).map_err(|e| e.to_string());
        let counters = self.counters.clone();
        let rebuild: Rebuild = Arc::new(move || -> Box<dyn Read + Send> {
            let c = match &client {
                Ok(c) => c.clone(),
                Err(e) => return failing(format!("{what}: {e}")),
            };
            counters.upstream_blobs.fetch_add(1, Ordering::Relaxed);
            match c.get_blob(&digest_str) {
                Ok(body) => Box::new(Named {
                    inner: shp_core::blob::verified(body, digest, size),
                    what: what.clone(),
                }),
                Err(e) => failing(format!("{what}: {e}")),
            }
        });
        self.home.blob_cache().read_at(&digest, size, offset, rebuild)
    }

    /// Imports the image `m` is the manifest of, in the background, unless it is held already or
    /// being imported.
    fn start_import(self: &Arc<Self>, t: &Target, m: Manifest) {
        let name = self.ref_name(t, &m.digest);
        if self.home.resolve(&name).is_ok() || !lock(&self.importing).insert(m.digest.clone()) {
            return;
        }
        let (mirror, t) = (self.clone(), t.clone());
        let spawned = std::thread::Builder::new().name("shp-mirror-import".into()).spawn(move || {
            let res = mirror.import(&t, &m, &name);
            lock(&mirror.importing).remove(&m.digest);
            match res {
                Ok(root) => {
                    mirror.counters.imported.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%name, %root, "mirrored image imported");
                }
                Err(e) => tracing::warn!(%name, "mirrored image not imported (the next pull tries again): {e}"),
            }
        });
        if spawned.is_err() {
            tracing::warn!("mirror: could not start an import thread");
        }
    }

    fn import(&self, t: &Target, m: &Manifest, name: &str) -> Result<shp_core::Cid, shp_core::Error> {
        let top = Descriptor::parse(
            &serde_json::json!({"mediaType": m.media_type, "digest": m.digest, "size": m.bytes.len()}),
            "the manifest",
        )?;
        let src = MirrorSource { mirror: self, t, top: m };
        let report = self.home.push_from(&src, &top, Some(name), &|_: Progress| {})?;
        Ok(report.import.root)
    }
}

/// The upstream as the source of one image's import.
struct MirrorSource<'a> {
    mirror: &'a Mirror,
    t: &'a Target,
    top: &'a Manifest,
}

impl BlobSource for MirrorSource<'_> {
    fn open(&self, d: &Descriptor) -> shp_core::Result<Option<(Box<dyn Read + '_>, u64)>> {
        if d.digest_str == self.top.digest {
            return Ok(Some((Box::new(&self.top.bytes[..]), self.top.bytes.len() as u64)));
        }
        if d.is_index() || d.is_manifest() {
            let what = format!("manifest {}@{}", self.t.repo, d.digest_str);
            let m = match self.mirror.state.manifest(&d.digest_str) {
                Some(m) => m,
                None => self
                    .mirror
                    .fetch_manifest(self.t, &d.digest_str, &what)
                    .map_err(|e| shp_core::Error::Io(io::Error::other(e.to_string())))?,
            };
            let n = m.bytes.len() as u64;
            return Ok(Some((Box::new(io::Cursor::new(m.bytes)), n)));
        }
        // Opened lazily: the import opens blobs the store holds only to learn their size.
        let (mirror, t, digest, size) = (self.mirror, self.t, d.digest, d.size);
        Ok(Some((
            Box::new(Lazy {
                open: Some(Box::new(move || mirror.open_blob(t, digest, size, 0))),
                inner: None,
            }),
            d.size,
        )))
    }
}

type Opener<'a> = Box<dyn FnOnce() -> Box<dyn Read + Send> + 'a>;

struct Lazy<'a> {
    open: Option<Opener<'a>>,
    inner: Option<Box<dyn Read + Send>>,
}

impl Read for Lazy<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inner.is_none() {
            let open = self.open.take().expect("opened once");
            self.inner = Some(open());
        }
        self.inner.as_mut().expect("opened above").read(buf)
    }
}

/// A reader whose first read fails with `msg`.
fn failing(msg: String) -> Box<dyn Read + Send> {
    struct Failing(String);
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other(self.0.clone()))
        }
    }
    Box::new(Failing(msg))
}

/// Errors of `inner` prefixed with what is being read (the upstream and the blob).
struct Named<R> {
    inner: R,
    what: String,
}

impl<R: Read> Read for Named<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {}", self.what, shp_core::dag::unwrap_io(e))))
    }
}

/// Reads `--mirror` specs (flags, else station.json's list).
pub fn parse_upstreams(specs: &[String]) -> Result<Vec<Upstream>, MirrorError> {
    let ups = specs.iter().map(|s| Upstream::parse(s)).collect::<Result<Vec<_>, _>>()?;
    for (i, u) in ups.iter().enumerate() {
        if ups[..i].iter().any(|v| v.host == u.host) {
            return Err(MirrorError::Spec {
                spec: u.to_string(),
                reason: format!("{} is given twice", u.host),
            });
        }
    }
    Ok(ups)
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_specs() {
        let u = Upstream::parse("docker.io=https://registry-1.docker.io").unwrap();
        assert_eq!(u.host, "docker.io");
        assert_eq!(u.url.as_str(), "https://registry-1.docker.io/");
        assert_eq!(u.to_string(), "docker.io=https://registry-1.docker.io");
        assert_eq!(Upstream::parse("index.docker.io=http://127.0.0.1:5001").unwrap().host, "docker.io");
        assert_eq!(Upstream::parse("Quay.IO=https://quay.io").unwrap().host, "quay.io");
        for bad in [
            "docker.io",
            "=https://x",
            "a/b=https://x",
            "docker.io=ftp://x",
            "docker.io=https://x/v2",
            "docker.io=https://u:p@x",
            "docker.io=not a url",
        ] {
            let e = Upstream::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
        let e = parse_upstreams(&["docker.io=http://a".into(), "index.docker.io=http://b".into()]).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }
}
