//! The bitswap 1.2.0 wire message (ipfs/specs `bitswap-protocol.md`), encoded and decoded by hand.
//!
//! ```text
//! Message       1 wantlist: Wantlist   3 payload: Block*   4 blockPresences: BlockPresence*
//!               2 blocks: bytes* (1.0.0 only; decoded, never sent)   5 pendingBytes: int32
//! Wantlist      1 entries: Entry*      2 full: bool
//! Entry         1 block: bytes (a CID) 2 priority: int32   3 cancel: bool
//!               4 wantType: Block=0 | Have=1               5 sendDontHave: bool
//! Block         1 prefix: bytes (CID version, codec, hash code, hash length as varints)   2 data: bytes
//! BlockPresence 1 cid: bytes           2 type: Have=0 | DontHave=1
//! ```
//!
//! shp adds two fields of its own, which other implementations skip as unknown (and never send):
//!
//! ```text
//! Entry         16 base: bytes (a CID the asker holds that the wanted block resembles)
//! Message       16 deltas: Delta*
//! Delta         1 cid: bytes (the block's CID)   2 base: bytes (the base's CID)
//!               3 frame: bytes (a zstd frame that decodes to the block with the base as prefix)
//! ```
//!
//! A want-block naming a base may be answered with a delta instead of the block (see
//! [`crate::transport::delta`]); the asker decodes it against its copy of the base and checks the
//! result against the CID.
//!
//! Each message travels on a libp2p stream as an unsigned-varint length and that many bytes; a frame
//! over [`MAX_MESSAGE`] is refused before it is read. The decoder is strict about structure (every
//! length inside the frame, no groups, no truncated varints) and lenient about content, as protobuf
//! is: unknown fields are skipped, absent fields take their defaults. CIDs stay bytes here; the
//! server and the client decide what they can use.
//!
//! Between shp stations the same messages travel *sealed* ([`seal`], [`unseal`]) on
//! `/shp/bitswap-zstd/1.2.0`: each frame is one byte (0: the message as it is, 1: zstd) and the
//! message. Sealed frames are held to [`MAX_MESSAGE`] as plain ones are, and a compressed message
//! may not unpack to more than [`MAX_MESSAGE`].

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use shp_core::cid::{Cid, DAG_CBOR, DAG_PB, RAW};
use std::borrow::Cow;

/// The largest message read or written (boxo's limit).
pub const MAX_MESSAGE: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WantType {
    #[default]
    Block,
    Have,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// The wanted CID, as the peer sent it (any version or codec).
    pub cid: Vec<u8>,
    pub priority: i32,
    pub cancel: bool,
    pub want_type: WantType,
    pub send_dont_have: bool,
    /// shp: the binary CID of a block the asker holds that the wanted one resembles (empty: none).
    pub base: Vec<u8>,
}

/// shp: a block sent as a zstd frame against a base the asker named.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delta {
    pub cid: Vec<u8>,
    pub base: Vec<u8>,
    pub frame: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Block {
    /// CID prefix: version, codec, multihash code and length (varints).
    pub prefix: Vec<u8>,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Have,
    DontHave,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub wantlist: Vec<Entry>,
    /// The wantlist replaces the previous one rather than adding to it.
    pub full: bool,
    /// Blocks with their CID prefix (1.1.0 and later).
    pub blocks: Vec<Block>,
    /// 1.0.0 blocks (CIDv0, dag-pb): kept so a caller can say it saw them.
    pub legacy_blocks: Vec<Vec<u8>>,
    pub presences: Vec<(Vec<u8>, Presence)>,
    pub pending_bytes: i32,
    /// shp: blocks as deltas against bases the asker named.
    pub deltas: Vec<Delta>,
}

/// Why bytes are not a bitswap message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed bitswap message: {0}")]
pub struct DecodeError(pub String);

