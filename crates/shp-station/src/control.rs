//! The control socket: how the CLI steers a running station (`shp peers`, `addrs`, `connect`,
//! `disconnect`, and `fetch`/`pull` with no `--from`).
//!
//! `HOME/station.sock`, a Unix socket made mode 0600 and checked on every connection: only the
//! home's owner (or root) is answered. One request per connection, one JSON line each way:
//!
//! ```text
//! → {"op": "peers"} | {"op": "addrs"} | {"op": "connect", "addr": MULTIADDR}
//!   | {"op": "disconnect", "peer": PEER_ID} | {"op": "fetch", "cid": CID, "tag": NAME?, "from": [URL]}
//! ← {"ok": true, "result": …} | {"ok": false, "error": TEXT, "kind": "not_found"|"usage"|"failed"}
//! ```

use crate::p2p::{self, Node};
use crate::transport;
use serde_json::{json, Value};
use shp_core::Home;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// The socket's name inside the home.
pub const SOCKET: &str = "station.sock";
/// The longest request line read.
const MAX_REQUEST: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no station is running on {home} (start one with `shp start`)")]
    NotRunning { home: String },
    #[error("a station is already running on {home} (its control socket {socket} answers)")]
    AlreadyRunning { home: String, socket: String },
    #[error("control socket {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(
        "control socket {path}: the path is too long for a Unix socket ({len} bytes; at most 107): use a shorter home"
    )]
    PathTooLong { path: String, len: usize },
    #[error("{message}")]
    Station { message: String, kind: String },
}

impl ControlError {
    /// The station answered "not found" (exit 3).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ControlError::Station { kind, .. } if kind == "not_found")
    }
    /// The station refused the request as malformed (exit 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, ControlError::Station { kind, .. } if kind == "usage")
    }
}

pub fn socket_path(home: &Path) -> PathBuf {
    home.join(SOCKET)
}

fn check_len(path: &Path) -> Result<(), ControlError> {
    let len = path.as_os_str().len();
    if len > 107 {
        return Err(ControlError::PathTooLong {
            path: path.display().to_string(),
            len,
        });
    }
    Ok(())
}

/// Binds the home's control socket (mode 0600), replacing a stale one; refuses when another station
/// answers on it.
pub fn bind(home: &Path) -> Result<std::os::unix::net::UnixListener, ControlError> {
    let path = socket_path(home);
    check_len(&path)?;
    let io = |source| ControlError::Io {
        path: path.display().to_string(),
        source,
    };
    if path.exists() {
        if UnixStream::connect(&path).is_ok() {
            return Err(ControlError::AlreadyRunning {
                home: home.display().to_string(),
                socket: path.display().to_string(),
            });
        }
        std::fs::remove_file(&path).map_err(io)?;
    }
    let l = std::os::unix::net::UnixListener::bind(&path).map_err(io)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    l.set_nonblocking(true).map_err(io)?;
    Ok(l)
}

/// What the control socket serves from.
pub struct ControlState {
    pub home: Arc<Home>,
    pub node: Option<Arc<Node>>,
}

/// Answers control requests until the task is aborted; removes the socket file when it ends.
pub async fn serve(listener: std::os::unix::net::UnixListener, path: PathBuf, state: Arc<ControlState>) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "control socket");
            return;
        }
    };
    let _cleanup = RemoveOnDrop(path);
    let me = effective_uid();
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        // Only the home's owner (the user running the station) or root may steer it.
        match conn.peer_cred() {
            Ok(c) if c.uid() == me || c.uid() == 0 => {}
            Ok(c) => {
                tracing::warn!(uid = c.uid(), "control socket: refused a connection from another user");
                continue;
            }
            Err(_) => continue,
        }
        tokio::spawn(handle(conn, state.clone()));
    }
}

/// The effective uid (the owner of /proc/self), without a libc call.
fn effective_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0)
}

struct RemoveOnDrop(PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn handle(conn: tokio::net::UnixStream, state: Arc<ControlState>) {
    let (r, mut w) = conn.into_split();
    let mut line = String::new();
    let mut r = tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(r, MAX_REQUEST as u64));
    let answer = match r.read_line(&mut line).await {
        Ok(0) => return,
        Ok(_) => match serde_json::from_str::<Value>(&line) {
            Ok(req) => match dispatch(&req, &state).await {
                Ok(v) => json!({"ok": true, "result": v}),
                Err((kind, e)) => json!({"ok": false, "error": e, "kind": kind}),
            },
            Err(e) => json!({"ok": false, "error": format!("malformed request: {e}"), "kind": "usage"}),
        },
        Err(e) => json!({"ok": false, "error": format!("reading the request: {e}"), "kind": "usage"}),
    };
    let mut out = answer.to_string();
    out.push('\n');
    let _ = w.write_all(out.as_bytes()).await;
}

