//! klauspost flate levels 7–9: hash chains over a 64 KiB window that slides by 32 KiB, lazy matching
//! (a match is kept only if the next position has no longer one), a block cut every 32768 tokens.
//! Level 9 also weighs each candidate match by what its bytes would cost as literals under a Huffman
//! code of the window's byte histogram. Versions differ only in details, selected by [`Lazy`].

use super::huff::{BitWriter, HuffEnc, Tokens, LENGTH_CODES};

const WSIZE: isize = 1 << 15;
const WMASK: usize = (1 << 15) - 1;
const WINDOW: usize = 2 << 15;
const MIN_MATCH: isize = 4;
const MAX_MATCH: isize = 258;
const HASH_BITS: u32 = 17;
const BLOCK_TOKENS: usize = 1 << 15;
/// Past this the stored positions are rebased (only reached by blocks above 256 MiB).
const MAX_HASH_OFFSET: isize = 1 << 28;

/// Extra bits of each length code (index = code - 257).
const LEN_EXTRA: [i32; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// Extra bits of each distance code.
const OFF_EXTRA: [i32; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
];

/// Which release's lazy matcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lazy {
    /// Up to 1.15.14: re-checks a kept match against the chain head hashed two bytes before its end.
    V1_15_12,
    /// 1.15.15 (klauspost/compress#739) to 1.18.1: re-checks at the match end itself, may move the match
    /// start forward by up to two literals; level 9's gain test starts at 4 with a smaller base cost.
    V1_15_15,
    /// 1.18.2 and later: 1.15.15's matcher, but level 9's literal histogram counts at most the first 32768
    /// unprocessed bytes of the window (one block's worth of tokens), not all of them.
    V1_18_2,
}

/// The distance code klauspost's level-9 gain estimate uses. It is called with the distance itself
/// (not distance - 1) and wraps for a distance of 32768 (giving code 14); kept as it is.
fn gain_offset_code(off: u32) -> usize {
    let c = |x: u32| -> u32 {
        if x < 4 {
            x
        } else {
            let l = 31 - x.leading_zeros();
            2 * l + ((x >> (l - 1)) & 1)
        }
    };
    if off < 256 {
        c(off) as usize
    } else {
        (c((off >> 7) & 255) + 14) as usize
    }
}

#[inline]
fn hash4(w: &[u8], i: isize) -> usize {
    let i = i as usize;
    let u = u32::from_le_bytes([w[i], w[i + 1], w[i + 2], w[i + 3]]);
    (u.wrapping_mul(2_654_435_761) >> (32 - HASH_BITS)) as usize
}

/// Length of the common prefix of `a` and `b` (at most `a.len()`; `b` must be at least as long).
#[inline]
fn match_len(a: &[u8], b: &[u8]) -> isize {
    let mut n = 0;
    while n + 8 <= a.len() {
        let x = u64::from_le_bytes(a[n..n + 8].try_into().unwrap());
        let y = u64::from_le_bytes(b[n..n + 8].try_into().unwrap());
        if x != y {
            return (n + ((x ^ y).trailing_zeros() >> 3) as usize) as isize;
        }
        n += 8;
    }
    while n < a.len() && a[n] == b[n] {
        n += 1;
    }
    n as isize
}

/// The matcher's state for one flate writer. Positions in `head`/`prev` are stored plus `hash_offset`, which
/// grows by 32 KiB at each slide, so entries that slid out of the window fall below it (0 means none).
pub struct LazyEnc {
    version: Lazy,
    lazy: isize,
    nice: isize,
    chain: isize,
    window: Vec<u8>,
    window_end: isize,
    /// Where the pending block's input starts; `isize::MAX` once it slid out of the window.
    block_start: isize,
    index: isize,
    hash_offset: isize,
    chain_head: isize,
    length: isize,
    offset: isize,
    max_insert_index: isize,
    /// Literals since the last match (wraps, as in the original).
    ii: u16,
    byte_available: bool,
    head: Vec<u32>,
    prev: Vec<u32>,
    /// Level 9: code lengths of the unprocessed window's byte histogram, as running sums over the window.
    lit_code: HuffEnc,
    raw_bits: Vec<i32>,
    tokens: Tokens,
    /// The matcher returns once this many tokens are pending (the probe's screen); usize::MAX otherwise.
    stop_at: usize,
}

