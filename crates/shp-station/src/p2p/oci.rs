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
//! message Query  { repeated bytes digest = 1;    // sha-256 of manifests: 32 bytes each, at most 64
//!                  repeated string tag = 2; }    // HOST/REPO:TAG, at most 16 of ≤ 512 bytes
//! message Answer { repeated Held held = 1; }
//! message Held   { bytes digest = 1; bytes root = 2;   // root: the binary CID of the image DAG
//!                  string tag = 3; }                    // set when the entry answers a tag
//! ```
//!
//! A station answers for the images its refs name or pin whose top manifest (an index or a
//! manifest) has the digest. A tag is answered when the refs name an image by it, or when the
//! station's mirror last learnt from its upstream that the tag is a digest whose image the station
//! holds ([`Catalog::set_tags`]); tags are mutable, so an asker uses such an answer only while its
//! own upstream cannot say. Nothing in an answer is trusted: the asker fetches the DAG over
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
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/shp/oci-roots/1.0.0");
/// Most digests one query asks.
pub const MAX_DIGESTS: usize = 64;
/// Most tags one query asks.
pub const MAX_TAGS: usize = 16;
/// Longest tag (`HOST/REPO:TAG`) a query may carry.
pub const MAX_TAG_LEN: usize = 512;
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

/// What a query asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub digests: Vec<[u8; 32]>,
    pub tags: Vec<String>,
}

/// One image held: the digest of its top manifest, the root of its DAG, and the tag asked for when
/// the entry answers one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub digest: [u8; 32],
    pub root: Cid,
    pub tag: Option<String>,
}

fn tag_of(b: &[u8]) -> Result<String, DecodeError> {
    if b.len() > MAX_TAG_LEN {
        return Err(bad(format!("a tag of {} bytes, over {MAX_TAG_LEN}", b.len())));
    }
    String::from_utf8(b.to_vec()).map_err(|_| bad("a tag that is not UTF-8"))
}

pub fn encode_query(q: &Query) -> Vec<u8> {
    let mut out = Vec::with_capacity(q.digests.len() * 34);
    for d in &q.digests {
        put_bytes(&mut out, 1, d);
    }
    for t in &q.tags {
        put_bytes(&mut out, 2, t.as_bytes());
    }
    out
}

pub fn decode_query(b: &[u8]) -> Result<Query, DecodeError> {
    let mut q = Query::default();
    for f in Fields::new(b) {
        let (field, v) = f.map_err(|e| bad(e.0))?;
        match (field, v) {
            (1, Value::Bytes(d)) => {
                if q.digests.len() == MAX_DIGESTS {
                    return Err(bad(format!("more than {MAX_DIGESTS} digests in one query")));
                }
                q.digests.push(digest_of(d)?);
            }
            (2, Value::Bytes(t)) => {
                if q.tags.len() == MAX_TAGS {
                    return Err(bad(format!("more than {MAX_TAGS} tags in one query")));
                }
                q.tags.push(tag_of(t)?);
            }
            (1 | 2, _) => return Err(bad("digest and tag are bytes fields")),
            _ => {} // unknown fields are skipped, as protobuf readers do
        }
    }
    Ok(q)
}

pub fn encode_answer(held: &[Held]) -> Vec<u8> {
    let mut out = Vec::with_capacity(held.len() * 76);
    for h in held {
        let mut e = Vec::with_capacity(72);
        put_bytes(&mut e, 1, &h.digest);
        put_bytes(&mut e, 2, &h.root.to_bytes());
        if let Some(t) = &h.tag {
            put_bytes(&mut e, 3, t.as_bytes());
        }
        put_bytes(&mut out, 1, &e);
    }
    out
}

/// Most entries an answer may hold: one per digest and tag a query can ask.
pub const MAX_HELD: usize = MAX_DIGESTS + MAX_TAGS;

pub fn decode_answer(b: &[u8]) -> Result<Vec<Held>, DecodeError> {
    let mut out = Vec::new();
    for f in Fields::new(b) {
        let (field, v) = f.map_err(|e| bad(e.0))?;
        match (field, v) {
            (1, Value::Bytes(h)) => {
                if out.len() == MAX_HELD {
                    return Err(bad(format!("more than {MAX_HELD} entries in one answer")));
                }
                let (mut digest, mut root, mut tag) = (None, None, None);
                for f in Fields::new(h) {
                    match f.map_err(|e| bad(e.0))? {
                        (1, Value::Bytes(d)) => digest = Some(digest_of(d)?),
                        (2, Value::Bytes(c)) => root = Some(Cid::from_bytes(c).map_err(|e| bad(format!("root: {e}")))?),
                        (3, Value::Bytes(t)) => tag = Some(tag_of(t)?),
                        (1..=3, _) => return Err(bad("digest, root and tag are bytes fields")),
                        _ => {}
                    }
                }
                match (digest, root) {
                    (Some(digest), Some(root)) => out.push(Held { digest, root, tag }),
                    _ => return Err(bad("an entry without its digest or its root")),
                }
            }
            (1, _) => return Err(bad("an entry is not a bytes field")),
            _ => {}
        }
    }
    Ok(out)
}

