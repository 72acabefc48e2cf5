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

mod network;
mod state;

pub use network::Network;

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
use std::time::{Duration, Instant};

/// How long a tag resolved against the upstream is served without asking again, by default.
pub const DEFAULT_TAG_TTL: Duration = Duration::from_secs(300);
/// Upstream clients kept (one per upstream repository: tokens are per repository).
const MAX_CLIENTS: usize = 64;
/// How long a peer that failed is left out.
const BENCH: Duration = Duration::from_secs(60);

/// Where content comes from: a peer station (by index) or the target's upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    Peer(usize),
    Upstream(usize),
}

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
        let (host, url) = s
            .split_once('=')
            .ok_or_else(|| bad("expected HOST=URL, e.g. docker.io=https://registry-1.docker.io"))?;
        let host = host.trim();
        if host.is_empty() || host.contains('/') || host.chars().any(char::is_whitespace) {
            return Err(bad(
                "HOST is a registry host name such as docker.io or quay.io (with :PORT if any)",
            ));
        }
        let url = reqwest::Url::parse(url.trim()).map_err(|e| bad(&format!("URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad("URL must be http://HOST[:PORT] or https://HOST[:PORT]"));
        }
        if url.path() != "/" || url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "URL takes no path, query or credentials (the registry's /v2/ is found at its root)",
            ));
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
    /// Other stations (`http://HOST:PORT`) asked for content before the upstream.
    pub peers: Vec<Url>,
    /// Images the mirror made and nobody pulled for this long lose their names (then `shp gc`
    /// reclaims what nothing else uses); zero: kept for ever.
    pub keep: Duration,
    /// Credentials for the upstreams: a containers auth.json or docker config.json, looked up by
    /// each upstream's HOST (Basic, or the token service's login).
    pub authfile: Option<std::path::PathBuf>,
}

/// How long an image pulled through the mirror stays named after its last pull, by default.
pub const DEFAULT_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the names are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

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
    /// Blob GETs peers answered.
    pub peer_blobs: AtomicU64,
    /// Images imported into the DAG.
    pub imported: AtomicU64,
    /// Images fetched as DAGs from libp2p peers.
    pub network_images: AtomicU64,
}

/// Where a request goes: upstream index and repository path there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub upstream: usize,
    pub repo: String,
    /// The request came from another station's mirror ([`HOP_HEADER`]): peers are not asked
    /// again, so two stations that are each other's peers never wait on each other.
    pub hop: bool,
}

/// The header a mirror sends to its peers.
pub const HOP_HEADER: &str = "x-shp-mirror-hop";
/// The header a station's registry answers a top manifest with: the root CID of the image it
/// holds, so that a mirror peer can fetch the DAG (only the blocks it lacks) instead of the blobs.
pub const ROOT_HEADER: &str = "x-shp-root";

