//! One blob ⇄ one blob node. Layers are decoded and kept as tar DAGs (uncompressed tars, and
//! compressed ones a proven recipe re-encodes); compressed layers no recipe reproduces are kept
//! as opaque chunks of their compressed bytes. Everything else (manifests, configs) is chunked
//! verbatim.
//!
//! Blob node: `{"t": "blob", "digest": bytes(32), "size", "enc": "raw"|"tar", "data": [links]
//! (raw), "tar": link (tar), "codec": "gzip"|"zstd" (compressed layers kept opaque),
//! "children": [links] (manifests and indexes: the blob nodes they reference)}`.

use crate::cbor::Value;
use crate::cid::{format_digest, Cid};
use crate::dag::{get_node, links_of, schema_err, unwrap_io, DagReader, DagWriter, TarDag};
use crate::error::{Error, Result};
use crate::gzip::{Boundary, MemberDecoder};
use crate::recipe::{Feed, Member, Profile, Recipe};
use crate::store::Blockstore;
use crate::tar::{split, TarSink, TarSummary};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};

/// How a blob is kept, as `shp inspect` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// Not a layer: verbatim chunks.
    Verbatim,
    /// An uncompressed tar layer, as a tar DAG.
    Uncompressed,
    /// A compressed layer rebuilt from its tar DAG by a proven recipe.
    Recipe(String),
    /// A compressed layer kept as chunks of its compressed bytes.
    Opaque,
}

impl std::fmt::Display for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Storage::Verbatim => f.write_str("verbatim"),
            Storage::Uncompressed => f.write_str("uncompressed"),
            Storage::Recipe(p) => write!(f, "recipe:{p}"),
            Storage::Opaque => f.write_str("opaque"),
        }
    }
}

/// Whether a blob is a layer (decoded and split) or anything else (kept verbatim).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    Layer,
    Other,
}

/// Limits for importing untrusted blobs.
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    /// Largest uncompressed size one layer may expand to.
    pub max_layer_bytes: u64,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            max_layer_bytes: 64 << 30,
        }
    }
}

/// What importing a blob produced.
#[derive(Debug, Clone)]
pub struct ImportedBlob {
    pub cid: Cid,
    pub digest: [u8; 32],
    pub size: u64,
    pub storage: Storage,
    /// The uncompressed tar's sha256, for layers that were decoded.
    pub diff_id: Option<[u8; 32]>,
}

/// Opens a blob's bytes from its source, again if needed (the opaque fallback reads twice).
pub type Opener<'a> = &'a dyn Fn() -> Result<Box<dyn Read + 'a>>;

struct Hashing<R> {
    inner: R,
    sha: Sha256,
    n: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.sha.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            sha: Sha256::new(),
            n: 0,
        }
    }
    fn finish(self) -> ([u8; 32], u64) {
        (self.sha.finalize().into(), self.n)
    }
}

/// Fails reads past a limit with [`Error::TooLarge`], and maps decoder errors to
/// [`Error::Compression`].
struct Decoded<'a, R> {
    inner: R,
    n: u64,
    limit: u64,
    blob: &'a str,
    codec: &'static str,
}

impl<R: Read> Read for Decoded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf).map_err(|e| {
            let reason = if e.kind() == io::ErrorKind::UnexpectedEof {
                format!("truncated {} stream", self.codec)
            } else {
                format!("corrupt {} stream: {e}", self.codec)
            };
            io::Error::other(Error::Compression {
                blob: self.blob.to_string(),
                reason,
            })
        })?;
        self.n += k as u64;
        if self.n > self.limit {
            return Err(io::Error::other(Error::TooLarge {
                blob: self.blob.to_string(),
                limit: self.limit,
            }));
        }
        Ok(k)
    }
}

/// Discards what it is given: the tar is only validated.
struct Validate;