impl LazyEnc {
    pub fn new(level: u8, version: Lazy) -> LazyEnc {
        let (lazy, nice, chain) = match level {
            7 => (12, 16, 24),
            8 => (30, 40, 64),
            9 => (258, 258, 1024),
            _ => panic!("lazy level {level}"),
        };
        LazyEnc {
            version,
            lazy,
            nice,
            chain,
            window: vec![0; WINDOW],
            window_end: 0,
            block_start: 0,
            index: 0,
            hash_offset: 1,
            chain_head: -1,
            length: MIN_MATCH - 1,
            offset: 0,
            max_insert_index: 0,
            ii: 0,
            byte_available: false,
            head: vec![0; 1 << HASH_BITS],
            prev: vec![0; 1 << 15],
            lit_code: HuffEnc::new(256),
            raw_bits: if chain > 100 { vec![0; WINDOW + 1] } else { Vec::new() },
            tokens: Tokens::default(),
            stop_at: usize::MAX,
        }
    }

    /// The first `max` tokens (fewer if the input runs out) of a block without dictionary that starts with
    /// `first` (at most 64 KiB, all of the block when `whole`), as the encoder would emit them.
    pub fn first_tokens(level: u8, version: Lazy, first: &[u8], whole: bool, max: usize) -> Vec<u32> {
        let mut e = LazyEnc::new(level, version);
        e.stop_at = max;
        let n = e.fill(&first[..first.len().min(WINDOW)]);
        debug_assert_eq!(n, first.len());
        let mut sink = BitWriter::new(Vec::new());
        e.step(&mut sink, whole || n < WINDOW);
        std::mem::take(&mut e.tokens.toks)
    }

    #[inline]
    fn insert(&mut self, i: isize) {
        let h = hash4(&self.window, i);
        self.prev[i as usize & WMASK] = self.head[h];
        self.head[h] = (i + self.hash_offset) as u32;
    }

    /// Inserts `i` and makes its former chain the one to search.
    #[inline]
    fn insert_head(&mut self, i: isize) {
        let h = hash4(&self.window, i);
        let ch = self.head[h];
        self.chain_head = ch as isize;
        self.prev[i as usize & WMASK] = ch;
        self.head[h] = (i + self.hash_offset) as u32;
    }

    /// A preset dictionary (at most the last 32 KiB are kept): copied in and hashed, except its last three
    /// positions. The next block's input still starts at 0, so it includes the dictionary.
    pub fn fill_dict(&mut self, dict: &[u8]) {
        let d = &dict[dict.len().saturating_sub(WSIZE as usize)..];
        let start = self.window_end as usize;
        self.window[start..start + d.len()].copy_from_slice(d);
        let n = d.len() as isize;
        for i in 0..n - 3 {
            self.insert(i);
        }
        self.window_end += n;
        self.index = n;
    }

    /// Adds input, running the matcher each time the window is full.
    pub fn write(&mut self, w: &mut BitWriter, mut b: &[u8]) {
        while !b.is_empty() {
            if self.window_end as usize == WINDOW {
                self.step(w, false);
            }
            let n = self.fill(b);
            b = &b[n..];
        }
    }

    fn fill(&mut self, b: &[u8]) -> usize {
        if self.index >= 2 * WSIZE - (MIN_MATCH + MAX_MATCH) {
            self.window.copy_within(WSIZE as usize.., 0);
            self.index -= WSIZE;
            self.window_end -= WSIZE;
            self.block_start = if self.block_start >= WSIZE {
                self.block_start - WSIZE
            } else {
                isize::MAX
            };
            self.hash_offset += WSIZE;
            if self.hash_offset > MAX_HASH_OFFSET {
                let delta = self.hash_offset - 1;
                self.hash_offset -= delta;
                self.chain_head -= delta;
                for v in self.prev.iter_mut().chain(self.head.iter_mut()) {
                    *v = if *v as isize > delta {
                        (*v as isize - delta) as u32
                    } else {
                        0
                    };
                }
            }
        }
        let start = self.window_end as usize;
        let n = (WINDOW - start).min(b.len());
        self.window[start..start + n].copy_from_slice(&b[..n]);
        self.window_end += n as isize;
        n
    }

    /// Emits the pending tokens as one block covering the input up to `index`.
    fn write_block(&mut self, w: &mut BitWriter, index: isize, sync: bool) {
        if index > 0 {
            let input = (self.block_start <= index).then(|| &self.window[self.block_start as usize..index as usize]);
            w.write_block_dynamic(&mut self.tokens, input, sync);
            self.block_start = index;
        }
        self.tokens.reset();
    }

