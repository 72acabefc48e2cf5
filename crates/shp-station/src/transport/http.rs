//! The trustless-gateway protocol over HTTP(S) (reqwest, blocking, rustls).
//!
//! - `get_block`: `GET BASE/ipfs/<cid>?format=raw` with `Accept: application/vnd.ipld.raw` and
//!   `Accept-Encoding: zstd` (a station compresses the blocks that compress).
//! - `get_car`: `GET BASE/ipfs/<cid>?format=car&dag-scope=S` with
//!   `Accept: application/vnd.ipld.car; version=1; order=dfs; dups=n` and `Accept-Encoding: zstd, gzip`.
//! - `get_blocks`: shp's extension `POST BASE/shp/v1/blocks` (a CAR of the listed blocks, compressed in
//!   transit). A peer that answers 404/405/501 there is a plain gateway (Kubo, any trustless gateway):
//!   from then on this transport asks it for blocks one by one with `?format=raw`.
//! - `get_blocks_based`: shp's `POST BASE/shp/v1/deltas` when some wants name a base (see
//!   [`delta`](super::delta)); a peer that answers 404/405/501 there gets `/shp/v1/blocks` from then on.
//!
//! reqwest's own decompression is off: bodies are decoded here, after a counter has seen the bytes as
//! they came off the wire, so [`TransportStats::wire_bytes`] is what the network carried.

use super::delta::{self, Section};
use super::{CarBlocks, DagScope, Error, Result, Transport, TransportStats};
use reqwest::blocking::{Client, Response};
use reqwest::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::StatusCode;
use shp_core::cid::Cid;
use shp_core::store::MAX_BLOCK;
use std::io::Read;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

const RAW: &str = "application/vnd.ipld.raw";
const CAR: &str = "application/vnd.ipld.car; version=1; order=dfs; dups=n";
/// Most CIDs one batch request carries (the server's limit too).
pub const MAX_BATCH: usize = 4096;

const MODE_UNKNOWN: u8 = 0;
const MODE_SHP: u8 = 1;
const MODE_PLAIN: u8 = 2;

/// A peer reached over HTTP(S) at a base URL (`http://HOST:PORT`).
pub struct HttpTransport {
    base: String,
    client: Client,
    wire: Arc<AtomicU64>,
    requests: AtomicU64,
    mode: AtomicU8,
    /// Whether the peer offers `/shp/v1/deltas` (same states as `mode`).
    delta_mode: AtomicU8,
    deltas: AtomicU64,
}

impl HttpTransport {
    /// A transport for the station or gateway at `base` (scheme http or https; a trailing `/` is
    /// ignored). Nothing is sent until the first request.
    pub fn new(base: &str) -> Result<HttpTransport> {
        let bad = |reason: &str| Error::BadUrl {
            url: base.to_string(),
            reason: reason.to_string(),
        };
        let url = reqwest::Url::parse(base).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(bad("the scheme must be http or https"));
        }
        if url.host_str().is_none() {
            return Err(bad("no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a base URL has no query or fragment"));
        }
        let client = Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(None)
            .user_agent(concat!("shp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| bad(&format!("HTTP client: {e}")))?;
        Ok(HttpTransport {
            base: base.trim_end_matches('/').to_string(),
            client,
            wire: Arc::new(AtomicU64::new(0)),
            requests: AtomicU64::new(0),
            mode: AtomicU8::new(MODE_UNKNOWN),
            delta_mode: AtomicU8::new(MODE_UNKNOWN),
            deltas: AtomicU64::new(0),
        })
    }

    /// The root CID of the image a station's registry holds as `repo` at `reference` (a tag or a
    /// manifest digest), from the `x-shp-root` header of a HEAD on its manifest; `None` when the
    /// peer does not have it or is not a station (a registry or gateway sends no such header).
    pub fn image_root(&self, repo: &str, reference: &str) -> Result<Option<Cid>> {
        use shp_core::oci::{DOCKER_LIST, OCI_INDEX};
        let accept = [
            OCI_INDEX,
            DOCKER_LIST,
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ]
        .join(", ");
        let resp = self.send(
            self.client
                .head(format!("{}/v2/{repo}/manifests/{reference}", self.base))
                .header(ACCEPT, accept),
        )?;
        if !resp.status().is_success() {
            return Ok(None);
        }
        let Some(v) = resp.headers().get(crate::mirror::ROOT_HEADER) else {
            return Ok(None);
        };
        let text = v.to_str().map_err(|_| Error::Protocol {
            peer: self.base.clone(),
            reason: format!("{}: not text", crate::mirror::ROOT_HEADER),
        })?;
        text.parse().map(Some).map_err(|e| Error::Protocol {
            peer: self.base.clone(),
            reason: format!("{}: {text:?}: {e}", crate::mirror::ROOT_HEADER),
        })
    }

    /// Whether the peer has answered shp's batch extension (false until it has been tried).
    pub fn speaks_shp(&self) -> bool {
        self.mode.load(Ordering::Relaxed) == MODE_SHP
    }

    fn http_err(&self, e: reqwest::Error) -> Error {
        Error::Http {
            peer: self.base.clone(),
            reason: format!("{e}{}", source_chain(&e)),
        }
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder) -> Result<Response> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        req.send().map_err(|e| self.http_err(e))
    }

