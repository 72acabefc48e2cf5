//! Delta transfer of blocks: a block sent as the difference from a block the receiver already holds.
//!
//! An app update changes a few bytes of a file, and with them the chunk that holds them, that
//! file's tar header, the entry list and the layer's nodes above it: blocks that are new by CID
//! but nearly the same as blocks of the version the receiver has. Content addressing alone must
//! send them whole. Here the receiver names, beside each block it wants, a *base*: the block at the
//! same place in the DAG of the version it holds. The sender, when it holds the base too, sends a
//! zstd frame compressed with the base as its prefix (zstd's "patch from" mode); the receiver
//! decodes it against its own copy and checks the result against the wanted CID, so a wrong base,
//! a wrong frame or a lying sender can only fail the block, never store a wrong one.
//!
//! The wire format (`POST /shp/v1/deltas`, see docs/station/gateway.md):
//! - Request body: one want per line, `CID` or `CID BASE-CID` (text, at most
//!   [`MAX_BATCH`](super::MAX_BATCH) lines).
//! - Response body: [`MAGIC`], then one section per block the sender has, in the order asked:
//!   `uvarint(len) CID kind [BASE-CID] payload` where `len` counts everything after it, `kind` is
//!   [`WHOLE`] (payload: the block) or [`DELTA`] (the base CID the frame is against, then a zstd
//!   frame that decodes to the block given the base as prefix). The body as a whole may be
//!   compressed in transit (`Content-Encoding`), as the batch extension's is.

use shp_core::cid::{Cid, CID_LEN};
use shp_core::store::MAX_BLOCK;
use std::io::{self, Read, Write};
use zstd::zstd_safe;

/// What a delta response starts with.
pub const MAGIC: &[u8; 12] = b"shp-deltas1\n";
/// Section kind: the block as it is.
pub const WHOLE: u8 = 0;
/// Section kind: a zstd frame against a base the receiver holds.
pub const DELTA: u8 = 1;
/// Largest section: a whole block, its CID and kind, or a delta frame (never larger than the
/// block, or the sender sends it whole) with two CIDs.
pub const MAX_SECTION: usize = MAX_BLOCK + 2 * CID_LEN + 16;
/// The zstd level of delta frames (cheap: the base does the work).
const LEVEL: i32 = 3;

/// One block wanted, and the block held here that it probably resembles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub cid: Cid,
    pub base: Option<Cid>,
}

/// The CIDs wanted, in order (for a transport that sends no bases).
pub fn cids(wants: &[Want]) -> Vec<Cid> {
    wants.iter().map(|w| w.cid).collect()
}

/// The request body: `CID` or `CID BASE` per line.
pub fn encode_request(wants: &[Want]) -> String {
    let mut s = String::with_capacity(wants.len() * 122);
    for w in wants {
        s.push_str(&w.cid.to_string());
        if let Some(b) = &w.base {
            s.push(' ');
            s.push_str(&b.to_string());
        }
        s.push('\n');
    }
    s
}

/// Parses a request body; the error names the line. At most `max` wants.
pub fn parse_request(body: &[u8], max: usize) -> Result<Vec<Want>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body must list CIDs, one per line (UTF-8)".to_string())?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_ascii_whitespace();
        let parse = |s: &str, what: &str| {
            s.parse::<Cid>()
                .map_err(|e| format!("line {}: invalid {what} {s:?}: {e}", i + 1))
        };
        let cid = parse(parts.next().unwrap_or_default(), "CID")?;
        let base = parts.next().map(|b| parse(b, "base CID")).transpose()?;
        if parts.next().is_some() {
            return Err(format!("line {}: more than a CID and its base", i + 1));
        }
        if out.len() == max {
            return Err(format!("more than {max} CIDs in one request"));
        }
        out.push(Want { cid, base });
    }
    Ok(out)
}

