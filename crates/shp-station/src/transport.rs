//! Transports: how a station gets blocks it lacks from other stations and gateways.
//!
//! - [`Transport`] — one peer: fetch a block, a list of blocks, or a CAR of a DAG by CID. The core is
//!   synchronous, so the trait is too; the fetcher runs each peer's requests on its own threads.
//! - [`HttpTransport`] — the IPFS trustless-gateway protocol (`GET /ipfs/<cid>?format=raw|car`) over
//!   HTTP(S) with rustls, plus shp's batch extension (`POST /shp/v1/blocks`) when the peer offers it.
//! - [`fetch`] — the multi-peer fetcher: walks a DAG from its root, asks only for the blocks the local
//!   store lacks, spreads them over the peers, verifies every block and stores them in one batch.
//! - [`delta`] — blocks sent as the difference from blocks the receiver holds (an update's changed
//!   chunks and nodes against the previous version's), `POST /shp/v1/deltas`.
//!
//! A transport hands back the bytes a peer sent for a CID only after checking them against that CID;
//! the fetcher checks again as it stores them, so a lying peer is caught whatever the transport.

pub mod delta;
mod fetcher;
mod http;

pub use fetcher::{
    fetch, fetch_into_home, fetch_into_home_with, fetch_with, previous_version, FetchHooks, FetchOptions, FetchReport,
    NoHooks, PeerReport, SessionReport,
};
pub use http::{HttpTransport, MAX_BATCH};

use shp_core::cbor::{self, Value};
use shp_core::cid::{Cid, DAG_CBOR};
use shp_core::store::MAX_BLOCK;
use std::io::Read;
use std::str::FromStr;

/// What a transport or a fetch can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{peer}: block {cid} not found")]
    NotFound { peer: String, cid: String },
    #[error("{peer}: block {cid}: the bytes sent do not hash to the CID (the peer sent wrong data)")]
    Corrupt { peer: String, cid: String },
    #[error("{peer}: {url}: HTTP {status}: {body}")]
    Status {
        peer: String,
        url: String,
        status: u16,
        body: String,
    },
    #[error("{peer}: {reason}")]
    Http { peer: String, reason: String },
    #[error("{peer}: {reason}")]
    Peer { peer: String, reason: String },
    #[error("{peer}: malformed response: {reason}")]
    Protocol { peer: String, reason: String },
    #[error("invalid peer URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("no peer could supply block {cid}: {reason}")]
    Unavailable {
        cid: String,
        reason: String,
        /// Every peer asked answered "not found" (no failures).
        not_found: bool,
    },
    #[error("{0}")]
    Core(#[from] shp_core::Error),
}

impl Error {
    /// Whether the error means "nobody has it" (exit code 3 in the CLI) rather than a failure.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::NotFound { .. } => true,
            Error::Unavailable { not_found, .. } => *not_found,
            Error::Core(shp_core::Error::ImageNotFound(_)) | Error::Core(shp_core::Error::BlockNotFound { .. }) => true,
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which part of a DAG a CAR request covers (the trustless gateway's `dag-scope`).
///
/// For shp's DAGs, `entity` is "what it takes to give back the thing this node is": for a blob node,
/// the node and every block under it except the blobs it names in `children` (a manifest's config
/// and layers, an index's manifests) — exactly the blocks that rebuild that blob's bytes; for an
/// image root, the root plus its top blob's entity (the top manifest or index); for a tar node, an
/// entry list or a link tree, the whole DAG under it; for a raw block, the block. For UnixFS
/// (dag-pb), as the trustless gateway spec says: a file's whole DAG, a directory's node (with its
/// HAMT shards, not the entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DagScope {
    Block,
    Entity,
    All,
}

impl DagScope {
    pub fn as_str(self) -> &'static str {
        match self {
            DagScope::Block => "block",
            DagScope::Entity => "entity",
            DagScope::All => "all",
        }
    }
}

impl FromStr for DagScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "block" => Ok(DagScope::Block),
            "entity" => Ok(DagScope::Entity),
            "all" => Ok(DagScope::All),
            _ => Err(format!("unknown dag-scope {s:?} (expected block, entity or all)")),
        }
    }
}

