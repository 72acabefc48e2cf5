//! The match finder and block splitter of GNU gzip's deflate (deflate.c + the tally half of trees.c).
//!
//! Every detail that moves an output bit is kept: the 64 KiB window that slides by 32 KiB when the
//! current position reaches `WSIZE + MAX_DIST` (and never again once end of input was seen), the
//! 15-bit hash of three bytes, chains limited to `MAX_DIST`, window index 0 acting as the empty
//! chain, the level table, "lazy" evaluation for levels 4..9 and the greedy loop for 1..3, the
//! `TOO_FAR` rule, and the block-ending rules (32767 symbols, 32768 distances, or the estimate
//! checked every 4096 symbols for levels above 2). Reads behave like `read(2)` on a regular file:
//! each request is filled completely unless the input ends.

// Index loops mirror gzip's table-building loops one to one.
#![allow(clippy::needless_range_loop)]

use std::io;

pub(super) const WSIZE: usize = 0x8000;
const WMASK: usize = WSIZE - 1;
const WINDOW_SIZE: usize = 2 * WSIZE;
const HASH_BITS: u32 = 15;
const HASH_SIZE: usize = 1 << HASH_BITS;
const HASH_MASK: usize = HASH_SIZE - 1;
const H_SHIFT: u32 = HASH_BITS.div_ceil(MIN_MATCH as u32);
pub(super) const MIN_MATCH: usize = 3;
pub(super) const MAX_MATCH: usize = 258;
const MIN_LOOKAHEAD: usize = MAX_MATCH + MIN_MATCH + 1;
const MAX_DIST: usize = WSIZE - MIN_LOOKAHEAD;
const TOO_FAR: usize = 4096;
const LIT_BUFSIZE: usize = 0x8000;
const DIST_BUFSIZE: usize = 0x8000;
/// The window buffer: indices are masked with `WMASK2` (a no-op, every index is below 2 * WSIZE +
/// 300) so the hot loops need no bounds checks; the 8 spare bytes cover 8-byte reads. Bytes past
/// 2 * WSIZE are read only into hash entries that are never looked up, or past a match's end.
const WBUF: usize = 1 << 17;
const WMASK2: usize = WBUF - 1;
const WBUF_LEN: usize = WBUF + 8;

pub(super) const LITERALS: usize = 256;
pub(super) const END_BLOCK: usize = 256;
pub(super) const LENGTH_CODES: usize = 29;
pub(super) const L_CODES: usize = LITERALS + 1 + LENGTH_CODES;
pub(super) const D_CODES: usize = 30;
pub(super) const EXTRA_DBITS: [u8; D_CODES] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
];
pub(super) const EXTRA_LBITS: [u8; LENGTH_CODES] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];

/// One row of the level table: (good, lazy, nice, chain).
#[derive(Clone, Copy)]
struct Config {
    good: usize,
    lazy: usize,
    nice: usize,
    chain: u32,
}

const fn cfg(good: usize, lazy: usize, nice: usize, chain: u32) -> Config {
    Config {
        good,
        lazy,
        nice,
        chain,
    }
}

/// gzip's level table (index = level); levels 1..3 use the greedy loop where `lazy` bounds insertion.
const TABLE: [Config; 10] = [
    cfg(0, 0, 0, 0),
    cfg(4, 4, 8, 4),
    cfg(4, 5, 16, 8),
    cfg(4, 6, 32, 32),
    cfg(4, 4, 16, 16),
    cfg(8, 16, 32, 32),
    cfg(8, 16, 128, 128),
    cfg(8, 32, 128, 256),
    cfg(32, 128, 258, 1024),
    cfg(32, 258, 258, 4096),
];

/// Static code tables shared by the tally and the block writer.
pub(super) struct Codes {
    /// length - 3 → length code (0..28).
    pub length_code: [u8; 256],
    /// distance - 1 → distance code, via `d_code`.
    pub dist_code: [u8; 512],
    pub base_length: [u16; LENGTH_CODES],
    pub base_dist: [u16; D_CODES],
}