/// `data` as a zstd frame against `base`; `None` when that is not clearly smaller than `data` alone
/// compressed the same way (then the block goes whole and the body's compression takes it).
pub fn compress_against(base: &[u8], data: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let frame = |prefix: Option<&[u8]>| -> io::Result<Vec<u8>> {
        let mut cx = zstd_safe::CCtx::create();
        let zerr = |c: usize| io::Error::other(format!("zstd: {}", zstd_safe::get_error_name(c)));
        cx.set_parameter(zstd_safe::CParameter::CompressionLevel(LEVEL))
            .map_err(zerr)?;
        cx.set_parameter(zstd_safe::CParameter::ChecksumFlag(false))
            .map_err(zerr)?;
        cx.set_parameter(zstd_safe::CParameter::ContentSizeFlag(true))
            .map_err(zerr)?;
        if let Some(p) = prefix {
            // Long-distance matching finds the base's long runs that the level's own match finder
            // misses (an appended line to 100 kB: 32 bytes instead of 439), within a window that
            // covers the base and the block (at most 2^22, what `apply` accepts).
            let need = (p.len() + data.len()).max(1 << 10).next_power_of_two().trailing_zeros();
            cx.set_parameter(zstd_safe::CParameter::WindowLog(need.min(22)))
                .map_err(zerr)?;
            cx.set_parameter(zstd_safe::CParameter::EnableLongDistanceMatching(true))
                .map_err(zerr)?;
            cx.ref_prefix(p).map_err(zerr)?;
        }
        let mut out = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
        cx.compress2(&mut out, data).map_err(zerr)?;
        Ok(out)
    };
    let delta = frame(Some(base))?;
    // Most deltas are a small fraction of the block: only then is the plain frame worth making.
    if delta.len() * 4 <= data.len() {
        return Ok(Some(delta));
    }
    // Else only a clear gain is worth the receiver's work (reading the base, decoding).
    let plain = frame(None)?;
    Ok((delta.len() + delta.len() / 16 < plain.len()).then_some(delta))
}

/// The sender's side: `data` (the block `cid`) as a frame against `base` when one is named, differs
/// from the block, is in `store` and helps ([`compress_against`]); `None` means send it whole.
pub fn against_held(
    store: &dyn shp_core::store::Blockstore,
    cid: &Cid,
    data: &[u8],
    base: Option<Cid>,
) -> io::Result<Option<(Cid, Vec<u8>)>> {
    let Some(b) = base.filter(|b| b != cid) else {
        return Ok(None);
    };
    // A base this store lacks (or cannot read) only means the block goes whole.
    let Ok(held) = store.get(&b) else {
        return Ok(None);
    };
    Ok(compress_against(&held, data)?.map(|f| (b, f)))
}

/// The receiver's side: the block `cid` from a frame against `base` (the base's bytes), checked
/// against the CID. An error says why the frame is wrong data for the block.
pub fn decode(cid: &Cid, base: &[u8], frame: &[u8]) -> Result<Vec<u8>, String> {
    let data = apply(base, frame)?;
    if !cid.matches(&data) {
        return Err("it decodes to bytes that do not hash to the CID".into());
    }
    Ok(data)
}

/// Decodes a delta frame against `base`; the result is at most [`MAX_BLOCK`] bytes. The caller
/// checks it against the wanted CID ([`decode`] does both).
pub fn apply(base: &[u8], frame: &[u8]) -> Result<Vec<u8>, String> {
    let size = match zstd_safe::get_frame_content_size(frame) {
        Ok(Some(n)) => n,
        Ok(None) => return Err("the delta frame does not say its size".into()),
        Err(_) => return Err("not a zstd frame".into()),
    };
    if size > MAX_BLOCK as u64 {
        return Err(format!(
            "the delta frame decodes to {size} bytes, over the {MAX_BLOCK}-byte block limit"
        ));
    }
    let mut dx = zstd_safe::DCtx::create();
    let zerr = |c: usize| format!("zstd: {}", zstd_safe::get_error_name(c));
    // The block limit is 1 MiB and a base at most as much: a window of 2^21 covers both.
    dx.set_parameter(zstd_safe::DParameter::WindowLogMax(22))
        .map_err(zerr)?;
    dx.ref_prefix(base).map_err(zerr)?;
    let mut out: Vec<u8> = Vec::with_capacity(size as usize);
    let n = dx.decompress(&mut out, frame).map_err(zerr)?;
    if n as u64 != size {
        return Err(format!("the delta frame said {size} bytes and decoded to {n}"));
    }
    Ok(out)
}

/// Writes the response's magic.
pub fn write_magic(w: &mut dyn Write) -> io::Result<()> {
    w.write_all(MAGIC)
}

/// Writes one section: the block whole, or (`base` given) a delta frame against it.
pub fn write_section(w: &mut dyn Write, cid: &Cid, payload: Payload<'_>) -> io::Result<()> {
    let c = cid.to_bytes();
    let (kind, base, bytes) = match payload {
        Payload::Whole(d) => (WHOLE, None, d),
        Payload::Delta { base, frame } => (DELTA, Some(base.to_bytes()), frame),
    };
    let len = c.len() + 1 + base.map_or(0, |b| b.len()) + bytes.len();
    let mut head = Vec::with_capacity(CID_LEN + 12);
    super::write_varint(len as u64, &mut head);
    head.extend_from_slice(&c);
    head.push(kind);
    if let Some(b) = base {
        head.extend_from_slice(&b);
    }
    w.write_all(&head)?;
    w.write_all(bytes)
}

/// A section's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    Whole(&'a [u8]),
    Delta { base: Cid, frame: &'a [u8] },
}