impl TarSink for Validate {
    fn meta(&mut self, _: &[u8]) -> Result<()> {
        Ok(())
    }
    fn file(&mut self, _: u64, data: &mut dyn Read) -> Result<()> {
        io::copy(data, &mut io::sink()).map_err(unwrap_io)?;
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Codec {
    None,
    Gzip,
    Zstd,
}

fn sniff(head: &[u8]) -> Codec {
    if head.starts_with(&[0x1f, 0x8b]) {
        Codec::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Codec::Zstd
    } else {
        Codec::None
    }
}

fn decoder<'a, R: BufRead + 'a>(
    codec: Codec,
    r: R,
    events: Option<&'a RefCell<Vec<Boundary>>>,
) -> Result<Box<dyn Read + 'a>> {
    Ok(match codec {
        Codec::Gzip => Box::new(MemberDecoder::new(r, events)),
        Codec::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        Codec::None => Box::new(r),
    })
}

fn check_digest(name: &str, expected: Option<(&[u8; 32], u64)>, actual: &[u8; 32], size: u64) -> Result<()> {
    if let Some((d, s)) = expected {
        if d != actual || s != size {
            return Err(Error::DigestMismatch {
                expected: format_digest(d),
                actual: format_digest(actual),
                size,
                expected_size: s,
            });
        }
    }
    let _ = name;
    Ok(())
}

/// Imports one blob. `expected` (digest, size) comes from the descriptor naming it; a blob that
/// does not match is refused. Nothing is visible until the caller commits the batch.
pub fn import_blob(
    w: &mut DagWriter,
    kind: BlobKind,
    open: Opener,
    expected: Option<(&[u8; 32], u64)>,
    children: &[Cid],
    opts: &ImportOptions,
) -> Result<ImportedBlob> {
    let name = expected.map(|(d, _)| format_digest(d)).unwrap_or_else(|| "blob".into());
    let mut fields = vec![("t", Value::text("blob"))];
    let (digest, size, storage, diff_id);
    match kind {
        BlobKind::Other => {
            let mut h = Hashing::new(open()?);
            let mut buf = Vec::new();
            // Sizes come from the descriptor when known; otherwise read to the end (small JSON).
            let links = match expected {
                Some((_, s)) => w.put_chunked(&mut h, s).map_err(|e| short_to_mismatch(e, &name))?,
                None => {
                    h.read_to_end(&mut buf)?;
                    w.put_chunked(&mut &buf[..], buf.len() as u64)?
                }
            };
            if let Some((d, s)) = expected.filter(|_| h.inner.read(&mut [0u8; 1]).is_ok_and(|n| n != 0)) {
                return Err(Error::DigestMismatch {
                    expected: format_digest(d),
                    actual: "(longer than the descriptor says)".into(),
                    size: s + 1,
                    expected_size: s,
                });
            }
            (digest, size) = h.finish();
            check_digest(&name, expected, &digest, size)?;
            fields.push(("enc", Value::text("raw")));
            fields.push(("data", Value::links(&links)));
            storage = Storage::Verbatim;
            diff_id = None;
        }
        BlobKind::Layer => {
            let mut r = BufReader::with_capacity(256 * 1024, open()?);
            let codec = sniff(r.fill_buf()?);
            let limit = opts.max_layer_bytes;
            if codec == Codec::None {
                // The tar is the blob: its sha256 (computed by TarDag) is the digest.
                let mut dec = Decoded {
                    inner: r,
                    n: 0,
                    limit,
                    blob: &name,
                    codec: "tar",
                };
                let mut sink = TarDag::new(w);
                split(&mut dec, &name, &mut sink)?;
                let (tar, tar_size, sha) = sink.finish()?;
                (digest, size) = (sha, tar_size);
                check_digest(&name, expected, &digest, size)?;
                fields.push(("enc", Value::text("tar")));
                fields.push(("tar", Value::Link(tar)));
                storage = Storage::Uncompressed;
                diff_id = Some(sha);
            } else {
                // The head goes to the probe (on the prover's thread) and, through the hash,
                // to the decoder: the blob is read once, and the probe runs beside the import.
                let mut head = Vec::new();
                (&mut r).take(PROBE_HEAD).read_to_end(&mut head).map_err(unwrap_io)?;
                let probe_head = head.clone();
                let mut r = BufReader::with_capacity(256 * 1024, Hashing::new(io::Cursor::new(head).chain(r)));
                let cname = if codec == Codec::Gzip { "gzip" } else { "zstd" };
                // Decode the whole stream (bounded), hashing what we read, and write the tar DAG;
                // the prover probes the head for candidates and re-encodes what the decoder feeds
                // it with the first, to prove the recipe. If the probe finds none, the prover
                // says so, the tar DAG stops being written and the layer is kept opaque.
                // A blob the head holds whole is probed first (it is small, so that is cheap): a
                // layer no profile writes then writes no tar DAG at all. A bigger one may have
                // written up to a queue's worth ([`FEED_QUEUE`]) before the verdict; those blocks
                // stay unreferenced until gc.
                let known = (probe_head.len() < PROBE_HEAD as usize)
                    .then(|| probe_candidates(codec, &probe_head, limit).unwrap_or_default());
                let (tx, rx) = std::sync::mpsc::sync_channel::<Feed>(FEED_QUEUE);
                let none = known.as_ref().is_some_and(|c| c.is_empty());
                let hopeless = std::sync::Arc::new(AtomicBool::new(none));
                let flag = hopeless.clone();
                let prover = std::thread::Builder::new().name("shp-prove".into()).spawn(move || {
                    let candidates =
                        known.unwrap_or_else(|| probe_candidates(codec, &probe_head, limit).unwrap_or_default());
                    let Some(p) = candidates.first() else {
                        flag.store(true, Ordering::Relaxed);
                        return (candidates, None);
                    };
                    let mut h = Hashing::new(crate::recipe::proving_encoder(p, rx));
                    let reenc = io::copy(&mut h, &mut io::sink()).ok().map(|_| h.finish());
                    (candidates, reenc)
                })?;
                let events = RefCell::new(Vec::new());
                let mut dec = Decoded {
                    inner: decoder(codec, &mut r, Some(&events))?,
                    n: 0,
                    limit,
                    blob: &name,
                    codec: cname,
                };
                let mut framing = Framing::default();
                let mut tee = Tee::new(&mut dec, tx, &events, &mut framing);
                let mut sink = Speculative {
                    dag: TarDag::new(w),
                    hopeless: &hopeless,
                };
                // The decoder reports the tail once it has read to the end.
                let res = split(&mut tee, &name, &mut sink).and_then(|_| {
                    io::copy(&mut tee, &mut io::sink())?;
                    Ok(())
                });
                tee.finish();
                let (candidates, reenc) = prover
                    .join()
                    .map_err(|_| Error::Store("recipe prover panicked".into()))?;
                res?;
                let (tar_sha, proven) = if candidates.is_empty() || !sink.dag.is_writing() {
                    (sink.dag.into_digest().0, None)
                } else {
                    let (tar, _, sha) = sink.dag.finish()?;
                    (sha, Some((tar, reenc)))
                };
                // Whatever the tar left unread (end-of-archive padding, trailing bytes) is
                // decoded and checked too.
                io::copy(&mut dec, &mut io::sink())?;
                drop(dec);
                io::copy(&mut r, &mut io::sink())?;
                (digest, size) = r.into_inner().finish();
                check_digest(&name, expected, &digest, size)?;
                diff_id = Some(tar_sha);
                // The first candidate was proven during the import; if that failed, a few more are
                // tried, each by decoding the blob again (only on this rare path).
                let mut chosen = None;
                if let Some((tar, reenc)) = proven {
                    if reenc == Some((digest, size)) {
                        chosen = Some((tar, candidates[0].clone()));
                    } else {
                        for p in candidates.iter().skip(1).take(MAX_EXTRA_PROOFS) {
                            if reprove(codec, open, p)? == Some((digest, size)) {
                                chosen = Some((tar, p.clone()));
                                break;
                            }
                        }
                    }
                }
                let chosen = chosen.and_then(|(tar, p)| framing.recipe(p).map(|rc| (rc, tar)));
                match chosen {
                    Some((rc, tar)) => {
                        fields.push(("enc", Value::text("recipe")));
                        fields.push(("tar", Value::Link(tar)));
                        fields.push(("recipe", rc.to_value()));
                        storage = Storage::Recipe(rc.profile());
                    }
                    _ => {
                        // No recipe reproduces this stream: pass 2 keeps the compressed bytes.
                        let links = w.put_chunked(&mut *open()?, size)?;
                        fields.push(("enc", Value::text("raw")));
                        fields.push(("data", Value::links(&links)));
                        fields.push(("codec", Value::text(cname)));
                        storage = Storage::Opaque;
                    }
                }
            }
        }
    }
    fields.push(("digest", Value::Bytes(digest.to_vec())));
    fields.push(("size", Value::UInt(size)));
    if !children.is_empty() {
        fields.push(("children", Value::links(children)));
    }
    let cid = w.put_node(&Value::Map(
        fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    ))?;
    Ok(ImportedBlob {
        cid,
        digest,
        size,
        storage,
        diff_id,
    })
}

/// Candidates proven after the first one fails (each costs a decode and an encode of the blob).
const MAX_EXTRA_PROOFS: usize = 3;

/// Decodes the (already validated) blob again and re-encodes it with `p`, framing and all:
/// the re-encoding's sha256 and size, or None when the encoder gave up.
fn reprove(codec: Codec, open: Opener, p: &Profile) -> Result<Option<([u8; 32], u64)>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Feed>(32);
    let p2 = p.clone();
    let prover = std::thread::spawn(move || {
        let mut h = Hashing::new(crate::recipe::proving_encoder(&p2, rx));
        io::copy(&mut h, &mut io::sink()).map(|_| h.finish())
    });
    let events = RefCell::new(Vec::new());
    let mut framing = Framing::default();
    let res = (|| -> Result<()> {
        let r = BufReader::with_capacity(256 * 1024, open()?);
        let mut dec = decoder(codec, r, Some(&events))?;
        let mut tee = Tee::new(&mut dec, tx, &events, &mut framing);
        io::copy(&mut tee, &mut io::sink())?;
        tee.finish();
        Ok(())
    })();
    let reenc = prover
        .join()
        .map_err(|_| Error::Store("recipe prover panicked".into()))?;
    res?;
    Ok(reenc.ok())
}

