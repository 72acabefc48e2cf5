//! Go's `compress/flate` (what `compress/gzip` writes), rebuilt byte for byte.
//!
//! Go's deflate encoder produced the same bytes from Go 1.8 through Go 1.26 (Debian bookworm ships
//! Go 1.19, our ground truth). Docker, buildkit and containerd write their layers with it.
//!
//! # Profiles
//! `goflate-1.8/L` with L one of `-2` (HuffmanOnly), `0` (NoCompression), `1` (BestSpeed), `2` … `9`.
//! Level -1 (DefaultCompression) is level 6 and has no profile of its own. The `1.8` names the first
//! Go release whose output this is; a later change of Go's output gets a new prefix.
//!
//! `goflate-1.27/L`, same levels: Go 1.27 replaced the encoder (see below). Level -1 is again level 6
//! (Go 1.27 maps DefaultCompression to 6, not to klauspost's 5; `compress/gzip` writes XFL 0 for both,
//! so the whole member is the same) and has no profile of its own.
//!
//! # Go 1.27
//! Go 1.27's `compress/flate` writer is a port of klauspost/compress flate (`level1.go` … `level6.go`,
//! the `deflatefast.go` fast-encoder base, klauspost's block writer and lazy matcher). Compared with
//! klauspost's releases (golang/go files at commits cc7e2231 and 00784096, read against klauspost
//! v1.18.0 … v1.19.1), it writes the bytes of [`super::pgzip`]'s class `1.18.2`, so this module runs
//! that class's compressor as one plain stream (no pgzip blocks, no sync flushes, closed by the final
//! empty fixed block `03 00`):
//! - levels 1–6: klauspost's single-pass matchers with 1.18.0's level 4 and the same table sizes (level 2
//!   17 bits, level 3 16 bits, others 15; 7-byte long hashes), fed 65535-byte windows;
//! - levels 7–9: the lazy matcher of 1.15.15 with 1.18.2's level-9 literal-cost histogram capped at the
//!   first 32768 unprocessed bytes;
//! - the dynamic-block writer of 1.18.2: exact table sizes, end-of-block counted once. Go marks the
//!   end-of-block in the block's token histogram instead of in the writer's copy; the sizes compared and
//!   the tables built are the same;
//! - -2: a literal-only Huffman block per 32 KiB, 0: stored blocks of 65535 bytes (as every class).
//!
//! The deflate probe across families takes Go 1.27's candidates only when no other family has any (for
//! tiny inputs zlib writes the same bytes; the older producer keeps the name). This module's probe tries
//! Go 1.8's levels first and Go 1.27's only when none of those agrees (levels 7–9 first screened by the
//! first tokens of the stream's first block, as pgzip's are). Level 0 is the same stored blocks in both
//! versions until the closing block: a complete stream's last bytes decide, a prefix gets
//! both, 1.8's first. An empty input is `03 00` at every Go 1.27 level; it is named level 6.
//!
//! The committed vectors (tests/data/go127) are reproduced byte for byte by a Go 1.19 build of Go 1.27's
//! own encoder files (transcribed from golang/go, Go ≥ 1.20 syntax rewritten) under `compress/gzip`; no
//! Go ≥ 1.27 toolchain was available. See their README for the commits and what that proves.
//!
//! # What Go writes (the specification this module follows)
//! - Levels 0 and -2 cut the input into 65535-byte pieces: stored blocks, resp. a literal-only
//!   Huffman block per piece (stored instead when the Huffman block would not save 1/16).
//! - Level 1 runs a Snappy-like matcher over each 65535-byte piece (keeping the previous piece as
//!   history) and writes one dynamic block per piece (literal-only or stored when matching, resp.
//!   Huffman, saves too little).
//! - Levels 2–9 run hash-chain matching (greedy for 2–3, lazy for 4–9) over a 64 KiB window that
//!   slides by 32 KiB, and cut a block every 16384 tokens, each written as the smallest of fixed,
//!   dynamic (Go's own length-limited Huffman construction and code-length encoding, distance
//!   trees of a single code included) or stored.
//! - The stream ends with an empty final stored block.
//!
//! Go's levels 2–9 depend on how the input was handed to `Write` only when a `Write` ends in the
//! last ~258 bytes of a full window and the matcher then prefers a different match at that one
//! position. This module reproduces writes that keep the window full (one big write, `io.Copy`'s
//! 32 KiB writes, any multiple of 512 bytes); other write patterns reproduce in the vast majority of
//! layers, and the caller's sha256 proof catches the rest.
//!
//! # Speed
//! [`encoder`] matches on the calling thread and hands whole blocks to one worker thread that
//! builds the Huffman codes and writes the bits, so both run in parallel.

use super::pgzip::{go_compressor, go_lazy_screen, Compressor};
use std::io::{self, Read};
use std::sync::mpsc;

/// All levels, in the fixed order the probe prefers them (most common producers first).
const ORDER: [i8; 11] = [6, 1, 9, 5, 7, 8, 4, 3, 2, -2, 0];

/// Which of Go's deflate encoders wrote the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Go 1.8 … 1.26: Go's own encoder (this module's matchers and block writer).
    V1_8,
    /// Go 1.27 on: the port of klauspost/compress flate (class `1.18.2` of [`super::pgzip`]).
    V1_27,
}

impl Version {
    /// The versioned prefix of the version's profiles.
    fn prefix(self) -> &'static str {
        match self {
            Version::V1_8 => "goflate-1.8/",
            Version::V1_27 => "goflate-1.27/",
        }
    }
}

/// All parameters that determine the raw deflate bytes Go writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Go's compression level: -2 (HuffmanOnly), 0 ..= 9 (DefaultCompression = 6).
    pub level: i8,
    pub version: Version,
}

impl Params {
    /// `goflate-1.8/<level>` or `goflate-1.27/<level>`.
    pub fn profile(&self) -> String {
        format!("{}{}", self.version.prefix(), self.level)
    }