    #[inline]
    fn literal(&mut self, w: &mut BitWriter, b: u8, index: isize, sync: bool) {
        self.tokens.add_literal(b);
        if self.tokens.n() == BLOCK_TOKENS {
            self.write_block(w, index, sync);
        }
    }

    /// Level 9's literal cost table for the unprocessed part of the window.
    fn literal_costs(&mut self) {
        let mut hist = [0u16; 256];
        let mut counted = &self.window[self.index as usize..self.window_end as usize];
        if self.version == Lazy::V1_18_2 {
            counted = &counted[..counted.len().min(BLOCK_TOKENS)];
        }
        for &b in counted {
            hist[b as usize] = hist[b as usize].wrapping_add(1);
        }
        self.lit_code.generate(&hist, 15);
        let codes = &self.lit_code.codes;
        let mut acc = 0i32;
        let from = self.index as usize;
        for (i, &b) in self.window[from..self.window_end as usize].iter().enumerate() {
            self.raw_bits[from + i] = acc;
            acc += (codes[b as usize] & 0xff) as i32;
        }
        self.raw_bits[self.window_end as usize] = acc;
    }

    /// The longest (level 9: most profitable) match at `pos` on the chain starting at `prev_head`.
    fn find_match(&self, pos: isize, prev_head: isize, lookahead: isize) -> Option<(isize, isize)> {
        let look = lookahead.min(MAX_MATCH);
        let win = &self.window[..(pos + look) as usize];
        let nice = look.min(self.nice);
        let mut tries = self.chain;
        let mut length = MIN_MATCH - 1;
        let mut w_end = win[(pos + length) as usize];
        let w_pos = &win[pos as usize..];
        let min_index = (pos - WSIZE).max(0);
        let mut found = None;
        let weigh = self.chain >= 100;
        let (mut best_gain, base_cost) = match self.version {
            Lazy::V1_15_12 => (0, 6),
            Lazy::V1_15_15 | Lazy::V1_18_2 => (4, 3),
        };
        let mut i = prev_head;
        while tries > 0 {
            if w_end == win[(i + length) as usize] {
                let n = match_len(&win[i as usize..(i + look) as usize], w_pos);
                let better = n > length
                    && (!weigh || {
                        let gain = self.raw_bits[(pos + n) as usize]
                            - self.raw_bits[pos as usize]
                            - OFF_EXTRA[gain_offset_code((pos - i) as u32)]
                            - base_cost
                            - LEN_EXTRA[LENGTH_CODES[((n - 3) & 255) as usize] as usize];
                        gain > best_gain && {
                            best_gain = gain;
                            true
                        }
                    });
                if better {
                    length = n;
                    found = Some((n, pos - i));
                    if n >= nice {
                        break;
                    }
                    w_end = win[(pos + n) as usize];
                }
            }
            if i <= min_index {
                break;
            }
            i = self.prev[i as usize & WMASK] as isize - self.hash_offset;
            if i < min_index {
                break;
            }
            tries -= 1;
        }
        found
    }

