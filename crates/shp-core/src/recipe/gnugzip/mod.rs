//! GNU gzip's own deflate: what `gzip` (the GNU program, not zlib) writes.
//!
//! GNU gzip carries its own deflate (deflate.c, trees.c, bits.c), an ancestor of zlib's whose
//! block-ending rules, buffer sizes and level table differ, so zlib cannot reproduce it. This is a
//! Rust implementation written from gzip 1.12's sources as the specification.
//!
//! Profiles: `gnugzip-1.12/L` for L = 1..9 (`gzip -L`). The deflate stream depends only on the
//! level (the gzip header with name, mtime, XFL and OS byte is kept verbatim by the caller), and
//! is the same whether gzip read a named file or standard input: gzip fills its window with
//! `read(2)` requests, which a regular file always satisfies completely; on a pipe with short
//! reads the window may slide one step earlier, which can change a match only at exactly the
//! maximum distance (not seen in tests). The profile name carries 1.12, the version checked byte
//! for byte; gzip's deflate has kept this output since the 1990s (1.2.4 .. 1.12 share the
//! algorithm and tables; `--rsyncable`, which adds block cuts, is not covered).
//!
//! The encoder runs the match finder on the calling thread and the Huffman trees and bit output
//! of finished blocks on a helper thread, so two cores share the work.

mod lz;
mod trees;

use lz::{Block, Codes, ReadSource, Source};
use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use trees::Writer;

/// The profile family prefix.
const PREFIX: &str = "gnugzip-1.12/";
/// Candidate levels in the fixed order the probe tries them (the default first, then -9, -1).
const ORDER: [u32; 9] = [6, 9, 1, 5, 4, 7, 8, 3, 2];
/// How much of the tar the probe re-encodes at most per candidate.
const PROBE: usize = 1 << 20;

/// All parameters that determine GNU gzip's deflate stream: the level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub level: u32,
}

impl Params {
    /// `gnugzip-1.12/<level>`.
    pub fn profile(&self) -> String {
        format!("{PREFIX}{}", self.level)
    }

    /// Inverse of [`Params::profile`].
    pub fn from_profile(s: &str) -> Option<Params> {
        let l = s.strip_prefix(PREFIX)?;
        if l.len() != 1 {
            return None;
        }
        let level = l.parse().ok().filter(|l| (1..=9).contains(l))?;
        Some(Params { level })
    }
}

/// Input for the probe: the known prefix; past its end the encoding stops unless it is the whole input.
struct PrefixSource<'a> {
    data: &'a [u8],
    complete: bool,
}

impl Source for PrefixSource<'_> {
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data.len() < buf.len() && !self.complete {
            return Err(io::Error::other("end of known prefix"));
        }
        let n = buf.len().min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// What re-encoding a prefix says about one level.
#[derive(PartialEq)]
enum Verdict {
    Match,
    Differs,
    /// No whole block was produced from the known prefix (very compressible data).
    Unknown,
}

/// Whether level `level` reproduces the start of `stream`: encodes `data` block by block and stops
/// at the first byte that differs.
fn check(level: u32, stream: &[u8], data: &[u8], complete: bool, codes: &Arc<Codes>) -> Verdict {
    let mut src = PrefixSource { data, complete };
    let mut lz = lz::Lz::new(level, codes.clone());
    let mut w = Writer::new(codes.clone());
    let mut compared = 0;
    while let Ok(Some(b)) = lz.next_block(&mut src) {
        w.flush_block(&b);
        let out = &w.bits.out;
        let n = out.len().min(stream.len());
        if out[compared..n] != stream[compared..n] {
            return Verdict::Differs;
        }
        compared = n;
        if n == stream.len() {
            break;
        }
    }
    if compared > 0 {
        Verdict::Match
    } else {
        Verdict::Unknown
    }
}