/// One section read back (owned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Section {
    Whole(Cid, Vec<u8>),
    Delta { cid: Cid, base: Cid, frame: Vec<u8> },
}

impl Section {
    pub fn cid(&self) -> Cid {
        match self {
            Section::Whole(c, _) | Section::Delta { cid: c, .. } => *c,
        }
    }
}

/// Reads a response's sections one at a time (memory: one section). Errors say what was wrong
/// with the stream; nothing here checks blocks against CIDs (the caller does, after decoding).
pub struct Sections<R: Read> {
    r: R,
    started: bool,
    done: bool,
}

impl<R: Read> Sections<R> {
    pub fn new(r: R) -> Sections<R> {
        Sections {
            r,
            started: false,
            done: false,
        }
    }

    fn read_one(&mut self) -> Result<Option<Section>, String> {
        if !self.started {
            self.started = true;
            let mut m = [0u8; MAGIC.len()];
            self.r
                .read_exact(&mut m)
                .map_err(|e| format!("reading the delta response's magic: {e}"))?;
            if &m != MAGIC {
                return Err("not a delta response (wrong magic)".into());
            }
        }
        let Some(len) = read_uvarint(&mut self.r)? else {
            return Ok(None);
        };
        if len > MAX_SECTION as u64 {
            return Err(format!("a section of {len} bytes, over the {MAX_SECTION}-byte limit"));
        }
        if len < (CID_LEN + 1) as u64 {
            return Err(format!("a section of {len} bytes is too short for a CID and a kind"));
        }
        let mut sec = vec![0u8; len as usize];
        self.r
            .read_exact(&mut sec)
            .map_err(|e| format!("truncated section ({len} bytes expected): {e}"))?;
        let (cid, used) = Cid::read_bytes(&sec).map_err(|e| format!("a section's CID: {e}"))?;
        let kind = sec[used];
        let rest = &sec[used + 1..];
        match kind {
            WHOLE => {
                if rest.len() > MAX_BLOCK {
                    return Err(format!("block {cid} is over the {MAX_BLOCK}-byte block limit"));
                }
                Ok(Some(Section::Whole(cid, rest.to_vec())))
            }
            DELTA => {
                let (base, bused) =
                    Cid::read_bytes(rest).map_err(|e| format!("block {cid}: the delta's base CID: {e}"))?;
                Ok(Some(Section::Delta {
                    cid,
                    base,
                    frame: rest[bused..].to_vec(),
                }))
            }
            k => Err(format!("block {cid}: unknown section kind {k}")),
        }
    }
}

impl<R: Read> Iterator for Sections<R> {
    type Item = Result<Section, String>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.read_one().transpose();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}