/// How much of a compressed blob the probe reads, and how much it decodes at most.
const PROBE_HEAD: u64 = 4 << 20;
const PROBE_DATA: u64 = 16 << 20;

/// Probes the stream's start (its first [`PROBE_HEAD`] bytes) for recipe candidates, best first.
fn probe_candidates(codec: Codec, head: &[u8], limit: u64) -> Option<Vec<Profile>> {
    match codec {
        Codec::Gzip => {
            let h = crate::gzip::parse_header(head).ok()?;
            let stream = &head[h.bytes.len()..];
            // Decode what the head holds (it may end mid-stream: data up to the cut is kept).
            let cap = PROBE_DATA.min(limit) as usize;
            let mut input = crate::inflate::Pushback::new(stream);
            let mut z = crate::inflate::Inflater::new();
            let mut data = vec![0u8; cap];
            let (mut n, mut complete) = (0, false);
            while n < cap {
                match z.read(&mut input, &mut data[n..]) {
                    Ok((k, ended)) => {
                        n += k;
                        if ended {
                            complete = true;
                            break;
                        }
                        if k == 0 {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(_) => return None,
                }
            }
            data.truncate(n);
            let used = stream.len() - input.fill_buf().map(|b| b.len()).unwrap_or(0);
            Some(crate::recipe::probe_deflate_all(
                &stream[..if complete { used } else { stream.len() }],
                &data,
                complete,
            ))
        }
        Codec::Zstd => {
            let cap = PROBE_DATA.min(limit);
            let mut data = Vec::new();
            let mut d = zstd::stream::read::Decoder::with_buffer(head).ok()?.single_frame();
            let complete = match (&mut d).take(cap).read_to_end(&mut data) {
                Ok(_) => (data.len() as u64) < cap && (head.len() as u64) < PROBE_HEAD,
                Err(_) => false,
            };
            Some(crate::recipe::probe_zstd_all(head, &data, complete))
        }
        Codec::None => None,
    }
}

/// A compressed stream's framing, as the decoder reported it.
#[derive(Default)]
struct Framing {
    members: Vec<(Vec<u8>, u64)>,
    tail: Vec<u8>,
    tail_len: u64,
}

impl Framing {
    fn record(&mut self, b: &Boundary) {
        match b {
            Boundary::Member(h) => self.members.push((h.clone(), 0)),
            Boundary::End(n) => {
                if let Some(m) = self.members.last_mut() {
                    m.1 = *n;
                }
            }
            Boundary::Tail(t, n) => {
                self.tail = t.clone();
                self.tail_len = *n;
            }
        }
    }

    /// The recipe for `profile` over this framing, if a recipe can hold it.
    fn recipe(self, profile: Profile) -> Option<Recipe> {
        if !profile.is_deflate() {
            return self.members.is_empty().then_some(Recipe {
                profile,
                members: Vec::new(),
                tail: Vec::new(),
            });
        }
        if self.members.is_empty()
            || self.members.len() > crate::recipe::MAX_MEMBERS
            || self.tail_len > crate::recipe::MAX_TAIL as u64
        {
            return None;
        }
        let single = self.members.len() == 1 && self.tail.is_empty();
        Some(Recipe {
            profile,
            members: self
                .members
                .into_iter()
                .map(|(header, n)| Member {
                    header,
                    size: (!single).then_some(n),
                })
                .collect(),
            tail: self.tail,
        })
    }
}

/// Passes decoded bytes on (to the recipe prover, with the framing events in stream order) and
/// records the framing.
struct Tee<'a, 'e, R> {
    inner: &'a mut R,
    tx: Option<std::sync::mpsc::SyncSender<Feed>>,
    /// Decoded bytes not sent yet (sent in pieces of [`FEED_BYTES`]).
    pending: Vec<u8>,
    events: &'e RefCell<Vec<Boundary>>,
    framing: &'a mut Framing,
}

/// Decoded bytes per message to the prover, and messages queued at most: the queue holds
/// what the import decodes while the probe runs (32 MiB), and bounds memory after.
const FEED_BYTES: usize = 256 * 1024;
const FEED_QUEUE: usize = 128;

impl<'a, 'e, R: Read> Tee<'a, 'e, R> {
    fn new(
        inner: &'a mut R,
        tx: std::sync::mpsc::SyncSender<Feed>,
        events: &'e RefCell<Vec<Boundary>>,
        framing: &'a mut Framing,
    ) -> Self {
        Tee {
            inner,
            tx: Some(tx),
            pending: Vec::new(),
            events,
            framing,
        }
    }

    fn send(&mut self, f: Feed) {
        if let Some(tx) = &self.tx {
            if tx.send(f).is_err() {
                self.tx = None; // the prover gave up (or found nothing to prove); no proof
            }
        }
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let data = std::mem::take(&mut self.pending);
            self.send(Feed::Data(data));
        }
    }

    /// Sends what is pending and closes the feed: the prover sees the end of the stream.
    fn finish(&mut self) {
        self.flush();
        self.tx = None;
    }
}

impl<R: Read> Read for Tee<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let events: Vec<Boundary> = self.events.borrow_mut().drain(..).collect();
        for b in events {
            self.framing.record(&b);
            match b {
                Boundary::Member(h) => {
                    self.flush();
                    self.send(Feed::Member(h))
                }
                Boundary::Tail(t, _) => {
                    self.flush();
                    self.send(Feed::Tail(t))
                }
                Boundary::End(_) => {}
            }
        }
        let mut data = &buf[..n];
        while self.tx.is_some() && !data.is_empty() {
            if self.pending.capacity() == 0 {
                self.pending.reserve_exact(FEED_BYTES);
            }
            let k = data.len().min(FEED_BYTES - self.pending.len());
            self.pending.extend_from_slice(&data[..k]);
            data = &data[k..];
            if self.pending.len() == FEED_BYTES {
                self.flush();
            }
        }
        Ok(n)
    }
}

