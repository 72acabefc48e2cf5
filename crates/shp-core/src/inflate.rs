//! Raw deflate decoding (RFC 1951) for gzip members: fast where the stream has sync-flush points.
//!
//! Parallel gzip writers (pgzip, pigz) end every block with a sync flush — an empty stored block,
//! the bytes `00 00 ff ff` at a byte boundary — and the next block starts there with a fresh
//! header. Such a point splits the stream into segments that decode on their own given the
//! last 32 KiB of output (the window). [`Inflater`] cuts there and decodes each segment with
//! libdeflate, a whole-buffer decoder about twice as fast as zlib's streaming inflate, as one small
//! deflate stream of its own:
//!
//! ```text
//! stored block (not final): the window | the segment | final fixed-Huffman block: a 16-byte sentinel
//! ```
//!
//! The output is then `window ‖ segment data ‖ sentinel`. A sentinel at the end proves the decoder
//! went through the whole segment and into the blocks we appended; without it the real stream
//! ended inside the segment (its final block came first), and zlib decodes that last stretch to
//! find exactly where the stream ends. `00 00 ff ff` inside compressed data (not a real flush)
//! makes the segment undecodable: the cut moves on to the next candidate. Streams without flush
//! points (Go's compress/gzip, GNU gzip, zlib) are decoded by zlib after the first
//! [`MAX_SEGMENT`] bytes show none. zlib keeps the stream only until the next candidate cut that
//! proves real: it pauses there (at most once per [`RETRY_EVERY`] bytes) and the next segment is
//! decoded by both libdeflate and zlib; if they agree, segments go on from there. Memory stays
//! bounded: at most [`MAX_SEGMENT`] compressed bytes and [`MAX_OUTPUT`] decoded ones per segment.
//!
//! The sentinel is random per decoder, so no input can be made to end a segment with it (it
//! could only make its own member fail the CRC check, never decode to something else). It is
//! Huffman-coded, not stored: a stored block of the input that began before the candidate cut and
//! ran on through the appended bytes would copy a stored sentinel verbatim and pass the check at a
//! false cut (found by fuzzing); copied, the coded sentinel is other bytes.

use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufRead, Read};

/// The bytes every sync flush writes at a byte boundary: an empty stored block's LEN and NLEN.
const FLUSH: [u8; 4] = [0, 0, 0xff, 0xff];
/// How far the decoder looks for a flush point before handing the stream to zlib.
pub const MAX_SEGMENT: usize = 4 << 20;
/// The largest output one segment may decode to (larger: zlib from there).
pub const MAX_OUTPUT: usize = 64 << 20;
/// Candidate cuts that fail in one segment before the stream is handed to zlib (each costs a
/// decode of the segment so far).
const MAX_FALSE_CUTS: u32 = 8;
/// Candidates closer than this to each other form a run (see `next_segment`).
const RUN_GAP: usize = 4096;
const WINDOW: usize = 32 * 1024;
/// How much input zlib decodes between tries to go back to segments.
pub const RETRY_EVERY: u64 = 64 * 1024;
const SENTINEL_LEN: usize = 16;

/// A `BufRead` whose reader can give bytes back: what the fast path read past the end of a
/// deflate stream goes back for the framing around it (trailer, next member).
pub struct Pushback<R> {
    back: Vec<u8>,
    pos: usize,
    inner: R,
}

impl<R: BufRead> Pushback<R> {
    pub fn new(inner: R) -> Self {
        Pushback {
            back: Vec::new(),
            pos: 0,
            inner,
        }
    }

    /// Puts `bytes` in front of whatever is still unread.
    fn unread(&mut self, mut bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        bytes.extend_from_slice(&self.back[self.pos..]);
        self.back = bytes;
        self.pos = 0;
    }
}