    /// Runs the matcher over the window; with `sync`, to the end of the input and emitting a block.
    pub fn step(&mut self, w: &mut BitWriter, sync: bool) {
        if self.window_end - self.index < MIN_MATCH + MAX_MATCH && !sync {
            return;
        }
        if self.window_end != self.index && self.chain > 100 {
            self.literal_costs();
        }
        self.max_insert_index = self.window_end - (MIN_MATCH - 1);
        loop {
            if self.tokens.n() >= self.stop_at {
                return;
            }
            let lookahead = self.window_end - self.index;
            if lookahead < MIN_MATCH + MAX_MATCH {
                if !sync {
                    return;
                }
                if lookahead == 0 {
                    if self.byte_available {
                        self.tokens.add_literal(self.window[self.index as usize - 1]);
                        self.byte_available = false;
                    }
                    if self.tokens.n() > 0 {
                        self.write_block(w, self.index, sync);
                    }
                    return;
                }
            }
            if self.index < self.max_insert_index {
                self.insert_head(self.index);
            }
            let mut prev_length = self.length;
            let mut prev_offset = self.offset;
            self.length = MIN_MATCH - 1;
            self.offset = 0;
            let min_index = (self.index - WSIZE).max(0);
            if self.chain_head - self.hash_offset >= min_index && lookahead > prev_length && prev_length < self.lazy {
                if let Some((l, o)) = self.find_match(self.index, self.chain_head - self.hash_offset, lookahead) {
                    self.length = l;
                    self.offset = o;
                }
            }
            if prev_length >= MIN_MATCH && self.length <= prev_length {
                // Keep the previous match, perhaps improved by one more look near its end.
                match self.version {
                    Lazy::V1_15_12 => {
                        let prev_index = self.index - 1;
                        if prev_index + prev_length + 2 < self.max_insert_index {
                            let end = prev_index + lookahead.min(MAX_MATCH);
                            let h = hash4(&self.window, prev_index + prev_length - 2);
                            let ch2 = self.head[h] as isize - self.hash_offset - prev_length + 2;
                            if ch2 > min_index {
                                let l = match_len(
                                    &self.window[prev_index as usize..end as usize],
                                    &self.window[ch2 as usize..],
                                );
                                if l > prev_length {
                                    prev_length = l;
                                    prev_offset = prev_index - ch2;
                                }
                            }
                        }
                    }
                    Lazy::V1_15_15 | Lazy::V1_18_2 => {
                        self.recheck_v1_15_15(w, &mut prev_length, &mut prev_offset, lookahead, min_index, sync)
                    }
                }
                self.tokens.add_match_long(prev_length as i32, (prev_offset - 1) as u32);
                let new_index = self.index + prev_length - 1;
                let last = new_index.min(self.max_insert_index);
                let first = (self.index + 1).min(self.max_insert_index);
                for p in first..last {
                    self.insert(p);
                }
                self.index = new_index;
                self.byte_available = false;
                self.length = MIN_MATCH - 1;
                if self.tokens.n() == BLOCK_TOKENS {
                    self.write_block(w, self.index, sync);
                }
                self.ii = 0;
            } else {
                if self.length >= MIN_MATCH {
                    self.ii = 0;
                }
                if self.byte_available {
                    self.ii = self.ii.wrapping_add(1);
                    let b = self.window[self.index as usize - 1];
                    self.literal(w, b, self.index, sync);
                    self.index += 1;
                    // A long run without matches: skip ahead, emitting literals without searching.
                    let over = self.ii as isize - self.chain;
                    if over > 0 {
                        for _ in 0..1 + (over >> 6) {
                            if self.index >= self.window_end - 1 {
                                break;
                            }
                            let b = self.window[self.index as usize - 1];
                            self.literal(w, b, self.index, sync);
                            if self.index < self.max_insert_index {
                                self.insert_head(self.index);
                            }
                            self.index += 1;
                        }
                        let b = self.window[self.index as usize - 1];
                        self.literal(w, b, self.index, sync);
                        self.byte_available = false;
                    }
                } else {
                    self.index += 1;
                    self.byte_available = true;
                }
            }
        }
    }

    /// 1.15.15's second look: the chain head hashed at the match end, extended back over up to two
    /// bytes; bytes it cannot cover are emitted as literals and the match starts after them.
    fn recheck_v1_15_15(
        &mut self,
        w: &mut BitWriter,
        prev_length: &mut isize,
        prev_offset: &mut isize,
        lookahead: isize,
        min_index: isize,
        sync: bool,
    ) {
        const CHECK: isize = 2;
        if *prev_length >= MAX_MATCH - CHECK {
            return;
        }
        let prev_index = self.index - 1;
        if prev_index + *prev_length >= self.max_insert_index {
            return;
        }
        let end = prev_index + lookahead.min(MAX_MATCH + CHECK);
        let h = hash4(&self.window, prev_index + *prev_length);
        let ch2 = self.head[h] as isize - self.hash_offset - *prev_length;
        if prev_index - ch2 == *prev_offset || ch2 <= min_index + CHECK {
            return;
        }
        let l = match_len(
            &self.window[(prev_index + CHECK) as usize..end as usize],
            &self.window[(ch2 + CHECK) as usize..],
        );
        if l <= *prev_length {
            return;
        }
        *prev_length = l;
        *prev_offset = prev_index - ch2;
        for i in (0..CHECK).rev() {
            if *prev_length >= MAX_MATCH || self.window[(prev_index + i) as usize] != self.window[(ch2 + i) as usize] {
                for j in 0..=i {
                    let b = self.window[(prev_index + j) as usize];
                    self.literal(w, b, self.index, sync);
                    self.index += 1;
                    if self.index < self.max_insert_index {
                        self.insert_head(self.index);
                    }
                }
                break;
            }
            *prev_length += 1;
        }
    }
}