/// The tar DAG sink of a compressed layer's import: writes the tar DAG until the probe has said
/// no recipe can reproduce the layer, then only hashes (the layer is kept opaque).
struct Speculative<'w, 'b, 'f> {
    dag: TarDag<'w, 'b>,
    hopeless: &'f AtomicBool,
}

impl Speculative<'_, '_, '_> {
    fn check(&mut self) {
        if self.dag.is_writing() && self.hopeless.load(Ordering::Relaxed) {
            self.dag.stop_writing();
        }
    }
}

impl TarSink for Speculative<'_, '_, '_> {
    fn meta(&mut self, bytes: &[u8]) -> Result<()> {
        self.check();
        self.dag.meta(bytes)
    }
    fn file(&mut self, size: u64, data: &mut dyn Read) -> Result<()> {
        self.check();
        self.dag.file(size, data)
    }
}

fn short_to_mismatch(e: Error, name: &str) -> Error {
    match e {
        Error::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => Error::DigestMismatch {
            expected: name.to_string(),
            actual: "(shorter than the descriptor says)".into(),
            size: 0,
            expected_size: 0,
        },
        e => e,
    }
}

/// A node's 32-byte digest field `key`.
fn sha256_field(v: &Value, key: &str, cid: &Cid) -> Result<[u8; 32]> {
    v.get(key)
        .and_then(Value::as_bytes)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| schema_err(cid, format!("{key} is not 32 bytes")))
}

