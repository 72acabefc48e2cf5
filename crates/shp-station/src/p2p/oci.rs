//! OCI images by digest among libp2p peers: which connected station holds the image whose manifest
//! has a given digest, and the root of its DAG — what a pull-through mirror needs to take an image
//! from its neighbours over bitswap instead of from the upstream registry.
//!
//! Bitswap moves blocks by CID; a runtime asks for a manifest by its OCI digest, and the DAG that
//! rebuilds it has a CID of its own that the digest does not tell. So a station answers one small
//! question on `/shp/oci-roots/1.0.0`: one request frame, one answer frame, then the stream ends
//! (both framed as bitswap is, a uvarint length and at most [`MAX_FRAME`] bytes):
//!
//! ```text
//! message Query  { repeated bytes digest = 1; }   // sha-256 of manifests: 32 bytes each, at most 64
//! message Answer { repeated Held held = 1; }
//! message Held   { bytes digest = 1; bytes root = 2; }   // root: the binary CID of the image DAG
//! ```
//!
//! A station answers for the images its refs name or pin whose top manifest (an index or a
//! manifest) has the digest. Nothing in an answer is trusted: the asker fetches the DAG over
//! bitswap (every block checked against its CID) and then checks that the image's top manifest is
//! the one it asked for. A peer that sends a malformed query gets a bitswap strike (peers that
//! keep doing it are disconnected).
//!
//! Finding the holders: every connected peer is asked at once; when none holds the image and the
//! DHT is on, the providers of the digest's multihash (the announcer provides it for every image,
//! see [`super::dht::announced`]) are dialled and asked too.