type Failure = (&'static str, String);

fn usage(e: impl std::fmt::Display) -> Failure {
    ("usage", e.to_string())
}
fn failed(e: impl std::fmt::Display) -> Failure {
    ("failed", e.to_string())
}

fn node(state: &ControlState) -> Result<&Arc<Node>, Failure> {
    state
        .node
        .as_ref()
        .ok_or_else(|| failed("this station runs without its p2p host (started with --no-p2p)"))
}

fn str_field<'a>(req: &'a Value, k: &str) -> Result<&'a str, Failure> {
    req.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| usage(format!("request field {k:?} missing")))
}

async fn dispatch(req: &Value, state: &Arc<ControlState>) -> Result<Value, Failure> {
    match req.get("op").and_then(Value::as_str).unwrap_or("") {
        "peers" => {
            let peers = node(state)?.peers().await.map_err(failed)?;
            Ok(serde_json::to_value(peers).expect("peers serialise"))
        }
        "addrs" => {
            let n = node(state)?;
            let addrs = n.addrs().await.map_err(failed)?;
            Ok(
                json!({"peer_id": n.peer_id().to_string(), "addrs": addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>()}),
            )
        }
        "connect" => {
            let addr = p2p::parse_addr(str_field(req, "addr")?).map_err(usage)?;
            let peer = node(state)?.connect(addr).await.map_err(failed)?;
            Ok(json!({"peer_id": peer.to_string()}))
        }
        "disconnect" => {
            let s = str_field(req, "peer")?;
            let peer: libp2p::PeerId = s.parse().map_err(|_| usage(p2p::Error::BadPeer(s.into())))?;
            let was = node(state)?.disconnect(peer).await.map_err(failed)?;
            if !was {
                return Err(("not_found", format!("not connected to {peer}")));
            }
            Ok(json!({"disconnected": peer.to_string()}))
        }
        "fetch" => fetch(req, state).await,
        other => Err(usage(format!("unknown control op {other:?}"))),
    }
}

async fn fetch(req: &Value, state: &Arc<ControlState>) -> Result<Value, Failure> {
    let cid: shp_core::cid::Cid = str_field(req, "cid")?.parse().map_err(usage)?;
    let tag = req.get("tag").and_then(Value::as_str).map(str::to_string);
    let urls: Vec<String> = req
        .get("from")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let swarm = match &state.node {
        Some(n) => {
            // Providers the DHT knows join the peers already connected.
            n.find_providers(cid, p2p::FIND_WAIT).await.map_err(failed)?;
            n.bitswap_peers().await.map_err(failed)?
        }
        None => Vec::new(),
    };
    let home = state.home.clone();
    let report =
        tokio::task::spawn_blocking(move || p2p::fetch::fetch_blocking(&home, &cid, tag.as_deref(), &urls, &swarm))
            .await
            .map_err(failed)?;
    match report {
        Ok(r) => Ok(serde_json::to_value(r).expect("report serialises")),
        Err(e) if e.is_not_found() => Err(("not_found", e.to_string())),
        Err(
            e @ (transport::Error::BadUrl { .. } | transport::Error::Core(shp_core::Error::InvalidReference { .. })),
        ) => Err(usage(e)),
        Err(e) => Err(failed(e)),
    }
}

/// Sends one request to the station running on `home` and returns its result.
pub fn request(home: &Path, req: &Value) -> Result<Value, ControlError> {
    let path = socket_path(home);
    check_len(&path)?;
    let not_running = || ControlError::NotRunning {
        home: home.display().to_string(),
    };
    let io = |source| ControlError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut s = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(not_running())
        }
        Err(e) => return Err(io(e)),
    };
    let mut line = req.to_string();
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&s).read_line(&mut answer).map_err(io)?;
    if answer.is_empty() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the station closed the connection without answering",
        )));
    }
    let v: Value = serde_json::from_str(&answer).map_err(|e| io(std::io::Error::other(e)))?;
    if v.get("ok").and_then(Value::as_bool) == Some(true) {
        return Ok(v.get("result").cloned().unwrap_or(Value::Null));
    }
    Err(ControlError::Station {
        message: v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("the station refused")
            .to_string(),
        kind: v.get("kind").and_then(Value::as_str).unwrap_or("failed").to_string(),
    })
}

/// Whether a station answers on `home`'s control socket.
pub fn is_running(home: &Path) -> bool {
    UnixStream::connect(socket_path(home)).is_ok()
}