/// A node's `size` field.
fn size_field(v: &Value, cid: &Cid) -> Result<u64> {
    v.get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| schema_err(cid, "size missing"))
}

/// A blob node, decoded.
#[derive(Debug, Clone)]
pub struct BlobNode {
    pub cid: Cid,
    pub digest: [u8; 32],
    pub size: u64,
    pub enc: String,
    pub codec: Option<String>,
    pub data: Vec<Cid>,
    pub tar: Option<Cid>,
    pub recipe: Option<crate::recipe::Recipe>,
    pub children: Vec<Cid>,
}

impl BlobNode {
    pub fn load(store: &dyn Blockstore, cid: &Cid) -> Result<BlobNode> {
        let v = get_node(store, cid)?;
        if v.get("t").and_then(Value::as_str) != Some("blob") {
            return Err(schema_err(cid, "not a blob node"));
        }
        let digest = sha256_field(&v, "digest", cid)?;
        let size = size_field(&v, cid)?;
        let enc = v
            .get("enc")
            .and_then(Value::as_str)
            .ok_or_else(|| schema_err(cid, "enc missing"))?
            .to_string();
        let (data, tar) = match enc.as_str() {
            "raw" => (links_of(cid, v.get("data"), "data")?, None),
            "tar" | "recipe" => (
                Vec::new(),
                Some(
                    v.get("tar")
                        .and_then(Value::as_link)
                        .ok_or_else(|| schema_err(cid, "tar link missing"))?,
                ),
            ),
            other => {
                return Err(schema_err(
                    cid,
                    format!("unknown encoding {other:?} (made by a newer shp?)"),
                ))
            }
        };
        let children = match v.get("children") {
            Some(c) => links_of(cid, Some(c), "children")?,
            None => Vec::new(),
        };
        let codec = v.get("codec").and_then(Value::as_str).map(str::to_string);
        let recipe = match enc.as_str() {
            "recipe" => Some(crate::recipe::Recipe::from_value(
                v.get("recipe").ok_or_else(|| schema_err(cid, "recipe missing"))?,
            )?),
            _ => None,
        };
        Ok(BlobNode {
            cid: *cid,
            digest,
            size,
            enc,
            codec,
            data,
            tar,
            recipe,
            children,
        })
    }

