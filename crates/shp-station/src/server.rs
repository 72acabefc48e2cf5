//! `shp start`: the station's configuration, listener, routes, logging and graceful shutdown.
//!
//! Configuration comes from `HOME/station.json` (all fields optional), overridden by flags:
//!
//! ```json
//! {"listen": "127.0.0.1:5000", "auth": "htpasswd:/etc/shp/htpasswd", "auth_reads": false,
//!  "insecure_public": false, "cache_size": 10737418240}
//! ```
//!
//! On start the station prints one line on stdout, `listening http://ADDR:PORT peer 12D3KooW…`,
//! then logs to stderr. SIGINT or SIGTERM stops it: the listener closes, requests in flight
//! finish, uploads in progress are discarded, and `run` returns.

pub mod identity;

use crate::auth::{Auth, AuthError, AuthSpec};
use crate::control::{self, ControlState};
use crate::mirror::{Mirror, MirrorConfig};
use crate::p2p::{self, NetKey, Node, P2pConfig};
use crate::registry::{self, Registry, Uploads};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use identity::{Identity, IdentityError};
use serde::Deserialize;
use shp_core::Home;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The config file's name inside the home.
pub const CONFIG_FILE: &str = "station.json";
/// Where a station listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";
/// The default cache size (bytes) for content fetched from other stations.
pub const DEFAULT_CACHE_SIZE: u64 = shp_core::home::DEFAULT_CACHE_BYTES;
/// How long a station with a `deferred` store waits without requests before it compacts.
pub const DEFAULT_COMPACT_IDLE_SECS: u64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum StationError {
    #[error("{path}: {reason}")]
    Config { path: String, reason: String },
    #[error("--listen {0:?}: expected ADDR:PORT, e.g. 127.0.0.1:5000 (port 0 picks a free one)")]
    Listen(String),
    #[error("refusing to listen on {0} (not a loopback address) with auth off: use --auth, or --insecure-public to serve anyone")]
    Public(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    P2p(#[from] crate::p2p::Error),
    #[error(transparent)]
    NetKey(#[from] crate::p2p::netkey::NetKeyError),
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    #[error(transparent)]
    Core(#[from] shp_core::Error),
    #[error(transparent)]
    Mirror(#[from] crate::mirror::MirrorError),
    #[error("station runtime: {0}")]
    Runtime(std::io::Error),
}

/// `station.json`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    listen: Option<String>,
    auth: Option<String>,
    auth_reads: Option<bool>,
    insecure_public: Option<bool>,
    cache_size: Option<u64>,
    compact_idle_secs: Option<u64>,
    p2p: Option<bool>,
    p2p_listen: Option<Vec<String>>,
    bootstrap: Option<Vec<String>>,
    mdns: Option<bool>,
    /// The Kademlia DHT (announcing and finding providers); default on.
    dht: Option<bool>,
    /// On the public IPFS network (`shp init --public` sets it, with the public bootstrap peers).
    public: Option<bool>,
    /// `HOST=URL` upstreams of the pull-through mirror.
    mirrors: Option<Vec<String>>,
    mirror_tag_ttl_secs: Option<u64>,
    /// Stations (`http://HOST:PORT`) the mirror asks before the upstream.
    mirror_peers: Option<Vec<String>>,
    mirror_keep_secs: Option<u64>,
    mirror_authfile: Option<std::path::PathBuf>,
}

/// What flags say; `None`/`false` leaves the config file's value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub auth: Option<String>,
    pub auth_reads: bool,
    pub insecure_public: bool,
    /// `--p2p-listen` (replaces the config's list when given).
    pub p2p_listen: Vec<String>,
    /// `--bootstrap` (replaces the config's list when given).
    pub bootstrap: Vec<String>,
    pub no_mdns: bool,
    /// `--no-dht`.
    pub no_dht: bool,
    pub no_p2p: bool,
    /// `--mirror HOST=URL` (replaces the config's list when given).
    pub mirrors: Vec<String>,
    /// `--mirror-tag-ttl SECS`.
    pub mirror_tag_ttl: Option<u64>,
    /// `--mirror-peer URL` (replaces the config's list when given).
    pub mirror_peers: Vec<String>,
    /// `--mirror-keep SECS`.
    pub mirror_keep: Option<u64>,
    /// `--mirror-authfile FILE`.
    pub mirror_authfile: Option<std::path::PathBuf>,
}

/// A station's effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub auth: AuthSpec,
    pub auth_reads: bool,
    pub insecure_public: bool,
    /// Bytes of fetched content to keep (for the remote fetcher).
    pub cache_size: u64,
    /// With a `deferred` store: compact once no request has come for this long (0: never).
    pub compact_idle: std::time::Duration,
    /// The libp2p host's settings; `None` runs the station without one.
    pub p2p: Option<P2pConfig>,
    /// Pull-through to upstream registries; `None`: the registry serves what the home holds.
    pub mirror: Option<MirrorConfig>,
}

impl Config {
    /// Reads `HOME/station.json` (absent: defaults) and applies the flags.
    pub fn load(home: &Path, o: &Overrides) -> Result<Config, StationError> {
        let path = home.join(CONFIG_FILE);
        let file: ConfigFile = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| StationError::Config {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ConfigFile::default(),
            Err(e) => {
                return Err(StationError::Config {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
            }
        };
        let listen = o
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = parse_listen(&listen)?;
        let auth = match o.auth.clone().or(file.auth) {
            Some(s) => AuthSpec::parse(&s)?,
            None => AuthSpec::Off,
        };
        let p2p = if o.no_p2p || file.p2p == Some(false) {
            None
        } else {
            let public = file.public.unwrap_or(false);
            let net_key = NetKey::of_home(home)?;
            if public && net_key.is_some() {
                return Err(StationError::Config {
                    path: path.display().to_string(),
                    reason: format!(
                        "\"public\": true and a private network key ({}) exclude each other",
                        home.join(p2p::netkey::KEY_FILE).display()
                    ),
                });
            }
            let listen = if o.p2p_listen.is_empty() {
                file.p2p_listen.unwrap_or_else(|| {
                    let mut v = vec![p2p::DEFAULT_LISTEN.to_string()];
                    if public {
                        v.push(p2p::DEFAULT_LISTEN_QUIC.to_string());
                    }
                    v
                })
            } else {
                o.p2p_listen.clone()
            };
            let bootstrap = if o.bootstrap.is_empty() {
                file.bootstrap.unwrap_or_default()
            } else {
                o.bootstrap.clone()
            };
            let addrs = |v: Vec<String>| -> Result<Vec<_>, StationError> {
                v.iter()
                    .map(|a| p2p::parse_addr(a).map_err(StationError::P2p))
                    .collect()
            };
            Some(P2pConfig {
                listen: addrs(listen)?,
                bootstrap: addrs(bootstrap)?,
                mdns: !o.no_mdns && file.mdns.unwrap_or(true),
                dht: !o.no_dht && file.dht.unwrap_or(true),
                net_key,
                public,
            })
        };
        let specs = if o.mirrors.is_empty() {
            file.mirrors.unwrap_or_default()
        } else {
            o.mirrors.clone()
        };
        let mirror = if specs.is_empty() {
            None
        } else {
            Some(MirrorConfig {
                upstreams: crate::mirror::parse_upstreams(&specs)?,
                tag_ttl: o
                    .mirror_tag_ttl
                    .or(file.mirror_tag_ttl_secs)
                    .map(std::time::Duration::from_secs)
                    .unwrap_or(crate::mirror::DEFAULT_TAG_TTL),
                peers: crate::mirror::parse_peers(if o.mirror_peers.is_empty() {
                    file.mirror_peers.as_deref().unwrap_or_default()
                } else {
                    &o.mirror_peers
                })?,
                keep: o
                    .mirror_keep
                    .or(file.mirror_keep_secs)
                    .map(std::time::Duration::from_secs)
                    .unwrap_or(crate::mirror::DEFAULT_KEEP),
                authfile: o.mirror_authfile.clone().or(file.mirror_authfile),
            })
        };
        let c = Config {
            p2p,
            mirror,
            listen,
            auth,
            auth_reads: o.auth_reads || file.auth_reads.unwrap_or(false),
            insecure_public: o.insecure_public || file.insecure_public.unwrap_or(false),
            cache_size: file.cache_size.unwrap_or(DEFAULT_CACHE_SIZE),
            compact_idle: std::time::Duration::from_secs(file.compact_idle_secs.unwrap_or(DEFAULT_COMPACT_IDLE_SECS)),
        };
        c.check()?;
        Ok(c)
    }

    /// A loopback-only, auth-off config on `listen` (tests, embedding).
    pub fn local(listen: SocketAddr) -> Config {
        Config {
            listen,
            auth: AuthSpec::Off,
            auth_reads: false,
            insecure_public: false,
            cache_size: DEFAULT_CACHE_SIZE,
            compact_idle: std::time::Duration::from_secs(DEFAULT_COMPACT_IDLE_SECS),
            p2p: None,
            mirror: None,
        }
    }

    fn check(&self) -> Result<(), StationError> {
        if self.auth.is_off() && !self.listen.ip().is_loopback() && !self.insecure_public {
            return Err(StationError::Public(self.listen));
        }
        Ok(())
    }
}

fn parse_listen(s: &str) -> Result<SocketAddr, StationError> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    // Host names (e.g. localhost:5000): the first address they resolve to.
    s.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| StationError::Listen(s.to_string()))
}

/// Makes the station identity of a home if it has none (what `shp init` calls). Returns the peer
/// id and whether it was made now.
pub fn init_identity(home: &Path) -> Result<(String, bool), StationError> {
    let (id, made) = Identity::load_or_create(home)?;
    Ok((id.peer_id(), made))
}

/// Puts a home on the public IPFS network (what `shp init --public` calls): sets `"public": true` in
/// `station.json` and, when the file names no bootstrap peers, the public ones
/// ([`p2p::PUBLIC_BOOTSTRAP`]); every other field is kept. Refused for a home with a private network
/// key. Returns whether the file changed.
pub fn join_public(home: &Path) -> Result<bool, StationError> {
    let path = home.join(CONFIG_FILE);
    let bad = |reason: String| StationError::Config {
        path: path.display().to_string(),
        reason,
    };
    if NetKey::of_home(home)?.is_some() {
        return Err(bad(format!(
            "this home is in a private network ({}): the public network and a swarm key exclude each other",
            home.join(p2p::netkey::KEY_FILE).display()
        )));
    }
    let mut v: serde_json::Value = match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| bad(e.to_string()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(bad(e.to_string())),
    };
    let obj = v.as_object_mut().ok_or_else(|| bad("not a JSON object".into()))?;
    let before = obj.clone();
    obj.insert("public".into(), serde_json::Value::Bool(true));
    let has_boot = obj
        .get("bootstrap")
        .and_then(|b| b.as_array())
        .is_some_and(|b| !b.is_empty());
    if !has_boot {
        obj.insert("bootstrap".into(), serde_json::json!(p2p::PUBLIC_BOOTSTRAP));
    }
    if *obj == before {
        return Ok(false);
    }
    let text = serde_json::to_string_pretty(&v).expect("JSON") + "\n";
    let tmp = home.join(format!("{CONFIG_FILE}.tmp"));
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| bad(e.to_string()))?;
    // The file must still load (fields of a newer shp would fail here, not at `shp start`).
    Config::load(home, &Overrides::default())?;
    Ok(true)
}

/// Sets up logging to stderr: `RUST_LOG` if set, else `level` (error, warn, info, debug, trace).
pub fn init_logging(level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match (level, std::env::var("RUST_LOG")) {
        (Some(l), _) => EnvFilter::new(l),
        (None, Ok(env)) if !env.is_empty() => EnvFilter::new(env),
        _ => EnvFilter::new("info"),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

async fn log_request(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let res = next.run(req).await;
    let status = res.status().as_u16();
    if status >= 500 {
        tracing::warn!(%method, %path, status, "request");
    } else {
        tracing::debug!(%method, %path, status, "request");
    }
    res
}

/// Requests in flight and when the last one began: what idle compaction waits on.
#[derive(Default)]
struct Activity {
    in_flight: AtomicU64,
    /// Milliseconds since `epoch` when the last request began.
    last_ms: AtomicU64,
    epoch: std::sync::OnceLock<Instant>,
}

impl Activity {
    fn now_ms(&self) -> u64 {
        self.epoch.get_or_init(Instant::now).elapsed().as_millis() as u64
    }

    fn idle_for(&self) -> Option<Duration> {
        (self.in_flight.load(Ordering::SeqCst) == 0)
            .then(|| Duration::from_millis(self.now_ms().saturating_sub(self.last_ms.load(Ordering::SeqCst))))
    }
}

/// Compacts a `deferred` store once the station has had no request for `idle` (checked every few
/// seconds), so imports through the registry stay fast and the store still ends up compressed.
async fn compact_when_idle(home: Arc<Home>, activity: Arc<Activity>, idle: Duration) {
    let tick = idle.min(Duration::from_secs(5)).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(tick).await;
        if activity.idle_for().is_none_or(|d| d < idle) {
            continue;
        }
        let h = home.clone();
        let run = tokio::task::spawn_blocking(move || match h.loose_bytes() {
            Ok(0) => Ok(None),
            Ok(_) => h.compact().map(Some),
            Err(e) => Err(e),
        });
        match run.await {
            Ok(Ok(Some(s))) => tracing::info!(
                packs = s.packs_compacted,
                blocks = s.blocks,
                bytes_before = s.bytes_before,
                bytes_after = s.bytes_after,
                "compacted loose packs"
            ),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "compaction failed"),
            Err(e) => tracing::warn!(error = %e, "compaction task failed"),
        }
        // Wait for the next quiet spell, not the next tick.
        activity.last_ms.store(activity.now_ms(), Ordering::SeqCst);
    }
}

/// A station ready to serve: its listener is bound.
pub struct Station {
    /// The runtime the p2p host was started on; serving runs on it too.
    runtime: Option<tokio::runtime::Runtime>,
    node: Option<Arc<Node>>,
    /// The libp2p listen addresses, each ending in `/p2p/<id>` (empty without p2p).
    p2p_addrs: Vec<String>,
    control: Option<(std::os::unix::net::UnixListener, std::path::PathBuf)>,
    listener: std::net::TcpListener,
    addr: SocketAddr,
    peer_id: String,
    registry: Arc<Registry>,
    activity: Arc<Activity>,
    compact_idle: Duration,
}

impl Station {
    /// Opens the home, loads auth and the identity (making it for homes made before stations
    /// existed), and binds the listener.
    pub fn bind(home_dir: &Path, cfg: &Config) -> Result<Station, StationError> {
        cfg.check()?;
        let mut home = Home::open(home_dir)?;
        // The rebuilt-blob cache serves hot recipe layers without re-encoding them.
        home.set_cache_bytes(cfg.cache_size);
        let home = Arc::new(home);
        let (id, made) = Identity::load_or_create(home_dir)?;
        if made {
            tracing::info!(
                "made the station identity {}",
                home_dir.join(identity::KEY_FILE).display()
            );
        }
        let auth = Auth::load(&cfg.auth, cfg.auth_reads)?;
        let control = (control::bind(home_dir)?, control::socket_path(home_dir));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("shp-station")
            .build()
            .map_err(StationError::Runtime)?;
        let mut p2p_addrs = Vec::new();
        let node = match &cfg.p2p {
            Some(p) => {
                let key = p2p::keypair(&id)?;
                let node = runtime.block_on(Node::start(key, p, home.clone()))?;
                let addrs = runtime.block_on(node.addrs())?;
                tracing::info!(
                    addrs = %addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "),
                    mdns = p.mdns,
                    private = p.net_key.is_some(),
                    "p2p host up"
                );
                p2p_addrs = addrs.iter().map(|a| a.to_string()).collect();
                Some(Arc::new(node))
            }
            None => None,
        };
        let listener = std::net::TcpListener::bind(cfg.listen).map_err(|source| StationError::Bind {
            addr: cfg.listen,
            source,
        })?;
        listener.set_nonblocking(true).map_err(StationError::Runtime)?;
        let addr = listener.local_addr().map_err(StationError::Runtime)?;
        tracing::info!(
            %addr,
            auth = %cfg.auth.describe(),
            auth_reads = cfg.auth_reads,
            cache_size = cfg.cache_size,
            "station bound"
        );
        let mirror = match &cfg.mirror {
            Some(m) => {
                tracing::info!(
                    upstreams = %m.upstreams.iter().map(|u| u.to_string()).collect::<Vec<_>>().join(" "),
                    tag_ttl_secs = m.tag_ttl.as_secs(),
                    "pull-through mirror"
                );
                let net = node.as_ref().map(|n| crate::mirror::Network {
                    node: n.clone(),
                    rt: runtime.handle().clone(),
                });
                let mirror = Mirror::new(home.clone(), m.clone(), net)?;
                if let Some(n) = &node {
                    // Peers asking for a tag are told what this mirror's upstream last said.
                    let weak = Arc::downgrade(&mirror);
                    n.set_tag_source(Arc::new(move |key| weak.upgrade()?.tag_digest(key)));
                }
                Some(mirror)
            }
            None => None,
        };
        Ok(Station {
            runtime: Some(runtime),
            node,
            p2p_addrs,
            control: Some(control),
            listener,
            addr,
            compact_idle: cfg.compact_idle,
            activity: Arc::new(Activity::default()),
            peer_id: id.peer_id(),
            registry: Arc::new(Registry {
                mirror,
                uploads: Uploads::new(home_dir),
                home,
                auth,
            }),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn peer_id(&self) -> &str {
        &self.peer_id
    }

    /// The libp2p listen addresses, each ending in `/p2p/<id>` (empty without p2p).
    pub fn p2p_addrs(&self) -> &[String] {
        &self.p2p_addrs
    }

    /// The machine-readable first line `shp start` prints.
    pub fn banner(&self) -> String {
        format!("listening http://{} peer {}", self.addr, self.peer_id)
    }

    /// Every route the station serves: the registry (`/v2/`) and the trustless gateway
    /// (`/ipfs/`, plus shp's `/shp/v1/blocks`) on one port.
    pub fn router(&self) -> Router {
        let activity = self.activity.clone();
        registry::router(self.registry.clone())
            .merge(crate::gateway::router(crate::gateway::GatewayState::new(
                self.registry.home.clone(),
            )))
            .layer(axum::middleware::from_fn(crate::drain::drain_unread))
            .layer(axum::middleware::from_fn(log_request))
            .layer(axum::middleware::from_fn(move |req: Request, next: Next| {
                let a = activity.clone();
                async move {
                    a.in_flight.fetch_add(1, Ordering::SeqCst);
                    a.last_ms.store(a.now_ms(), Ordering::SeqCst);
                    let res = next.run(req).await;
                    a.in_flight.fetch_sub(1, Ordering::SeqCst);
                    res
                }
            }))
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish, discards uploads in
    /// progress and stops the p2p host. Runs on the station's own runtime ([`Station::run_until_signal`],
    /// [`Station::spawn`]), where its p2p host lives.
    async fn serve(mut self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StationError> {
        let app = self.router();
        let home = self.registry.home.clone();
        let compactor = (home.compression().deferred && !self.compact_idle.is_zero()).then(|| {
            tokio::spawn(compact_when_idle(
                home.clone(),
                self.activity.clone(),
                self.compact_idle,
            ))
        });
        let sweeper = self.registry.mirror.clone().map(|m| tokio::spawn(m.sweep_every_hour()));
        let views = tokio::spawn(crate::views::build_views(home.clone()));
        let control = self.control.take().map(|(l, path)| {
            let state = Arc::new(ControlState {
                home,
                node: self.node.clone(),
            });
            tokio::spawn(control::serve(l, path, state))
        });
        let listener = tokio::net::TcpListener::from_std(self.listener).map_err(StationError::Runtime)?;
        let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
        if let Some(c) = compactor {
            c.abort();
        }
        if let Some(s) = sweeper {
            s.abort();
        }
        views.abort();
        if let Some(c) = control {
            c.abort();
            let _ = c.await;
        }
        if let Some(node) = self.node.take() {
            match Arc::try_unwrap(node) {
                Ok(n) => n.stop().await,
                Err(_) => tracing::warn!("p2p host still in use at shutdown"),
            }
        }
        served.map_err(StationError::Runtime)?;
        let n = self.registry.uploads.discard_all();
        tracing::info!(discarded_uploads = n, "station stopped");
        Ok(())
    }

    /// Serves until SIGINT or SIGTERM (what `shp start` does). `announce` runs once the signal
    /// handlers are in place (it prints the banner): a caller that sends SIGTERM as soon as it has
    /// read the banner gets a clean stop, never the default action's kill.
    pub fn run_until_signal(
        mut self,
        announce: impl FnOnce(&Station) -> std::io::Result<()>,
    ) -> Result<(), StationError> {
        let rt = self.runtime.take().expect("a bound station has its runtime");
        let (mut term, mut int) = {
            use tokio::signal::unix::{signal, SignalKind};
            let _in = rt.enter();
            (
                signal(SignalKind::terminate()).map_err(StationError::Runtime)?,
                signal(SignalKind::interrupt()).map_err(StationError::Runtime)?,
            )
        };
        announce(&self).map_err(StationError::Runtime)?;
        rt.block_on(async move {
            self.serve(async move {
                let which = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                tracing::info!("{which}: stopping (requests in flight finish)");
            })
            .await
        })
    }

    /// Serves on a background thread until the handle is dropped (tests and embedding).
    pub fn spawn(mut self) -> Result<Running, StationError> {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let addr = self.addr;
        let peer_id = self.peer_id.clone();
        let p2p_addrs = self.p2p_addrs.clone();
        let inflight = self.node.as_ref().map(|n| n.inflight());
        let rt = self.runtime.take().expect("a bound station has its runtime");
        let thread = std::thread::Builder::new()
            .name("shp-station".into())
            .spawn(move || {
                rt.block_on(self.serve(async move {
                    let _ = rx.await;
                }))
            })
            .map_err(StationError::Runtime)?;
        Ok(Running {
            addr,
            peer_id,
            p2p_addrs,
            inflight,
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

/// A station serving on a background thread; dropping it stops it and waits for it.
pub struct Running {
    pub addr: SocketAddr,
    pub peer_id: String,
    /// The libp2p listen addresses, each ending in `/p2p/<id>` (empty without p2p).
    pub p2p_addrs: Vec<String>,
    /// The blocks of the station's running fetches, which its bitswap server serves besides the
    /// store (absent without p2p).
    pub inflight: Option<Arc<crate::p2p::inflight::Inflight>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), StationError>>>,
}

impl Running {
    /// `http://ADDR:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the station and returns how serving ended.
    pub fn stop(mut self) -> Result<(), StationError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), StationError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(StationError::Runtime(std::io::Error::other("station thread panicked")))),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}