    /// Inverse of [`Params::profile`]; None for anything that is not exactly such a name.
    pub fn from_profile(s: &str) -> Option<Params> {
        [Version::V1_8, Version::V1_27].into_iter().find_map(|version| {
            let l = s.strip_prefix(version.prefix())?;
            ORDER
                .iter()
                .find(|&&v| v.to_string() == l)
                .map(|&level| Params { level, version })
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Constants of the format and of Go's encoder.

const WINDOW: usize = 1 << 15;
const WINDOW_MASK: usize = WINDOW - 1;
const MIN_MATCH: usize = 4;
const MAX_MATCH: usize = 258;
const MAX_BLOCK_TOKENS: usize = 1 << 14;
const MAX_STORED: usize = 65535;
const HASH_BITS: u32 = 17;
const HASH_SIZE: usize = 1 << HASH_BITS;
const MAX_HASH_OFFSET: i64 = 1 << 24;
const NO_SKIP: usize = i32::MAX as usize;

const NUM_LIT: usize = 286;
const NUM_OFF: usize = 30;
const NUM_CG: usize = 19;
const EOB: usize = 256;
const CG_END: u8 = 255;
const CG_ORDER: [usize; NUM_CG] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const LEN_BASE: [u32; 29] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 255,
];
const OFF_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
];
const OFF_BASE: [u32; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
    8193, 12289, 16385, 24577,
];

/// Go's per-level matcher settings: good, lazy, nice, chain, fast-skip threshold.
#[derive(Clone, Copy)]
struct LevelCfg {
    good: usize,
    lazy: usize,
    nice: usize,
    chain: usize,
    skip: usize,
}

fn level_cfg(level: i8) -> LevelCfg {
    let (good, lazy, nice, chain, skip) = match level {
        2 => (4, 0, 16, 8, 5),
        3 => (4, 0, 32, 32, 6),
        4 => (4, 4, 16, 16, NO_SKIP),
        5 => (8, 16, 32, 32, NO_SKIP),
        7 => (8, 32, 128, 256, NO_SKIP),
        8 => (32, 128, 258, 1024, NO_SKIP),
        9 => (32, 258, 258, 4096, NO_SKIP),
        _ => (8, 16, 128, 128, NO_SKIP),
    };
    LevelCfg {
        good,
        lazy,
        nice,
        chain,
        skip,
    }
}

// Tokens: a literal is its byte value; a match is MATCH | (length-3) << 22 | (distance-1).
const MATCH: u32 = 1 << 30;

#[inline]
fn match_token(len: usize, dist: usize) -> u32 {
    MATCH | ((len - 3) as u32) << 22 | (dist - 1) as u32
}

/// Length symbol index (0..=28) of a length-3 value.
const fn len_codes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 29 {
        let n = if c == 28 { 1 } else { 1 << LEN_EXTRA[c] };
        let mut j = 0;
        while j < n {
            let v = LEN_BASE[c] as usize + j;
            if v < 256 {
                t[v] = c as u8;
            }
            j += 1;
        }
        c += 1;
    }
    t
}
static LEN_CODE: [u8; 256] = len_codes();

#[inline]
fn off_code(d: u32) -> usize {
    // d = distance - 1
    if d < 4 {
        d as usize
    } else {
        let hb = 31 - d.leading_zeros();
        (2 * hb + ((d >> (hb - 1)) & 1)) as usize
    }
}

// ---------------------------------------------------------------------------------------------
// Bits.

/// LSB-first bit sink over a byte vector.
struct Bits {
    acc: u64,
    n: u32,
    out: Vec<u8>,
}

impl Bits {
    #[inline(always)]
    fn put(&mut self, v: u32, nb: u32) {
        self.acc |= (v as u64) << self.n;
        self.n += nb;
        if self.n >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.n -= 32;
        }
    }

    /// Pads to a byte boundary with zero bits.
    fn align(&mut self) {
        while self.n > 0 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n = self.n.saturating_sub(8);
        }
        self.acc = 0;
    }
}

// ---------------------------------------------------------------------------------------------
// Huffman codes, built exactly as Go builds them.

/// A code: bit-reversed code word (ready to put LSB first) and its length.
#[derive(Clone, Copy, Default)]
struct HCode {
    code: u16,
    len: u16,
}

struct Huffman {
    codes: Vec<HCode>,
    /// (symbol, frequency) scratch.
    nodes: Vec<(u16, u32)>,
}

fn reverse(code: u32, len: u32) -> u16 {
    ((code as u16).reverse_bits()) >> (16 - len)
}

impl Huffman {
    fn new(n: usize) -> Huffman {
        Huffman {
            codes: vec![HCode::default(); n],
            nodes: Vec::with_capacity(NUM_LIT + 1),
        }
    }

    fn fixed_lit() -> Huffman {
        let mut h = Huffman::new(NUM_LIT);
        for (s, c) in h.codes.iter_mut().enumerate() {
            let (base, len) = match s {
                0..=143 => (s + 48, 8),
                144..=255 => (s + 400 - 144, 9),
                256..=279 => (s - 256, 7),
                _ => (s + 192 - 280, 8),
            };
            *c = HCode {
                code: reverse(base as u32, len),
                len: len as u16,
            };
        }
        h
    }

    fn fixed_off() -> Huffman {
        let mut h = Huffman::new(NUM_OFF);
        for (s, c) in h.codes.iter_mut().enumerate() {
            *c = HCode {
                code: reverse(s as u32, 5),
                len: 5,
            };
        }
        h
    }

    fn bit_length(&self, freq: &[u32]) -> usize {
        freq.iter()
            .zip(&self.codes)
            .map(|(&f, c)| f as usize * c.len as usize)
            .sum()
    }

    /// The code Go's `generate` gives these frequencies with at most `max_bits` bits.
    fn generate(&mut self, freq: &[u32], max_bits: usize) {
        self.nodes.clear();
        for (s, &f) in freq.iter().enumerate() {
            if f != 0 {
                self.nodes.push((s as u16, f));
            } else {
                self.codes[s].len = 0;
            }
        }
        if self.nodes.len() <= 2 {
            // One or two symbols: one bit each, in symbol order.
            for (i, &(s, _)) in self.nodes.iter().enumerate() {
                self.codes[s as usize] = HCode { code: i as u16, len: 1 };
            }
            return;
        }
        self.nodes.sort_unstable_by_key(|&(s, f)| (f, s));
        let counts = bit_counts(&self.nodes, max_bits);
        // Shortest codes go to the most frequent symbols; within one length, in symbol order.
        let mut code = 0u32;
        let mut end = self.nodes.len();
        for (bits, &count) in counts.iter().enumerate() {
            code <<= 1;
            if bits == 0 || count == 0 {
                continue;
            }
            let chunk = &mut self.nodes[end - count..end];
            chunk.sort_unstable_by_key(|&(s, _)| s);
            for &(s, _) in chunk.iter() {
                self.codes[s as usize] = HCode {
                    code: reverse(code, bits as u32),
                    len: bits as u16,
                };
                code += 1;
            }
            end -= count;
        }
    }
}

/// How many symbols get each code length (index = length), for `nodes` (at least 3, sorted by
/// ascending frequency): Go's boundary package-merge variant, followed step by step.
fn bit_counts(nodes: &[(u16, u32)], max_bits: usize) -> Vec<usize> {
    const NONE: i64 = i32::MAX as i64;
    let n = nodes.len();
    let freq = |i: usize| if i < n { nodes[i].1 as i64 } else { NONE };
    let max_bits = max_bits.min(n - 1);

    #[derive(Clone, Copy, Default)]
    struct Row {
        last: i64,
        next_leaf: i64,
        next_pair: i64,
        needed: i64,
    }
    let mut rows = [Row::default(); 18];
    // leaves[r][j]: leaves left of row r's newest chain's ancestor on row j.
    let mut leaves = [[0usize; 18]; 18];
    for r in 1..=max_bits {
        rows[r] = Row {
            last: freq(1),
            next_leaf: freq(2),
            next_pair: if r == 1 { NONE } else { freq(0) + freq(1) },
            needed: 0,
        };
        leaves[r][r] = 2;
    }
    rows[max_bits].needed = 2 * n as i64 - 4;

    let mut r = max_bits;
    loop {
        if rows[r].next_pair == NONE && rows[r].next_leaf == NONE {
            rows[r].needed = 0;
            rows[r + 1].next_pair = NONE;
            r += 1;
            continue;
        }
        let before = rows[r].last;
        if rows[r].next_leaf < rows[r].next_pair {
            let k = leaves[r][r] + 1;
            rows[r].last = rows[r].next_leaf;
            leaves[r][r] = k;
            rows[r].next_leaf = freq(k);
        } else {
            rows[r].last = rows[r].next_pair;
            let (lo, hi) = leaves.split_at_mut(r);
            hi[0][..r].copy_from_slice(&lo[r - 1][..r]);
            rows[r - 1].needed = 2;
        }
        rows[r].needed -= 1;
        if rows[r].needed == 0 {
            if r == max_bits {
                break;
            }
            rows[r + 1].next_pair = before + rows[r].last;
            r += 1;
        } else {
            while rows[r - 1].needed > 0 {
                r -= 1;
            }
        }
    }
    debug_assert_eq!(leaves[max_bits][max_bits], n);
    let mut counts = vec![0usize; max_bits + 1];
    for (bits, row) in (1..=max_bits).rev().enumerate() {
        counts[bits + 1] = leaves[max_bits][row] - leaves[max_bits][row - 1];
    }
    counts
}

// ---------------------------------------------------------------------------------------------
// Blocks and Go's choice among stored, fixed and dynamic encodings.