    /// A response's body as it arrives, counted on the wire, then decoded per `Content-Encoding`.
    fn body(&self, resp: Response) -> Result<Box<dyn Read + Send>> {
        let enc = resp
            .headers()
            .get(CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
            .unwrap_or_default();
        let counted = Counted {
            inner: resp,
            n: self.wire.clone(),
        };
        Ok(match enc.as_str() {
            "" | "identity" => Box::new(counted),
            "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(counted)),
            "zstd" => Box::new(zstd::stream::read::Decoder::new(counted).map_err(|e| Error::Http {
                peer: self.base.clone(),
                reason: format!("zstd decoder: {e}"),
            })?),
            other => {
                return Err(Error::Protocol {
                    peer: self.base.clone(),
                    reason: format!("unsupported Content-Encoding {other:?}"),
                })
            }
        })
    }

    /// Turns a non-2xx answer into an error (reading at most 512 bytes of its body).
    fn check(&self, resp: Response, cid: Option<&Cid>) -> Result<Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status == StatusCode::NOT_FOUND {
            if let Some(c) = cid {
                return Err(Error::NotFound {
                    peer: self.base.clone(),
                    cid: c.to_string(),
                });
            }
        }
        let url = resp.url().to_string();
        let mut body = Vec::new();
        let _ = self.body(resp)?.take(512).read_to_end(&mut body);
        Err(Error::Status {
            peer: self.base.clone(),
            url,
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).trim().to_string(),
        })
    }

    /// The batch extension; `Ok(None)` when the peer does not offer it.
    fn post_blocks(&self, cids: &[Cid]) -> Result<Option<Box<dyn Read + Send>>> {
        let mut body = String::with_capacity(cids.len() * 60);
        for c in cids {
            body.push_str(&c.to_string());
            body.push('\n');
        }
        let resp = self.send(
            self.client
                .post(format!("{}/shp/v1/blocks", self.base))
                .header(ACCEPT, "application/vnd.ipld.car; version=1")
                .header(ACCEPT_ENCODING, "zstd, gzip")
                .header(CONTENT_TYPE, "text/plain")
                .body(body),
        )?;
        if matches!(
            resp.status(),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED
        ) {
            return Ok(None);
        }
        let resp = self.check(resp, None)?;
        Ok(Some(self.body(resp)?))
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = String::new();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    n: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.fetch_add(k as u64, Ordering::Relaxed);
        Ok(k)
    }
}

impl Transport for HttpTransport {
    fn name(&self) -> String {
        self.base.clone()
    }

    fn get_block(&self, cid: &Cid) -> Result<Vec<u8>> {
        let resp = self.send(
            self.client
                .get(format!("{}/ipfs/{cid}?format=raw", self.base))
                .header(ACCEPT, RAW)
                .header(ACCEPT_ENCODING, "zstd"),
        )?;
        let resp = self.check(resp, Some(cid))?;
        let mut data = Vec::new();
        self.body(resp)?
            .take(MAX_BLOCK as u64 + 1)
            .read_to_end(&mut data)
            .map_err(|e| Error::Http {
                peer: self.base.clone(),
                reason: format!("reading block {cid}: {e}"),
            })?;
        if data.len() > MAX_BLOCK {
            return Err(Error::Protocol {
                peer: self.base.clone(),
                reason: format!("block {cid} is over the {MAX_BLOCK}-byte block limit"),
            });
        }
        if !cid.matches(&data) {
            return Err(Error::Corrupt {
                peer: self.base.clone(),
                cid: cid.to_string(),
            });
        }
        Ok(data)
    }