/// A uvarint of at most 9 bytes; `None` at a clean end of stream.
fn read_uvarint(r: &mut dyn Read) -> Result<Option<u64>, String> {
    let mut v: u64 = 0;
    for i in 0..9 {
        let mut b = [0u8; 1];
        loop {
            match r.read(&mut b) {
                Ok(0) if i == 0 => return Ok(None),
                Ok(0) => return Err("truncated section length".into()),
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("reading the delta response: {e}")),
            }
        }
        v |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(Some(v));
        }
    }
    Err("a section length is not a valid varint".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use shp_core::cid::{DAG_CBOR, RAW};

    fn text(n: usize, seed: u64) -> Vec<u8> {
        let words = [
            "import", "json", "def", "return", "self", "value", "decoder", "(", ")", ":", "\n    ",
        ];
        let mut x = seed | 1;
        (0..n)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let mut w = words[(x % words.len() as u64) as usize].as_bytes().to_vec();
                w.push(b' ');
                w
            })
            .collect()
    }

    #[test]
    fn a_small_edit_travels_as_a_few_bytes_and_decodes_exactly() {
        let old = text(2000, 7);
        let mut new = old.clone();
        new.extend_from_slice(b"# patched\n");
        new[100] = b'X';
        let frame = compress_against(&old, &new).unwrap().expect("a delta pays here");
        assert!(
            frame.len() < 128,
            "{} bytes for a two-place edit of {}",
            frame.len(),
            new.len()
        );
        assert_eq!(apply(&old, &frame).unwrap(), new);
        // Against the wrong base the frame decodes to something else (or fails): the CID check
        // that follows in the receiver is what makes it safe.
        let other = text(2000, 9);
        let wrong = apply(&other, &frame);
        assert!(wrong.map(|b| b != new).unwrap_or(true));
    }

    #[test]
    fn a_base_that_does_not_help_is_not_used() {
        let mut x = 1u64;
        let noise: Vec<u8> = (0..50_000)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (x >> 56) as u8
            })
            .collect();
        let unrelated = text(3000, 3);
        assert_eq!(compress_against(&unrelated, &noise).unwrap(), None);
    }

    #[test]
    fn frames_over_the_block_limit_and_garbage_are_refused() {
        let big = vec![0u8; MAX_BLOCK + 1];
        let frame = zstd::bulk::compress(&big, 3).unwrap();
        assert!(apply(b"", &frame).unwrap_err().contains("over the"));
        assert!(apply(b"base", b"not zstd at all").is_err());
        // A frame with no content size is refused before decoding.
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.include_contentsize(false).unwrap();
        enc.write_all(b"hello").unwrap();
        assert!(apply(b"", &enc.finish().unwrap()).unwrap_err().contains("size"));
    }

    #[test]
    fn requests_name_their_bad_line() {
        let a = Cid::hash(RAW, b"a");
        let b = Cid::hash(DAG_CBOR, b"b");
        let body = format!("{a}\n\n{a} {b}\n");
        assert_eq!(
            parse_request(body.as_bytes(), 10).unwrap(),
            vec![Want { cid: a, base: None }, Want { cid: a, base: Some(b) }]
        );
        let e = parse_request(format!("{a}\n{a} nope\n").as_bytes(), 10).unwrap_err();
        assert!(e.starts_with("line 2: invalid base CID"), "{e}");
        let e = parse_request(format!("{a} {b} {b}\n").as_bytes(), 10).unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        let e = parse_request(format!("{a}\n{a}\n{a}\n").as_bytes(), 2).unwrap_err();
        assert!(e.contains("more than 2"), "{e}");
        assert!(parse_request(&[0xff, 0xfe], 2).is_err());
    }

    #[test]
    fn streams_with_wrong_framing_are_refused() {
        let cid = Cid::hash(RAW, b"x");
        let mut ok = Vec::new();
        write_magic(&mut ok).unwrap();
        write_section(&mut ok, &cid, Payload::Whole(b"x")).unwrap();
        // Wrong magic.
        let mut bad = ok.clone();
        bad[0] ^= 1;
        assert!(Sections::new(&bad[..]).next().unwrap().is_err());
        // Truncated anywhere after the magic.
        for cut in MAGIC.len() + 1..ok.len() {
            let r: Result<Vec<_>, _> = Sections::new(&ok[..cut]).collect();
            assert!(r.is_err(), "cut at {cut}");
        }
        // An unknown kind.
        let mut k = ok.clone();
        k[MAGIC.len() + 1 + CID_LEN] = 9;
        assert!(Sections::new(&k[..]).next().unwrap().unwrap_err().contains("kind 9"));
        // A length over the limit is refused before anything is allocated for it.
        let mut huge = MAGIC.to_vec();
        super::super::write_varint(u64::MAX >> 8, &mut huge);
        assert!(Sections::new(&huge[..]).next().unwrap().unwrap_err().contains("limit"));
    }

    fn arb_cid() -> impl Strategy<Value = Cid> {
        (any::<[u8; 32]>(), any::<bool>()).prop_map(|(d, raw)| Cid::from_digest(if raw { RAW } else { DAG_CBOR }, d))
    }

    proptest! {
        #[test]
        fn requests_round_trip(wants in proptest::collection::vec((arb_cid(), proptest::option::of(arb_cid())), 0..20)) {
            let wants: Vec<Want> = wants.into_iter().map(|(cid, base)| Want { cid, base }).collect();
            prop_assert_eq!(parse_request(encode_request(&wants).as_bytes(), 4096).unwrap(), wants);
        }

        #[test]
        fn sections_round_trip(items in proptest::collection::vec(
            (arb_cid(), proptest::option::of(arb_cid()), proptest::collection::vec(any::<u8>(), 0..300)), 0..12)
        ) {
            let mut body = Vec::new();
            write_magic(&mut body).unwrap();
            for (cid, base, bytes) in &items {
                let p = match base {
                    Some(b) => Payload::Delta { base: *b, frame: bytes },
                    None => Payload::Whole(bytes),
                };
                write_section(&mut body, cid, p).unwrap();
            }
            let back: Vec<Section> = Sections::new(&body[..]).collect::<Result<_, _>>().unwrap();
            let want: Vec<Section> = items
                .into_iter()
                .map(|(cid, base, bytes)| match base {
                    Some(base) => Section::Delta { cid, base, frame: bytes },
                    None => Section::Whole(cid, bytes),
                })
                .collect();
            prop_assert_eq!(back, want);
        }

        #[test]
        fn deltas_decode_to_the_block(seed in any::<u64>(), edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..8), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
            let old = text(800, seed);
            let mut new = old.clone();
            for (at, b) in edits {
                let i = at as usize % new.len();
                new[i] = b;
            }
            new.extend_from_slice(&tail);
            if let Some(frame) = compress_against(&old, &new).unwrap() {
                prop_assert_eq!(apply(&old, &frame).unwrap(), new);
            }
        }
    }
}
