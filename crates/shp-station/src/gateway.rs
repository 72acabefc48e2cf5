//! The IPFS trustless gateway over a home: `GET`/`HEAD /ipfs/<cid>` as raw blocks or CARs, and shp's
//! batch extension `POST /shp/v1/blocks`.
//!
//! - Response format: `?format=raw|car` wins over `Accept` (`application/vnd.ipld.raw`,
//!   `application/vnd.ipld.car` with `version=1`, `order=dfs|unk`, `dups=n|y`). Without either, or when
//!   nothing acceptable is asked for, the answer is 406: this gateway only serves verifiable formats.
//! - CARs: `dag-scope=block|entity|all` (default all; `entity` is defined at
//!   [`DagScope`](crate::transport::DagScope)); version 1, depth-first, each block once
//!   (`order=dfs; dups=n`). They are streamed (a bounded channel of 64 KiB pieces between a blocking
//!   thread walking the store and the connection) and compressed in transit when the client's
//!   `Accept-Encoding` allows (`zstd` preferred, then `gzip`), with `Content-Encoding` set.
//! - Raw blocks are compressed (zstd, `Content-Encoding: zstd`) for a client that takes zstd, when
//!   the block compresses (dag-cbor nodes: tar headers; chunks of text files); else sent as stored.
//! - Every block comes straight from the store, which verifies it against its CID on read.
//! - Errors: 400 (bad CID, bad parameter, a path after the CID), 404 (block not in this store), 406
//!   (no acceptable format), 500 (the store failed, e.g. a corrupt block) — with a one-line text body.
//! - `POST /shp/v1/blocks` (shp extension): the body lists CIDs, one per line (at most 4096); the
//!   answer is a CARv1 (`roots` empty, `order=unk`) of those of them this store has, in the order
//!   asked, compressed like CARs. A fetcher sends the blocks it lacks and gets them in one round trip.
//! - `POST /shp/v1/deltas` (shp extension): the same, where a line may name a base beside the CID
//!   (`CID BASE`); a block whose base this store holds, and that the base helps, is sent as a zstd
//!   frame against it (format: [`delta`](crate::transport::delta)); the rest whole.
//!
//! Store work never runs on the async executor: it runs in `spawn_blocking`.

use crate::transport::{walk_scope, write_varint, DagScope};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use shp_core::cbor::{self, Value};
use shp_core::cid::Cid;
use shp_core::{Error as CoreError, Home};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

const RAW: &str = "application/vnd.ipld.raw";
const CAR: &str = "application/vnd.ipld.car";
const IMMUTABLE: &str = "public, max-age=29030400, immutable";
/// Most CIDs one `POST /shp/v1/blocks` may list.
pub const MAX_BATCH: usize = crate::transport::MAX_BATCH;

/// What the gateway serves from.
#[derive(Clone)]
pub struct GatewayState {
    home: Arc<Home>,
}

impl GatewayState {
    pub fn new(home: Arc<Home>) -> GatewayState {
        GatewayState { home }
    }
}

/// The gateway's routes: `/ipfs/{cid}` (GET, HEAD), `/ipfs/{cid}/{*path}` (UnixFS paths) and
/// `/shp/v1/blocks` (POST). Merge it into a station's router.
pub fn router(state: GatewayState) -> Router {
    trustless_router(state.clone()).merge(
        Router::new()
            .route("/shp/v1/blocks", post(blocks))
            .route("/shp/v1/deltas", post(deltas))
            .with_state(state),
    )
}

/// Only the trustless-gateway spec's surface (`/ipfs/...`), without shp's extension: what a plain
/// gateway offers (used to test that shp's client works against one).
pub fn trustless_router(state: GatewayState) -> Router {
    Router::new()
        .route("/ipfs/{cid}", get(ipfs))
        .route("/ipfs/{cid}/", get(ipfs))
        .route("/ipfs/{cid}/{*path}", get(ipfs_path))
        .with_state(state)
}

