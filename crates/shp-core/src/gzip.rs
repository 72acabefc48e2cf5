//! gzip member framing (RFC 1952): the header kept verbatim for recipes, and the trailer.

use crate::error::{Error, Result};

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

#[cfg(test)]
mod tests {
    use super::*;

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