impl Codes {
    pub fn new() -> Codes {
        let mut c = Codes {
            length_code: [0; 256],
            dist_code: [0; 512],
            base_length: [0; LENGTH_CODES],
            base_dist: [0; D_CODES],
        };
        let mut length = 0usize;
        let mut code = 0;
        while code < LENGTH_CODES - 1 {
            c.base_length[code] = length as u16;
            for _ in 0..(1usize << EXTRA_LBITS[code]) {
                c.length_code[length] = code as u8;
                length += 1;
            }
            code += 1;
        }
        // Length 258 has two encodings; code 285 is the one used.
        c.length_code[255] = code as u8;
        let mut dist = 0usize;
        for code in 0..16 {
            c.base_dist[code] = dist as u16;
            for _ in 0..(1usize << EXTRA_DBITS[code]) {
                c.dist_code[dist] = code as u8;
                dist += 1;
            }
        }
        dist >>= 7;
        for code in 16..D_CODES {
            c.base_dist[code] = (dist << 7) as u16;
            for _ in 0..(1usize << (EXTRA_DBITS[code] - 7)) {
                c.dist_code[256 + dist] = code as u8;
                dist += 1;
            }
        }
        c
    }

    /// Distance code of `dist` = distance - 1.
    #[inline]
    pub fn d_code(&self, dist: usize) -> usize {
        if dist < 256 {
            self.dist_code[dist] as usize
        } else {
            self.dist_code[256 + (dist >> 7)] as usize
        }
    }
}

/// A block's symbols as the tally recorded them, ready for the tree builder.
pub(super) struct Block {
    /// Literal: the byte. Match: bit 31 set, (distance - 1) in bits 8..23, length - 3 in bits 0..7.
    pub syms: Vec<u32>,
    pub lfreq: [u16; L_CODES],
    pub dfreq: [u16; D_CODES],
    /// The block's input bytes, when still in the window (a stored block needs them).
    pub stored: Option<Vec<u8>>,
    /// Input bytes covered by the block.
    pub stored_len: u64,
    pub eof: bool,
}

impl Block {
    fn new() -> Block {
        let mut lfreq = [0; L_CODES];
        lfreq[END_BLOCK] = 1;
        Block {
            syms: Vec::with_capacity(LIT_BUFSIZE),
            lfreq,
            dfreq: [0; D_CODES],
            stored: None,
            stored_len: 0,
            eof: false,
        }
    }
}

/// Where the input comes from. `Err` aborts the encoding (the probe uses it to stop at the end of
/// a prefix whose continuation it does not know).
pub(super) trait Source {
    /// Fills `buf` completely unless the input ends first; returns the count (0 = end).
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

/// A `Read` as a regular file: requests are filled completely until end of input.
pub(super) struct ReadSource<R>(pub R);

impl<R: io::Read> Source for ReadSource<R> {
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.0.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}

/// The LZ77 state of one gzip stream.
pub(super) struct Lz {
    level: u32,
    cfg: Config,
    codes: std::sync::Arc<Codes>,
    window: Box<[u8; WBUF_LEN]>,
    head: Box<[u16; HASH_SIZE]>,
    prev: Box<[u16; WSIZE]>,
    ins_h: usize,
    strstart: usize,
    match_start: usize,
    lookahead: usize,
    eofile: bool,
    block_start: i64,
    prev_length: usize,
    match_length: usize,
    match_available: bool,
    started: bool,
    done: bool,
    block: Block,
    last_dist: usize,
}

impl Lz {
    pub fn new(level: u32, codes: std::sync::Arc<Codes>) -> Lz {
        assert!((1..=9).contains(&level), "gzip level {level}");
        Lz {
            level,
            cfg: TABLE[level as usize],
            codes,
            window: vec![0; WBUF_LEN].into_boxed_slice().try_into().expect("window size"),
            head: vec![0; HASH_SIZE].into_boxed_slice().try_into().expect("hash size"),
            prev: vec![0; WSIZE].into_boxed_slice().try_into().expect("prev size"),
            ins_h: 0,
            strstart: 0,
            match_start: 0,
            lookahead: 0,
            eofile: false,
            block_start: 0,
            prev_length: MIN_MATCH - 1,
            match_length: MIN_MATCH - 1,
            match_available: false,
            started: false,
            done: false,
            block: Block::new(),
            last_dist: 0,
        }
    }

