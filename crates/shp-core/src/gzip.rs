//! gzip member framing (RFC 1952): the header kept verbatim for recipes, and the trailer.

use crate::error::{Error, Result};
use crate::inflate::{Inflater, Pushback};
use std::io::BufRead as _;

const FTEXT: u8 = 1;
const FHCRC: u8 = 2;
const FEXTRA: u8 = 4;
const FNAME: u8 = 8;
const FCOMMENT: u8 = 16;
/// Headers longer than this (huge names or extra fields) are not kept as recipes.
pub const MAX_HEADER: usize = 64 * 1024;

/// A parsed gzip member header; `bytes` is exactly what the producer wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub bytes: Vec<u8>,
    pub flags: u8,
    pub mtime: u32,
    pub xfl: u8,
    pub os: u8,
    pub name: Option<Vec<u8>>,
}

/// Parses the header at the start of `b`. Errors say what is wrong (or that `b` is too short).
pub fn parse_header(b: &[u8]) -> Result<Header> {
    let bad = |r: &str| Error::Compression {
        blob: "gzip header".into(),
        reason: r.to_string(),
    };
    if b.len() < 10 {
        return Err(bad("truncated header"));
    }
    if b[0] != 0x1f || b[1] != 0x8b {
        return Err(bad("not gzip (bad magic)"));
    }
    if b[2] != 8 {
        return Err(bad("compression method is not deflate"));
    }
    let flags = b[3];
    if flags & 0xe0 != 0 {
        return Err(bad("reserved flag bits set"));
    }
    let mtime = u32::from_le_bytes(b[4..8].try_into().unwrap());
    let (xfl, os) = (b[8], b[9]);
    let mut pos = 10;
    if flags & FEXTRA != 0 {
        let n = b.get(pos..pos + 2).ok_or_else(|| bad("truncated extra field"))?;
        let n = u16::from_le_bytes([n[0], n[1]]) as usize;
        pos += 2 + n;
    }
    let mut name = None;
    for (flag, what) in [(FNAME, "name"), (FCOMMENT, "comment")] {
        if flags & flag != 0 {
            let rest = b.get(pos..).ok_or_else(|| bad("truncated header"))?;
            let end = rest
                .iter()
                .take(MAX_HEADER)
                .position(|&c| c == 0)
                .ok_or_else(|| bad(&format!("unterminated or over-long {what}")))?;
            if flag == FNAME {
                name = Some(rest[..end].to_vec());
            }
            pos += end + 1;
        }
    }
    if flags & FHCRC != 0 {
        pos += 2;
    }
    let _ = FTEXT;
    if pos > b.len() || pos > MAX_HEADER {
        return Err(bad("truncated or over-long header"));
    }
    Ok(Header {
        bytes: b[..pos].to_vec(),
        flags,
        mtime,
        xfl,
        os,
        name,
    })
}

/// The 8-byte member trailer: CRC-32 and size mod 2^32 of the uncompressed data.
pub fn trailer(crc: u32, size: u64) -> [u8; 8] {
    let mut t = [0u8; 8];
    t[..4].copy_from_slice(&crc.to_le_bytes());
    t[4..].copy_from_slice(&(size as u32).to_le_bytes());
    t
}

/// What a [`MemberDecoder`] passes on framing, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boundary {
    /// A member begins with this header (verbatim).
    Member(Vec<u8>),
    /// The member ended (trailer checked) after this many decoded bytes.
    End(u64),
    /// Bytes after the last member: the first `MAX_TAIL_KEPT` of them, and how many there were.
    Tail(Vec<u8>, u64),
}

/// How many trailing bytes a [`MemberDecoder`] keeps for its `Tail` event.
pub const MAX_TAIL_KEPT: usize = 64 * 1024 + 1;

enum MemberState {
    Between,
    Body,
    Done,
}

/// Decodes a gzip stream member by member (RFC 1952): checks each trailer (CRC-32 and size),
/// reports headers, member ends and bytes after the last member to `events`, and yields the
/// concatenated data. Trailing bytes that do not start a member end the stream (kept, not
/// decoded); a truncated or corrupt member is an error.
pub struct MemberDecoder<'a, R> {
    inner: Pushback<R>,
    z: Inflater,
    crc: flate2::Crc,
    state: MemberState,
    events: Option<&'a std::cell::RefCell<Vec<Boundary>>>,
}

impl<'a, R: std::io::BufRead> MemberDecoder<'a, R> {
    /// A decoder reporting its framing to `events` (None: not reported).
    pub fn new(inner: R, events: Option<&'a std::cell::RefCell<Vec<Boundary>>>) -> Self {
        MemberDecoder {
            inner: Pushback::new(inner),
            z: Inflater::new(),
            crc: flate2::Crc::new(),
            state: MemberState::Between,
            events,
        }
    }

    fn event(&self, b: Boundary) {
        if let Some(e) = self.events {
            e.borrow_mut().push(b);
        }
    }

    fn byte(&mut self) -> std::io::Result<Option<u8>> {
        let b = self.inner.fill_buf()?;
        let Some(&c) = b.first() else { return Ok(None) };
        self.inner.consume(1);
        Ok(Some(c))
    }