use super::bitswap::Engine;
use super::message::{self, put_bytes, Fields, Value};
use super::{BitswapPeer, Node};
use futures::{AsyncWriteExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use shp_core::cid::{Cid, RAW};
use shp_core::Home;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/shp/oci-roots/1.0.0");
/// Most digests one query asks.
pub const MAX_DIGESTS: usize = 64;
/// Most bytes a query or an answer frame holds (64 entries fit many times over).
pub const MAX_FRAME: usize = 16 << 10;
/// How long one question may take (opening the stream, the answer).
pub const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// After the first peer that holds the image answers, how long the others still have.
const GRACE: Duration = Duration::from_millis(100);
/// Most peers asked at once.
const MAX_ASKED: usize = 64;

/// Why a query or an answer is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("oci-roots message: {0}")]
pub struct DecodeError(pub String);

fn bad(s: impl Into<String>) -> DecodeError {
    DecodeError(s.into())
}

fn digest_of(b: &[u8]) -> Result<[u8; 32], DecodeError> {
    b.try_into()
        .map_err(|_| bad(format!("a digest of {} bytes, not a 32-byte sha-256", b.len())))
}

/// The digests a query asks for.
pub fn encode_query(digests: &[[u8; 32]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(digests.len() * 34);
    for d in digests {
        put_bytes(&mut out, 1, d);
    }
    out
}

pub fn decode_query(b: &[u8]) -> Result<Vec<[u8; 32]>, DecodeError> {
    let mut out = Vec::new();
    for f in Fields::new(b) {
        let (field, v) = f.map_err(|e| bad(e.0))?;
        match (field, v) {
            (1, Value::Bytes(d)) => {
                if out.len() == MAX_DIGESTS {
                    return Err(bad(format!("more than {MAX_DIGESTS} digests in one query")));
                }
                out.push(digest_of(d)?);
            }
            (1, _) => return Err(bad("digest is not a bytes field")),
            _ => {} // unknown fields are skipped, as protobuf readers do
        }
    }
    Ok(out)
}

/// An answer: (manifest digest, image root) for each image held.
pub fn encode_answer(held: &[([u8; 32], Cid)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(held.len() * 76);
    for (d, root) in held {
        let mut h = Vec::with_capacity(72);
        put_bytes(&mut h, 1, d);
        put_bytes(&mut h, 2, &root.to_bytes());
        put_bytes(&mut out, 1, &h);
    }
    out
}

pub fn decode_answer(b: &[u8]) -> Result<Vec<([u8; 32], Cid)>, DecodeError> {
    let mut out = Vec::new();
    for f in Fields::new(b) {
        let (field, v) = f.map_err(|e| bad(e.0))?;
        match (field, v) {
            (1, Value::Bytes(h)) => {
                if out.len() == MAX_DIGESTS {
                    return Err(bad(format!("more than {MAX_DIGESTS} entries in one answer")));
                }
                let (mut digest, mut root) = (None, None);
                for f in Fields::new(h) {
                    match f.map_err(|e| bad(e.0))? {
                        (1, Value::Bytes(d)) => digest = Some(digest_of(d)?),
                        (2, Value::Bytes(c)) => root = Some(Cid::from_bytes(c).map_err(|e| bad(format!("root: {e}")))?),
                        (1 | 2, _) => return Err(bad("digest and root are bytes fields")),
                        _ => {}
                    }
                }
                match (digest, root) {
                    (Some(d), Some(r)) => out.push((d, r)),
                    _ => return Err(bad("an entry without its digest or its root")),
                }
            }
            (1, _) => return Err(bad("an entry is not a bytes field")),
            _ => {}
        }
    }
    Ok(out)
}

/// The images a home holds, by the digest of their top manifest. Each root is read once (its
/// top manifest never changes); the refs are read again at every lookup, so a push is answered
/// for as soon as it lands and a removed image is not.
pub struct Catalog {
    home: Arc<Home>,
    tops: Mutex<HashMap<Cid, Option<[u8; 32]>>>,
}

impl Catalog {
    pub fn new(home: Arc<Home>) -> Catalog {
        Catalog {
            home,
            tops: Mutex::new(HashMap::new()),
        }
    }

    /// The roots of the images held whose top manifest is one of `digests`.
    pub fn lookup(&self, digests: &[[u8; 32]]) -> shp_core::Result<Vec<([u8; 32], Cid)>> {
        let refs = self.home.refs()?;
        let roots = refs.roots()?;
        let mut tops = self.tops.lock().unwrap();
        tops.retain(|r, _| roots.contains(r));
        let mut out = Vec::new();
        for r in roots {
            let top = *tops.entry(r).or_insert_with(|| {
                let store = self.home.store();
                shp_core::image::ImageRoot::load(store, &r)
                    .and_then(|img| shp_core::blob::BlobNode::load(store, &img.top))
                    .ok()
                    .map(|b| b.digest)
            });
            if let Some(d) = top.filter(|d| digests.contains(d)) {
                if !out.iter().any(|(o, _)| *o == d) {
                    out.push((d, r));
                }
            }
        }
        Ok(out)
    }
}

/// Answers one inbound query stream.
pub(crate) async fn serve(engine: Arc<Engine>, catalog: Arc<Catalog>, peer: PeerId, mut stream: libp2p::Stream) {
    let frame = match tokio::time::timeout(ASK_TIMEOUT, message::read_frame_max(&mut stream, MAX_FRAME)).await {
        Ok(Ok(Some(f))) => f,
        Ok(Ok(None)) | Err(_) => return,
        Ok(Err(e)) => {
            if e.kind() == std::io::ErrorKind::InvalidData {
                engine.strike(&peer, &format!("oci-roots query: {e}"));
            }
            return;
        }
    };
    let digests = match decode_query(&frame) {
        Ok(d) => d,
        Err(e) => {
            engine.strike(&peer, &e.to_string());
            return;
        }
    };
    let c = catalog.clone();
    let held = match tokio::task::spawn_blocking(move || c.lookup(&digests)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            tracing::warn!(%peer, "oci-roots: cannot read the refs: {e}");
            Vec::new()
        }
        Err(_) => return,
    };
    tracing::debug!(%peer, held = held.len(), "oci-roots query answered");
    let answer = encode_answer(&held);
    let _ = tokio::time::timeout(ASK_TIMEOUT, async {
        if message::write_frame(&mut stream, &answer).await.is_ok() {
            let _ = stream.close().await;
        }
    })
    .await;
}

/// Asks `peer` which of `digests` it holds; `None` when it does not speak the protocol, cannot be
/// reached, is too slow, or answers nonsense.
async fn ask(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    digests: Vec<[u8; 32]>,
) -> Option<Vec<([u8; 32], Cid)>> {
    let asked = async {
        let mut s = control.open_stream(peer, PROTOCOL).await.ok()?;
        message::write_frame(&mut s, &encode_query(&digests)).await.ok()?;
        let frame = message::read_frame_max(&mut s, MAX_FRAME).await.ok()??;
        match decode_answer(&frame) {
            Ok(held) => Some(held.into_iter().filter(|(d, _)| digests.contains(d)).collect()),
            Err(e) => {
                tracing::warn!(%peer, "{e}");
                None
            }
        }
    };
    tokio::time::timeout(ASK_TIMEOUT, asked).await.ok().flatten()
}

/// Asks `peers` (at most [`MAX_ASKED`]) at once which holds the image of `digest`; returns the
/// holders with the root each named, once everyone answered, [`GRACE`] after the first holder
/// answered, or after `wait`.
pub(crate) async fn holders(
    control: &libp2p_stream::Control,
    peers: &[PeerId],
    digest: [u8; 32],
    wait: Duration,
) -> Vec<(PeerId, Cid)> {
    let mut asking: futures::stream::FuturesUnordered<_> = peers
        .iter()
        .take(MAX_ASKED)
        .map(|p| {
            let (c, p) = (control.clone(), *p);
            async move { (p, ask(c, p, vec![digest]).await) }
        })
        .collect();
    let started = Instant::now();
    let mut deadline = tokio::time::Instant::now() + wait;
    let mut found = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, asking.next()).await {
            Ok(Some((p, Some(held)))) => {
                if let Some((_, root)) = held.into_iter().find(|(d, _)| *d == digest) {
                    if found.is_empty() {
                        deadline = deadline.min(tokio::time::Instant::now() + started.elapsed().max(GRACE));
                    }
                    found.push((p, root));
                }
            }
            Ok(Some((_, None))) => {}
            Ok(None) | Err(_) => return found,
        }
    }
}