impl<R: BufRead> Read for Pushback<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = {
            let b = self.fill_buf()?;
            let n = b.len().min(buf.len());
            buf[..n].copy_from_slice(&b[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Pushback<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos < self.back.len() {
            return Ok(&self.back[self.pos..]);
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        if self.pos < self.back.len() {
            self.pos += n;
            debug_assert!(self.pos <= self.back.len());
            if self.pos >= self.back.len() {
                self.back.clear();
                self.pos = 0;
            }
        } else {
            self.inner.consume(n);
        }
    }
}

enum Mode {
    /// Cutting at flush points, decoding segments with libdeflate.
    Segments,
    /// zlib's streaming inflate from here to the end of the stream.
    Zlib,
    /// The stream has ended.
    Done,
}

/// Decodes one raw deflate stream after another (see the module docs).
pub struct Inflater {
    mode: Mode,
    lib: libdeflater::Decompressor,
    z: flate2::Decompress,
    /// Compressed bytes taken from the input, not yet decoded; starts at a block boundary.
    cbuf: Vec<u8>,
    /// Where the search for the next cut resumes in `cbuf`.
    scan: usize,
    false_cuts: u32,
    /// The last output (up to 32 KiB): the dictionary of the next segment.
    window: Vec<u8>,
    /// The decoder's input: the window as a stored block, the segment, the appended blocks.
    scratch: Vec<u8>,
    /// The decoder's output; `emit` is the part not yet handed out.
    obuf: Vec<u8>,
    emit: std::ops::Range<usize>,
    last_out: usize,
    sentinel: [u8; SENTINEL_LEN],
    /// The sentinel as a final fixed-Huffman block (starts at a byte boundary).
    sentinel_block: Vec<u8>,
    total_out: u64,
    fast_out: u64,
    /// zlib is mid-stream at the start of `cbuf`: the segment there is a trial (see `next_segment`).
    trial: bool,
    /// In zlib mode: the end of the next candidate cut (a count of zlib's input), where zlib pauses
    /// so the decoder can try to go back to segments.
    mark: Option<u64>,
    /// Input before this offset holds no candidate cut (already searched).
    searched: u64,
    /// No try to go back before this input offset (one try per [`RETRY_EVERY`] bytes at most).
    cooldown: u64,
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    pub fn new() -> Self {
        let mut sentinel = [0u8; SENTINEL_LEN];
        for (i, part) in sentinel.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            part.copy_from_slice(&h.finish().to_le_bytes());
        }
        let sentinel_block = fixed_block(&sentinel);
        Inflater {
            mode: Mode::Segments,
            lib: libdeflater::Decompressor::new(),
            z: flate2::Decompress::new(false),
            cbuf: Vec::new(),
            scan: 0,
            false_cuts: 0,
            window: Vec::new(),
            scratch: Vec::new(),
            obuf: Vec::new(),
            emit: 0..0,
            last_out: 0,
            sentinel,
            sentinel_block,
            total_out: 0,
            fast_out: 0,
            trial: false,
            mark: None,
            searched: 0,
            cooldown: 0,
        }
    }

    /// Starts a new stream.
    pub fn reset(&mut self) {
        self.mode = Mode::Segments;
        self.cbuf.clear();
        self.scan = 0;
        self.false_cuts = 0;
        self.window.clear();
        self.emit = 0..0;
        self.last_out = 0;
        self.total_out = 0;
        self.fast_out = 0;
        self.trial = false;
    }

    /// Bytes decoded from the current stream so far.
    pub fn total_out(&self) -> u64 {
        self.total_out
    }

    /// Of those, the bytes libdeflate decoded (the rest: zlib).
    pub fn fast_out(&self) -> u64 {
        self.fast_out
    }

    /// Decodes into `out` from `input`: the bytes written and whether the stream has ended (then
    /// `input` is positioned just after it). Corrupt or truncated data is an error.
    pub fn read<R: BufRead>(&mut self, input: &mut Pushback<R>, out: &mut [u8]) -> io::Result<(usize, bool)> {
        loop {
            if !self.emit.is_empty() {
                let n = self.emit.len().min(out.len());
                out[..n].copy_from_slice(&self.obuf[self.emit.start..self.emit.start + n]);
                self.emit.start += n;
                self.total_out += n as u64;
                return Ok((n, false));
            }
            match self.mode {
                Mode::Done => return Ok((0, true)),
                Mode::Segments => self.next_segment(input)?,
                Mode::Zlib => {
                    let (n, ended) = self.zlib(input, out)?;
                    if n == 0 && !ended && matches!(self.mode, Mode::Segments) {
                        continue; // at a flush point: segments again (on trial)
                    }
                    return Ok((n, ended));
                }
            }
        }
    }

    /// Finds and decodes the next segment, or hands the stream to zlib.
    fn next_segment<R: BufRead>(&mut self, input: &mut Pushback<R>) -> io::Result<()> {
        if self.trial {
            return self.trial_segment(input);
        }
        // After a false cut: where its run of candidates began (see below).
        let mut run: Option<usize> = None;
        loop {
            if let Some(at) = run {
                // Most false cuts lie in a stored block's data: a binary table full of
                // `00 00 ff ff`. A real flush after such a table comes right after the run of
                // candidates it makes, so the run's last candidate is tried next (once the input
                // shows where the run ends).
                let mut last = at;
                while let Some(i) = memchr::memmem::find(&self.cbuf[last + 1..], &FLUSH) {
                    if i >= RUN_GAP {
                        break;
                    }
                    last += 1 + i;
                }
                let open = last + FLUSH.len() + RUN_GAP > self.cbuf.len();
                if !open || !self.fill(input)? {
                    self.scan = if last > at { last } else { at + 1 };
                    run = None;
                }
                continue;
            }
            let found = self
                .cbuf
                .get(self.scan..)
                .and_then(|rest| memchr::memmem::find(rest, &FLUSH))
                .map(|i| self.scan + i);
            if let Some(at) = found {
                let end = at + FLUSH.len();
                match self.decode(end)? {
                    Cut::Whole => {
                        self.cbuf.drain(..end);
                        self.scan = 0;
                        self.false_cuts = 0;
                        return Ok(());
                    }
                    Cut::Ended => return self.hand_to_zlib(input),
                    Cut::False => {
                        self.false_cuts += 1;
                        if self.false_cuts >= MAX_FALSE_CUTS {
                            return self.hand_to_zlib(input);
                        }
                        run = Some(at);
                        continue;
                    }
                }
            }
            self.scan = self.cbuf.len().saturating_sub(FLUSH.len() - 1).max(self.scan);
            if !self.fill(input)? {
                return self.hand_to_zlib(input);
            }
        }
    }

    /// Moves more input into `cbuf`: false at the end of the input or when `cbuf` is full.
    fn fill<R: BufRead>(&mut self, input: &mut Pushback<R>) -> io::Result<bool> {
        if self.cbuf.len() >= MAX_SEGMENT {
            return Ok(false);
        }
        let b = input.fill_buf()?;
        if b.is_empty() {
            return Ok(false);
        }
        let n = b.len().min(MAX_SEGMENT - self.cbuf.len());
        self.cbuf.extend_from_slice(&b[..n]);
        input.consume(n);
        Ok(true)
    }

    /// Decodes `cbuf[..end]` after the window.
    fn decode(&mut self, end: usize) -> io::Result<Cut> {
        let w = self.window.len();
        self.scratch.clear();
        if w > 0 {
            stored_header(&mut self.scratch, w);
            self.scratch.extend_from_slice(&self.window);
        }
        self.scratch.extend_from_slice(&self.cbuf[..end]);
        self.scratch.extend_from_slice(&self.sentinel_block);
        let mut cap = w + SENTINEL_LEN + (end * 4).max(self.last_out + 4096).max(256 * 1024);
        loop {
            if self.obuf.len() < cap {
                self.obuf.resize(cap, 0);
            }
            match self.lib.deflate_decompress(&self.scratch, &mut self.obuf[..cap]) {
                Ok(n) => {
                    if n < w + SENTINEL_LEN || self.obuf[n - SENTINEL_LEN..n] != self.sentinel {
                        return Ok(Cut::Ended);
                    }
                    let data = w..n - SENTINEL_LEN;
                    self.last_out = data.len();
                    self.fast_out += data.len() as u64;
                    // The history is the old window followed by the new data: keep its last 32 KiB.
                    let keep = data.end.saturating_sub(WINDOW);
                    self.window.clear();
                    self.window.extend_from_slice(&self.obuf[keep..data.end]);
                    self.emit = data;
                    return Ok(Cut::Whole);
                }
                Err(libdeflater::DecompressionError::InsufficientSpace) if cap < MAX_OUTPUT => {
                    cap = (cap * 2).min(MAX_OUTPUT + w + SENTINEL_LEN);
                }
                // Too large for one segment: zlib decodes the rest from the window on.
                Err(libdeflater::DecompressionError::InsufficientSpace) => return Ok(Cut::Ended),
                Err(libdeflater::DecompressionError::BadData) => return Ok(Cut::False),
            }
        }
    }

    /// Hands the stream (from the last cut) to zlib, primed with the window — or, after a failed
    /// trial, back to the zlib that is still mid-stream there.
    fn hand_to_zlib<R: BufRead>(&mut self, input: &mut Pushback<R>) -> io::Result<()> {
        input.unread(std::mem::take(&mut self.cbuf));
        self.scan = 0;
        if !self.trial {
            self.z.reset(false);
            if !self.window.is_empty() {
                self.z
                    .set_dictionary(&self.window)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            }
            self.cooldown = 0;
        }
        self.trial = false;
        self.mark = None;
        self.searched = self.z.total_in();
        self.mode = Mode::Zlib;
        Ok(())
    }

    /// The first segment after zlib paused at a candidate cut: decoded by libdeflate and by zlib,
    /// it must come out the same before the decoder trusts the cut and goes on by segments.
    /// Otherwise zlib's output is the data, and zlib goes on.
    fn trial_segment<R: BufRead>(&mut self, input: &mut Pushback<R>) -> io::Result<()> {
        let end = loop {
            if let Some(i) = memchr::memmem::find(&self.cbuf[self.scan..], &FLUSH) {
                break self.scan + i + FLUSH.len();
            }
            self.scan = self.cbuf.len().saturating_sub(FLUSH.len() - 1);
            if !self.fill(input)? {
                return self.hand_to_zlib(input);
            }
        };
        let old_window = self.window.clone();
        if !matches!(self.decode(end)?, Cut::Whole) {
            return self.hand_to_zlib(input);
        }
        let want = self.emit.clone();
        let mut truth = Vec::with_capacity(want.len() + 1);
        let start = self.z.total_in();
        loop {
            let used = (self.z.total_in() - start) as usize;
            let (bo, bi) = (truth.len(), self.z.total_in());
            let st = self
                .z
                .decompress_vec(&self.cbuf[used..end], &mut truth, flate2::FlushDecompress::None)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let done = (self.z.total_in() - start) as usize == end || truth.len() == truth.capacity();
            if done || st == flate2::Status::StreamEnd || (truth.len(), self.z.total_in()) == (bo, bi) {
                break;
            }
        }
        let used = (self.z.total_in() - start) as usize;
        if used == end && truth[..] == self.obuf[want.clone()] {
            // The cut is real: segments from here on.
            self.cbuf.drain(..end);
            self.scan = 0;
            self.false_cuts = 0;
            self.trial = false;
            return Ok(());
        }
        // zlib's output is the data; zlib goes on from where it stopped.
        self.fast_out -= want.len() as u64;
        self.window = old_window;
        self.extend_window(&truth, 0);
        self.obuf.clear();
        self.obuf.extend_from_slice(&truth);
        self.emit = 0..truth.len();
        let rest = self.cbuf.split_off(used);
        self.cbuf = rest;
        self.hand_to_zlib(input)
    }

    fn zlib<R: BufRead>(&mut self, input: &mut Pushback<R>, out: &mut [u8]) -> io::Result<(usize, bool)> {
        if out.is_empty() {
            return Ok((0, false));
        }
        loop {
            let buf = input.fill_buf()?;
            let at_eof = buf.is_empty();
            let (bi, bo) = (self.z.total_in(), self.z.total_out());
            // zlib pauses at the next candidate cut past the cooldown.
            if self.mark.is_none_or(|m| m < bi) {
                let from = self.cooldown.max(self.searched).saturating_sub(bi) as usize;
                self.mark = buf
                    .get(from..)
                    .and_then(|r| memchr::memmem::find(r, &FLUSH))
                    .map(|i| bi + (from + i + FLUSH.len()) as u64);
                if self.mark.is_none() {
                    self.searched = bi + buf.len().saturating_sub(FLUSH.len() - 1) as u64;
                }
            }
            let lim = self.mark.map_or(buf.len(), |m| ((m - bi) as usize).min(buf.len()));
            let st = self
                .z
                .decompress(&buf[..lim], out, flate2::FlushDecompress::None)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let used = (self.z.total_in() - bi) as usize;
            let made = (self.z.total_out() - bo) as usize;
            input.consume(used);
            self.total_out += made as u64;
            // Trimmed lazily here (at twice the window), exactly before a trial.
            self.extend_window(&out[..made], WINDOW);
            if st == flate2::Status::StreamEnd {
                self.mode = Mode::Done;
                return Ok((made, true));
            }
            if self.mark == Some(self.z.total_in()) && made < out.len() {
                // At a candidate cut with all output for the input before it given: try segments.
                self.extend_window(&[], 0);
                self.mark = None;
                self.cooldown = self.z.total_in() + RETRY_EVERY;
                self.trial = true;
                self.mode = Mode::Segments;
                return Ok((made, false));
            }
            if made > 0 {
                return Ok((made, false));
            }
            if used == 0 && at_eof {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated deflate stream"));
            }
        }
    }
}

impl Inflater {
    /// Appends output to the window; once it is more than `slack` bytes over 32 KiB, keeps the
    /// last 32 KiB.
    fn extend_window(&mut self, data: &[u8], slack: usize) {
        self.window.extend_from_slice(data);
        if self.window.len() > WINDOW + slack {
            let keep = self.window.len() - WINDOW;
            self.window.drain(..keep);
        }
    }
}

enum Cut {
    /// The segment decoded whole; its data is ready.
    Whole,
    /// The stream ends inside the segment (or it is too large for one): zlib takes over.
    Ended,
    /// Not a real flush point.
    False,
}

/// Appends a stored block header (not final) for `len` bytes; the block starts at a byte boundary.
fn stored_header(v: &mut Vec<u8>, len: usize) {
    let n = len as u16;
    v.push(0);
    v.extend_from_slice(&n.to_le_bytes());
    v.extend_from_slice(&(!n).to_le_bytes());
}

/// `data` as one final deflate block with the fixed Huffman codes (RFC 1951, 3.2.6), literals only.
fn fixed_block(data: &[u8]) -> Vec<u8> {
    // Huffman codes go most significant bit first; the stream fills bytes from their low bit.
    let codes = std::iter::once((0b011u32, 3u32, false)) // BFINAL = 1, BTYPE = 01
        .chain(data.iter().map(|&b| match b {
            0..=143 => (0x30 + b as u32, 8, true),
            _ => (0x190 + b as u32 - 144, 9, true),
        }))
        .chain(std::iter::once((0, 7, true))); // end of block (256)
    let mut out = Vec::with_capacity(data.len() * 9 / 8 + 2);
    let (mut acc, mut nbits) = (0u64, 0u32);
    for (c, n, huffman) in codes {
        let bits = if huffman {
            (0..n).fold(0, |r, i| r | (((c >> i) & 1) << (n - 1 - i)))
        } else {
            c
        };
        acc |= (bits as u64) << nbits;
        nbits += n;
        while nbits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            nbits -= 8;
        }
    }
    if nbits > 0 {
        out.push(acc as u8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    /// Raw deflate of `parts`, each ended by a sync flush, the last by the final block.
    fn deflate_flushed(parts: &[&[u8]], level: u32) -> Vec<u8> {
        let mut c = Compress::new(Compression::new(level), false);
        let mut out = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let flush = if i + 1 == parts.len() {
                FlushCompress::Finish
            } else {
                FlushCompress::Sync
            };
            let start = c.total_in();
            loop {
                out.reserve(p.len() + 1024);
                let used = (c.total_in() - start) as usize;
                let st = c.compress_vec(&p[used..], &mut out, flush).unwrap();
                if (c.total_in() - start) as usize == p.len()
                    && (st == flate2::Status::StreamEnd || (flush == FlushCompress::Sync && out.capacity() > out.len()))
                {
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn the_coded_sentinel_decodes_to_itself() {
        for seed in 0..64u8 {
            let data: Vec<u8> = (0..=255u8)
                .map(|i| i.wrapping_mul(seed | 1).wrapping_add(seed))
                .collect();
            let block = fixed_block(&data);
            let mut z = flate2::Decompress::new(false);
            let mut out = Vec::with_capacity(512);
            let st = z
                .decompress_vec(&block, &mut out, flate2::FlushDecompress::Finish)
                .unwrap();
            assert_eq!(
                (st, out, z.total_in()),
                (flate2::Status::StreamEnd, data, block.len() as u64)
            );
        }
    }

    /// A stored block that starts before a candidate cut and is long enough to run through the
    /// bytes the decoder appends: it must not pass for a segment (a fuzzer's find; the decoder once
    /// took it, as the sentinel was appended stored and the block copied it verbatim).
    #[test]
    fn a_stored_block_across_the_cut_is_no_segment() {
        let crash = include_bytes!("../../../fuzz/artifacts-found/inflate/stored-block-swallows-sentinel");
        let mut z = flate2::Decompress::new(false);
        let mut want = Vec::with_capacity(1 << 16);
        let st = z
            .decompress_vec(crash, &mut want, flate2::FlushDecompress::Finish)
            .unwrap();
        assert_eq!(st, flate2::Status::StreamEnd);
        let (got, _, rest) = inflate(&crash[..z.total_in() as usize], &crash[z.total_in() as usize..]).unwrap();
        assert!(got == want, "decoded data differs from zlib's");
        assert_eq!(rest, &crash[z.total_in() as usize..]);
        // Built on purpose: stored LEN covering the candidate and exactly the 5 + 16 bytes a stored
        // sentinel once took, then a real flush and the final block.
        for k in [0usize, 1, 100, 5000] {
            let body: Vec<u8> = (0..k).map(|i| (i * 7) as u8).chain(FLUSH).collect();
            let len = body.len() + 5 + SENTINEL_LEN;
            let mut s = Vec::new();
            stored_header(&mut s, len);
            s.extend_from_slice(&body);
            s.extend((0..len - body.len()).map(|i| i as u8 ^ 0x5a));
            s.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff, 0x03, 0x00]);
            let (got, _, rest) = inflate(&s, b"tail").unwrap();
            let expect: Vec<u8> = body
                .iter()
                .copied()
                .chain((0..len - body.len()).map(|i| i as u8 ^ 0x5a))
                .collect();
            assert!(got == expect, "k = {k}");
            assert_eq!(rest, b"tail");
        }
    }

    /// Decodes `stream` followed by `after`: the data, the fast-path bytes, and what was left unread.
    fn inflate(stream: &[u8], after: &[u8]) -> io::Result<(Vec<u8>, u64, Vec<u8>)> {
        let all = [stream, after].concat();
        let mut input = Pushback::new(io::BufReader::with_capacity(4096, &all[..]));
        let mut z = Inflater::new();
        let mut data = Vec::new();
        let mut buf = vec![0u8; 7000];
        loop {
            let (n, ended) = z.read(&mut input, &mut buf)?;
            data.extend_from_slice(&buf[..n]);
            if ended {
                break;
            }
            if n == 0 {
                return Err(io::Error::other("no progress"));
            }
        }
        assert_eq!(z.total_out(), data.len() as u64);
        let mut rest = Vec::new();
        input.read_to_end(&mut rest)?;
        Ok((data, z.fast_out(), rest))
    }

    fn sample(n: usize, seed: u64) -> Vec<u8> {
        // Text-like runs, random bytes and binary tables full of `00 00 ff ff` (little-endian -65536).
        let mut x = seed | 1;
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 3 {
                0 => v.extend_from_slice(b"the quick brown fox jumps over the lazy dog\n"),
                1 => v.extend((0..300).map(|i| (x >> (i % 56)) as u8)),
                _ => {
                    for _ in 0..200 {
                        v.extend_from_slice(&(-65536i32).to_le_bytes());
                    }
                }
            }
        }
        v.truncate(n);
        v
    }

    #[test]
    fn sync_flushed_streams_decode_by_segments() {
        for level in [0, 1, 6, 9] {
            let data = sample(3 << 20, 7 + level as u64);
            let parts: Vec<&[u8]> = data.chunks(256 * 1024).collect();
            let stream = deflate_flushed(&parts, level);
            assert!(memchr::memmem::find(&stream, &FLUSH).is_some());
            let (out, fast, rest) = inflate(&stream, b"TRAILER!").unwrap();
            assert!(out == data, "level {level}: decoded data differs");
            assert_eq!(rest, b"TRAILER!", "level {level}: bytes after the stream stay unread");
            // All but the last segment (decoded by zlib to find the stream's end) go the fast way;
            // at level 0 the stored blocks full of `00 00 ff ff` send the stream to zlib early.
            if level > 0 {
                assert!(
                    fast >= (data.len() - 512 * 1024) as u64,
                    "level {level}: only {fast} fast bytes"
                );
            }
        }
    }

    #[test]
    fn flush_patterns_in_stored_blocks() {
        // A stored block full of `00 00 ff ff` between real flushes: the false cuts inside it are
        // skipped and the real flush after it is found.
        let table: Vec<u8> = (0..10_000).flat_map(|_| (-65536i32).to_le_bytes()).collect();
        let text = sample(200_000, 5);
        let mut stream = Vec::new();
        for _ in 0..4 {
            // Text, sync-flushed (a fresh compressor: no references before it, which is fine).
            let mut c = Compress::new(Compression::new(1), false);
            let mut part = Vec::with_capacity(1 << 20);
            c.compress_vec(&text, &mut part, FlushCompress::Sync).unwrap();
            assert_eq!(c.total_in() as usize, text.len());
            stream.extend_from_slice(&part);
            // The table as stored blocks (not final), then a sync flush.
            for piece in table.chunks(30_000) {
                stored_header(&mut stream, piece.len());
                stream.extend_from_slice(piece);
            }
            stream.extend_from_slice(&[0, 0, 0, 0xff, 0xff]);
        }
        stream.extend_from_slice(&[0x03, 0x00]);
        let want = [&text[..], &table].concat().repeat(4);
        let (out, fast, rest) = inflate(&stream, &[]).unwrap();
        assert!(out == want);
        assert!(rest.is_empty());
        assert!(
            fast >= (want.len() - table.len() - text.len()) as u64,
            "only {fast} fast bytes"
        );
        // Level 0 throughout: every block is stored and full of the pattern; the decoder gives up
        // on cutting (after a bounded number of tries) and zlib decodes it all, correctly.
        let data = table.repeat(30);
        let parts: Vec<&[u8]> = data.chunks(256 * 1024).collect();
        let (out, _, rest) = inflate(&deflate_flushed(&parts, 0), b"z").unwrap();
        assert!(out == data);
        assert_eq!(rest, b"z");
    }

    #[test]
    fn zlib_hands_back_to_segments_at_a_real_flush() {
        // A first segment with too many false cuts (tables of the pattern in stored blocks, far
        // apart), then ordinary sync-flushed segments: zlib takes the first, and the decoder goes
        // back to segments once a trial segment decodes the same both ways.
        let table: Vec<u8> = (0..100).flat_map(|_| (-65536i32).to_le_bytes()).collect();
        let noise = sample(5000, 99).iter().map(|b| b ^ 0x5a).collect::<Vec<u8>>();
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for _ in 0..12 {
            // The table inside a stored block's data: every candidate in it is false.
            let piece = [&noise[..2000], &table, &noise[2000..]].concat();
            stored_header(&mut stream, piece.len());
            stream.extend_from_slice(&piece);
            want.extend_from_slice(&piece);
        }
        // Stored data that holds a flush pattern and, after it, a whole valid deflate segment:
        // a trial there decodes cleanly by libdeflate but not as zlib does (the bytes are data),
        // so zlib's output is kept.
        let mut c = Compress::new(Compression::new(6), false);
        let mut fake = Vec::with_capacity(4096);
        c.compress_vec(&b"not really compressed ".repeat(20), &mut fake, FlushCompress::Sync)
            .unwrap();
        let piece = [&noise[..3000], &FLUSH[..], &fake, &noise[..1000]].concat();
        stored_header(&mut stream, piece.len());
        stream.extend_from_slice(&piece);
        want.extend_from_slice(&piece);
        stream.extend_from_slice(&[0, 0, 0, 0xff, 0xff]);
        let text = sample(2 << 20, 4);
        for part in text.chunks(64 * 1024) {
            let mut c = Compress::new(Compression::new(6), false);
            let mut out = Vec::with_capacity(1 << 20);
            c.compress_vec(part, &mut out, FlushCompress::Sync).unwrap();
            assert_eq!(c.total_in() as usize, part.len());
            stream.extend_from_slice(&out);
            want.extend_from_slice(part);
        }
        stream.extend_from_slice(&[0x03, 0x00]);
        let (out, fast, rest) = inflate(&stream, b"tail").unwrap();
        assert!(out == want);
        assert_eq!(rest, b"tail");
        // zlib tries again once per 64 KiB of input: the first false trial (the fake segment) makes
        // it wait that long, then the segments after it go the fast way.
        assert!(fast >= (text.len() / 5) as u64, "only {fast} fast bytes");
    }

    #[test]
    fn unflushed_and_highly_compressible_streams() {
        // No flush points at all: zlib decodes it.
        let data = sample(5 << 20, 3);
        let stream = deflate_flushed(&[&data], 6);
        let (out, _, rest) = inflate(&stream, b"x").unwrap();
        assert!(out == data);
        assert_eq!(rest, b"x");
        // Segments of 3 MiB of zeros: ~1000:1, the output buffer grows to fit.
        let zeros = vec![0u8; 3 << 20];
        let stream = deflate_flushed(&[&zeros, &zeros, &zeros, b"end"], 9);
        let (out, fast, _) = inflate(&stream, &[]).unwrap();
        assert_eq!(out.len(), (9 << 20) + 3);
        assert!(out[..9 << 20].iter().all(|&b| b == 0) && out.ends_with(b"end"));
        assert!(fast >= 6 << 20);
        // An empty stream.
        let (out, _, _) = inflate(&deflate_flushed(&[b""], 6), &[]).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn corrupt_and_truncated_streams_are_errors() {
        let data = sample(1 << 20, 11);
        let parts: Vec<&[u8]> = data.chunks(100_000).collect();
        let stream = deflate_flushed(&parts, 6);
        for cut in [1, stream.len() / 3, stream.len() - 1] {
            assert!(inflate(&stream[..cut], &[]).is_err(), "cut at {cut}");
        }
        // A flipped bit either fails or decodes to other data, as zlib would: never a panic, and
        // never the original data.
        for at in [10, stream.len() / 2, stream.len() - 20] {
            let mut bad = stream.clone();
            bad[at] ^= 0x10;
            if let Ok((out, _, _)) = inflate(&bad, &[]) {
                assert!(out != data);
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Whatever the data, levels and flush points, the decoder gives back the data and leaves
        /// the bytes after the stream unread; and it agrees with zlib on arbitrary input.
        #[test]
        fn decodes_what_zlib_decodes(
            seed in 0u64..1000,
            len in 0usize..300_000,
            cuts in proptest::collection::vec(0usize..300_000, 0..6),
            level in 0u32..10,
            junk in proptest::collection::vec(0u8..=255, 0..64),
        ) {
            let data = sample(len, seed);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(len)).collect();
            cuts.sort();
            let mut parts = Vec::new();
            let mut from = 0;
            for c in cuts.into_iter().chain([len]) {
                parts.push(&data[from..c]);
                from = c;
            }
            let stream = deflate_flushed(&parts, level);
            let (out, _, rest) = inflate(&stream, &junk).unwrap();
            proptest::prop_assert!(out == data);
            proptest::prop_assert_eq!(rest, junk.clone());
            // Arbitrary bytes: when zlib decodes them to a stream end, so do we, to the same data.
            let mut z = flate2::Decompress::new(false);
            let mut want = Vec::with_capacity(1 << 20);
            if let Ok(flate2::Status::StreamEnd) = z.decompress_vec(&junk, &mut want, flate2::FlushDecompress::Finish) {
                let (got, _, _) = inflate(&junk, &[]).unwrap();
                proptest::prop_assert_eq!(got, want);
            }
        }
    }
}