pub struct Mirror {
    home: Arc<Home>,
    cfg: MirrorConfig,
    opts: RemoteOptions,
    state: state::State,
    clients: Mutex<HashMap<(Source, String), Arc<Client>>>,
    /// Peers that failed (unreachable, wrong bytes) are skipped until then.
    benched: Mutex<HashMap<usize, Instant>>,
    /// Blob sizes from the manifests served (saves a HEAD per blob).
    sizes: Mutex<HashMap<[u8; 32], u64>>,
    /// Image imports running (by manifest digest).
    importing: Mutex<HashSet<String>>,
    /// Manifests a peer holds as an image: digest → (peer, root CID).
    roots: Mutex<HashMap<String, (usize, shp_core::Cid)>>,
    /// The station's libp2p host, when it runs one: images are looked for among its peers.
    net: Option<Network>,
    pub counters: Arc<MirrorCounters>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Mirror {
    /// The mirror of `home`; with `net`, manifests by digest are also looked for among the
    /// libp2p peers (after the HTTP peers, before the upstream).
    pub fn new(home: Arc<Home>, cfg: MirrorConfig, net: Option<Network>) -> Result<Arc<Mirror>, MirrorError> {
        let state = state::State::open(home.dir()).map_err(|source| MirrorError::State {
            path: home.dir().join("mirror").display().to_string(),
            source,
        })?;
        let authfile = cfg.authfile.clone();
        Ok(Arc::new(Mirror {
            home,
            cfg,
            opts: RemoteOptions {
                // A mirror answers a waiting client: fail over to an error (or a cached tag)
                // quickly rather than after the CLI's 30 s.
                connect_timeout: Duration::from_secs(5),
                read_timeout: Duration::from_secs(60),
                authfile,
                ..RemoteOptions::default()
            },
            state,
            clients: Mutex::new(HashMap::new()),
            benched: Mutex::new(HashMap::new()),
            sizes: Mutex::new(HashMap::new()),
            importing: Mutex::new(HashSet::new()),
            roots: Mutex::new(HashMap::new()),
            net,
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
    pub fn select(&self, ns: Option<&str>, repo: &str, hop: bool) -> Result<Target, MirrorError> {
        if let Some(ns) = ns {
            let host = canonical_host(ns);
            return match self.cfg.upstreams.iter().position(|u| u.host == host) {
                Some(i) => Ok(Target {
                    upstream: i,
                    repo: repo.to_string(),
                    hop,
                }),
                None => Err(MirrorError::NoUpstream {
                    ns: ns.to_string(),
                    have: self
                        .cfg
                        .upstreams
                        .iter()
                        .map(|u| u.host.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            };
        }
        if let Some((i, rest)) = self.prefixed(repo) {
            return Ok(Target {
                upstream: i,
                repo: rest,
                hop,
            });
        }
        Ok(Target {
            upstream: 0,
            repo: repo.to_string(),
            hop,
        })
    }

    /// The name the image gets in refs: `HOST/REPO@DIGEST`.
    /// The key of a tag in the mirror's state and on the network: `HOST/REPO:TAG`.
    fn tag_key(&self, t: &Target, tag: &str) -> String {
        format!("{}/{}:{tag}", self.upstream(t).host, t.repo)
    }

    fn ref_name(&self, t: &Target, digest: &str) -> String {
        format!("{}/{}@{digest}", self.upstream(t).host, t.repo)
    }

    fn client(&self, t: &Target) -> Result<Arc<Client>, crate::remote::Error> {
        self.client_of(Source::Upstream(t.upstream), t)
    }

    /// A client for the target's repository at `src`. A peer station is asked with the upstream
    /// host as the repository's first component (`/v2/docker.io/library/app/…`): it answers from
    /// what it holds, or as a mirror itself.
    fn client_of(&self, src: Source, t: &Target) -> Result<Arc<Client>, crate::remote::Error> {
        let key = (src, t.repo.clone());
        if let Some(c) = lock(&self.clients).get(&key) {
            return Ok(c.clone());
        }
        let up = self.upstream(t);
        let c = match src {
            Source::Upstream(_) => Client::connect_url(up.url.clone(), &up.host, &t.repo, &self.opts)?,
            Source::Peer(i) => {
                let peer = &self.cfg.peers[i];
                // Peers are stations: the upstreams' credentials are not theirs to see.
                let opts = RemoteOptions {
                    connect_timeout: Duration::from_secs(2),
                    authfile: None,
                    ..self.opts.clone()
                };
                Client::connect_url(peer.clone(), peer.as_str(), &format!("{}/{}", up.host, t.repo), &opts)?
                    .with_header(HOP_HEADER, "1")
            }
        };
        let c = Arc::new(c);
        let mut clients = lock(&self.clients);
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        // Another thread may have connected meanwhile: one client per key.
        Ok(clients.entry(key).or_insert(c).clone())
    }

    /// The peers not benched, in configured order (none for a request from a peer).
    fn live_peers(&self, t: &Target) -> Vec<usize> {
        if t.hop {
            return Vec::new();
        }
        let now = Instant::now();
        let benched = lock(&self.benched);
        (0..self.cfg.peers.len())
            .filter(|i| benched.get(i).is_none_or(|until| *until <= now))
            .collect()
    }

    /// A peer's answer failed: a peer that cannot be reached (or talks nonsense) is benched; one
    /// that only lacks the content (404, or a 5xx of its own upstream) is not.
    fn peer_failed(&self, peer: usize, e: crate::remote::Error) {
        match e {
            crate::remote::Error::NotFound(_) | crate::remote::Error::Registry { .. } => {
                tracing::debug!(peer = %self.cfg.peers[peer], "mirror peer has none: {e}")
            }
            e => self.bench(peer, e),
        }
    }

    fn bench(&self, peer: usize, why: impl std::fmt::Display) {
        tracing::warn!(peer = %self.cfg.peers[peer], "mirror peer left out for {} s: {why}", BENCH.as_secs());
        lock(&self.benched).insert(peer, Instant::now() + BENCH);
    }

    /// A manifest by digest from the first peer that has it (checked against the digest).
    fn manifest_from_peers(&self, t: &Target, digest: &str, what: &str) -> Option<Manifest> {
        for i in self.live_peers(t) {
            let got = self
                .client_of(Source::Peer(i), t)
                .and_then(|c| c.get_manifest_with(digest, ROOT_HEADER));
            match got {
                Ok(Some((bytes, ct, root))) => match self.checked(t, bytes, ct, Some(digest), what) {
                    Ok(m) => {
                        if let Some(root) = root.and_then(|r| r.parse::<shp_core::Cid>().ok()) {
                            lock(&self.roots).insert(m.digest.clone(), (i, root));
                        }
                        return Some(m);
                    }
                    Err(e) => self.bench(i, e),
                },
                Ok(None) => {}
                Err(e) => self.peer_failed(i, e),
            }
        }
        self.manifest_from_network(t, digest, what)
    }

    /// What the peers say a tag is (asked only while the upstream cannot be reached).
    fn tag_from_peers(&self, t: &Target, tag: &str, what: &str) -> Option<Manifest> {
        for i in self.live_peers(t) {
            let head = self.client_of(Source::Peer(i), t).and_then(|c| c.head_manifest(tag));
            match head {
                Ok(Some((Some(d), _))) if crate::registry::paths::is_digest(&d) => {
                    if let Some(m) = self
                        .state
                        .manifest(&d)
                        .or_else(|| self.manifest_from_peers(t, &d, what))
                    {
                        return Some(m);
                    }
                }
                Ok(_) => {}
                Err(e) => self.peer_failed(i, e),
            }
        }
        self.tag_from_network(t, tag, what)
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
        let key = self.tag_key(t, tag);
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
            if let Some(d) = digest.as_deref().filter(|d| crate::registry::paths::is_digest(d)) {
                // Content by digest: kept here, else from the peers first, else the upstream.
                return match self.state.manifest(d) {
                    Some(m) => Ok(Some(m)),
                    None => self.fetch_manifest(t, d, what).map(Some),
                };
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
            Err(e @ MirrorError::Unavailable { .. }) => match self.tag_from_peers(t, tag, what) {
                Some(m) => {
                    tracing::warn!(tag = %key, digest = %m.digest, "tag resolved by a peer: {e}");
                    self.state.put_manifest(&m).map_err(|e| self.state_err(e))?;
                    Ok(m)
                }
                None => match cached {
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
            },
            Err(e) => Err(e),
        }
    }

    fn fetch_manifest(&self, t: &Target, digest: &str, what: &str) -> Result<Manifest, MirrorError> {
        if let Some(m) = self.manifest_from_peers(t, digest, what) {
            self.state.put_manifest(&m).map_err(|e| self.state_err(e))?;
            return Ok(m);
        }
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
        let Ok(doc) = Document::parse(&m.bytes, "a kept manifest") else {
            return;
        };
        {
            let mut sizes = lock(&self.sizes);
            if sizes.len() > 100_000 {
                sizes.clear();
            }
            for d in doc.config.iter().chain(&doc.layers) {
                sizes.insert(d.digest, d.size);
            }
        }
        if doc.kind != DocKind::Index {
            if let Err(e) = self.state.touch(&self.ref_name(t, &m.digest)) {
                tracing::warn!("mirror state: {e}");
            }
            if get {
                self.fetch_dag(t, &m.digest);
                self.start_import(t, m.clone());
            }
        }
    }

    /// The size of a blob the upstream has (None: it has none).
    pub fn blob_size(&self, t: &Target, digest: &str) -> Result<Option<u64>, MirrorError> {
        let d = shp_core::cid::parse_digest(digest).map_err(|e| self.unavailable(t, digest, e))?;
        if let Some(n) = lock(&self.sizes).get(&d) {
            return Ok(Some(*n));
        }
        let what = format!("blob {digest} in {}", t.repo);
        for i in self.live_peers(t) {
            match self.client_of(Source::Peer(i), t).and_then(|c| c.head_blob(digest, 0)) {
                Ok(Some(n)) if n > 0 => return Ok(Some(n)),
                Ok(_) => {}
                Err(e) => self.peer_failed(i, e),
            }
        }
        let c = self.client(t).map_err(|e| self.unavailable(t, &what, e))?;
        c.head_blob(digest, 0).map_err(|e| self.unavailable(t, &what, e))
    }

    /// A blob from byte `offset` on, through the blob cache: a cached copy, the upstream GET in
    /// flight, or a new one that the next readers share. The reader's end of file means the whole
    /// blob's sha256 was proven.
    pub fn open_blob(self: &Arc<Self>, t: &Target, digest: [u8; 32], size: u64, offset: u64) -> Box<dyn Read + Send> {
        if t.hop {
            // A peer's request does not join this station's downloads: one of those may be
            // waiting on that very peer (two stations that are each other's peers).
            let r = match self.home.blob_cache().open(&digest, size) {
                Some(r) => r,
                None => self.fetch_blob(t, digest, size),
            };
            return skip(r, offset);
        }
        let (mirror, t2) = (self.clone(), t.clone());
        let rebuild: Rebuild = Arc::new(move || mirror.fetch_blob(&t2, digest, size));
        self.home.blob_cache().read_at(&digest, size, offset, rebuild)
    }

    /// One fetch of a whole blob: from the first live peer that starts sending it, else from the
    /// upstream; verified at its end (a peer whose bytes are wrong is benched).
    fn fetch_blob(self: &Arc<Self>, t: &Target, digest: [u8; 32], size: u64) -> Box<dyn Read + Send> {
        let digest_str = format_digest(&digest);
        for i in self.live_peers(t) {
            let got = self
                .client_of(Source::Peer(i), t)
                .and_then(|c| c.get_blob(&digest_str).map(|b| (c, b)));
            match got {
                Ok((client, body)) => {
                    self.counters.peer_blobs.fetch_add(1, Ordering::Relaxed);
                    return Box::new(Named {
                        inner: shp_core::blob::verified(body, digest, size),
                        what: format!("blob {digest_str} from the peer {}", self.cfg.peers[i]),
                        on_error: Some((self.clone(), i)),
                        _client: client,
                    });
                }
                Err(e) => self.peer_failed(i, e),
            }
        }
        let what = format!("blob {digest_str} from {}", self.upstream(t));
        let c = match self.client(t) {
            Ok(c) => c,
            Err(e) => return failing(format!("{what}: {e}")),
        };
        self.counters.upstream_blobs.fetch_add(1, Ordering::Relaxed);
        match c.get_blob(&digest_str) {
            Ok(body) => Box::new(Named {
                inner: shp_core::blob::verified(body, digest, size),
                what,
                on_error: None,
                _client: c,
            }),
            Err(e) => failing(format!("{what}: {e}")),
        }
    }

    /// Imports the image `m` is the manifest of, in the background, unless it is held already or
    /// being imported.
    fn start_import(self: &Arc<Self>, t: &Target, m: Manifest) {
        let name = self.ref_name(t, &m.digest);
        if self.home.resolve(&name).is_ok() || !lock(&self.importing).insert(m.digest.clone()) {
            return;
        }
        let (mirror, t) = (self.clone(), t.clone());
        let spawned = std::thread::Builder::new()
            .name("shp-mirror-import".into())
            .spawn(move || {
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

    /// When a peer holds this manifest's image as a DAG: fetches that DAG from it (only the blocks
    /// the home lacks, each verified against its CID), checks that the image's top manifest is the
    /// one asked for, and names it — before the client gets the manifest, so its blob requests are
    /// served from the home. Anything wrong is logged, and the blobs come the ordinary way.
    fn fetch_dag(&self, t: &Target, digest: &str) {
        let name = self.ref_name(t, digest);
        let Some((peer, root)) = lock(&self.roots).remove(digest) else {
            return;
        };
        if self.home.resolve(&name).is_ok() {
            return;
        }
        let url = &self.cfg.peers[peer];
        let res = (|| -> Result<crate::transport::FetchReport, String> {
            let http = crate::transport::HttpTransport::new(url.as_str()).map_err(|e| e.to_string())?;
            let opts = crate::transport::FetchOptions {
                base: self.previous_version(&name),
                ..Default::default()
            };
            let report = crate::transport::fetch_into_home(&self.home, &root, &[&http], None, opts)
                .map_err(|e| e.to_string())?;
            self.adopt(&root, digest, &name)?;
            Ok(report)
        })();
        match res {
            Ok(r) => tracing::info!(
                %name,
                peer = %url,
                blocks_fetched = r.blocks_fetched,
                blocks_delta = r.blocks_delta,
                bytes_fetched = r.bytes_fetched,
                blocks_present = r.blocks_present,
                "mirrored image's DAG fetched from a peer"
            ),
            Err(e) => self.bench(peer, format!("the DAG of {name}: {e}")),
        }
    }

    /// The image of `name`'s repository this home holds that an update to `name` most likely
    /// replaces: the one this mirror served last, else the last by name. Its blocks are the delta
    /// bases of the fetch.
    fn previous_version(&self, name: &str) -> Option<shp_core::Cid> {
        let refs = shp_core::refs::RefsFile::new(self.home.dir()).load().ok()?;
        refs.of_repository(name)
            .into_iter()
            .filter(|(n, _)| *n != name)
            .max_by_key(|(n, _)| self.state.last_used(n).unwrap_or(0))
            .and_then(|(_, root)| root.parse().ok())
    }

    /// A DAG fetched (pinned) from a peer becomes the mirrored image `name` when its top manifest
    /// is `digest`; either way the fetch's pin goes.
    fn adopt(&self, root: &shp_core::Cid, digest: &str, name: &str) -> Result<(), String> {
        let top = shp_core::image::ImageRoot::load(self.home.store(), root)
            .and_then(|img| img.blobs(self.home.store()))
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|b| b.parent.is_none())
            .map(|b| b.node.digest_str());
        let root_s = root.to_string();
        let matches = top.as_deref() == Some(digest);
        shp_core::refs::RefsFile::new(self.home.dir())
            .update(|r| {
                r.pins.remove(&root_s);
                if matches {
                    r.set_name(name, root_s.clone());
                }
                Ok(())
            })
            .map_err(|e| e.to_string())?;
        if !matches {
            return Err(format!("its root {root} is the image of {top:?}, not of {digest}"));
        }
        Ok(())
    }

    /// Takes the names of mirrored images unused for the keep time away (see [`MirrorConfig::keep`]).
    /// Returns the names removed.
    pub fn sweep(&self) -> Result<Vec<String>, MirrorError> {
        if self.cfg.keep.is_zero() {
            return Ok(Vec::new());
        }
        let mut gone = Vec::new();
        for name in self.state.unused_for(self.cfg.keep.as_secs()) {
            self.home
                .remove(&name)
                .map_err(|e| self.state_err(io::Error::other(e.to_string())))?;
            self.state.forget(&name).map_err(|e| self.state_err(e))?;
            gone.push(name);
        }
        if !gone.is_empty() {
            tracing::info!(
                names = gone.len(),
                "mirrored images unused for the keep time lost their names (shp gc reclaims them)"
            );
        }
        Ok(gone)
    }

    /// Sweeps at start and every hour (until the task is dropped).
    pub async fn sweep_every_hour(self: Arc<Self>) {
        loop {
            let m = self.clone();
            match tokio::task::spawn_blocking(move || m.sweep()).await {
                Ok(Err(e)) => tracing::warn!("mirror sweep: {e}"),
                Err(e) => tracing::warn!("mirror sweep task: {e}"),
                Ok(Ok(_)) => {}
            }
            tokio::time::sleep(SWEEP_EVERY).await;
        }
    }

    fn import(self: &Arc<Self>, t: &Target, m: &Manifest, name: &str) -> Result<shp_core::Cid, shp_core::Error> {
        let top = Descriptor::parse(
            &serde_json::json!({"mediaType": m.media_type, "digest": m.digest, "size": m.bytes.len()}),
            "the manifest",
        )?;
        let src = MirrorSource {
            mirror: self,
            t,
            top: m,
        };
        let report = self.home.push_from(&src, &top, Some(name), &|_: Progress| {})?;
        Ok(report.import.root)
    }
}

/// The upstream as the source of one image's import.
struct MirrorSource<'a> {
    mirror: &'a Arc<Mirror>,
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

/// `r` from byte `n` on.
fn skip(mut r: Box<dyn Read + Send>, n: u64) -> Box<dyn Read + Send> {
    if n == 0 {
        return r;
    }
    match io::copy(&mut (&mut r).take(n), &mut io::sink()) {
        Ok(k) if k == n => r,
        Ok(_) => failing(format!("the blob ended before byte {n}")),
        Err(e) => failing(e.to_string()),
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

/// Errors of `inner` prefixed with what is being read (the source and the blob); an error from a
/// peer benches it.
struct Named<R> {
    inner: R,
    what: String,
    on_error: Option<(Arc<Mirror>, usize)>,
    /// The client whose runtime carries the body: kept while it is read.
    _client: Arc<Client>,
}

impl<R: Read> Read for Named<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let msg = format!("{}: {}", self.what, shp_core::dag::unwrap_io(e));
            if let Some((m, i)) = self.on_error.take() {
                m.bench(i, &msg);
            }
            io::Error::other(msg)
        })
    }
}

/// Reads `--mirror-peer` URLs: stations at `http(s)://HOST[:PORT]`.
pub fn parse_peers(urls: &[String]) -> Result<Vec<Url>, MirrorError> {
    urls.iter()
        .map(|s| {
            let bad = |why: String| MirrorError::Spec {
                spec: s.clone(),
                reason: why,
            };
            let u = Url::parse(s.trim()).map_err(|e| bad(format!("a peer is a station URL, http://HOST:PORT: {e}")))?;
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() || u.path() != "/" {
                return Err(bad("a peer is a station URL, http://HOST:PORT (no path)".into()));
            }
            Ok(u)
        })
        .collect()
}

/// Reads `--mirror` specs (flags, else station.json's list).
pub fn parse_upstreams(specs: &[String]) -> Result<Vec<Upstream>, MirrorError> {
    let ups = specs
        .iter()
        .map(|s| Upstream::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
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
        assert_eq!(
            Upstream::parse("index.docker.io=http://127.0.0.1:5001").unwrap().host,
            "docker.io"
        );
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
        assert_eq!(
            parse_peers(&["http://10.0.0.2:5000".into()]).unwrap()[0].as_str(),
            "http://10.0.0.2:5000/"
        );
        for bad in ["10.0.0.2:5000", "http://h/v2/", "ftp://h"] {
            assert!(parse_peers(&[bad.into()]).unwrap_err().to_string().contains(bad));
        }
    }
}