/// One block as the matcher hands it to the bit writer.
enum Block {
    /// Levels 2–9: tokens, and the bytes they cover when those can be stored in one block.
    Tokens(Vec<u32>, Option<Vec<u8>>),
    /// Level 1: tokens written dynamic (or stored when that is not 1/16 smaller).
    Dynamic(Vec<u32>, Vec<u8>),
    /// Literal-only dynamic block of these bytes (or stored).
    Huff(Vec<u8>),
    /// A non-final stored block.
    Stored(Vec<u8>),
    /// The empty final stored block that ends every Go stream.
    Finish,
}

/// Go's Huffman bit writer: block encodings and its size comparisons.
struct Writer {
    bits: Bits,
    lit_freq: [u32; NUM_LIT],
    off_freq: [u32; NUM_OFF],
    cg_freq: [u32; NUM_CG],
    codegen: Vec<u8>,
    lit: Huffman,
    off: Huffman,
    cg: Huffman,
    fixed_lit: Huffman,
    fixed_off: Huffman,
    huff_off: Huffman,
}

impl Writer {
    fn new() -> Writer {
        let mut huff_off = Huffman::new(NUM_OFF);
        let mut f = [0u32; NUM_OFF];
        f[0] = 1;
        huff_off.generate(&f, 15);
        Writer {
            bits: Bits {
                acc: 0,
                n: 0,
                out: Vec::with_capacity(1 << 16),
            },
            lit_freq: [0; NUM_LIT],
            off_freq: [0; NUM_OFF],
            cg_freq: [0; NUM_CG],
            codegen: vec![0; NUM_LIT + NUM_OFF + 1],
            lit: Huffman::new(NUM_LIT),
            off: Huffman::new(NUM_OFF),
            cg: Huffman::new(NUM_CG),
            fixed_lit: Huffman::fixed_lit(),
            fixed_off: Huffman::fixed_off(),
            huff_off,
        }
    }

    fn write(&mut self, b: &Block) {
        match b {
            Block::Tokens(t, input) => self.write_tokens_block(t, input.as_deref()),
            Block::Dynamic(t, input) => self.write_dynamic_block(t, input),
            Block::Huff(input) => self.write_huff_block(input),
            Block::Stored(input) => self.write_stored(input, false),
            Block::Finish => {
                self.stored_header(0, true);
                self.bits.align();
            }
        }
    }

    fn stored_header(&mut self, len: usize, last: bool) {
        self.bits.put(last as u32, 3);
        self.bits.align();
        self.bits.put(len as u32, 16);
        self.bits.put(!(len as u32) & 0xffff, 16);
    }

    fn write_stored(&mut self, input: &[u8], last: bool) {
        self.stored_header(input.len(), last);
        debug_assert_eq!(self.bits.n, 0);
        self.bits.out.extend_from_slice(input);
    }

    /// Histograms of the tokens plus end-of-block; codes for both alphabets. Returns the number of
    /// literal/length and distance codes to transmit.
    fn index_tokens(&mut self, tokens: &[u32]) -> (usize, usize) {
        self.lit_freq = [0; NUM_LIT];
        self.off_freq = [0; NUM_OFF];
        for &t in tokens {
            if t < MATCH {
                self.lit_freq[t as usize] += 1;
            } else {
                self.lit_freq[257 + LEN_CODE[((t >> 22) & 0xff) as usize] as usize] += 1;
                self.off_freq[off_code(t & 0x3f_ffff)] += 1;
            }
        }
        self.lit_freq[EOB] += 1;
        let mut nlit = NUM_LIT;
        while self.lit_freq[nlit - 1] == 0 {
            nlit -= 1;
        }
        let mut noff = NUM_OFF;
        while noff > 0 && self.off_freq[noff - 1] == 0 {
            noff -= 1;
        }
        if noff == 0 {
            self.off_freq[0] = 1;
            noff = 1;
        }
        self.lit.generate(&self.lit_freq, 15);
        self.off.generate(&self.off_freq, 15);
        (nlit, noff)
    }

    /// Go's run-length encoding of the code lengths (into `codegen`, ended by CG_END) and the
    /// frequencies of its symbols; `huff_only` takes the distance lengths from the fixed one-code
    /// table of literal-only blocks.
    fn generate_codegen(&mut self, nlit: usize, noff: usize, huff_only: bool) {
        self.cg_freq = [0; NUM_CG];
        let off = if huff_only { &self.huff_off } else { &self.off };
        let lens = self.lit.codes[..nlit]
            .iter()
            .chain(&off.codes[..noff])
            .map(|c| c.len as u8);
        let cg = &mut self.codegen;
        cg.clear();
        let freq = &mut self.cg_freq;
        let mut run: Option<(u8, usize)> = None;
        let mut flush = |size: u8, mut count: usize, cg: &mut Vec<u8>| {
            if size != 0 {
                cg.push(size);
                freq[size as usize] += 1;
                count -= 1;
                while count >= 3 {
                    let n = count.min(6);
                    cg.extend_from_slice(&[16, (n - 3) as u8]);
                    freq[16] += 1;
                    count -= n;
                }
            } else {
                while count >= 11 {
                    let n = count.min(138);
                    cg.extend_from_slice(&[18, (n - 11) as u8]);
                    freq[18] += 1;
                    count -= n;
                }
                if count >= 3 {
                    cg.extend_from_slice(&[17, (count - 3) as u8]);
                    freq[17] += 1;
                    count = 0;
                }
            }
            for _ in 0..count {
                cg.push(size);
                freq[size as usize] += 1;
            }
        };
        for l in lens {
            run = match run {
                Some((s, c)) if s == l => Some((s, c + 1)),
                Some((s, c)) => {
                    flush(s, c, cg);
                    Some((l, 1))
                }
                None => Some((l, 1)),
            };
        }
        if let Some((s, c)) = run {
            flush(s, c, cg);
        }
        cg.push(CG_END);
    }

    /// Size in bits of the dynamic block, and how many code-length code lengths it sends.
    fn dynamic_size(&self, huff_only: bool, extra: usize) -> (usize, usize) {
        let mut ncg = NUM_CG;
        while ncg > 4 && self.cg_freq[CG_ORDER[ncg - 1]] == 0 {
            ncg -= 1;
        }
        let off = if huff_only { &self.huff_off } else { &self.off };
        let header = 3
            + 5
            + 5
            + 4
            + 3 * ncg
            + self.cg.bit_length(&self.cg_freq)
            + self.cg_freq[16] as usize * 2
            + self.cg_freq[17] as usize * 3
            + self.cg_freq[18] as usize * 7;
        let size = header + self.lit.bit_length(&self.lit_freq) + off.bit_length(&self.off_freq) + extra;
        (size, ncg)
    }

    fn dynamic_header(&mut self, nlit: usize, noff: usize, ncg: usize, last: bool) {
        let b = &mut self.bits;
        b.put(if last { 5 } else { 4 }, 3);
        b.put((nlit - 257) as u32, 5);
        b.put((noff - 1) as u32, 5);
        b.put((ncg - 4) as u32, 4);
        for &s in &CG_ORDER[..ncg] {
            b.put(self.cg.codes[s].len as u32, 3);
        }
        let mut i = 0;
        loop {
            let s = self.codegen[i];
            i += 1;
            if s == CG_END {
                break;
            }
            let c = self.cg.codes[s as usize];
            b.put(c.code as u32, c.len as u32);
            let extra = match s {
                16 => 2,
                17 => 3,
                18 => 7,
                _ => continue,
            };
            b.put(self.codegen[i] as u32, extra);
            i += 1;
        }
    }