/// What a tag (`HOST/REPO:TAG`) was last known to be, beyond the refs' names: the mirror's record
/// of what its upstream said.
pub type TagSource = Arc<dyn Fn(&str) -> Option<[u8; 32]> + Send + Sync>;

/// The images a home holds, by the digest of their top manifest (and by tag). Each root is read
/// once (its top manifest never changes); the refs are read again at every lookup, so a push is
/// answered for as soon as it lands and a removed image is not.
pub struct Catalog {
    home: Arc<Home>,
    tops: Mutex<HashMap<Cid, Option<[u8; 32]>>>,
    tags: OnceLock<TagSource>,
    /// Lookups at once, whatever the number of peers and streams asking (each reads the refs).
    busy: Arc<tokio::sync::Semaphore>,
}

/// Lookups the catalog runs at once; more queries wait their turn.
const MAX_LOOKUPS: usize = 4;

impl Catalog {
    pub fn new(home: Arc<Home>) -> Catalog {
        Catalog {
            home,
            tops: Mutex::new(HashMap::new()),
            tags: OnceLock::new(),
            busy: Arc::new(tokio::sync::Semaphore::new(MAX_LOOKUPS)),
        }
    }

    /// Where tags the refs do not name are looked up (set once, by the station's mirror).
    pub fn set_tags(&self, source: TagSource) {
        let _ = self.tags.set(source);
    }