    pub fn digest_str(&self) -> String {
        format_digest(&self.digest)
    }

    /// How the blob is kept, given whether its descriptor calls it a layer.
    pub fn storage(&self, is_layer: bool) -> Storage {
        match (self.enc.as_str(), &self.codec) {
            ("tar", _) => Storage::Uncompressed,
            ("recipe", _) => Storage::Recipe(self.recipe.as_ref().map(|r| r.profile()).unwrap_or_default()),
            (_, Some(_)) => Storage::Opaque,
            _ if is_layer => Storage::Opaque,
            _ => Storage::Verbatim,
        }
    }

    /// The blob's bytes, verified: the reader fails at the end if the sha256 or size differ.
    pub fn open<'s>(&self, store: &'s dyn Blockstore) -> Box<dyn Read + Send + 's> {
        self.verified(DagReader::new(store, &self.roots()))
    }

    /// [`BlobNode::open`] over a shared store: the reader owns what it needs (`Send + 'static`),
    /// so it can outlive the caller's borrow and move between threads.
    pub fn open_shared(&self, store: std::sync::Arc<dyn Blockstore>) -> Box<dyn Read + Send> {
        self.verified(DagReader::shared(store, &self.roots()))
    }

    fn roots(&self) -> Vec<Cid> {
        match &self.tar {
            Some(t) => vec![*t],
            None => self.data.clone(),
        }
    }

    fn verified<'s>(&self, dag: DagReader<'s>) -> Box<dyn Read + Send + 's> {
        let inner: Box<dyn Read + Send + 's> = match &self.recipe {
            Some(r) => r.encoder(dag),
            None => Box::new(dag),
        };
        verified(inner, self.digest, self.size)
    }

    /// The sha256 and size the tar node `tar` records for its stream.
    fn tar_digest(store: &dyn Blockstore, tar: &Cid) -> Result<([u8; 32], u64)> {
        let node = get_node(store, tar)?;
        Ok((sha256_field(&node, "sha256", tar)?, size_field(&node, tar)?))
    }

    /// A layer's diff_id (the sha256 of its uncompressed tar) as the DAG records it: the blob's own
    /// digest for an uncompressed layer, the tar node's for a recipe layer; None for blobs kept as
    /// chunks of their bytes (opaque layers: finding it means decoding them).
    pub fn diff_id(&self, store: &dyn Blockstore) -> Result<Option<[u8; 32]>> {
        match (&self.tar, &self.recipe) {
            (Some(_), None) => Ok(Some(self.digest)),
            (Some(tar), Some(_)) => Ok(Some(Self::tar_digest(store, tar)?.0)),
            _ => Ok(None),
        }
    }

    /// The layer's uncompressed tar (decoding opaque compressed layers on the fly).
    pub fn open_tar<'s>(&self, store: &'s dyn Blockstore) -> Result<Box<dyn Read + 's>> {
        if let (Some(tar), Some(_)) = (self.tar, &self.recipe) {
            // The tar DAG is at hand: read it directly, verified against its own sha256.
            let (sha, size) = Self::tar_digest(store, &tar)?;
            return Ok(Box::new(Verified {
                inner: DagReader::new(store, &[tar]),
                sha: Sha256::new(),
                n: 0,
                digest: sha,
                size,
                done: false,
            }));
        }
        let raw = self.open(store);
        Ok(match self.codec.as_deref() {
            Some("gzip") => decoder(Codec::Gzip, BufReader::new(raw), None)?,
            Some("zstd") => decoder(Codec::Zstd, BufReader::new(raw), None)?,
            _ => raw,
        })
    }
}