    /// The symbols of `tokens` and the end of block with the given (dynamic or fixed) codes.
    fn put_tokens(&mut self, tokens: &[u32], fixed: bool) {
        let (lit, off) = if fixed {
            (&self.fixed_lit.codes, &self.fixed_off.codes)
        } else {
            (&self.lit.codes, &self.off.codes)
        };
        let b = &mut self.bits;
        for &t in tokens {
            if t < MATCH {
                let c = lit[t as usize];
                b.put(c.code as u32, c.len as u32);
                continue;
            }
            let l = (t >> 22) & 0xff;
            let lc = LEN_CODE[l as usize] as usize;
            let c = lit[257 + lc];
            b.put(c.code as u32, c.len as u32);
            let eb = LEN_EXTRA[lc] as u32;
            if eb > 0 {
                b.put(l - LEN_BASE[lc], eb);
            }
            let d = t & 0x3f_ffff;
            let oc = off_code(d);
            let c = off[oc];
            b.put(c.code as u32, c.len as u32);
            let eb = OFF_EXTRA[oc] as u32;
            if eb > 0 {
                b.put(d + 1 - OFF_BASE[oc], eb);
            }
        }
        let c = lit[EOB];
        b.put(c.code as u32, c.len as u32);
    }

    /// Go's `writeBlock`: the smallest of fixed, dynamic and (if `input` is given) stored.
    fn write_tokens_block(&mut self, tokens: &[u32], input: Option<&[u8]>) {
        let (nlit, noff) = self.index_tokens(tokens);
        let input = input.filter(|i| i.len() <= MAX_STORED);
        let mut extra = 0;
        if input.is_some() {
            for lc in 257 + 8..nlit {
                extra += self.lit_freq[lc] as usize * LEN_EXTRA[lc - 257] as usize;
            }
            extra += self.off_freq[4..noff.max(4)]
                .iter()
                .zip(&OFF_EXTRA[4..])
                .map(|(&f, &e)| f as usize * e as usize)
                .sum::<usize>();
        }
        let mut size =
            3 + self.fixed_lit.bit_length(&self.lit_freq) + self.fixed_off.bit_length(&self.off_freq) + extra;
        let mut fixed = true;
        self.generate_codegen(nlit, noff, false);
        self.cg.generate(&self.cg_freq, 7);
        let (dsize, ncg) = self.dynamic_size(false, extra);
        if dsize < size {
            size = dsize;
            fixed = false;
        }
        if let Some(input) = input {
            if (input.len() + 5) * 8 < size {
                self.write_stored(input, false);
                return;
            }
        }
        if fixed {
            self.bits.put(2, 3);
        } else {
            self.dynamic_header(nlit, noff, ncg, false);
        }
        self.put_tokens(tokens, fixed);
    }

    /// Go's `writeBlockDynamic` (level 1).
    fn write_dynamic_block(&mut self, tokens: &[u32], input: &[u8]) {
        let (nlit, noff) = self.index_tokens(tokens);
        self.generate_codegen(nlit, noff, false);
        self.cg.generate(&self.cg_freq, 7);
        let (size, ncg) = self.dynamic_size(false, 0);
        if input.len() <= MAX_STORED && (input.len() + 5) * 8 < size + (size >> 4) {
            self.write_stored(input, false);
            return;
        }
        self.dynamic_header(nlit, noff, ncg, false);
        self.put_tokens(tokens, false);
    }

    /// Go's `writeBlockHuff`: literals only.
    fn write_huff_block(&mut self, input: &[u8]) {
        self.lit_freq = [0; NUM_LIT];
        for &c in input {
            self.lit_freq[c as usize] += 1;
        }
        self.lit_freq[EOB] = 1;
        // Only the first distance code's frequency matters here (the table has no other code).
        self.off_freq[0] = 1;
        self.lit.generate(&self.lit_freq, 15);
        self.generate_codegen(257, 1, true);
        self.cg.generate(&self.cg_freq, 7);
        let (size, ncg) = self.dynamic_size(true, 0);
        if input.len() <= MAX_STORED && (input.len() + 5) * 8 < size + (size >> 4) {
            self.write_stored(input, false);
            return;
        }
        self.dynamic_header(257, 1, ncg, false);
        let codes = &self.lit.codes;
        let b = &mut self.bits;
        for &c in input {
            let h = codes[c as usize];
            b.put(h.code as u32, h.len as u32);
        }
        let h = codes[EOB];
        b.put(h.code as u32, h.len as u32);
    }
}

// ---------------------------------------------------------------------------------------------
// Matchers.

/// Where finished blocks go: straight to a writer, or to the writer's thread.
trait Sink {
    fn block(&mut self, b: Block);
}

impl Sink for Writer {
    fn block(&mut self, b: Block) {
        self.write(&b);
    }
}

/// Level 1: Go's Snappy-derived matcher over 65535-byte pieces.
struct Fast {
    table: Vec<(u32, i32)>,
    prev: Vec<u8>,
    cur: i32,
}

const FAST_BITS: u32 = 14;
const FAST_SIZE: usize = 1 << FAST_BITS;
const FAST_RESET: i32 = i32::MAX - 2 * MAX_STORED as i32;
const FAST_MARGIN: usize = 15;
const MAX_DIST: i32 = 1 << 15;

#[inline(always)]
fn load32(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
}

#[inline(always)]
fn load64(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().unwrap())
}

#[inline(always)]
fn fast_hash(u: u32) -> usize {
    (u.wrapping_mul(0x1e35a7bd) >> (32 - FAST_BITS)) as usize
}