    /// The next block of the stream (the last one has `eof` set), or None after it.
    pub fn next_block(&mut self, src: &mut dyn Source) -> io::Result<Option<Block>> {
        if self.done {
            return Ok(None);
        }
        if !self.started {
            self.started = true;
            self.init(src)?;
        }
        let b = if self.level <= 3 {
            self.run_fast(src)?
        } else {
            self.run_lazy(src)?
        };
        if b.eof {
            self.done = true;
        }
        Ok(Some(b))
    }

    fn init(&mut self, src: &mut dyn Source) -> io::Result<()> {
        let n = src.fill(&mut self.window[..WINDOW_SIZE])?;
        if n == 0 {
            self.eofile = true;
            self.lookahead = 0;
            return Ok(());
        }
        self.lookahead = n;
        while self.lookahead < MIN_LOOKAHEAD && !self.eofile {
            self.fill_window(src)?;
        }
        self.ins_h = 0;
        for j in 0..MIN_MATCH - 1 {
            self.update_hash(self.window[j]);
        }
        Ok(())
    }

    #[inline(always)]
    fn update_hash(&mut self, c: u8) {
        self.ins_h = ((self.ins_h << H_SHIFT) ^ c as usize) & HASH_MASK;
    }

    /// Inserts the string at `s` and returns the previous head of its chain.
    #[inline(always)]
    fn insert_string(&mut self, s: usize) -> usize {
        self.update_hash(self.window[(s + MIN_MATCH - 1) & WMASK2]);
        let h = self.head[self.ins_h];
        self.prev[s & WMASK] = h;
        self.head[self.ins_h] = s as u16;
        h as usize
    }

    fn fill_window(&mut self, src: &mut dyn Source) -> io::Result<()> {
        let mut more = WINDOW_SIZE - self.lookahead - self.strstart;
        if self.strstart >= WSIZE + MAX_DIST {
            self.window.copy_within(WSIZE..WINDOW_SIZE, 0);
            self.match_start = self.match_start.wrapping_sub(WSIZE);
            self.strstart -= WSIZE;
            self.block_start -= WSIZE as i64;
            let slide = |v: &mut u16| *v = if *v as usize >= WSIZE { *v - WSIZE as u16 } else { 0 };
            self.head.iter_mut().for_each(slide);
            self.prev.iter_mut().for_each(slide);
            more += WSIZE;
        }
        if !self.eofile {
            let at = self.strstart + self.lookahead;
            let n = src.fill(&mut self.window[at..at + more])?;
            if n == 0 {
                self.eofile = true;
                self.window[at..at + MIN_MATCH - 1].fill(0);
            } else {
                self.lookahead += n;
            }
        }
        Ok(())
    }