    fn get_blocks(&self, cids: &[Cid], found: &mut dyn FnMut(Cid, Vec<u8>) -> Result<()>) -> Result<()> {
        if self.mode.load(Ordering::Relaxed) != MODE_PLAIN {
            match self.post_blocks(cids)? {
                Some(body) => {
                    self.mode.store(MODE_SHP, Ordering::Relaxed);
                    let wanted: std::collections::HashSet<Cid> = cids.iter().copied().collect();
                    for item in CarBlocks::new(body, &self.base)? {
                        let (cid, data) = item?;
                        if !wanted.contains(&cid) {
                            return Err(Error::Protocol {
                                peer: self.base.clone(),
                                reason: format!("sent block {cid}, which was not asked for"),
                            });
                        }
                        found(cid, data)?;
                    }
                    return Ok(());
                }
                None => self.mode.store(MODE_PLAIN, Ordering::Relaxed),
            }
        }
        for cid in cids {
            match self.get_block(cid) {
                Ok(b) => found(*cid, b)?,
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn get_blocks_based(
        &self,
        wants: &[delta::Want],
        base: &dyn Fn(&Cid) -> Option<Vec<u8>>,
        found: &mut dyn FnMut(Cid, Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        if wants.iter().all(|w| w.base.is_none()) || self.delta_mode.load(Ordering::Relaxed) == MODE_PLAIN {
            return self.get_blocks(&delta::cids(wants), found);
        }
        let resp = self.send(
            self.client
                .post(format!("{}/shp/v1/deltas", self.base))
                .header(ACCEPT, "application/vnd.shp.deltas.v1")
                .header(ACCEPT_ENCODING, "zstd, gzip")
                .header(CONTENT_TYPE, "text/plain")
                .body(delta::encode_request(wants)),
        )?;
        if matches!(
            resp.status(),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED
        ) {
            self.delta_mode.store(MODE_PLAIN, Ordering::Relaxed);
            return self.get_blocks(&delta::cids(wants), found);
        }
        let resp = self.check(resp, None)?;
        self.delta_mode.store(MODE_SHP, Ordering::Relaxed);
        let proto = |reason: String| Error::Protocol {
            peer: self.base.clone(),
            reason,
        };
        let asked: std::collections::HashMap<Cid, Option<Cid>> = wants.iter().map(|w| (w.cid, w.base)).collect();
        for sec in delta::Sections::new(self.body(resp)?) {
            let sec = sec.map_err(&proto)?;
            let cid = sec.cid();
            let Some(asked_base) = asked.get(&cid) else {
                return Err(proto(format!("sent block {cid}, which was not asked for")));
            };
            let corrupt = || Error::Corrupt {
                peer: self.base.clone(),
                cid: cid.to_string(),
            };
            let data = match sec {
                Section::Whole(_, data) if cid.matches(&data) => data,
                Section::Whole(..) => return Err(corrupt()),
                Section::Delta { base: b, frame, .. } => {
                    if *asked_base != Some(b) {
                        return Err(proto(format!(
                            "sent block {cid} as a delta against {b}, a base not named for it"
                        )));
                    }
                    let held = base(&b).ok_or_else(|| Error::Peer {
                        peer: self.base.clone(),
                        reason: format!("block {cid}: the base {b} is no longer held here"),
                    })?;
                    self.deltas.fetch_add(1, Ordering::Relaxed);
                    // A frame that does not decode to the block is wrong data, like bytes that do
                    // not hash to it.
                    delta::decode(&cid, &held, &frame).map_err(|e| {
                        tracing::warn!(peer = %self.base, %cid, base = %b, "a wrong delta: {e}");
                        corrupt()
                    })?
                }
            };
            found(cid, data)?;
        }
        Ok(())
    }

    fn batch_hint(&self) -> usize {
        match self.mode.load(Ordering::Relaxed) {
            MODE_PLAIN => 8,
            _ => 512,
        }
    }

    fn get_car(&self, root: &Cid, scope: DagScope) -> Result<Box<dyn Read + Send>> {
        let resp = self.send(
            self.client
                .get(format!(
                    "{}/ipfs/{root}?format=car&dag-scope={}",
                    self.base,
                    scope.as_str()
                ))
                .header(ACCEPT, CAR)
                .header(ACCEPT_ENCODING, "zstd, gzip"),
        )?;
        let resp = self.check(resp, Some(root))?;
        self.body(resp)
    }

    fn stats(&self) -> TransportStats {
        TransportStats {
            wire_bytes: self.wire.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            deltas: self.deltas.load(Ordering::Relaxed),
        }
    }
}