    /// The images held that the query names: by top-manifest digest, and by tag.
    pub fn lookup(&self, q: &Query) -> shp_core::Result<Vec<Held>> {
        let refs = self.home.refs()?;
        let roots = refs.roots()?;
        let by_digest: HashMap<[u8; 32], Cid> = {
            let mut tops = self.tops.lock().unwrap();
            tops.retain(|r, _| roots.contains(r));
            let mut m = HashMap::new();
            for r in &roots {
                let top = *tops.entry(*r).or_insert_with(|| {
                    let store = self.home.store();
                    shp_core::image::ImageRoot::load(store, r)
                        .and_then(|img| shp_core::blob::BlobNode::load(store, &img.top))
                        .ok()
                        .map(|b| b.digest)
                });
                if let Some(d) = top {
                    m.entry(d).or_insert(*r);
                }
            }
            m
        };
        let mut out: Vec<Held> = Vec::new();
        for d in &q.digests {
            if let Some(root) = by_digest.get(d) {
                if !out.iter().any(|h| h.digest == *d) {
                    out.push(Held {
                        digest: *d,
                        root: *root,
                        tag: None,
                    });
                }
            }
        }
        for t in &q.tags {
            let named = refs
                .lookup(t)
                .ok()
                .flatten()
                .and_then(|r| r.parse::<Cid>().ok())
                .and_then(|r| by_digest.iter().find(|(_, v)| **v == r).map(|(d, _)| (*d, r)));
            let known = || {
                let d = self.tags.get()?(t)?;
                by_digest.get(&d).map(|r| (d, *r))
            };
            if let Some((digest, root)) = named.or_else(known) {
                out.push(Held {
                    digest,
                    root,
                    tag: Some(t.clone()),
                });
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
    let query = match decode_query(&frame) {
        Ok(q) => q,
        Err(e) => {
            engine.strike(&peer, &e.to_string());
            return;
        }
    };
    let Ok(_turn) = tokio::time::timeout(ASK_TIMEOUT, catalog.busy.clone().acquire_owned()).await else {
        tracing::debug!(%peer, "oci-roots: too many queries at once; this one is dropped");
        return;
    };
    let c = catalog.clone();
    let held = match tokio::task::spawn_blocking(move || c.lookup(&query)).await {
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

/// Asks `peer` the query; `None` when it does not speak the protocol, cannot be reached, is too
/// slow, or answers nonsense. Entries the query did not ask for are dropped.
async fn ask(mut control: libp2p_stream::Control, peer: PeerId, q: Query) -> Option<Vec<Held>> {
    let asked = async {
        let mut s = control.open_stream(peer, PROTOCOL).await.ok()?;
        message::write_frame(&mut s, &encode_query(&q)).await.ok()?;
        let frame = message::read_frame_max(&mut s, MAX_FRAME).await.ok()??;
        match decode_answer(&frame) {
            Ok(held) => Some(
                held.into_iter()
                    .filter(|h| match &h.tag {
                        None => q.digests.contains(&h.digest),
                        Some(t) => q.tags.contains(t),
                    })
                    .collect(),
            ),
            Err(e) => {
                tracing::warn!(%peer, "{e}");
                None
            }
        }
    };
    tokio::time::timeout(ASK_TIMEOUT, asked).await.ok().flatten()
}

/// What a search for holders looks for: an image by its top manifest's digest, or by tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    Digest([u8; 32]),
    /// `HOST/REPO:TAG`.
    Tag(String),
}

impl Want {
    fn query(&self) -> Query {
        match self {
            Want::Digest(d) => Query {
                digests: vec![*d],
                tags: Vec::new(),
            },
            Want::Tag(t) => Query {
                digests: Vec::new(),
                tags: vec![t.clone()],
            },
        }
    }
}

/// Asks `peers` (at most [`MAX_ASKED`]) at once for `want`; returns the holders with what each
/// answered, once everyone answered, [`GRACE`] (or as long again as that answer took) after the
/// first holder answered, or after `wait`.
pub(crate) async fn holders(
    control: &libp2p_stream::Control,
    peers: &[PeerId],
    want: &Want,
    wait: Duration,
) -> Vec<(PeerId, Held)> {
    let q = want.query();
    let mut asking: futures::stream::FuturesUnordered<_> = peers
        .iter()
        .take(MAX_ASKED)
        .map(|p| {
            let (c, p, q) = (control.clone(), *p, q.clone());
            async move { (p, ask(c, p, q).await) }
        })
        .collect();
    let started = Instant::now();
    let mut deadline = tokio::time::Instant::now() + wait;
    let mut found = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, asking.next()).await {
            Ok(Some((p, Some(held)))) => {
                if let Some(h) = held.into_iter().next() {
                    if found.is_empty() {
                        deadline = deadline.min(tokio::time::Instant::now() + started.elapsed().max(GRACE));
                    }
                    found.push((p, h));
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
    /// The digest of the image's top manifest, as the holders named it (the caller checks it).
    pub digest: [u8; 32],
    pub report: crate::transport::FetchReport,
    /// The peers that said they hold it.
    pub holders: Vec<PeerId>,
}

/// Finds the peers that hold the image `want` names (connected peers; for a digest, then DHT
/// providers) and fetches its DAG from them over bitswap into `home`, pinned (the caller names it
/// once it has checked the image). `Ok(None)`: no peer holds it. `base`: a previous version held
/// here, the fetch's delta base. Blocking: call it from a blocking thread; `rt` is the node's
/// runtime.
pub fn fetch_image_blocking(
    node: &Node,
    rt: &tokio::runtime::Handle,
    home: &Home,
    want: &Want,
    base: Option<Cid>,
    wait: Duration,
) -> Result<Option<Fetched>, String> {
    let found = rt.block_on(node.image_holders(want, wait)).map_err(|e| e.to_string())?;
    // Holders may name different images (a tag that moved; the same manifest pushed from
    // different sources): take what most of them name, and fetch from those.
    let mut votes: HashMap<([u8; 32], Cid), Vec<PeerId>> = HashMap::new();
    for (p, h) in found {
        votes.entry((h.digest, h.root)).or_default().push(p);
    }
    let Some(((digest, root), holders)) = votes.into_iter().max_by_key(|(_, v)| v.len()) else {
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
    let report = super::fetch::fetch_blocking_based(home, &root, None, base, &[], &swarm).map_err(|e| e.to_string())?;
    Ok(Some(Fetched {
        root,
        digest,
        report,
        holders,
    }))
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

    fn held() -> impl Strategy<Value = Held> {
        (
            any::<[u8; 32]>(),
            prop_oneof![Just(RAW), Just(0x71u64), Just(0x70u64)],
            proptest::option::of("[a-z0-9./:-]{1,40}"),
        )
            .prop_map(|(d, c, tag)| Held {
                digest: d,
                root: Cid::from_digest(c, d),
                tag,
            })
    }

    proptest! {
        #[test]
        fn queries_and_answers_round_trip(
            digests in proptest::collection::vec(any::<[u8; 32]>(), 0..=MAX_DIGESTS),
            tags in proptest::collection::vec("[a-zA-Z0-9./:@_-]{0,80}", 0..=MAX_TAGS),
            held in proptest::collection::vec(held(), 0..=MAX_HELD),
        ) {
            let q = Query { digests, tags };
            prop_assert_eq!(decode_query(&encode_query(&q)).unwrap(), q);
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
        let many = Query {
            digests: (0..=MAX_DIGESTS as u8).map(|i| [i; 32]).collect(),
            tags: Vec::new(),
        };
        assert!(decode_query(&encode_query(&many))
            .unwrap_err()
            .0
            .contains("more than 64"));
        let mut long = Vec::new();
        put_bytes(&mut long, 2, &[b'a'; MAX_TAG_LEN + 1]);
        assert!(decode_query(&long).unwrap_err().0.contains("over 512"));
        let mut not_utf8 = Vec::new();
        put_bytes(&mut not_utf8, 2, &[0xff, 0xfe]);
        assert!(decode_query(&not_utf8).unwrap_err().0.contains("UTF-8"));
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
        let one = Query {
            digests: vec![[3; 32]],
            tags: vec!["docker.io/library/app:v1".into()],
        };
        let mut q2 = encode_query(&one);
        put_bytes(&mut q2, 9, b"later");
        assert_eq!(decode_query(&q2).unwrap(), one);
    }
}