/// Serves the gateway on `listener` until the future is dropped or `shutdown` resolves.
pub async fn serve_gateway(
    home: Arc<Home>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(GatewayState::new(home)))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A gateway running on its own thread and runtime (for the CLI's `shp gateway`, tests and
/// benchmarks). Dropping it stops the server and joins the thread.
pub struct RunningGateway {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl RunningGateway {
    /// Binds `addr` (port 0 picks a free port) and serves `home` from a background thread.
    pub fn start(home: Arc<Home>, addr: SocketAddr) -> std::io::Result<RunningGateway> {
        Self::start_router(router(GatewayState::new(home)), addr)
    }

    /// Serves any router (e.g. [`trustless_router`]) the same way.
    pub fn start_router(app: Router, addr: SocketAddr) -> std::io::Result<RunningGateway> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name(format!("shp-gateway-{addr}"))
            .spawn(move || {
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(std_listener)?;
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = rx.await;
                        })
                        .await
                })
            })?;
        Ok(RunningGateway {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Runs until the process is interrupted (for a foreground server).
    pub fn wait(mut self) -> std::io::Result<()> {
        // Holding the sender keeps the server up; the thread ends only if the server fails.
        let _keep = self.stop.take();
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(std::io::Error::other("gateway thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut r = (status, format!("{}\n", msg.into())).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn core_err(e: CoreError, cid: &Cid) -> Response {
    match e {
        CoreError::BlockNotFound { .. } => text(StatusCode::NOT_FOUND, format!("block {cid} not found")),
        e => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Raw,
    Car,
}

/// The response format from `?format=` or `Accept` (400 for an unknown `format`, 406 otherwise).
fn negotiate(query: &HashMap<String, String>, headers: &HeaderMap) -> Result<Format, (StatusCode, String)> {
    if let Some(f) = query.get("format") {
        return match f.as_str() {
            "raw" => Ok(Format::Raw),
            "car" => Ok(Format::Car),
            other => Err((
                StatusCode::BAD_REQUEST,
                format!("unsupported format={other:?}: this trustless gateway serves format=raw and format=car"),
            )),
        };
    }
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let mt = parts.next().unwrap_or("").to_ascii_lowercase();
        let params: Vec<(String, String)> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| {
                (
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_ascii_lowercase(),
                )
            })
            .collect();
        let param = |k: &str| params.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.as_str());
        if param("q") == Some("0") {
            continue;
        }
        if mt == RAW {
            return Ok(Format::Raw);
        }
        if mt == CAR
            && param("version").is_none_or(|v| v == "1")
            && param("order").is_none_or(|v| v == "dfs" || v == "unk")
            && param("dups").is_none_or(|v| v == "n" || v == "y")
        {
            return Ok(Format::Car);
        }
    }
    Err((
        StatusCode::NOT_ACCEPTABLE,
        "this is a trustless gateway: ask for application/vnd.ipld.raw or application/vnd.ipld.car; version=1 \
         (or ?format=raw / ?format=car)"
            .to_string(),
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

/// zstd if the client takes it, else gzip, else none.
fn pick_encoding(headers: &HeaderMap) -> Encoding {
    let mut gzip = false;
    let mut zstd = false;
    for v in headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for item in v.split(',') {
            let mut parts = item.split(';').map(str::trim);
            let name = parts.next().unwrap_or("").to_ascii_lowercase();
            let refused = parts.any(|p| {
                p.split_once('=')
                    .is_some_and(|(k, v)| k.trim() == "q" && v.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
            });
            if refused {
                continue;
            }
            match name.as_str() {
                "zstd" => zstd = true,
                "gzip" | "x-gzip" => gzip = true,
                _ => {}
            }
        }
    }
    if zstd {
        Encoding::Zstd
    } else if gzip {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

async fn ipfs_path(
    State(st): State<GatewayState>,
    method: Method,
    Path((cid, path)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    serve(st, method, cid, path, query, headers).await
}

async fn ipfs(
    State(st): State<GatewayState>,
    method: Method,
    Path(cid_s): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    serve(st, method, cid_s, String::new(), query, headers).await
}

/// What a request asks for: a verifiable format, or (UnixFS only) the content itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Raw,
    Car,
    Content,
}

/// The target of a request once its path is resolved, and what it is.
struct Target {
    cid: Cid,
    /// The blocks read on the way from the root (for a path CAR).
    via: Vec<Cid>,
    /// The block, when it is needed (raw answers, content).
    data: Option<Vec<u8>>,
    /// The block compressed, for a raw answer to a client that takes zstd (when that pays).
    zstd: Option<Vec<u8>>,
    /// A raw HEAD's length.
    size: u64,
}

async fn serve(
    st: GatewayState,
    method: Method,
    cid_s: String,
    path: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
) -> Response {
    let cid: Cid = match cid_s.parse() {
        Ok(c) => c,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("invalid CID {cid_s:?}: {e}")),
    };
    let path = path.trim_matches('/').to_string();
    let unixfs = cid.codec() == shp_core::cid::DAG_PB || !path.is_empty();
    let answer = match negotiate(&query, &headers) {
        Ok(Format::Raw) => Answer::Raw,
        Ok(Format::Car) => Answer::Car,
        // A UnixFS DAG (a layer's view) is also served as what it is: files, directory listings.
        Err((StatusCode::NOT_ACCEPTABLE, _)) if unixfs => Answer::Content,
        Err((status, msg)) => return text(status, msg),
    };
    if !path.is_empty() && cid.codec() != shp_core::cid::DAG_PB {
        return text(
            StatusCode::BAD_REQUEST,
            format!("/ipfs/{cid}/{path}: paths are resolved in UnixFS (dag-pb) DAGs only, such as a layer's view (shp inspect names them); ask for /ipfs/<cid>"),
        );
    }
    let scope = match query.get("dag-scope").map(|s| s.parse::<DagScope>()) {
        None => DagScope::All,
        Some(Ok(s)) => s,
        Some(Err(e)) => return text(StatusCode::BAD_REQUEST, e),
    };
    if query.contains_key("entity-bytes") {
        return text(StatusCode::BAD_REQUEST, "entity-bytes is not supported by this gateway");
    }
    let head = method == Method::HEAD;
    let shown = if path.is_empty() {
        cid.to_string()
    } else {
        format!("{cid}/{path}")
    };
    let etag = match answer {
        Answer::Raw => format!("\"{shown}.raw\""),
        Answer::Car => format!("\"{shown}.car.{}\"", scope.as_str()),
        Answer::Content => format!("\"{shown}\""),
    };
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));

    // The root (and the path) must be here: 404 before any body starts.
    let home = st.home.clone();
    let want_bytes = (answer == Answer::Raw && !head && !not_modified) || answer == Answer::Content;
    let raw_head = answer == Answer::Raw && head;
    // A client that takes zstd gets a raw block that compresses (dag-cbor nodes: tar headers;
    // text files' chunks) compressed, the rest as it is.
    let zstd_raw = answer == Answer::Raw && pick_encoding(&headers) == Encoding::Zstd;
    let rpath = path.clone();
    let found = tokio::task::spawn_blocking(move || -> Result<Target, CoreError> {
        let store = home.store();
        let (target, via) = if rpath.is_empty() {
            (cid, Vec::new())
        } else {
            let r = shp_core::unixfs::resolve(&|c| store.get(c), &cid, &rpath)?;
            (r.cid, r.via)
        };
        let mut t = Target {
            cid: target,
            via,
            data: None,
            zstd: None,
            size: 0,
        };
        if want_bytes {
            let data = store.get(&target)?;
            if zstd_raw {
                t.zstd = zstd_block(&data);
            }
            t.data = Some(data);
        } else if store.has(&target)? {
            if raw_head {
                t.size = store.size_of(&target)?;
            }
        } else {
            return Err(CoreError::BlockNotFound {
                cid: target.to_string(),
            });
        }
        Ok(t)
    })
    .await;
    let t = match found {
        Ok(Ok(t)) => t,
        Ok(Err(e @ CoreError::PathNotFound { .. })) => return text(StatusCode::NOT_FOUND, e.to_string()),
        Ok(Err(e @ CoreError::Schema { .. })) if !path.is_empty() => {
            return text(StatusCode::BAD_REQUEST, format!("/ipfs/{shown}: {e}"))
        }
        Ok(Err(e)) => return core_err(e, &cid),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("store task failed: {e}")),
    };

    let mut h = HeaderMap::new();
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("etag is ASCII"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    if let Ok(v) = HeaderValue::from_str(&format!("/ipfs/{shown}")) {
        h.insert("x-ipfs-path", v);
    }
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert(header::VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    if not_modified {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    let target = t.cid;
    match answer {
        Answer::Raw => {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(RAW));
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&format!("attachment; filename=\"{target}.bin\"")).expect("ASCII"),
            );
            match (t.zstd, t.data) {
                (Some(z), _) => {
                    set_encoding(&mut h, Encoding::Zstd);
                    (StatusCode::OK, h, z).into_response()
                }
                (None, Some(d)) => (StatusCode::OK, h, d).into_response(),
                (None, None) => {
                    h.insert(header::CONTENT_LENGTH, HeaderValue::from(t.size));
                    (StatusCode::OK, h).into_response()
                }
            }
        }
        Answer::Car => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.ipld.car; version=1; order=dfs; dups=n"),
            );
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&format!("attachment; filename=\"{target}.car\"")).expect("ASCII"),
            );
            let roots: Vec<String> = t.via.iter().chain([&target]).map(|c| c.to_string()).collect();
            h.insert("x-ipfs-roots", HeaderValue::from_str(&roots.join(",")).expect("ASCII"));
            let enc = pick_encoding(&headers);
            set_encoding(&mut h, enc);
            if head {
                return (StatusCode::OK, h).into_response();
            }
            let home = st.home.clone();
            let via = t.via;
            let body = stream_blocking(enc, move |w| {
                write_car_header(w, &[cid])?;
                let store = home.store();
                for c in &via {
                    write_section(w, c, &store.get(c)?)?;
                }
                walk_scope(&|c| store.get(c), &target, scope, &mut |c, data| {
                    write_section(w, c, data).map_err(CoreError::Io)
                })?;
                Ok(())
            });
            (StatusCode::OK, h, body).into_response()
        }
        Answer::Content => content(st, h, head, target, t.data.expect("read for content")),
    }
}