impl Message {
    pub fn is_empty(&self) -> bool {
        self.wantlist.is_empty()
            && self.blocks.is_empty()
            && self.presences.is_empty()
            && self.deltas.is_empty()
            && !self.full
    }

    /// The protobuf bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.wantlist.is_empty() || self.full {
            let mut wl = Vec::new();
            for e in &self.wantlist {
                let mut eb = Vec::with_capacity(e.cid.len() + 12);
                put_bytes(&mut eb, 1, &e.cid);
                if e.priority != 0 {
                    put_varint_field(&mut eb, 2, e.priority as i64 as u64);
                }
                if e.cancel {
                    put_varint_field(&mut eb, 3, 1);
                }
                if e.want_type == WantType::Have {
                    put_varint_field(&mut eb, 4, 1);
                }
                if e.send_dont_have {
                    put_varint_field(&mut eb, 5, 1);
                }
                if !e.base.is_empty() {
                    put_bytes(&mut eb, 16, &e.base);
                }
                put_bytes(&mut wl, 1, &eb);
            }
            if self.full {
                put_varint_field(&mut wl, 2, 1);
            }
            put_bytes(&mut out, 1, &wl);
        }
        for b in &self.legacy_blocks {
            put_bytes(&mut out, 2, b);
        }
        for b in &self.blocks {
            let mut bb = Vec::with_capacity(b.prefix.len() + b.data.len() + 12);
            put_bytes(&mut bb, 1, &b.prefix);
            put_bytes(&mut bb, 2, &b.data);
            put_bytes(&mut out, 3, &bb);
        }
        for (cid, p) in &self.presences {
            let mut pb = Vec::with_capacity(cid.len() + 4);
            put_bytes(&mut pb, 1, cid);
            if *p == Presence::DontHave {
                put_varint_field(&mut pb, 2, 1);
            }
            put_bytes(&mut out, 4, &pb);
        }
        if self.pending_bytes != 0 {
            put_varint_field(&mut out, 5, self.pending_bytes as i64 as u64);
        }
        for d in &self.deltas {
            let mut db = Vec::with_capacity(d.cid.len() + d.base.len() + d.frame.len() + 12);
            put_bytes(&mut db, 1, &d.cid);
            put_bytes(&mut db, 2, &d.base);
            put_bytes(&mut db, 3, &d.frame);
            put_bytes(&mut out, 16, &db);
        }
        out
    }

    /// Parses protobuf bytes.
    pub fn decode(b: &[u8]) -> Result<Message, DecodeError> {
        let mut m = Message::default();
        for f in Fields::new(b) {
            match f? {
                (1, Value::Bytes(wl)) => {
                    for f in Fields::new(wl) {
                        match f? {
                            (1, Value::Bytes(eb)) => m.wantlist.push(decode_entry(eb)?),
                            (2, Value::Varint(v)) => m.full = v != 0,
                            (1 | 2, _) => return Err(DecodeError("wantlist field of the wrong type".into())),
                            _ => {}
                        }
                    }
                }
                (2, Value::Bytes(data)) => m.legacy_blocks.push(data.to_vec()),
                (3, Value::Bytes(bb)) => {
                    let mut blk = Block::default();
                    for f in Fields::new(bb) {
                        match f? {
                            (1, Value::Bytes(p)) => blk.prefix = p.to_vec(),
                            (2, Value::Bytes(d)) => blk.data = d.to_vec(),
                            (1 | 2, _) => return Err(DecodeError("block field of the wrong type".into())),
                            _ => {}
                        }
                    }
                    m.blocks.push(blk);
                }
                (4, Value::Bytes(pb)) => {
                    let (mut cid, mut kind) = (Vec::new(), Presence::Have);
                    for f in Fields::new(pb) {
                        match f? {
                            (1, Value::Bytes(c)) => cid = c.to_vec(),
                            (2, Value::Varint(0)) => kind = Presence::Have,
                            (2, Value::Varint(1)) => kind = Presence::DontHave,
                            (2, Value::Varint(v)) => {
                                return Err(DecodeError(format!("unknown block presence type {v}")))
                            }
                            (1 | 2, _) => return Err(DecodeError("presence field of the wrong type".into())),
                            _ => {}
                        }
                    }
                    m.presences.push((cid, kind));
                }
                (5, Value::Varint(v)) => m.pending_bytes = v as i32,
                (16, Value::Bytes(db)) => {
                    let mut d = Delta::default();
                    for f in Fields::new(db) {
                        match f? {
                            (1, Value::Bytes(c)) => d.cid = c.to_vec(),
                            (2, Value::Bytes(c)) => d.base = c.to_vec(),
                            (3, Value::Bytes(c)) => d.frame = c.to_vec(),
                            (1..=3, _) => return Err(DecodeError("delta field of the wrong type".into())),
                            _ => {}
                        }
                    }
                    m.deltas.push(d);
                }
                (1..=5 | 16, _) => return Err(DecodeError("message field of the wrong type".into())),
                _ => {}
            }
        }
        Ok(m)
    }
}