    fn need(&mut self, what: &str) -> std::io::Result<u8> {
        self.byte()?
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("truncated gzip {what}")))
    }

    /// Reads the rest of a header whose first two bytes (the magic) were read.
    fn header(&mut self) -> std::io::Result<Vec<u8>> {
        let mut h = vec![0x1f, 0x8b];
        for _ in 0..8 {
            h.push(self.need("header")?);
        }
        let flags = h[3];
        if flags & FEXTRA != 0 {
            let (a, b) = (self.need("header")?, self.need("header")?);
            h.extend_from_slice(&[a, b]);
            for _ in 0..u16::from_le_bytes([a, b]) {
                h.push(self.need("header")?);
            }
        }
        for flag in [FNAME, FCOMMENT] {
            if flags & flag != 0 {
                loop {
                    let c = self.need("header")?;
                    h.push(c);
                    if c == 0 {
                        break;
                    }
                    if h.len() > MAX_HEADER {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "gzip header over 64 KiB",
                        ));
                    }
                }
            }
        }
        if flags & FHCRC != 0 {
            h.push(self.need("header")?);
            h.push(self.need("header")?);
        }
        parse_header(&h).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        Ok(h)
    }

    fn tail(&mut self, first: Vec<u8>) -> std::io::Result<()> {
        let mut kept = first;
        let mut total = kept.len() as u64;
        loop {
            let b = self.inner.fill_buf()?;
            if b.is_empty() {
                break;
            }
            let n = b.len();
            let room = MAX_TAIL_KEPT.saturating_sub(kept.len()).min(n);
            kept.extend_from_slice(&b[..room]);
            total += n as u64;
            self.inner.consume(n);
        }
        self.event(Boundary::Tail(kept, total));
        Ok(())
    }
}

impl<R: std::io::BufRead> std::io::Read for MemberDecoder<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use std::io::{Error as IoError, ErrorKind};
        loop {
            match self.state {
                MemberState::Done => return Ok(0),
                MemberState::Between => {
                    let Some(a) = self.byte()? else {
                        self.state = MemberState::Done;
                        continue;
                    };
                    let b = if a == 0x1f { self.byte()? } else { None };
                    if a != 0x1f || b != Some(0x8b) {
                        let mut first = vec![a];
                        first.extend(b);
                        self.tail(first)?;
                        self.state = MemberState::Done;
                        continue;
                    }
                    let h = self.header()?;
                    self.event(Boundary::Member(h));
                    self.z.reset();
                    self.crc.reset();
                    self.state = MemberState::Body;
                }
                MemberState::Body => {
                    if out.is_empty() {
                        return Ok(0);
                    }
                    let (made, ended) = self.z.read(&mut self.inner, out)?;
                    self.crc.update(&out[..made]);
                    if ended {
                        let mut t = [0u8; 8];
                        for b in t.iter_mut() {
                            *b = self.need("trailer")?;
                        }
                        if u32::from_le_bytes(t[..4].try_into().unwrap()) != self.crc.sum() {
                            return Err(IoError::new(
                                ErrorKind::InvalidData,
                                "gzip member checksum (CRC-32) mismatch",
                            ));
                        }
                        if u32::from_le_bytes(t[4..].try_into().unwrap()) != self.crc.amount() {
                            return Err(IoError::new(ErrorKind::InvalidData, "gzip member length mismatch"));
                        }
                        self.event(Boundary::End(self.z.total_out()));
                        self.state = MemberState::Between;
                    }
                    if made > 0 {
                        return Ok(made);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_tail() {
        use std::io::{Read, Write};
        let mut stream = Vec::new();
        for (i, part) in [&b"hello "[..], &b""[..], &b"world"[..]].iter().enumerate() {
            let mut e = flate2::GzBuilder::new()
                .filename(format!("m{i}"))
                .write(Vec::new(), flate2::Compression::new(6));
            e.write_all(part).unwrap();
            stream.extend(e.finish().unwrap());
        }
        stream.extend_from_slice(&[0, 0, 0, 7]);
        let ev = std::cell::RefCell::new(Vec::new());
        let mut out = Vec::new();
        MemberDecoder::new(&stream[..], Some(&ev))
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"hello world");
        let ev = ev.into_inner();
        let ends: Vec<u64> = ev
            .iter()
            .filter_map(|b| if let Boundary::End(n) = b { Some(*n) } else { None })
            .collect();
        assert_eq!(ends, [6, 0, 5]);
        assert_eq!(ev.last(), Some(&Boundary::Tail(vec![0, 0, 0, 7], 4)));
        // A flipped CRC byte and a cut stream are errors, not data.
        let mut bad = stream.clone();
        let n = stream.len() - 4;
        bad[n - 8] ^= 1;
        assert!(MemberDecoder::new(&bad[..], None).read_to_end(&mut Vec::new()).is_err());
        let cut = &stream[..stream.len() - 10];
        assert!(MemberDecoder::new(cut, None).read_to_end(&mut Vec::new()).is_err());
    }

    #[test]
    fn headers() {
        let h = parse_header(&[0x1f, 0x8b, 8, 0, 1, 0, 0, 0, 0, 0xff, 0xaa]).unwrap();
        assert_eq!((h.bytes.len(), h.mtime, h.os), (10, 1, 0xff));
        let mut named = vec![0x1f, 0x8b, 8, FNAME | FEXTRA, 0, 0, 0, 0, 2, 3, 2, 0, b'x', b'y'];
        named.extend_from_slice(b"layer.tar\0rest");
        let h = parse_header(&named).unwrap();
        assert_eq!(h.name.as_deref(), Some(&b"layer.tar"[..]));
        assert_eq!(h.bytes.len(), named.len() - 4);
        assert!(parse_header(&[0x1f, 0x8b, 8, FNAME, 0, 0, 0, 0, 0, 0, b'a']).is_err());
        assert!(parse_header(&[0x1f, 0x8c, 8, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(parse_header(&[0x1f, 0x8b, 8, 0xe0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