/// Levels whose output matches the start of `stream` (raw deflate after the gzip header), given
/// `data`, the bytes it decodes to (`complete`: `stream` is the whole stream, `data` all of it).
/// Fixed order: 6, 9, 1, 5, 4, 7, 8, 3, 2. Each candidate re-encodes at most 1 MiB and stops at
/// the first differing block, so a wrong level usually costs one block (≤ 64 KiB of input). When
/// no block ends within 1 MiB (long runs: one block can cover up to 8 MiB), all of `data` is
/// used; levels still undecided after that come last, in the same order.
pub fn probe(stream: &[u8], data: &[u8], complete: bool) -> Vec<Params> {
    // An empty stream or block type 3 (invalid) is not a deflate stream gzip wrote.
    if stream.is_empty() || stream[0] & 6 == 6 {
        return Vec::new();
    }
    let codes = Arc::new(Codes::new());
    let (head, head_complete) = if data.len() > PROBE {
        (&data[..PROBE], false)
    } else {
        (data, complete)
    };
    let mut found = Vec::new();
    let mut unknown = Vec::new();
    for level in ORDER {
        let mut v = check(level, stream, head, head_complete, &codes);
        if v == Verdict::Unknown && head.len() < data.len() {
            v = check(level, stream, data, complete, &codes);
        }
        match v {
            Verdict::Match => found.push(Params { level }),
            Verdict::Unknown => unknown.push(Params { level }),
            Verdict::Differs => {}
        }
    }
    found.extend(unknown);
    found
}

/// Streams GNU gzip's raw deflate stream of `input` at `p.level`.
pub fn encoder<'a, R: Read + Send + 'a>(p: &Params, input: R) -> Box<dyn Read + Send + 'a> {
    Box::new(Encoder::new(p.level, input))
}

/// Blocks in flight between the match finder and the block writer.
const DEPTH: usize = 4;

struct Encoder<R> {
    lz: lz::Lz,
    src: ReadSource<R>,
    to_writer: Option<SyncSender<Block>>,
    from_writer: Receiver<Vec<u8>>,
    in_flight: usize,
    lz_done: bool,
    out: Vec<u8>,
    pos: usize,
}

impl<R: Read> Encoder<R> {
    fn new(level: u32, input: R) -> Encoder<R> {
        let codes = Arc::new(Codes::new());
        let (to_writer, blocks) = sync_channel::<Block>(DEPTH);
        let (done, from_writer) = sync_channel::<Vec<u8>>(DEPTH + 1);
        let wcodes = codes.clone();
        std::thread::spawn(move || {
            let mut w = Writer::new(wcodes);
            for b in blocks {
                w.flush_block(&b);
                let mut out = std::mem::take(&mut w.bits.out);
                // Keep the writer's buffer allocation: move the bytes out, reserve for the next.
                w.bits.out = Vec::with_capacity(out.len().max(1 << 16));
                out.shrink_to_fit();
                if done.send(out).is_err() {
                    return;
                }
            }
        });
        Encoder {
            lz: lz::Lz::new(level, codes),
            src: ReadSource(input),
            to_writer: Some(to_writer),
            from_writer,
            in_flight: 0,
            lz_done: false,
            out: Vec::new(),
            pos: 0,
        }
    }
}

impl<R: Read> Read for Encoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.out.len() {
                let n = (self.out.len() - self.pos).min(buf.len());
                buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            // Keep the writer busy: parse ahead while it has room, then collect in order.
            while !self.lz_done && self.in_flight < DEPTH {
                match self.lz.next_block(&mut self.src)? {
                    Some(b) => {
                        let tx = self.to_writer.as_ref().expect("writer open while parsing");
                        tx.send(b).map_err(|_| io::Error::other("gzip block writer stopped"))?;
                        self.in_flight += 1;
                    }
                    None => {
                        self.lz_done = true;
                        self.to_writer = None;
                    }
                }
            }
            if self.in_flight == 0 {
                return Ok(0);
            }
            self.out = self
                .from_writer
                .recv()
                .map_err(|_| io::Error::other("gzip block writer stopped"))?;
            self.pos = 0;
            self.in_flight -= 1;
        }
    }
}

#[cfg(test)]
mod tests;