fn decode_entry(b: &[u8]) -> Result<Entry, DecodeError> {
    let mut e = Entry::default();
    for f in Fields::new(b) {
        match f? {
            (1, Value::Bytes(c)) => e.cid = c.to_vec(),
            (2, Value::Varint(v)) => e.priority = v as i32,
            (3, Value::Varint(v)) => e.cancel = v != 0,
            (4, Value::Varint(0)) => e.want_type = WantType::Block,
            (4, Value::Varint(1)) => e.want_type = WantType::Have,
            (4, Value::Varint(v)) => return Err(DecodeError(format!("unknown want type {v}"))),
            (5, Value::Varint(v)) => e.send_dont_have = v != 0,
            (16, Value::Bytes(c)) => e.base = c.to_vec(),
            (1..=5 | 16, _) => return Err(DecodeError("wantlist entry field of the wrong type".into())),
            _ => {}
        }
    }
    Ok(e)
}

/// The CID prefix of a CIDv1 sha2-256 block: version 1, codec, sha2-256, 32 bytes.
pub fn prefix_of(cid: &Cid) -> Vec<u8> {
    cid.to_bytes()[..4].to_vec()
}

/// The CID a block's prefix and data make, when it is one shp stores (CIDv1, raw or dag-cbor,
/// sha2-256). The data is hashed here, so the CID always matches the bytes.
pub fn block_cid(b: &Block) -> Result<Cid, String> {
    let mut pos = 0;
    let mut next = |what: &str| read_varint(&b.prefix, &mut pos).ok_or_else(|| format!("block prefix: bad {what}"));
    let (version, codec, hash, len) = (
        next("version")?,
        next("codec")?,
        next("hash code")?,
        next("hash length")?,
    );
    // CIDv0 prefixes (Kubo's, for `Qm…` blocks) are dag-pb: the same block as its CIDv1.
    if version > 1 || (version == 0 && codec != DAG_PB) {
        return Err(format!("block prefix: CID version {version} with codec 0x{codec:x}"));
    }
    if codec != RAW && codec != DAG_CBOR && codec != DAG_PB {
        return Err(format!(
            "block prefix: codec 0x{codec:x} is not raw, dag-cbor or dag-pb"
        ));
    }
    if hash != 0x12 || len != 32 {
        return Err(format!("block prefix: multihash 0x{hash:x}/{len} is not sha2-256/32"));
    }
    Ok(Cid::hash(codec, &b.data))
}