/// A UnixFS node as what it is: a file's bytes (streamed, each block verified), a directory's
/// listing (`CID<TAB>SIZE<TAB>NAME` lines, as `ipfs ls` prints them), a symlink's target.
fn content(st: GatewayState, mut h: HeaderMap, head: bool, cid: Cid, block: Vec<u8>) -> Response {
    use shp_core::unixfs::{Data, Kind};
    let (kind, filesize) = match cid.codec() {
        shp_core::cid::RAW => (Kind::File, block.len() as u64),
        shp_core::cid::DAG_PB => {
            let data = shp_core::dagpb::decode(&block)
                .ok()
                .and_then(|n| n.data)
                .and_then(|d| Data::decode(&d).ok());
            match data {
                Some(d) => (d.kind, d.filesize.unwrap_or(0)),
                None => {
                    return text(
                        StatusCode::NOT_ACCEPTABLE,
                        format!("{cid} is dag-pb but not UnixFS: ask for ?format=raw or ?format=car"),
                    )
                }
            }
        }
        _ => {
            return text(
                StatusCode::NOT_ACCEPTABLE,
                format!("{cid} is not UnixFS: ask for ?format=raw or ?format=car"),
            )
        }
    };
    let home = st.home.clone();
    match kind {
        Kind::File | Kind::Raw => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(filesize));
            if head {
                return (StatusCode::OK, h).into_response();
            }
            let body = stream_blocking(Encoding::Identity, move |w| {
                let store = home.store();
                let n = shp_core::unixfs::read_file(&|c| store.get(c), &cid, &mut |b| {
                    w.write_all(b).map_err(CoreError::Io)
                })?;
                if n != filesize {
                    return Err(CoreError::Schema {
                        cid: cid.to_string(),
                        reason: format!("the file holds {n} bytes, its node says {filesize}"),
                    });
                }
                Ok(())
            });
            (StatusCode::OK, h, body).into_response()
        }
        Kind::Directory | Kind::HamtShard => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            if head {
                return (StatusCode::OK, h).into_response();
            }
            let body = stream_blocking(Encoding::Identity, move |w| {
                let store = home.store();
                for e in shp_core::unixfs::list(&|c| store.get(c), &cid)? {
                    writeln!(w, "{}\t{}\t{}", e.cid, e.tsize, String::from_utf8_lossy(&e.name))?;
                }
                Ok(())
            });
            (StatusCode::OK, h, body).into_response()
        }
        Kind::Symlink => {
            let target = shp_core::dagpb::decode(&block)
                .ok()
                .and_then(|n| n.data)
                .and_then(|d| Data::decode(&d).ok())
                .and_then(|d| d.data)
                .unwrap_or_default();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            h.insert("x-shp-symlink", HeaderValue::from_static("1"));
            (StatusCode::OK, h, if head { Vec::new() } else { target }).into_response()
        }
        Kind::Metadata => text(
            StatusCode::NOT_ACCEPTABLE,
            format!("{cid} is a UnixFS metadata node: ask for ?format=raw"),
        ),
    }
}