    /// Length of the longest match at `strstart` along the chain from `cur_match` that beats
    /// `prev_length`; sets `match_start` when it finds one.
    #[inline(always)]
    fn longest_match(&mut self, mut cur_match: usize) -> usize {
        let mut chain = self.cfg.chain;
        let w: &[u8; WBUF_LEN] = &self.window;
        let prev: &[u16; WSIZE] = &self.prev;
        let scan = self.strstart;
        let mut best_len = self.prev_length;
        let limit = self.strstart.saturating_sub(MAX_DIST);
        let nice = self.cfg.nice;
        if self.prev_length >= self.cfg.good {
            chain >>= 2;
        }
        // gzip's filter: the bytes at best_len - 1 and best_len, then the first two bytes.
        let start = rd16(w, scan);
        let mut end = rd16(w, scan + best_len - 1);
        loop {
            let m = cur_match;
            if rd16(w, m + best_len - 1) == end && rd16(w, m) == start {
                // Byte 2 is taken as equal (same hash, same first two bytes); compare from byte 3.
                let len = 3 + common_prefix(w, scan + 3, m + 3, MAX_MATCH - 3);
                if len > best_len {
                    self.match_start = m;
                    best_len = len;
                    if len >= nice {
                        break;
                    }
                    end = rd16(w, scan + best_len - 1);
                }
            }
            cur_match = prev[cur_match & WMASK] as usize;
            if cur_match <= limit {
                break;
            }
            chain -= 1;
            if chain == 0 {
                break;
            }
        }
        best_len
    }

    /// Records a literal (`dist` = 0) or a match; true when the block must end here.
    #[inline(always)]
    fn tally(&mut self, dist: usize, lc: usize) -> bool {
        let b = &mut self.block;
        if dist == 0 {
            b.lfreq[lc] += 1;
            b.syms.push(lc as u32);
        } else {
            let d = dist - 1;
            b.lfreq[self.codes.length_code[lc] as usize + LITERALS + 1] += 1;
            b.dfreq[self.codes.d_code(d)] += 1;
            b.syms.push(1 << 31 | (d as u32) << 8 | lc as u32);
            self.last_dist += 1;
        }
        let last_lit = b.syms.len();
        if self.level > 2 && last_lit & 0xfff == 0 {
            let mut out_length = last_lit as u64 * 8;
            let in_length = (self.strstart as i64 - self.block_start) as u64;
            for (f, x) in b.dfreq.iter().zip(EXTRA_DBITS) {
                out_length += *f as u64 * (5 + x as u64);
            }
            out_length >>= 3;
            if self.last_dist < last_lit / 2 && out_length < in_length / 2 {
                return true;
            }
        }
        last_lit == LIT_BUFSIZE - 1 || self.last_dist == DIST_BUFSIZE
    }

    /// Closes the current block at `strstart`.
    fn take_block(&mut self, eof: bool) -> Block {
        let mut b = std::mem::replace(&mut self.block, Block::new());
        self.last_dist = 0;
        b.stored_len = (self.strstart as i64 - self.block_start) as u64;
        if self.block_start >= 0 {
            b.stored = Some(self.window[self.block_start as usize..self.strstart].to_vec());
        }
        b.eof = eof;
        b
    }

    /// Levels 1..3: take the longest match at once; insert its strings only if it is short.
    fn run_fast(&mut self, src: &mut dyn Source) -> io::Result<Block> {
        while self.lookahead != 0 {
            let hash_head = self.insert_string(self.strstart);
            if hash_head != 0 && self.strstart - hash_head <= MAX_DIST && self.strstart <= WINDOW_SIZE - MIN_LOOKAHEAD {
                self.match_length = self.longest_match(hash_head).min(self.lookahead);
            }
            let flush;
            if self.match_length >= MIN_MATCH {
                flush = self.tally(
                    self.strstart.wrapping_sub(self.match_start),
                    self.match_length - MIN_MATCH,
                );
                self.lookahead -= self.match_length;
                if self.match_length <= self.cfg.lazy {
                    self.match_length -= 1;
                    loop {
                        self.strstart += 1;
                        self.insert_string(self.strstart);
                        self.match_length -= 1;
                        if self.match_length == 0 {
                            break;
                        }
                    }
                    self.strstart += 1;
                } else {
                    self.strstart += self.match_length;
                    self.match_length = 0;
                    self.ins_h = self.window[self.strstart] as usize;
                    self.update_hash(self.window[self.strstart + 1]);
                }
            } else {
                flush = self.tally(0, self.window[self.strstart] as usize);
                self.lookahead -= 1;
                self.strstart += 1;
            }
            let block = if flush {
                let b = self.take_block(false);
                self.block_start = self.strstart as i64;
                Some(b)
            } else {
                None
            };
            while self.lookahead < MIN_LOOKAHEAD && !self.eofile {
                self.fill_window(src)?;
            }
            if let Some(b) = block {
                return Ok(b);
            }
        }
        Ok(self.take_block(true))
    }

