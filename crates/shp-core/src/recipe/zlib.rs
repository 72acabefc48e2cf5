//! The zlib family: raw deflate streams written by zlib (windowBits 15, memLevel 8, default
//! strategy) at level L, in one pass with no flushes — what Python's `gzip`/`zlib`, Java's
//! `GZIPOutputStream` and most other zlib users write. Rebuilt with the system zlib (Debian
//! 1.2.13), the library family that wrote it.
//!
//! Profiles: `zlib-1.2/L`, L = 1..9. zlib 1.2.x releases give the same bytes at every level.

use flate2::{Compress, Compression, FlushCompress, Status};
use std::io::{self, Read};

/// The candidate levels, in the fixed order tried (ties go to the first: deterministic).
const LEVELS: [u32; 9] = [6, 9, 1, 5, 7, 8, 4, 3, 2];
/// How much of the data the probe re-encodes.
const PROBE: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub level: u32,
}

impl Params {
    pub fn profile(&self) -> String {
        format!("zlib-1.2/{}", self.level)
    }

    pub fn from_profile(s: &str) -> Option<Params> {
        let l: u32 = s.strip_prefix("zlib-1.2/")?.parse().ok()?;
        ((1..=9).contains(&l) && s == format!("zlib-1.2/{l}")).then_some(Params { level: l })
    }
}

/// Levels whose output starts like `stream`, given `data` (what `stream` decodes to). Each level is
/// compared as its output appears, so a wrong level stops at its first deflate block.
pub fn probe(stream: &[u8], data: &[u8], complete: bool) -> Vec<Params> {
    let data = &data[..data.len().min(PROBE)];
    let complete = complete && data.len() < PROBE;
    let pieces: Vec<&[u8]> = if data.is_empty() {
        vec![data]
    } else {
        data.chunks(PIECE).collect()
    };
    let mut out = Vec::new();
    for level in LEVELS {
        let mut z = Compress::new(Compression::new(level), false);
        let mut enc = Vec::with_capacity(data.len() / 2 + 1024);
        let mut fits = true;
        for (i, piece) in pieces.iter().enumerate() {
            let flush = if complete && i + 1 == pieces.len() {
                FlushCompress::Finish
            } else {
                FlushCompress::None
            };
            if deflate_into(&mut z, piece, flush, &mut enc).is_err() || !agrees(&enc, stream) {
                fits = false;
                break;
            }
            if !complete && enc.len() >= stream.len() {
                break; // nothing more to compare
            }
        }
        // Complete streams must match exactly; prefixes as far as both go.
        let fits = fits
            && if complete {
                enc == stream
            } else {
                !enc.is_empty() && !stream.is_empty()
            };
        if fits {
            out.push(Params { level });
        }
    }
    out
}

/// How much input the probes hand zlib at a time before comparing what it wrote.
pub(crate) const PIECE: usize = 32 * 1024;

/// Whether `enc` and `stream` agree as far as both go.
pub(crate) fn agrees(enc: &[u8], stream: &[u8]) -> bool {
    let n = enc.len().min(stream.len());
    enc[..n] == stream[..n]
}

/// Compresses all of `input` with `flush`, appending what zlib writes to `out` (to the stream's end for
/// `Finish`).
pub(crate) fn deflate_into(z: &mut Compress, input: &[u8], flush: FlushCompress, out: &mut Vec<u8>) -> io::Result<()> {
    let start = z.total_in();
    loop {
        let done = (z.total_in() - start) as usize;
        out.reserve((input.len() - done) + (input.len() - done) / 8 + 1024);
        let before = out.len();
        let st = z
            .compress_vec(&input[done..], out, flush)
            .map_err(|e| io::Error::other(format!("deflate: {e}")))?;
        let all_in = (z.total_in() - start) as usize == input.len();
        let room_left = out.len() < out.capacity();
        match st {
            Status::StreamEnd => return Ok(()),
            _ if all_in && room_left && flush != FlushCompress::Finish => return Ok(()),
            Status::BufError if out.len() == before && all_in => return Ok(()),
            _ => {}
        }
    }
}

/// Streams the raw deflate encoding of `input`.
pub fn encoder<'a, R: Read + Send + 'a>(p: &Params, input: R) -> Box<dyn Read + Send + 'a> {
    Box::new(Deflater {
        inner: input,
        z: Compress::new(Compression::new(p.level), false),
        inbuf: vec![0; 64 * 1024],
        in_pos: 0,
        in_len: 0,
        eof: false,
        done: false,
    })
}

struct Deflater<R> {
    inner: R,
    z: Compress,
    inbuf: Vec<u8>,
    in_pos: usize,
    in_len: usize,
    eof: bool,
    done: bool,
}

impl<R: Read> Read for Deflater<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while !self.done && !out.is_empty() {
            if self.in_pos == self.in_len && !self.eof {
                let k = self.inner.read(&mut self.inbuf)?;
                self.eof = k == 0;
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
            self.done = st == Status::StreamEnd;
            if produced > 0 {
                return Ok(produced);
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn encodes_and_inflates_back(data in proptest::collection::vec(0u8..4, 0..200_000), level in 1u32..=9) {
            let mut enc = Vec::new();
            encoder(&Params { level }, &data[..]).read_to_end(&mut enc).unwrap();
            let mut back = Vec::new();
            flate2::read::DeflateDecoder::new(&enc[..]).read_to_end(&mut back).unwrap();
            prop_assert_eq!(back, data);
            prop_assert_eq!(Params::from_profile(&Params { level }.profile()), Some(Params { level }));
        }
    }

    #[test]
    fn profiles_are_strict() {
        for bad in [
            "zlib-1.2/0",
            "zlib-1.2/10",
            "zlib-1.2/06",
            "zlib-1.2/+6",
            "zlib-1.3/6",
            "zlib-1.2/6 ",
        ] {
            assert_eq!(Params::from_profile(bad), None, "{bad}");
        }
    }
}