/// A block compressed with zstd (level 3, one compressor per thread), when that pays.
fn zstd_block(d: &[u8]) -> Option<Vec<u8>> {
    thread_local! {
        static COMP: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    COMP.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(3).ok();
        }
        shp_core::store::compress_block(c.as_mut()?, d).ok().flatten()
    })
}

fn set_encoding(h: &mut HeaderMap, enc: Encoding) {
    match enc {
        Encoding::Identity => {}
        Encoding::Gzip => {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        Encoding::Zstd => {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("zstd"));
        }
    }
}

async fn blocks(State(st): State<GatewayState>, headers: HeaderMap, body: Bytes) -> Response {
    let text_body = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(_) => return text(StatusCode::BAD_REQUEST, "the body must list CIDs, one per line (UTF-8)"),
    };
    let mut cids = Vec::new();
    for (i, line) in text_body.lines().map(str::trim).enumerate() {
        if line.is_empty() {
            continue;
        }
        match line.parse::<Cid>() {
            Ok(c) => cids.push(c),
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("line {}: invalid CID {line:?}: {e}", i + 1),
                )
            }
        }
        if cids.len() > MAX_BATCH {
            return text(
                StatusCode::BAD_REQUEST,
                format!("more than {MAX_BATCH} CIDs in one request"),
            );
        }
    }
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.ipld.car; version=1; order=unk; dups=n"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    let enc = pick_encoding(&headers);
    set_encoding(&mut h, enc);
    let home = st.home.clone();
    let body = stream_blocking(enc, move |w| {
        write_car_header(w, &[])?;
        let store = home.store();
        let mut sent = std::collections::HashSet::new();
        for c in &cids {
            if !sent.insert(*c) {
                continue;
            }
            match store.get(c) {
                Ok(data) => write_section(w, c, &data)?,
                Err(CoreError::BlockNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    (StatusCode::OK, h, body).into_response()
}

async fn deltas(State(st): State<GatewayState>, headers: HeaderMap, body: Bytes) -> Response {
    use crate::transport::delta;
    let wants = match delta::parse_request(&body, MAX_BATCH) {
        Ok(w) => w,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.shp.deltas.v1"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    let enc = pick_encoding(&headers);
    set_encoding(&mut h, enc);
    let home = st.home.clone();
    let body = stream_blocking(enc, move |w| {
        delta::write_magic(w)?;
        let store = home.store();
        let mut sent = std::collections::HashSet::new();
        for want in &wants {
            if !sent.insert(want.cid) {
                continue;
            }
            let data = match store.get(&want.cid) {
                Ok(data) => data,
                Err(CoreError::BlockNotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            match delta::against_held(store, &want.cid, &data, want.base)? {
                Some((base, frame)) => {
                    delta::write_section(w, &want.cid, delta::Payload::Delta { base, frame: &frame })?
                }
                None => delta::write_section(w, &want.cid, delta::Payload::Whole(&data))?,
            }
        }
        Ok(())
    });
    (StatusCode::OK, h, body).into_response()
}

fn write_car_header(w: &mut dyn Write, roots: &[Cid]) -> Result<(), CoreError> {
    let header = cbor::encode(&Value::map([
        ("roots", Value::links(roots)),
        ("version", Value::UInt(1)),
    ]));
    let mut buf = Vec::new();
    write_varint(header.len() as u64, &mut buf);
    w.write_all(&buf)?;
    w.write_all(&header)?;
    Ok(())
}

fn write_section(w: &mut dyn Write, cid: &Cid, data: &[u8]) -> std::io::Result<()> {
    let c = cid.to_bytes();
    let mut len = Vec::with_capacity(4);
    write_varint((c.len() + data.len()) as u64, &mut len);
    w.write_all(&len)?;
    w.write_all(&c)?;
    w.write_all(data)
}

/// Pieces of a body produced by a blocking thread; an `Err` ends the stream abruptly, so the
/// client sees a truncated response rather than a well-formed wrong one.
type Piece = Result<Bytes, std::io::Error>;

/// Sends what it is written, in pieces of up to 64 KiB, to the connection; blocks when the
/// connection is 4 pieces behind (memory stays bounded whatever the DAG's size).
struct ChannelWriter {
    tx: mpsc::Sender<Piece>,
    buf: Vec<u8>,
}

const PIECE: usize = 64 << 10;

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(PIECE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= PIECE {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE)));
        self.tx
            .blocking_send(Ok(piece))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

/// Runs `produce` on a blocking thread, compressing its output with `enc`, and returns the
/// streaming body it feeds.
fn stream_blocking(
    enc: Encoding,
    produce: impl FnOnce(&mut dyn Write) -> Result<(), CoreError> + Send + 'static,
) -> Body {
    let (tx, rx) = mpsc::channel::<Piece>(4);
    let err_tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let cw = ChannelWriter {
            tx,
            buf: Vec::with_capacity(PIECE),
        };
        let res = (|| -> Result<(), CoreError> {
            match enc {
                Encoding::Identity => {
                    let mut w = cw;
                    produce(&mut w)?;
                    w.flush()?;
                }
                Encoding::Gzip => {
                    let mut w = flate2::write::GzEncoder::new(cw, flate2::Compression::new(6));
                    produce(&mut w)?;
                    w.finish()?.flush()?;
                }
                Encoding::Zstd => {
                    let mut w = zstd::stream::write::Encoder::new(cw, 3)?;
                    produce(&mut w)?;
                    w.finish()?.flush()?;
                }
            }
            Ok(())
        })();
        if let Err(e) = res {
            tracing::warn!("gateway: response aborted: {e}");
            let _ = err_tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|p| (p, rx)) });
    Body::from_stream(stream)
}