/// `inner` checked against `digest` and `size` as it is read: a mismatch is an error at the end
/// (or as soon as it runs past `size`), never a clean EOF.
pub fn verified<'a, R: Read + Send + 'a>(inner: R, digest: [u8; 32], size: u64) -> Box<dyn Read + Send + 'a> {
    Box::new(Verified {
        inner,
        sha: Sha256::new(),
        n: 0,
        digest,
        size,
        done: false,
    })
}

/// Checks sha256 and size when the stream ends; a mismatch is an error, not an EOF.
struct Verified<R> {
    inner: R,
    sha: Sha256,
    n: u64,
    digest: [u8; 32],
    size: u64,
    done: bool,
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let k = self.inner.read(buf)?;
        if k == 0 && !buf.is_empty() {
            let actual: [u8; 32] = std::mem::take(&mut self.sha).finalize().into();
            if actual != self.digest || self.n != self.size {
                return Err(io::Error::other(Error::RebuildMismatch {
                    digest: format_digest(&self.digest),
                    actual: format!("{} ({} bytes)", format_digest(&actual), self.n),
                }));
            }
            self.done = true;
            return Ok(0);
        }
        self.sha.update(&buf[..k]);
        self.n += k as u64;
        if self.n > self.size {
            // Stop at once: a DAG that stands for more than its node says is not read to the end.
            return Err(io::Error::other(Error::RebuildMismatch {
                digest: format_digest(&self.digest),
                actual: format!("more than the recorded {} bytes", self.size),
            }));
        }
        Ok(k)
    }
}

/// Sums what a tar split saw (for callers that only validate).
pub fn validate_tar(r: &mut dyn Read, name: &str) -> Result<TarSummary> {
    split(r, name, &mut Validate)
}