pub(crate) enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The (field number, value) pairs of one protobuf message.
pub(crate) struct Fields<'a> {
    b: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Fields<'a> {
        Fields {
            b,
            pos: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), DecodeError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.b.len() {
            return None;
        }
        let r = (|| {
            let err = |s: &str| DecodeError(s.to_string());
            let key = read_varint(self.b, &mut self.pos).ok_or_else(|| err("truncated field key"))?;
            let (field, wire) = (key >> 3, key & 7);
            if field == 0 {
                return Err(err("field number 0"));
            }
            let v = match wire {
                0 => Value::Varint(read_varint(self.b, &mut self.pos).ok_or_else(|| err("truncated varint"))?),
                1 | 5 => {
                    let n = if wire == 1 { 8 } else { 4 };
                    if self.b.len() - self.pos < n {
                        return Err(err("truncated fixed-width field"));
                    }
                    self.pos += n;
                    Value::Fixed
                }
                2 => {
                    let len = read_varint(self.b, &mut self.pos).ok_or_else(|| err("truncated length"))?;
                    if len > (self.b.len() - self.pos) as u64 {
                        return Err(err("length runs past the end"));
                    }
                    let s = &self.b[self.pos..self.pos + len as usize];
                    self.pos += len as usize;
                    Value::Bytes(s)
                }
                w => return Err(DecodeError(format!("unsupported wire type {w}"))),
            };
            Ok((field, v))
        })();
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }
}

/// An unsigned LEB128 varint of at most 10 bytes.
fn read_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    crate::transport::write_varint(v, out)
}

fn put_varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3);
    put_varint(out, v);
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A message sealed for the zstd protocol: compressed at `level` when `try_compress` and that
/// saves at least a tenth, else as it is. Returns the frame and whether it was compressed.
pub fn seal(msg: &[u8], try_compress: bool, level: i32) -> (Vec<u8>, bool) {
    if try_compress {
        if let Some(z) = seal_packed(msg, level) {
            return (z, true);
        }
    }
    let mut out = Vec::with_capacity(msg.len() + 1);
    out.extend_from_slice(PLAIN);
    out.extend_from_slice(msg);
    (out, false)
}

/// The flag of a sealed frame that carries its message as it is: a writer sends it before the
/// message ([`write_frame_parts`]) instead of copying the message behind it.
pub const PLAIN: &[u8] = &[0];

/// The sealed frame of `msg` compressed at `level`, when that saves at least a tenth; else None
/// (the message then goes as [`PLAIN`] followed by itself).
pub fn seal_packed(msg: &[u8], level: i32) -> Option<Vec<u8>> {
    let z = zstd::bulk::compress(msg, level).ok()?;
    if z.len() >= msg.len() - msg.len() / 10 {
        return None;
    }
    let mut out = Vec::with_capacity(z.len() + 1);
    out.push(1);
    out.extend_from_slice(&z);
    Some(out)
}

/// The message in a sealed frame. Errors name what is wrong: an empty frame, an unknown flag,
/// bytes that are not zstd, or a message that unpacks to more than [`MAX_MESSAGE`].
pub fn unseal(frame: &[u8]) -> Result<Vec<u8>, String> {
    unseal_in(frame).map(Cow::into_owned)
}

/// [`unseal`] that borrows a plain frame's message instead of copying it.
pub fn unseal_in(frame: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    match frame.split_first() {
        None => Err("an empty sealed frame".into()),
        Some((0, rest)) => Ok(Cow::Borrowed(rest)),
        Some((1, rest)) => {
            // The frame header says how big it unpacks to when the sender wrote it; the limit
            // holds either way (bulk decompression stops at the capacity given).
            zstd::bulk::decompress(rest, MAX_MESSAGE)
                .map(Cow::Owned)
                .map_err(|e| format!("a compressed message that does not unpack within {MAX_MESSAGE} bytes: {e}"))
        }
        Some((f, _)) => Err(format!("a sealed frame with the unknown flag {f}")),
    }
}

/// Reads one length-prefixed frame; `None` at a clean end of stream before a frame starts.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    read_frame_max(r, MAX_MESSAGE).await
}

