//! Recipes: how to re-encode a layer's tar into exactly the compressed bytes its producer wrote.
//!
//! A recipe names a versioned encoder *profile* and its parameters; it is found by a quick probe
//! of the stream's start and trusted only after the whole layer has been re-encoded and its sha256
//! matched at import. Profile set 1 holds one family:
//!
//! - `zlib-1.2/L` (L = 1..9): one gzip member whose deflate stream is zlib's (windowBits 15,
//!   memLevel 8, default strategy) at level L, header kept verbatim, standard trailer. This is what
//!   Python's `gzip`/`zlib`, Java's `GZIPOutputStream` and other zlib users write. Rebuilt with the
//!   system zlib, the library family that wrote it.
//!
//! Go's compress/flate, klauspost pgzip, GNU gzip, pigz and zstd are not reproduced yet: their layers
//! are kept opaque, and `inspect` says so.
//!
//! Recipe record (in the blob node): `{"profile": "zlib-1.2/L", "header": bytes}`.

use crate::cbor::Value;
use crate::error::{Error, Result};
use crate::gzip::{self, Header};
use flate2::{Compress, Compression, FlushCompress, Status};
use std::io::{self, Read};

pub mod gnugzip;

/// The candidate levels, in the fixed order tried (ties go to the first: deterministic).
const LEVELS: [u32; 9] = [6, 9, 1, 5, 7, 8, 4, 3, 2];
/// How much of the tar the probe re-encodes.
const PROBE: usize = 1 << 20;

/// A recipe for a gzip layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    pub level: u32,
    pub header: Vec<u8>,
}

impl Recipe {
    pub fn profile(&self) -> String {
        format!("zlib-1.2/{}", self.level)
    }

    pub fn to_value(&self) -> Value {
        Value::map([
            ("profile", Value::text(self.profile())),
            ("header", Value::Bytes(self.header.clone())),
        ])
    }

    pub fn from_value(v: &Value) -> Result<Recipe> {
        let bad = |r: String| Error::Schema {
            cid: "recipe".into(),
            reason: r,
        };
        let profile = v
            .get("profile")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no profile".into()))?;
        let level = profile
            .strip_prefix("zlib-1.2/")
            .and_then(|l| l.parse().ok())
            .filter(|l| (1..=9).contains(l))
            .ok_or_else(|| bad(format!("profile {profile:?} is unknown to this build (profile set 1)")))?;
        let header = v
            .get("header")
            .and_then(Value::as_bytes)
            .ok_or_else(|| bad("no header".into()))?
            .to_vec();
        gzip::parse_header(&header)?;
        Ok(Recipe { level, header })
    }

    /// Streams the re-encoded blob from the tar.
    pub fn encoder<'a, R: Read + 'a>(&self, tar: R) -> Box<dyn Read + 'a> {
        Box::new(GzipEncode {
            inner: tar,
            state: Phase::Header(self.header.clone(), 0),
            z: Compress::new(Compression::new(self.level), false),
            crc: flate2::Crc::new(),
            inbuf: vec![0; 64 * 1024],
            in_pos: 0,
            in_len: 0,
            eof: false,
        })
    }
}

/// Finds the level whose output starts like the stream: `compressed` is the blob's first bytes
/// (at least the header), `tar` the first bytes it decodes to. None: no profile fits.
pub fn probe(compressed: &[u8], tar: &[u8], tar_is_complete: bool) -> Option<Recipe> {
    let header = gzip::parse_header(compressed).ok()?;
    let deflate = &compressed[header.bytes.len()..];
    let tar = &tar[..tar.len().min(PROBE)];
    let complete = tar_is_complete && tar.len() < PROBE;
    for level in LEVELS {
        let mut z = Compress::new(Compression::new(level), false);
        let mut out = Vec::with_capacity(tar.len() / 2 + 1024);
        let flush = if complete {
            FlushCompress::Finish
        } else {
            FlushCompress::None
        };
        let mut pos = 0;
        loop {
            out.reserve(64 * 1024);
            let before = z.total_in();
            let st = z.compress_vec(&tar[pos..], &mut out, flush);
            pos += (z.total_in() - before) as usize;
            match st {
                Ok(Status::StreamEnd) => break,
                Ok(_) if pos == tar.len() && flush == FlushCompress::None => break,
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        let n = out.len().min(deflate.len());
        if n > 0 && out[..n] == deflate[..n] {
            return Some(Recipe {
                level,
                header: header.bytes.clone(),
            });
        }
    }
    None
}

/// What the gzip header says, for reports.
pub fn describe(h: &Header) -> String {
    format!("xfl={} os={} mtime={}", h.xfl, h.os, h.mtime)
}

enum Phase {
    Header(Vec<u8>, usize),
    Body,
    Trailer([u8; 8], usize),
    Done,
}

struct GzipEncode<R> {
    inner: R,
    state: Phase,
    z: Compress,
    crc: flate2::Crc,
    inbuf: Vec<u8>,
    in_pos: usize,
    in_len: usize,
    eof: bool,
}

impl<R: Read> Read for GzipEncode<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match &mut self.state {
                Phase::Header(h, pos) => {
                    let n = (h.len() - *pos).min(out.len());
                    out[..n].copy_from_slice(&h[*pos..*pos + n]);
                    *pos += n;
                    if *pos == h.len() {
                        self.state = Phase::Body;
                    }
                    if n > 0 {
                        return Ok(n);
                    }
                }
                Phase::Body => {
                    if self.in_pos == self.in_len && !self.eof {
                        let k = self.inner.read(&mut self.inbuf)?;
                        if k == 0 {
                            self.eof = true;
                        } else {
                            self.crc.update(&self.inbuf[..k]);
                        }
                        self.in_pos = 0;
                        self.in_len = k;
                    }
                    let flush = if self.eof {
                        FlushCompress::Finish
                    } else {
                        FlushCompress::None
                    };
                    let (bi, bo) = (self.z.total_in(), self.z.total_out());
                    let st = self
                        .z
                        .compress(&self.inbuf[self.in_pos..self.in_len], out, flush)
                        .map_err(|e| io::Error::other(format!("deflate: {e}")))?;
                    self.in_pos += (self.z.total_in() - bi) as usize;
                    let produced = (self.z.total_out() - bo) as usize;
                    if st == Status::StreamEnd {
                        self.state = Phase::Trailer(gzip::trailer(self.crc.sum(), self.crc.amount() as u64), 0);
                    }
                    if produced > 0 {
                        return Ok(produced);
                    }
                }
                Phase::Trailer(t, pos) => {
                    let n = (8 - *pos).min(out.len());
                    out[..n].copy_from_slice(&t[*pos..*pos + n]);
                    *pos += n;
                    if *pos == 8 {
                        self.state = Phase::Done;
                    }
                    return Ok(n);
                }
                Phase::Done => return Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sample() -> Vec<u8> {
        let mut x = 9u64;
        (0..3_000_000u32)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 3 == 0 {
                    (x % 7) as u8 + b'a'
                } else {
                    b"the quick brown fox "[(i % 20) as usize]
                }
            })
            .collect()
    }

    #[test]
    fn zlib_levels_roundtrip() {
        let data = sample();
        for level in [1, 6, 9] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::new(level));
            e.write_all(&data).unwrap();
            let gz = e.finish().unwrap();
            let r = probe(&gz[..gz.len().min(1 << 20)], &data, true).expect("found");
            let mut back = Vec::new();
            r.encoder(&data[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, gz, "level {level} → {}", r.profile());
            assert_eq!(Recipe::from_value(&r.to_value()).unwrap(), r);
        }
    }
}