/// What a fetch of an image from the peers that hold it brought.
#[derive(Debug)]
pub struct Fetched {
    pub root: Cid,
    pub report: crate::transport::FetchReport,
    /// The peers that said they hold it.
    pub holders: Vec<PeerId>,
}

/// Finds the peers that hold the image whose top manifest is `digest` (connected peers, then DHT
/// providers) and fetches its DAG from them over bitswap into `home`, pinned (the caller names it
/// once it has checked the image). `Ok(None)`: no peer holds it. Blocking: call it from a
/// blocking thread; `rt` is the node's runtime.
pub fn fetch_image_blocking(
    node: &Node,
    rt: &tokio::runtime::Handle,
    home: &Home,
    digest: [u8; 32],
    wait: Duration,
) -> Result<Option<Fetched>, String> {
    let found = rt
        .block_on(node.image_holders(digest, wait))
        .map_err(|e| e.to_string())?;
    // Holders may name different roots (the same manifest pushed from different sources): take
    // the root most of them name, and fetch from those.
    let mut votes: HashMap<Cid, Vec<PeerId>> = HashMap::new();
    for (p, r) in found {
        votes.entry(r).or_default().push(p);
    }
    let Some((root, holders)) = votes.into_iter().max_by_key(|(_, v)| v.len()) else {
        return Ok(None);
    };
    let swarm: Vec<BitswapPeer> = rt
        .block_on(node.bitswap_peers())
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|p| holders.contains(&p.peer_id()))
        .collect();
    if swarm.is_empty() {
        return Err(format!("the peers holding {root} went away"));
    }
    let report = super::fetch::fetch_blocking(home, &root, None, &[], &swarm).map_err(|e| e.to_string())?;
    Ok(Some(Fetched { root, report, holders }))
}

/// The CID whose multihash is an OCI digest (raw codec): what providers of the image announce,
/// so that a DHT lookup by digest finds them (Kubo keys provider records by multihash too).
pub fn digest_key(digest: [u8; 32]) -> Cid {
    Cid::from_digest(RAW, digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn queries_and_answers_round_trip(
            ds in proptest::collection::vec(any::<[u8; 32]>(), 0..=MAX_DIGESTS),
            codecs in proptest::collection::vec(prop_oneof![Just(RAW), Just(0x71u64), Just(0x70u64)], 0..=MAX_DIGESTS),
        ) {
            prop_assert_eq!(decode_query(&encode_query(&ds)).unwrap(), ds.clone());
            let held: Vec<([u8; 32], Cid)> = ds.iter().zip(&codecs).map(|(d, c)| (*d, Cid::from_digest(*c, *d))).collect();
            prop_assert_eq!(decode_answer(&encode_answer(&held)).unwrap(), held);
        }

        #[test]
        fn decoding_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_query(&b);
            let _ = decode_answer(&b);
        }
    }

    #[test]
    fn bad_messages_are_named() {
        let mut q = Vec::new();
        put_bytes(&mut q, 1, &[1; 31]);
        assert!(decode_query(&q).unwrap_err().0.contains("31 bytes"));
        let many: Vec<[u8; 32]> = (0..=MAX_DIGESTS as u8).map(|i| [i; 32]).collect();
        assert!(decode_query(&encode_query(&many))
            .unwrap_err()
            .0
            .contains("more than 64"));
        let mut a = Vec::new();
        let mut h = Vec::new();
        put_bytes(&mut h, 1, &[2; 32]);
        put_bytes(&mut a, 1, &h);
        assert!(decode_answer(&a)
            .unwrap_err()
            .0
            .contains("without its digest or its root"));
        let mut h2 = Vec::new();
        put_bytes(&mut h2, 1, &[2; 32]);
        put_bytes(&mut h2, 2, b"not a cid");
        let mut a2 = Vec::new();
        put_bytes(&mut a2, 1, &h2);
        assert!(decode_answer(&a2)
            .unwrap_err()
            .to_string()
            .starts_with("oci-roots message: root:"));
        // Unknown fields are skipped.
        let mut q2 = encode_query(&[[3; 32]]);
        put_bytes(&mut q2, 9, b"later");
        assert_eq!(decode_query(&q2).unwrap(), vec![[3; 32]]);
    }
}