/// [`read_frame`] with a limit of `max` bytes (a frame announcing more is `InvalidData`).
pub async fn read_frame_max<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut len: u64 = 0;
    for i in 0..10 {
        let mut byte = [0u8; 1];
        match r.read(&mut byte).await? {
            0 if i == 0 => return Ok(None),
            0 => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "truncated frame length",
                ))
            }
            _ => {}
        }
        len |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            if len > max as u64 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a message of {len} bytes, over the {max}-byte limit"),
                ));
            }
            let mut buf = vec![0u8; len as usize];
            r.read_exact(&mut buf).await?;
            return Ok(Some(buf));
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "frame length is not a varint",
    ))
}

/// Writes one length-prefixed frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, msg: &[u8]) -> std::io::Result<()> {
    write_frame_parts(w, &[msg]).await
}

/// One frame whose body is `parts` one after the other (written as they are, not joined first).
pub async fn write_frame_parts<W: AsyncWrite + Unpin>(w: &mut W, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(10);
    put_varint(&mut head, parts.iter().map(|p| p.len() as u64).sum());
    w.write_all(&head).await?;
    for p in parts {
        w.write_all(p).await?;
    }
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry() -> impl Strategy<Value = Entry> {
        (
            proptest::collection::vec(any::<u8>(), 0..40),
            any::<i32>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(cid, priority, cancel, have, send_dont_have, base)| Entry {
                cid,
                priority,
                cancel,
                want_type: if have { WantType::Have } else { WantType::Block },
                send_dont_have,
                base,
            })
    }

    fn message() -> impl Strategy<Value = Message> {
        (
            proptest::collection::vec(entry(), 0..8),
            any::<bool>(),
            proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 0..6),
                    proptest::collection::vec(any::<u8>(), 0..300),
                ),
                0..4,
            ),
            proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..40), any::<bool>()), 0..6),
            any::<i32>(),
            proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 0..40),
                    proptest::collection::vec(any::<u8>(), 0..40),
                    proptest::collection::vec(any::<u8>(), 0..100),
                ),
                0..3,
            ),
        )
            .prop_map(|(wantlist, full, blocks, presences, pending_bytes, deltas)| Message {
                wantlist,
                full,
                blocks: blocks
                    .into_iter()
                    .map(|(prefix, data)| Block { prefix, data })
                    .collect(),
                legacy_blocks: Vec::new(),
                presences: presences
                    .into_iter()
                    .map(|(c, d)| (c, if d { Presence::DontHave } else { Presence::Have }))
                    .collect(),
                pending_bytes,
                deltas: deltas
                    .into_iter()
                    .map(|(cid, base, frame)| Delta { cid, base, frame })
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn encode_decode_roundtrip(m in message()) {
            prop_assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }

        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Message::decode(&b);
        }

        #[test]
        fn seal_unseal_roundtrip(m in message(), compress in any::<bool>()) {
            let bytes = m.encode();
            let (frame, _) = seal(&bytes, compress, 1);
            prop_assert_eq!(unseal(&frame).unwrap(), bytes);
        }

        #[test]
        fn unseal_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = unseal(&b);
        }
    }

    #[test]
    fn sealed_frames_compress_what_compresses_and_refuse_bombs() {
        let text = Message {
            blocks: vec![Block {
                prefix: vec![1, 0x55, 0x12, 0x20],
                data: b"usr/share/doc/ ".repeat(20_000),
            }],
            ..Default::default()
        }
        .encode();
        let (frame, z) = seal(&text, true, 1);
        assert!(
            z && frame.len() < text.len() / 20 && frame[0] == 1,
            "{} -> {}",
            text.len(),
            frame.len()
        );
        // Random bytes stay as they are (and so does anything not worth it).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..50_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        let (frame, z) = seal(&noise, true, 1);
        assert!(!z && frame[0] == 0 && frame[1..] == noise[..]);
        assert_eq!(seal(&text, false, 1).0.len(), text.len() + 1);
        // A frame that unpacks past the limit is refused, naming the limit.
        let bomb = zstd::bulk::compress(&vec![0u8; MAX_MESSAGE + 1], 3).unwrap();
        let mut f = vec![1];
        f.extend_from_slice(&bomb);
        let e = unseal(&f).unwrap_err();
        assert!(e.contains(&MAX_MESSAGE.to_string()), "{e}");
        assert!(unseal(&[]).unwrap_err().contains("empty"));
        assert!(unseal(&[7, 1, 2]).unwrap_err().contains("flag 7"));
        assert!(unseal(&[1, 1, 2, 3]).is_err());
    }

    #[test]
    fn known_bytes() {
        // A want-have with send-dont-have for one raw CID, as go-bitswap writes it.
        let cid = Cid::hash(RAW, b"x");
        let m = Message {
            wantlist: vec![Entry {
                cid: cid.to_bytes().to_vec(),
                priority: 1,
                cancel: false,
                want_type: WantType::Have,
                send_dont_have: true,
                base: Vec::new(),
            }],
            ..Default::default()
        };
        let mut want = vec![0x0a, 46, 0x0a, 44, 0x0a, 36];
        want.extend_from_slice(&cid.to_bytes());
        want.extend_from_slice(&[0x10, 1, 0x20, 1, 0x28, 1]);
        assert_eq!(m.encode(), want);
        // Negative priorities are ten-byte varints.
        let e = Entry {
            priority: -1,
            ..Default::default()
        };
        let m = Message {
            wantlist: vec![e.clone()],
            ..Default::default()
        };
        assert_eq!(Message::decode(&m.encode()).unwrap().wantlist[0], e);
    }

    #[test]
    fn structure_errors_are_named() {
        for (bytes, what) in [
            (&[0x0a, 0x05, 0x01][..], "past the end"),
            (&[0x0b][..], "wire type 3"),
            (&[0x08][..], "truncated varint"),
            (&[0x22, 0x02, 0x10, 0x07][..], "presence type 7"),
            (&[0x00, 0x00][..], "field number 0"),
        ] {
            let e = Message::decode(bytes).unwrap_err();
            assert!(e.to_string().contains(what), "{e} should say {what}");
        }
    }

    #[test]
    fn block_cids_are_computed_from_the_data() {
        let data = b"some block".to_vec();
        let cid = Cid::hash(DAG_CBOR, &data);
        let b = Block {
            prefix: prefix_of(&cid),
            data,
        };
        assert_eq!(block_cid(&b).unwrap(), cid);
        // Kubo's CIDv0 blocks: dag-pb, the same block as their CIDv1.
        let v0 = Block {
            prefix: vec![0, 0x70, 0x12, 0x20],
            data: vec![1, 2],
        };
        assert_eq!(block_cid(&v0).unwrap(), Cid::hash(DAG_PB, &[1, 2]));
        let v0_raw = Block {
            prefix: vec![0, 0x55, 0x12, 0x20],
            data: vec![],
        };
        assert!(block_cid(&v0_raw).unwrap_err().contains("version 0"));
        let other = Block {
            prefix: vec![1, 0x90, 0x01, 0x12, 0x20],
            data: vec![],
        };
        assert!(block_cid(&other).unwrap_err().contains("0x90"));
    }

    #[test]
    fn frames_roundtrip_and_oversize_is_refused() {
        futures::executor::block_on(async {
            let mut buf = Vec::new();
            write_frame(&mut buf, b"hello").await.unwrap();
            write_frame(&mut buf, b"").await.unwrap();
            let mut r = futures::io::Cursor::new(buf);
            assert_eq!(read_frame(&mut r).await.unwrap().unwrap(), b"hello");
            assert_eq!(read_frame(&mut r).await.unwrap().unwrap(), b"");
            assert!(read_frame(&mut r).await.unwrap().is_none());
            let mut big = Vec::new();
            put_varint(&mut big, MAX_MESSAGE as u64 + 1);
            let e = read_frame(&mut futures::io::Cursor::new(big)).await.unwrap_err();
            assert!(e.to_string().contains("limit"), "{e}");
        });
    }
}