/// Length of the common prefix of `a` and `b`, at most `max` (both at least that long).
#[inline(always)]
fn common(a: &[u8], b: &[u8], max: usize) -> usize {
    let (a, b) = (&a[..max], &b[..max]);
    let mut i = 0;
    while i + 8 <= max {
        let x = load64(a, i) ^ load64(b, i);
        if x != 0 {
            return i + (x.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < max && a[i] == b[i] {
        i += 1;
    }
    i
}

impl Fast {
    fn new() -> Fast {
        Fast {
            table: vec![(0, 0); FAST_SIZE],
            prev: Vec::with_capacity(MAX_STORED),
            cur: MAX_STORED as i32,
        }
    }

    fn reset(&mut self) {
        self.prev.clear();
        self.cur += MAX_DIST;
        if self.cur >= FAST_RESET {
            self.shift();
        }
    }

    fn shift(&mut self) {
        if self.prev.is_empty() {
            self.table.iter_mut().for_each(|e| *e = (0, 0));
        } else {
            for e in self.table.iter_mut() {
                e.1 = (e.1 - self.cur + MAX_DIST + 1).max(0);
            }
        }
        self.cur = MAX_DIST + 1;
    }

    /// Match length from src[s..] against position t (negative: in the previous piece).
    fn match_len(&self, s: usize, t: i32, src: &[u8]) -> usize {
        let end = (s + MAX_MATCH - 4).min(src.len());
        if t >= 0 {
            return common(&src[s..end], &src[t as usize..], end - s);
        }
        let tp = self.prev.len() as i32 + t;
        if tp < 0 {
            return 0;
        }
        let b = &self.prev[tp as usize..];
        let k = b.len().min(end - s);
        let n = common(&src[s..], b, k);
        if n < k || s + n == end {
            return n;
        }
        n + common(&src[s + n..end], src, end - s - n)
    }

    fn encode(&mut self, dst: &mut Vec<u32>, src: &[u8]) {
        if self.cur >= FAST_RESET {
            self.shift();
        }
        if src.len() < 1 + 1 + FAST_MARGIN {
            self.cur += MAX_STORED as i32;
            self.prev.clear();
            dst.extend(src.iter().map(|&c| c as u32));
            return;
        }
        let limit = src.len() - FAST_MARGIN;
        let mut next_emit = 0usize;
        let mut s = 0usize;
        let mut cv = load32(src, s);
        let mut next_hash = fast_hash(cv);
        'outer: loop {
            let mut skip = 32usize;
            let mut next_s = s;
            let mut cand;
            loop {
                s = next_s;
                let step = skip >> 5;
                next_s = s + step;
                skip += step;
                if next_s > limit {
                    break 'outer;
                }
                cand = self.table[next_hash];
                let now = load32(src, next_s);
                self.table[next_hash] = (cv, s as i32 + self.cur);
                next_hash = fast_hash(now);
                let dist = s as i32 - (cand.1 - self.cur);
                if dist > MAX_DIST || cv != cand.0 {
                    cv = now;
                    continue;
                }
                break;
            }
            dst.extend(src[next_emit..s].iter().map(|&c| c as u32));
            loop {
                s += 4;
                let t = cand.1 - self.cur + 4;
                let l = self.match_len(s, t, src);
                dst.push(match_token(l + 4, (s as i32 - t) as usize));
                s += l;
                next_emit = s;
                if s >= limit {
                    break 'outer;
                }
                let mut x = load64(src, s - 1);
                let ph = fast_hash(x as u32);
                self.table[ph] = (x as u32, self.cur + s as i32 - 1);
                x >>= 8;
                let ch = fast_hash(x as u32);
                cand = self.table[ch];
                self.table[ch] = (x as u32, self.cur + s as i32);
                let dist = s as i32 - (cand.1 - self.cur);
                if dist > MAX_DIST || x as u32 != cand.0 {
                    cv = (x >> 8) as u32;
                    next_hash = fast_hash(cv);
                    s += 1;
                    break;
                }
            }
        }
        if next_emit < src.len() {
            dst.extend(src[next_emit..].iter().map(|&c| c as u32));
        }
        self.cur += src.len() as i32;
        self.prev.clear();
        self.prev.extend_from_slice(src);
    }
}

/// Levels 2–9: Go's hash-chain matcher, greedy or lazy, over a sliding 64 KiB window.
struct Chain {
    cfg: LevelCfg,
    window: Vec<u8>,
    end: usize,
    index: usize,
    /// Window index where the pending tokens start; None once it slid out of the window.
    block_start: Option<usize>,
    byte_available: bool,
    tokens: Vec<u32>,
    length: usize,
    offset: usize,
    max_insert: usize,
    chain_head: i64,
    hash_offset: i64,
    head: Vec<u32>,
    prev: Vec<u32>,
}

#[inline(always)]
fn hash4(b: &[u8], i: usize) -> usize {
    let v = u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
    (v.wrapping_mul(0x1e35a7bd) >> (32 - HASH_BITS)) as usize
}

impl Chain {
    fn new(level: i8) -> Chain {
        Chain {
            cfg: level_cfg(level),
            window: vec![0; 2 * WINDOW],
            end: 0,
            index: 0,
            block_start: Some(0),
            byte_available: false,
            tokens: Vec::with_capacity(MAX_BLOCK_TOKENS + 1),
            length: MIN_MATCH - 1,
            offset: 0,
            max_insert: 0,
            chain_head: -1,
            hash_offset: 1,
            head: vec![0; HASH_SIZE],
            prev: vec![0; WINDOW],
        }
    }

    /// Copies what fits of `b` into the window (sliding it first when Go does); returns the count.
    fn fill(&mut self, b: &[u8]) -> usize {
        if self.index >= 2 * WINDOW - (MIN_MATCH + MAX_MATCH) {
            self.window.copy_within(WINDOW.., 0);
            self.index -= WINDOW;
            self.end -= WINDOW;
            self.block_start = self.block_start.and_then(|s| s.checked_sub(WINDOW));
            self.hash_offset += WINDOW as i64;
            if self.hash_offset > MAX_HASH_OFFSET {
                let delta = self.hash_offset - 1;
                self.hash_offset -= delta;
                self.chain_head -= delta;
                for v in self.prev.iter_mut().chain(self.head.iter_mut()) {
                    *v = if *v as i64 > delta {
                        (*v as i64 - delta) as u32
                    } else {
                        0
                    };
                }
            }
        }
        let n = b.len().min(self.window.len() - self.end);
        self.window[self.end..self.end + n].copy_from_slice(&b[..n]);
        self.end += n;
        n
    }

    fn full(&self) -> bool {
        self.end == self.window.len()
    }

    fn flush_block(&mut self, index: usize, sink: &mut dyn Sink) {
        if index > 0 {
            let input = match self.block_start {
                Some(s) if s <= index && index - s <= MAX_STORED => Some(self.window[s..index].to_vec()),
                _ => None,
            };
            self.block_start = Some(index);
            let tokens = std::mem::replace(&mut self.tokens, Vec::with_capacity(MAX_BLOCK_TOKENS + 1));
            sink.block(Block::Tokens(tokens, input));
        } else {
            self.tokens.clear();
        }
    }

    /// Best match at `pos` longer than `prev_len` along the hash chain from `head_pos`.
    fn find_match(&self, pos: usize, head_pos: i64, prev_len: usize, lookahead: usize) -> Option<(usize, usize)> {
        let look = MAX_MATCH.min(lookahead);
        let win = &self.window[..pos + look];
        let nice = self.cfg.nice.min(look);
        let mut tries = self.cfg.chain;
        let mut length = prev_len;
        if length >= self.cfg.good {
            tries >>= 2;
        }
        let mut found = None;
        let mut w_end = win[pos + length];
        let min_index = pos as i64 - WINDOW as i64;
        let mut i = head_pos;
        while tries > 0 {
            let iu = i as usize;
            if w_end == win[iu + length] {
                let n = common(&win[iu..], &win[pos..], look);
                if n > length && (n > MIN_MATCH || pos - iu <= 4096) {
                    length = n;
                    found = Some((n, pos - iu));
                    if n >= nice {
                        break;
                    }
                    w_end = win[pos + n];
                }
            }
            if i == min_index {
                break;
            }
            i = self.prev[iu & WINDOW_MASK] as i64 - self.hash_offset;
            if i < min_index || i < 0 {
                break;
            }
            tries -= 1;
        }
        found
    }

    #[inline(always)]
    fn insert(&mut self, at: usize) {
        let h = hash4(&self.window, at);
        self.prev[at & WINDOW_MASK] = self.head[h];
        self.head[h] = (at as i64 + self.hash_offset) as u32;
    }

    /// Go's `deflate` step: matches while the lookahead allows (all of it when `sync`).
    fn step(&mut self, sync: bool, sink: &mut dyn Sink) {
        if self.end - self.index < MIN_MATCH + MAX_MATCH && !sync {
            return;
        }
        self.max_insert = self.end.saturating_sub(MIN_MATCH - 1);
        let lazy_mode = self.cfg.skip == NO_SKIP;
        loop {
            let lookahead = self.end - self.index;
            if lookahead < MIN_MATCH + MAX_MATCH {
                if !sync {
                    break;
                }
                if lookahead == 0 {
                    if self.byte_available {
                        self.tokens.push(self.window[self.index - 1] as u32);
                        self.byte_available = false;
                    }
                    if !self.tokens.is_empty() {
                        self.flush_block(self.index, sink);
                    }
                    break;
                }
            }
            if self.index < self.max_insert {
                let h = hash4(&self.window, self.index);
                self.chain_head = self.head[h] as i64;
                self.prev[self.index & WINDOW_MASK] = self.chain_head as u32;
                self.head[h] = (self.index as i64 + self.hash_offset) as u32;
            }
            let prev_len = self.length;
            let prev_off = self.offset;
            self.length = MIN_MATCH - 1;
            self.offset = 0;
            let min_index = self.index.saturating_sub(WINDOW) as i64;
            let cand = self.chain_head - self.hash_offset;
            if cand >= min_index
                && (!lazy_mode && lookahead > MIN_MATCH - 1
                    || lazy_mode && lookahead > prev_len && prev_len < self.cfg.lazy)
            {
                if let Some((l, o)) = self.find_match(self.index, cand, MIN_MATCH - 1, lookahead) {
                    self.length = l;
                    self.offset = o;
                }
            }
            if !lazy_mode && self.length >= MIN_MATCH || lazy_mode && prev_len >= MIN_MATCH && self.length <= prev_len {
                if lazy_mode {
                    self.tokens.push(match_token(prev_len, prev_off));
                } else {
                    self.tokens.push(match_token(self.length, self.offset));
                }
                if self.length <= self.cfg.skip {
                    let new_index = if lazy_mode {
                        self.index + prev_len - 1
                    } else {
                        self.index + self.length
                    };
                    let mut i = self.index + 1;
                    while i < new_index {
                        if i < self.max_insert {
                            self.insert(i);
                        }
                        i += 1;
                    }
                    self.index = i;
                    if lazy_mode {
                        self.byte_available = false;
                        self.length = MIN_MATCH - 1;
                    }
                } else {
                    self.index += self.length;
                }
                if self.tokens.len() == MAX_BLOCK_TOKENS {
                    self.flush_block(self.index, sink);
                }
            } else {
                if !lazy_mode || self.byte_available {
                    let i = if lazy_mode { self.index - 1 } else { self.index };
                    self.tokens.push(self.window[i] as u32);
                    if self.tokens.len() == MAX_BLOCK_TOKENS {
                        self.flush_block(i + 1, sink);
                    }
                }
                self.index += 1;
                if lazy_mode {
                    self.byte_available = true;
                }
            }
        }
    }
}

/// Go's compressor for one level: window filling and when blocks are cut.
enum Deflater {
    Store(Vec<u8>),
    Huff(Vec<u8>),
    Fast(Vec<u8>, Box<Fast>, Vec<u32>),
    Chain(Box<Chain>),
}

impl Deflater {
    fn new(level: i8) -> Deflater {
        match level {
            0 => Deflater::Store(Vec::with_capacity(MAX_STORED)),
            -2 => Deflater::Huff(Vec::with_capacity(MAX_STORED)),
            1 => Deflater::Fast(
                Vec::with_capacity(MAX_STORED),
                Box::new(Fast::new()),
                Vec::with_capacity(MAX_STORED),
            ),
            _ => Deflater::Chain(Box::new(Chain::new(level))),
        }
    }

    /// Consumes all of `data`, handing every block that becomes complete to `sink`.
    fn write(&mut self, mut data: &[u8], sink: &mut dyn Sink) {
        while !data.is_empty() {
            let full_piece = match self {
                Deflater::Store(w) | Deflater::Huff(w) | Deflater::Fast(w, ..) => {
                    let n = data.len().min(MAX_STORED - w.len());
                    w.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    w.len() == MAX_STORED
                }
                Deflater::Chain(c) => {
                    // Go matches only over a full window (for writes that keep it full; see the
                    // module doc), then slides it on the next fill.
                    let n = c.fill(data);
                    data = &data[n..];
                    if c.full() {
                        c.step(false, sink);
                    }
                    false
                }
            };
            if full_piece {
                self.piece(false, sink);
            }
        }
    }

    /// Encodes the buffered 65535-byte piece (or, at the end, what is left) for levels -2, 0, 1.
    fn piece(&mut self, sync: bool, sink: &mut dyn Sink) {
        match self {
            Deflater::Store(w) => {
                if !w.is_empty() {
                    sink.block(Block::Stored(std::mem::take(w)));
                    w.reserve(MAX_STORED);
                }
            }
            Deflater::Huff(w) => {
                if !w.is_empty() {
                    sink.block(Block::Huff(std::mem::take(w)));
                    w.reserve(MAX_STORED);
                }
            }
            Deflater::Fast(w, fast, tokens) => {
                let n = w.len();
                if n == 0 {
                    return;
                }
                if sync && n < 128 {
                    if n <= 16 {
                        sink.block(Block::Stored(std::mem::take(w)));
                    } else {
                        sink.block(Block::Huff(std::mem::take(w)));
                    }
                    w.reserve(MAX_STORED);
                    fast.reset();
                    return;
                }
                tokens.clear();
                fast.encode(tokens, w);
                let input = std::mem::replace(w, Vec::with_capacity(MAX_STORED));
                if tokens.len() > n - (n >> 4) {
                    sink.block(Block::Huff(input));
                } else {
                    let t = std::mem::replace(tokens, Vec::with_capacity(MAX_STORED));
                    sink.block(Block::Dynamic(t, input));
                }
            }
            Deflater::Chain(_) => {}
        }
    }

    /// Ends the stream: the rest of the input, then the empty final stored block.
    fn close(&mut self, sink: &mut dyn Sink) {
        match self {
            Deflater::Chain(c) => c.step(true, sink),
            _ => self.piece(true, sink),
        }
        sink.block(Block::Finish);
    }
}

/// Encodes all of `data` at `level` in one go.
#[cfg(test)]
fn encode_all(level: i8, data: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    let mut d = Deflater::new(level);
    d.write(data, &mut w);
    d.close(&mut w);
    w.bits.out
}

// ---------------------------------------------------------------------------------------------
// Probe.

/// How much of the tar the probe re-encodes at most, per candidate.
const PROBE_DATA: usize = 1 << 20;
/// Candidates advance together in steps of this many bytes; mismatching ones drop out early.
const PROBE_STEP: usize = 64 << 10;

/// The profiles whose output agrees with `stream` (raw deflate, a prefix unless `complete`) for
/// `data` (what the stream prefix decodes to): Go 1.8's levels in the fixed order of [`ORDER`], or,
/// when none of those agrees, Go 1.27's in the same order.
pub fn probe(stream: &[u8], data: &[u8], complete: bool) -> Vec<Params> {
    let mut found = probe_18(stream, data, complete);
    if found.is_empty() {
        return probe_127(stream, data, complete, &ORDER);
    }
    // Level 0 writes the same stored blocks in both versions and differs only in the closing block (Go
    // 1.8: an empty final stored block, Go 1.27: an empty final fixed block, `03 00`). Unless the whole
    // stream was compared, a complete stream's last bytes decide; without them Go 1.27's level 0 is a
    // candidate too, after 1.8's.
    let whole = complete && data.len() <= PROBE_DATA;
    if !whole && found.iter().any(|p| p.level == 0) {
        let v127 = probe_127(stream, data, complete, &[0]);
        if complete && stream.ends_with(&[3, 0]) {
            found.retain(|p| p.level != 0);
            found.splice(0..0, v127);
        } else if !complete {
            found.extend(v127);
        }
    }
    found
}

/// Go 1.8's levels that agree with `stream`.
fn probe_18(stream: &[u8], data: &[u8], complete: bool) -> Vec<Params> {
    // Cheap structure first: Go never starts with a fixed block at levels -2, 0 and 1, and level
    // 0 starts with a stored block.
    let first = stream.first().map(|b| (b >> 1) & 3);
    let plausible = |level: i8| match (level, first) {
        (_, None) => false,
        (_, Some(3)) => false,
        (0, Some(t)) => t == 0,
        (-2 | 1, Some(t)) => t != 1,
        _ => true,
    };
    let whole = complete && data.len() <= PROBE_DATA;
    let data = &data[..data.len().min(PROBE_DATA)];
    struct Cand {
        level: i8,
        w: Writer,
        d: Deflater,
        alive: bool,
    }
    let mut cands: Vec<Cand> = ORDER
        .iter()
        .filter(|&&l| plausible(l))
        .map(|&level| Cand {
            level,
            w: Writer::new(),
            d: Deflater::new(level),
            alive: true,
        })
        .collect();
    let agrees = |out: &[u8]| {
        let n = out.len().min(stream.len());
        out[..n] == stream[..n]
    };
    let mut pos = 0;
    while pos < data.len() && cands.iter().any(|c| c.alive) {
        let chunk = &data[pos..(pos + PROBE_STEP).min(data.len())];
        for c in cands.iter_mut().filter(|c| c.alive) {
            c.d.write(chunk, &mut c.w);
            c.alive = agrees(&c.w.bits.out);
        }
        pos += chunk.len();
    }
    if whole {
        for c in cands.iter_mut().filter(|c| c.alive) {
            c.d.close(&mut c.w);
            let out = &c.w.bits.out;
            c.alive = out.len() <= stream.len() && agrees(out);
        }
    }
    cands
        .into_iter()
        .filter(|c| c.alive)
        .map(|c| Params {
            level: c.level,
            version: Version::V1_8,
        })
        .collect()
}

/// Go 1.27's `levels` that agree with `stream`: all candidates advance together over the first 64 KiB
/// (where the first block of every level is decided), then in 64 KiB steps up to [`PROBE_DATA`],
/// dropping out at the first difference.
fn probe_127(stream: &[u8], data: &[u8], complete: bool, levels: &[i8]) -> Vec<Params> {
    // Level 0 writes only stored blocks; a stream starting with a fixed block is at most a tiny input.
    let first = stream.first().map(|b| (b >> 1) & 3);
    let plausible = |level: i8| match first {
        None | Some(3) => false,
        Some(t) => level != 0 || t == 0,
    };
    let whole = complete && data.len() <= PROBE_DATA;
    let data = &data[..data.len().min(PROBE_DATA)];
    let mut cands: Vec<(i8, Compressor, bool)> = levels
        .iter()
        .filter(|&&l| plausible(l) && (l < 7 || go_lazy_screen(l, stream, data, complete)))
        .map(|&level| (level, go_compressor(level), true))
        .collect();
    let agrees = |out: &[u8]| {
        let n = out.len().min(stream.len());
        out[..n] == stream[..n]
    };
    let mut pos = 0;
    while pos < data.len() && cands.iter().any(|c| c.2) {
        let chunk = &data[pos..(pos + PROBE_STEP).min(data.len())];
        for (_, c, alive) in cands.iter_mut().filter(|c| c.2) {
            c.write(chunk);
            *alive = agrees(c.output());
        }
        pos += chunk.len();
    }
    if whole {
        for (_, c, alive) in cands.iter_mut().filter(|c| c.2) {
            c.close();
            let out = c.output();
            *alive = out.len() <= stream.len() && agrees(out);
        }
    }
    cands
        .into_iter()
        .filter(|c| c.2)
        .map(|c| Params {
            level: c.0,
            version: Version::V1_27,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Streaming encoder.

/// Streams Go's raw deflate stream for all of `input` at `p.level` (no gzip framing).
pub fn encoder<'a, R: Read + Send + 'a>(p: &Params, input: R) -> Box<dyn Read + Send + 'a> {
    if p.version == Version::V1_27 {
        return Box::new(Encoder127 {
            input,
            c: go_compressor(p.level),
            inbuf: vec![0; PROBE_STEP],
            out: Vec::new(),
            out_pos: 0,
            done: false,
        });
    }
    Box::new(Encoder {
        input,
        level: p.level,
        inbuf: vec![0; 128 << 10],
        deflater: None,
        out: Vec::new(),
        out_pos: 0,
        state: State::Start,
    })
}

/// The worker thread's end of the pipeline: blocks in order in, encoded bytes out.
struct Worker {
    blocks: mpsc::SyncSender<Block>,
    bytes: mpsc::Receiver<Option<Vec<u8>>>,
}

enum State {
    Start,
    Running(Worker),
    /// Input exhausted and the final block sent; draining the worker.
    Closing(Worker),
    Done,
}

/// Sends blocks to the worker thread.
struct ToWorker<'w>(&'w mpsc::SyncSender<Block>, bool);

impl Sink for ToWorker<'_> {
    fn block(&mut self, b: Block) {
        if self.0.send(b).is_err() {
            self.1 = true;
        }
    }
}

struct Encoder<R> {
    input: R,
    level: i8,
    inbuf: Vec<u8>,
    deflater: Option<Deflater>,
    out: Vec<u8>,
    out_pos: usize,
    state: State,
}

fn spawn_worker() -> io::Result<Worker> {
    let (btx, brx) = mpsc::sync_channel::<Block>(4);
    let (otx, orx) = mpsc::channel::<Option<Vec<u8>>>();
    std::thread::Builder::new().name("goflate-bits".into()).spawn(move || {
        let mut w = Writer::new();
        while let Ok(b) = brx.recv() {
            let last = matches!(b, Block::Finish);
            w.write(&b);
            if w.bits.out.is_empty() {
                continue;
            }
            let chunk = std::mem::replace(&mut w.bits.out, Vec::with_capacity(1 << 16));
            if otx.send(Some(chunk)).is_err() {
                return;
            }
            if last {
                // The final block ends on a byte boundary: nothing is left behind.
                let _ = otx.send(None);
                return;
            }
        }
    })?;
    Ok(Worker {
        blocks: btx,
        bytes: orx,
    })
}

fn worker_died() -> io::Error {
    io::Error::other("goflate: encoder worker thread ended early")
}

impl<R: Read> Encoder<R> {
    /// Moves the pipeline forward until some output is ready or the stream ended.
    fn advance(&mut self) -> io::Result<()> {
        loop {
            match &mut self.state {
                State::Start => {
                    self.deflater = Some(Deflater::new(self.level));
                    self.state = State::Running(spawn_worker()?);
                }
                State::Running(w) => {
                    match w.bytes.try_recv() {
                        Ok(Some(b)) => {
                            self.out = b;
                            self.out_pos = 0;
                            return Ok(());
                        }
                        Ok(None) | Err(mpsc::TryRecvError::Disconnected) => return Err(worker_died()),
                        Err(mpsc::TryRecvError::Empty) => {}
                    }
                    let n = loop {
                        match self.input.read(&mut self.inbuf) {
                            Ok(n) => break n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => return Err(e),
                        }
                    };
                    let d = self.deflater.as_mut().expect("deflater exists while running");
                    let mut sink = ToWorker(&w.blocks, false);
                    if n == 0 {
                        d.close(&mut sink);
                    } else {
                        d.write(&self.inbuf[..n], &mut sink);
                    }
                    if sink.1 {
                        return Err(worker_died());
                    }
                    if n == 0 {
                        self.deflater = None;
                        let State::Running(w) = std::mem::replace(&mut self.state, State::Done) else {
                            unreachable!()
                        };
                        self.state = State::Closing(w);
                    }
                }
                State::Closing(w) => match w.bytes.recv() {
                    Ok(Some(b)) => {
                        self.out = b;
                        self.out_pos = 0;
                        if self.out_pos < self.out.len() {
                            return Ok(());
                        }
                    }
                    Ok(None) => {
                        self.state = State::Done;
                        return Ok(());
                    }
                    Err(_) => return Err(worker_died()),
                },
                State::Done => return Ok(()),
            }
        }
    }
}

impl<R: Read> Read for Encoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.out_pos == self.out.len() {
            if matches!(self.state, State::Done) {
                return Ok(0);
            }
            self.advance()?;
        }
        let n = buf.len().min(self.out.len() - self.out_pos);
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

/// Go 1.27's stream: the input in 64 KiB writes through one compressor, its output handed out as it
/// grows (memory: the compressor's windows and tables plus one write's output).
struct Encoder127<R> {
    input: R,
    c: Compressor,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    done: bool,
}

impl<R: Read> Read for Encoder127<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.out_pos < self.out.len() {
                let n = (self.out.len() - self.out_pos).min(buf.len());
                buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
                self.out_pos += n;
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            let n = loop {
                match self.input.read(&mut self.inbuf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                self.c.close();
                self.done = true;
            } else {
                self.c.write(&self.inbuf[..n]);
            }
            self.out.clear();
            self.out_pos = 0;
            std::mem::swap(&mut self.out, self.c.output());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn inflate(raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(raw).read_to_end(&mut out).unwrap();
        out
    }

    fn sample(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let words: [&[u8]; 6] = [
            b"layer ",
            b"docker ",
            b"\0\0\0\0\0\0\0\0",
            b"usr/share/doc ",
            b"fn main() {} ",
            b"0644 ",
        ];
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 10 {
                0..=5 => v.extend_from_slice(words[(x >> 8) as usize % words.len()]),
                6..=8 => v.push((x >> 16) as u8),
                _ => v.extend(std::iter::repeat_n((x >> 24) as u8, (x >> 32) as usize % 300)),
            }
        }
        v.truncate(n);
        v
    }

    #[test]
    fn profiles_round_trip_and_reject_junk() {
        for l in ORDER {
            for version in [Version::V1_8, Version::V1_27] {
                let p = Params { level: l, version };
                assert_eq!(Params::from_profile(&p.profile()), Some(p));
            }
        }
        assert_eq!(
            Params::from_profile("goflate-1.27/6"),
            Some(Params {
                level: 6,
                version: Version::V1_27
            })
        );
        for bad in [
            "goflate-1.8/-1",
            "goflate-1.8/10",
            "goflate-1.8/06",
            "goflate-1.8/+6",
            "goflate-1.8/ 6",
            "goflate-1.8/",
            "goflate-1.9/6",
            "zlib-1.2/6",
            "goflate-1.8/6 ",
            "goflate-1.27/-1",
            "goflate-1.27/10",
            "goflate-1.27/06",
            "goflate-1.27/",
            "goflate-1.26/6",
            "goflate-1.270/6",
        ] {
            assert_eq!(Params::from_profile(bad), None, "{bad}");
        }
    }

    #[test]
    fn bit_counts_are_limited_and_complete() {
        let mut h = Huffman::new(NUM_LIT);
        // Fibonacci frequencies force a deep tree: the 15-bit limit must hold and the code stay full.
        let mut f = [0u32; NUM_LIT];
        let (mut a, mut b) = (1u32, 1u32);
        for x in f.iter_mut().take(30) {
            *x = a;
            (a, b) = (b, a + b);
        }
        h.generate(&f, 15);
        let kraft: f64 = h.codes[..30].iter().map(|c| 2f64.powi(-(c.len as i32))).sum();
        assert!(h.codes[..30].iter().all(|c| (1..=15).contains(&c.len)));
        assert!((kraft - 1.0).abs() < 1e-12, "kraft sum {kraft}");
    }

    #[test]
    fn every_level_inflates_back() {
        let data = sample(300_000, 7);
        for level in ORDER {
            let out = encode_all(level, &data);
            assert_eq!(inflate(&out), data, "level {level}");
        }
    }

    #[test]
    fn empty_input_is_the_final_empty_stored_block() {
        for level in ORDER {
            assert_eq!(encode_all(level, b""), [1, 0, 0, 0xff, 0xff], "level {level}");
        }
    }

    /// A reader that hands out odd-sized pieces (1, 2, … 7919 bytes, then again).
    struct Odd<'a>(&'a [u8], usize);
    impl Read for Odd<'_> {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.1 = self.1 % 7919 + 1;
            let n = self.1.min(b.len()).min(self.0.len());
            b[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn streaming_encoder_matches_one_shot() {
        let data = sample(500_000, 3);
        for level in [6, 1, -2, 0, 3] {
            let mut out = Vec::new();
            let p = Params {
                level,
                version: Version::V1_8,
            };
            encoder(&p, Odd(&data, 1)).read_to_end(&mut out).unwrap();
            assert_eq!(out, encode_all(level, &data), "level {level}");
        }
    }

    #[test]
    fn probe_finds_its_own_level() {
        let data = sample(400_000, 11);
        for level in ORDER {
            let out = encode_all(level, &data);
            let found = probe(&out, &data, true);
            let p = Params {
                level,
                version: Version::V1_8,
            };
            assert!(found.contains(&p), "level {level}: {found:?}");
        }
    }

    /// Go 1.27's raw deflate stream of `data`, through the streaming encoder.
    fn encode_127(level: i8, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let p = Params {
            level,
            version: Version::V1_27,
        };
        encoder(&p, data).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn go127_every_level_inflates_back_and_closes_with_a_fixed_block() {
        let data = sample(300_000, 5);
        for level in ORDER {
            let out = encode_127(level, &data);
            assert_eq!(inflate(&out), data, "level {level}");
        }
        for level in ORDER {
            assert_eq!(encode_127(level, b""), [3, 0], "level {level}");
        }
    }

    #[test]
    fn go127_streaming_does_not_depend_on_read_sizes() {
        let data = sample(400_000, 9);
        for level in [6, 1, 9, -2, 0] {
            let mut out = Vec::new();
            let p = Params {
                level,
                version: Version::V1_27,
            };
            encoder(&p, Odd(&data, 1)).read_to_end(&mut out).unwrap();
            assert_eq!(out, encode_127(level, &data), "level {level}");
        }
    }

    #[test]
    fn go127_probe_finds_its_own_level_after_go18() {
        let data = sample(400_000, 13);
        for level in ORDER {
            let out = encode_127(level, &data);
            let found = probe(&out, &data, true);
            let p = Params {
                level,
                version: Version::V1_27,
            };
            assert!(found.contains(&p), "level {level}: {found:?}");
            // Go 1.8's output is still named by 1.8 profiles only.
            let old = encode_all(level, &data);
            assert!(probe(&old, &data, true).iter().all(|p| p.version == Version::V1_8));
        }
    }

    #[test]
    fn go127_level0_is_told_from_go18_by_its_closing_block() {
        let data = sample(PROBE_DATA + 200_000, 17);
        let p127 = Params {
            level: 0,
            version: Version::V1_27,
        };
        let p18 = Params {
            level: 0,
            version: Version::V1_8,
        };
        let new = encode_127(0, &data);
        assert_eq!(probe(&new, &data, true), std::slice::from_ref(&p127));
        let old = encode_all(0, &data);
        assert_eq!(probe(&old, &data, true), std::slice::from_ref(&p18));
        // A prefix cannot tell them apart: both, 1.8 first.
        let cut = 300_000;
        let found = probe(&new[..cut], &data[..cut - 100], false);
        let at = |p: &Params| found.iter().position(|q| q == p);
        assert!(at(&p18).is_some() && at(&p18) < at(&p127), "{found:?}");
        assert_eq!(found.last(), Some(&p127), "{found:?}");
    }

    /// Runs of one byte, copies of earlier text and noise, in arbitrary mixtures.
    fn mixture(parts: Vec<(u8, usize, bool)>, seed: u64) -> Vec<u8> {
        let mut data = Vec::new();
        let mut x = seed | 1;
        for (b, n, noise) in parts {
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                data.push(if noise {
                    x as u8
                } else if x.is_multiple_of(5) && !data.is_empty() {
                    data[(x >> 8) as usize % data.len()]
                } else {
                    b
                });
            }
        }
        data
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn output_inflates_to_input(
            level in prop::sample::select(ORDER.to_vec()),
            parts in prop::collection::vec((any::<u8>(), 0usize..2000, any::<bool>()), 0..120),
            seed in any::<u64>(),
        ) {
            let data = mixture(parts, seed);
            prop_assert_eq!(inflate(&encode_all(level, &data)), data.clone(), "Go 1.8");
            prop_assert_eq!(inflate(&encode_127(level, &data)), data, "Go 1.27");
        }
    }
}