    /// Levels 4..9: a match is taken only if the next position does not start a longer one.
    fn run_lazy(&mut self, src: &mut dyn Source) -> io::Result<Block> {
        while self.lookahead != 0 {
            let hash_head = self.insert_string(self.strstart);
            self.prev_length = self.match_length;
            let prev_match = self.match_start;
            self.match_length = MIN_MATCH - 1;
            if hash_head != 0
                && self.prev_length < self.cfg.lazy
                && self.strstart - hash_head <= MAX_DIST
                && self.strstart <= WINDOW_SIZE - MIN_LOOKAHEAD
            {
                self.match_length = self.longest_match(hash_head).min(self.lookahead);
                if self.match_length == MIN_MATCH
                    && self.strstart.wrapping_sub(self.match_start) as u32 > TOO_FAR as u32
                {
                    self.match_length -= 1;
                }
            }
            let mut block = None;
            if self.prev_length >= MIN_MATCH && self.match_length <= self.prev_length {
                let flush = self.tally(
                    (self.strstart - 1).wrapping_sub(prev_match),
                    self.prev_length - MIN_MATCH,
                );
                self.lookahead -= self.prev_length - 1;
                self.prev_length -= 2;
                loop {
                    self.strstart += 1;
                    self.insert_string(self.strstart);
                    self.prev_length -= 1;
                    if self.prev_length == 0 {
                        break;
                    }
                }
                self.match_available = false;
                self.match_length = MIN_MATCH - 1;
                self.strstart += 1;
                if flush {
                    block = Some(self.take_block(false));
                    self.block_start = self.strstart as i64;
                }
            } else if self.match_available {
                let flush = self.tally(0, self.window[self.strstart - 1] as usize);
                if flush {
                    block = Some(self.take_block(false));
                    self.block_start = self.strstart as i64;
                }
                self.strstart += 1;
                self.lookahead -= 1;
            } else {
                self.match_available = true;
                self.strstart += 1;
                self.lookahead -= 1;
            }
            while self.lookahead < MIN_LOOKAHEAD && !self.eofile {
                self.fill_window(src)?;
            }
            if let Some(b) = block {
                return Ok(b);
            }
        }
        if self.match_available {
            self.match_available = false;
            self.tally(0, self.window[self.strstart - 1] as usize);
        }
        Ok(self.take_block(true))
    }
}

#[inline(always)]
fn rd16(w: &[u8; WBUF_LEN], i: usize) -> u16 {
    let i = i & WMASK2;
    u16::from_le_bytes([w[i], w[i + 1]])
}

#[inline(always)]
fn rd64(w: &[u8; WBUF_LEN], i: usize) -> u64 {
    let i = i & WMASK2;
    u64::from_le_bytes(w[i..i + 8].try_into().expect("8 bytes"))
}

/// Number of equal leading bytes of the strings at `a` and `b`, at most `n`.
#[inline(always)]
fn common_prefix(w: &[u8; WBUF_LEN], a: usize, b: usize, n: usize) -> usize {
    let mut i = 0;
    while i < n {
        let d = rd64(w, a + i) ^ rd64(w, b + i);
        if d != 0 {
            return (i + (d.trailing_zeros() / 8) as usize).min(n);
        }
        i += 8;
    }
    n
}