/// The links of a decoded dag-cbor node that a walk with `scope` follows, in order.
pub fn scoped_links(node: &Value, scope: DagScope) -> Vec<Cid> {
    let mut out = Vec::new();
    match scope {
        DagScope::Block => {}
        DagScope::All => node.collect_links(&mut out),
        DagScope::Entity => match node {
            Value::Map(m) if node.get("t").and_then(Value::as_str) == Some("blob") => {
                for (k, v) in m {
                    if k != "children" {
                        v.collect_links(&mut out);
                    }
                }
            }
            _ => node.collect_links(&mut out),
        },
    }
    out
}

/// Every block of the DAG under `root` that `scope` covers, depth-first, each once (the order of a
/// CAR with `order=dfs; dups=n`). `get` yields a block's bytes; `f` receives each block.
pub fn walk_scope(
    get: &dyn Fn(&Cid) -> shp_core::Result<Vec<u8>>,
    root: &Cid,
    scope: DagScope,
    f: &mut dyn FnMut(&Cid, &[u8]) -> shp_core::Result<()>,
) -> shp_core::Result<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![*root];
    let mut n = 0;
    while let Some(cid) = stack.pop() {
        if !seen.insert(cid) {
            continue;
        }
        let data = get(&cid)?;
        f(&cid, &data)?;
        n += 1;
        if cid.codec() == shp_core::cid::DAG_PB && scope == DagScope::Entity {
            // UnixFS: a directory's entity is its node (and HAMT shards); a file's, all of it.
            stack.extend(shp_core::unixfs::entity_links(&data)?.into_iter().rev());
        } else if cid.codec() == shp_core::cid::DAG_PB && scope == DagScope::All {
            stack.extend(shp_core::dag::block_links(&cid, &data)?.into_iter().rev());
        } else if cid.codec() == DAG_CBOR && (scope != DagScope::Block) {
            let v = cbor::decode(&data).map_err(|e| shp_core::Error::Schema {
                cid: cid.to_string(),
                reason: e.to_string(),
            })?;
            stack.extend(scoped_links(&v, scope).into_iter().rev());
        }
    }
    Ok(n)
}

/// A streaming CARv1 reader: the header's roots, then one verified `(cid, bytes)` per block.
/// Memory holds one block at a time; a block whose bytes do not hash to its CID is an error
/// ([`Error::Corrupt`]) naming `peer`.
pub struct CarBlocks<R: Read> {
    r: R,
    peer: String,
    pub roots: Vec<Cid>,
    done: bool,
}

impl<R: Read> CarBlocks<R> {
    pub fn new(mut r: R, peer: &str) -> Result<CarBlocks<R>> {
        let proto = |reason: String| Error::Protocol {
            peer: peer.to_string(),
            reason,
        };
        let header = read_section(&mut r, 1 << 20)
            .map_err(&proto)?
            .ok_or_else(|| proto("empty CAR".into()))?;
        let h = cbor::decode(&header).map_err(|e| proto(format!("CAR header: {e}")))?;
        if h.get("version").and_then(Value::as_u64) != Some(1) {
            return Err(proto("CAR header version is not 1".into()));
        }
        let roots = h
            .get("roots")
            .and_then(Value::as_array)
            .ok_or_else(|| proto("CAR header has no roots".into()))?
            .iter()
            .map(|v| v.as_link().ok_or_else(|| proto("a CAR root is not a CID".into())))
            .collect::<Result<_>>()?;
        Ok(CarBlocks {
            r,
            peer: peer.to_string(),
            roots,
            done: false,
        })
    }
}

impl<R: Read> Iterator for CarBlocks<R> {
    type Item = Result<(Cid, Vec<u8>)>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let peer = self.peer.clone();
        let proto = |reason: String| Error::Protocol { peer, reason };
        let sec = match read_section(&mut self.r, MAX_BLOCK + 64) {
            Ok(Some(s)) => s,
            Ok(None) => {
                self.done = true;
                return None;
            }
            Err(e) => {
                self.done = true;
                return Some(Err(proto(e)));
            }
        };
        let (cid, used) = match Cid::read_bytes(&sec) {
            Ok(x) => x,
            Err(e) => {
                self.done = true;
                return Some(Err(proto(format!("CAR section: {e}"))));
            }
        };
        let data = sec[used..].to_vec();
        if !cid.matches(&data) {
            self.done = true;
            return Some(Err(Error::Corrupt {
                peer: self.peer.clone(),
                cid: cid.to_string(),
            }));
        }
        Some(Ok((cid, data)))
    }
}

/// One varint-prefixed CAR section; `None` at a clean end of stream.
fn read_section(r: &mut dyn Read, limit: usize) -> Result<Option<Vec<u8>>, String> {
    let mut len_bytes = Vec::with_capacity(9);
    loop {
        let mut b = [0u8; 1];
        match r.read(&mut b) {
            Ok(0) if len_bytes.is_empty() => return Ok(None),
            Ok(0) => return Err("truncated CAR section length".into()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading CAR: {e}")),
        }
        len_bytes.push(b[0]);
        if b[0] & 0x80 == 0 || len_bytes.len() >= 9 {
            break;
        }
    }
    let len = read_varint(&len_bytes).ok_or("CAR section length is not a valid varint")? as usize;
    if len > limit {
        return Err(format!("CAR section of {len} bytes, over the {limit}-byte limit"));
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data)
        .map_err(|e| format!("truncated CAR section ({len} bytes expected): {e}"))?;
    Ok(Some(data))
}

/// An unsigned LEB128 varint of at most 9 bytes (multiformats).
fn read_varint(b: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for (i, byte) in b.iter().enumerate().take(9) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Appends an unsigned LEB128 varint.
pub(crate) fn write_varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Counters a transport keeps (monotonic over its life).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TransportStats {
    /// Bytes received on the wire: response bodies as sent (compressed when the peer compressed).
    pub wire_bytes: u64,
    /// Requests made.
    pub requests: u64,
    /// Blocks received as deltas against a block held here ([`delta`]).
    pub deltas: u64,
}

/// One peer that serves blocks by CID.
pub trait Transport: Send + Sync {
    /// A name for reports and errors (for HTTP: the base URL; for bitswap: the peer id).
    fn name(&self) -> String;

    /// Which transport this is, for reports: `"http"` or `"bitswap"`.
    fn kind(&self) -> &'static str {
        "http"
    }

    /// One block, checked against `cid`. [`Error::NotFound`] when the peer does not have it.
    fn get_block(&self, cid: &Cid) -> Result<Vec<u8>>;

    /// Several blocks: `found` gets each block the peer has (checked against its CID), in any order;
    /// blocks the peer lacks are left out. The default asks for them one by one.
    fn get_blocks(&self, cids: &[Cid], found: &mut dyn FnMut(Cid, Vec<u8>) -> Result<()>) -> Result<()> {
        for cid in cids {
            match self.get_block(cid) {
                Ok(b) => found(*cid, b)?,
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// [`Transport::get_blocks`], where each want may name a base: a block held here that the wanted
    /// one probably resembles (the same place in a previous version's DAG). A transport that can
    /// (HTTP to a station) asks for deltas against the bases and decodes them with `base`, which
    /// yields a base's bytes from the local store; every block handed to `found` is checked against
    /// its CID as before. The default ignores the bases.
    fn get_blocks_based(
        &self,
        wants: &[delta::Want],
        base: &dyn Fn(&Cid) -> Option<Vec<u8>>,
        found: &mut dyn FnMut(Cid, Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let _ = base;
        self.get_blocks(&delta::cids(wants), found)
    }

    /// Whether every block this transport hands over is, by construction, the block of the CID it
    /// is handed over as (bitswap: blocks are routed by the CID computed from their bytes), so a
    /// fetcher need not hash it again. The default, false, has the fetcher check each block.
    fn verifies_blocks(&self) -> bool {
        false
    }

    /// How many CIDs one [`Transport::get_blocks`] call should carry at most (a hint for fetchers).
    fn batch_hint(&self) -> usize {
        16
    }

    /// A CARv1 stream of the DAG under `root` limited to `scope` (blocks depth-first, each once).
    /// Read it with [`CarBlocks`], which checks every block.
    fn get_car(&self, root: &Cid, scope: DagScope) -> Result<Box<dyn Read + Send>>;

    /// Counters so far.
    fn stats(&self) -> TransportStats;
}
