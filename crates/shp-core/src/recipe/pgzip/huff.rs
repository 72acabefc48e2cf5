//! klauspost/compress flate's token buffer, Huffman code builder and block writer (the `huffmanBitWriter`),
//! reimplemented from its observable behaviour: the same block-type decisions (stored / fixed / dynamic /
//! literal-only), the same table-reuse heuristics and the same size estimates, so the bits come out identical.

/// Literal/length alphabet size.
pub const LITERAL_COUNT: usize = 286;
const OFFSET_CODE_COUNT: usize = 30;
const END_BLOCK: usize = 256;
const LENGTH_CODES_START: usize = 257;
const CODEGEN_COUNT: usize = 19;
const BAD_CODE: u8 = 255;
/// Below this many tokens the fixed code is considered.
const MAX_PREDEFINED_TOKENS: usize = 250;
pub const MAX_STORE_BLOCK: usize = 65535;

pub const MATCH_TYPE: u32 = 1 << 30;
const LENGTH_SHIFT: u32 = 22;
const OFFSET_MASK: u32 = (1 << LENGTH_SHIFT) - 1;

/// Extra bits per length code (index = code - 257).
const LENGTH_EXTRA_BITS: [u8; 32] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0, 0, 0, 0,
];
/// Smallest (length - 3) of each length code.
const LENGTH_BASE: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 255, 0,
    0, 0,
];
/// Extra bits per distance code.
const OFFSET_EXTRA_BITS: [u8; 32] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14,
];
/// Smallest (distance - 1) of each distance code.
const OFFSET_BASE: [u32; 32] = [
    0x0000, 0x0001, 0x0002, 0x0003, 0x0004, 0x0006, 0x0008, 0x000c, 0x0010, 0x0018, 0x0020, 0x0030, 0x0040, 0x0060,
    0x0080, 0x00c0, 0x0100, 0x0180, 0x0200, 0x0300, 0x0400, 0x0600, 0x0800, 0x0c00, 0x1000, 0x1800, 0x2000, 0x3000,
    0x4000, 0x6000, 0x8000, 0xc000,
];
/// Order in which code-length code lengths are sent (RFC 1951 3.2.7).
const CODEGEN_ORDER: [usize; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

const fn build_length_codes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut x = 0;
    while x < 256 {
        t[x] = if x == 255 {
            28
        } else if x < 8 {
            x as u8
        } else {
            let l = 31 - (x as u32).leading_zeros();
            (4 * (l - 1) + ((x as u32 >> (l - 2)) & 3)) as u8
        };
        x += 1;
    }
    t
}
/// Length code index (code - 257) of (length - 3).
pub const LENGTH_CODES: [u8; 256] = build_length_codes();

/// Distance code of (distance - 1).
#[inline]
pub fn offset_code(off: u32) -> u32 {
    if off < 4 {
        off
    } else {
        let l = 31 - off.leading_zeros();
        2 * l + ((off >> (l - 1)) & 1)
    }
}

/// A code: bit length in the low byte, bit-reversed code above it; 0 means "no code".
type HCode = u32;
#[inline]
fn hc(code: u16, len: u8) -> HCode {
    len as u32 | (code as u32) << 8
}
#[inline]
fn hlen(c: HCode) -> u32 {
    c & 0xff
}
#[inline]
fn hbits(c: HCode) -> u64 {
    (c >> 8) as u64
}
fn reverse_bits(number: u16, len: u8) -> u16 {
    (number << ((16 - len as u32) & 15)).reverse_bits()
}

/// Huffman code builder (length-limited, the Go "package merge"-style level walk).
#[derive(Clone)]
pub struct HuffEnc {
    pub codes: Vec<HCode>,
    list: Vec<(u16, u16)>, // (literal, freq)
}

impl HuffEnc {
    pub fn new(size: usize) -> HuffEnc {
        HuffEnc {
            codes: vec![0; size],
            list: Vec::with_capacity(LITERAL_COUNT + 1),
        }
    }

    fn fixed_literal() -> HuffEnc {
        let mut h = HuffEnc::new(LITERAL_COUNT);
        for ch in 0..LITERAL_COUNT as u16 {
            let (bits, size) = match ch {
                0..=143 => (ch + 48, 8),
                144..=255 => (ch + 400 - 144, 9),
                256..=279 => (ch - 256, 7),
                _ => (ch + 192 - 280, 8),
            };
            h.codes[ch as usize] = hc(reverse_bits(bits, size), size);
        }
        h
    }

    fn fixed_offset() -> HuffEnc {
        let mut h = HuffEnc::new(OFFSET_CODE_COUNT);
        for ch in 0..OFFSET_CODE_COUNT {
            h.codes[ch] = hc(reverse_bits(ch as u16, 5), 5);
        }
        h
    }

    pub fn bit_length(&self, freq: &[u16]) -> i64 {
        let mut total = 0i64;
        for (i, &f) in freq.iter().enumerate() {
            if f != 0 {
                total += f as i64 * hlen(self.codes[i]) as i64;
            }
        }
        total
    }

    /// Bits to code `freq` with these codes, or i32::MAX when a used symbol has no code.
    fn can_reuse_bits(&self, freq: &[u16]) -> i64 {
        let mut total = 0i64;
        for (i, &f) in freq.iter().enumerate() {
            if f != 0 {
                let c = self.codes[i];
                if c == 0 {
                    return i32::MAX as i64;
                }
                total += f as i64 * hlen(c) as i64;
            }
        }
        total
    }

    /// Builds codes for `freq` (codes of symbols past `freq.len()` are left as they were).
    pub fn generate(&mut self, freq: &[u16], max_bits: i32) {
        self.list.clear();
        for (i, &f) in freq.iter().enumerate() {
            if f != 0 {
                self.list.push((i as u16, f));
            } else {
                self.codes[i] = 0;
            }
        }
        if self.list.len() <= 2 {
            for i in 0..self.list.len() {
                let lit = self.list[i].0 as usize;
                self.codes[lit] = hc(i as u16, 1);
            }
            return;
        }
        // (freq, literal) is a total order, so any correct sort gives the same order.
        self.list.sort_unstable_by_key(|&(l, f)| (f, l));
        let (bit_count, max_bits) = self.bit_counts(max_bits);
        self.assign(&bit_count[..=max_bits as usize]);
    }

    #[allow(clippy::explicit_counter_loop)]
    fn bit_counts(&mut self, mut max_bits: i32) -> ([i32; 17], i32) {
        #[derive(Clone, Copy, Default)]
        struct Level {
            level: i32,
            last_freq: i32,
            next_char_freq: i32,
            next_pair_freq: i32,
            needed: i32,
        }
        const MAX: i32 = i32::MAX;
        let list = &mut self.list;
        let n = list.len() as i32;
        list.push((u16::MAX, u16::MAX));
        if max_bits > n - 1 {
            max_bits = n - 1;
        }
        let mut levels = [Level::default(); 17];
        let mut leaf = [[0i32; 17]; 17];
        let l2f = list[2].1 as i32;
        let l1f = list[1].1 as i32;
        let l0f = list[0].1 as i32 + list[1].1 as i32;
        for level in 1..=max_bits {
            levels[level as usize] = Level {
                level,
                last_freq: l1f,
                next_char_freq: l2f,
                next_pair_freq: if level == 1 { MAX } else { l0f },
                needed: 0,
            };
            leaf[level as usize][level as usize] = 2;
        }
        levels[max_bits as usize].needed = 2 * n - 4;
        let mut level = max_bits as usize;
        while level < 16 {
            let l = levels[level];
            if l.next_pair_freq == MAX && l.next_char_freq == MAX {
                levels[level].needed = 0;
                levels[level + 1].next_pair_freq = MAX;
                level += 1;
                continue;
            }
            let prev_freq = l.last_freq;
            let mut cur = l;
            if l.next_char_freq < l.next_pair_freq {
                let k = leaf[level][level] + 1;
                cur.last_freq = l.next_char_freq;
                leaf[level][level] = k;
                let e = list[k as usize];
                cur.next_char_freq = if e.0 < u16::MAX { e.1 as i32 } else { MAX };
            } else {
                cur.last_freq = l.next_pair_freq;
                let save = leaf[level][level];
                leaf[level] = leaf[level - 1];
                leaf[level][level] = save;
                levels[cur.level as usize - 1].needed = 2;
            }
            cur.needed -= 1;
            levels[level] = cur;
            if cur.needed == 0 {
                if cur.level == max_bits {
                    break;
                }
                levels[cur.level as usize + 1].next_pair_freq = prev_freq + cur.last_freq;
                level += 1;
            } else {
                while levels[level - 1].needed > 0 {
                    level -= 1;
                }
            }
        }
        list.pop();
        let mut bit_count = [0i32; 17];
        let counts = &leaf[max_bits as usize];
        let mut bits = 1;
        for level in (1..=max_bits as usize).rev() {
            bit_count[bits] = counts[level] - counts[level - 1];
            bits += 1;
        }
        (bit_count, max_bits)
    }

    fn assign(&mut self, bit_count: &[i32]) {
        let mut code: u16 = 0;
        let mut end = self.list.len();
        for (n, &bits) in bit_count.iter().enumerate() {
            code = code.wrapping_shl(1);
            if n == 0 || bits == 0 {
                continue;
            }
            let start = end - bits as usize;
            let chunk = &mut self.list[start..end];
            chunk.sort_unstable_by_key(|&(l, _)| l);
            for &(lit, _) in chunk.iter() {
                self.codes[lit as usize] = hc(reverse_bits(code, n as u8), n as u8);
                code = code.wrapping_add(1);
            }
            end = start;
        }
    }
}

/// Tokens of one block plus their histograms (as klauspost's `tokens`).
pub struct Tokens {
    pub lit_hist: [u16; 256],
    pub extra_hist: [u16; 32],
    pub off_hist: [u16; 32],
    pub toks: Vec<u32>,
}

impl Default for Tokens {
    fn default() -> Self {
        Tokens {
            lit_hist: [0; 256],
            extra_hist: [0; 32],
            off_hist: [0; 32],
            toks: Vec::with_capacity(MAX_STORE_BLOCK + 1),
        }
    }
}

impl Tokens {
    #[inline]
    pub fn n(&self) -> usize {
        self.toks.len()
    }

    pub fn reset(&mut self) {
        if self.toks.is_empty() {
            return;
        }
        self.toks.clear();
        self.lit_hist = [0; 256];
        self.extra_hist = [0; 32];
        self.off_hist = [0; 32];
    }

    #[inline]
    pub fn add_literal(&mut self, b: u8) {
        self.toks.push(b as u32);
        self.lit_hist[b as usize] = self.lit_hist[b as usize].wrapping_add(1);
    }

    #[inline]
    pub fn add_literals(&mut self, bs: &[u8]) {
        for &b in bs {
            self.add_literal(b);
        }
    }

    /// A match of any length (split into pieces of at most 258, never leaving less than 3).
    #[inline]
    pub fn add_match_long(&mut self, mut length: i32, xoffset: u32) {
        let oc = offset_code(xoffset);
        let off = xoffset | oc << 16;
        while length > 0 {
            let mut xl = length;
            if xl > 258 {
                xl = if xl > 258 + 3 { 258 } else { 258 - 3 };
            }
            length -= xl;
            let xl = (xl - 3) as u32;
            let lc = LENGTH_CODES[xl as usize] as usize + 1;
            self.extra_hist[lc] = self.extra_hist[lc].wrapping_add(1);
            self.off_hist[oc as usize] = self.off_hist[oc as usize].wrapping_add(1);
            self.toks.push(MATCH_TYPE | xl << LENGTH_SHIFT | off);
        }
    }

    pub fn add_eob(&mut self) {
        self.toks.push(END_BLOCK as u32);
        self.extra_hist[0] = self.extra_hist[0].wrapping_add(1);
    }

    /// Shannon-style size estimate with klauspost's float32 log2 approximation.
    pub fn estimated_bits(&self) -> i64 {
        let mut shannon = 0f32;
        let mut bits = 0i64;
        let mut n_matches = 0i64;
        let total = self.n();
        if total > 0 {
            let inv = 1.0f32 / total as f32;
            for &v in self.lit_hist.iter() {
                if v > 0 {
                    let n = v as f32;
                    shannon += at_least_one(-fast_log2(n * inv)) * n;
                }
            }
            shannon += 15.0;
            for (i, &v) in self.extra_hist[1..LITERAL_COUNT - 256].iter().enumerate() {
                if v > 0 {
                    let n = v as f32;
                    shannon += at_least_one(-fast_log2(n * inv)) * n;
                    bits += LENGTH_EXTRA_BITS[i & 31] as i64 * v as i64;
                    n_matches += v as i64;
                }
            }
        }
        if n_matches > 0 {
            let inv = 1.0f32 / n_matches as f32;
            for (i, &v) in self.off_hist[..OFFSET_CODE_COUNT].iter().enumerate() {
                if v > 0 {
                    let n = v as f32;
                    shannon += at_least_one(-fast_log2(n * inv)) * n;
                    bits += OFFSET_EXTRA_BITS[i & 31] as i64 * v as i64;
                }
            }
        }
        shannon as i32 as i64 + bits
    }
}

fn at_least_one(v: f32) -> f32 {
    v.clamp(1.0, 15.0)
}

fn fast_log2(val: f32) -> f32 {
    let mut ux = val.to_bits() as i32;
    let mut log2 = (((ux >> 23) & 255) - 128) as f32;
    ux &= -0x7f80_0001;
    ux += 127 << 23;
    let uval = f32::from_bits(ux as u32);
    let a = -0.344_848_43f32 * uval;
    let b = a + 2.024_665_8f32;
    let c = b * uval;
    log2 += c - 0.674_877_6f32;
    log2
}

fn histogram(b: &[u8], h: &mut [u16]) {
    for &t in b {
        h[t as usize] = h[t as usize].wrapping_add(1);
    }
}

/// The block writer: bits go LSB-first into `out`.
pub struct BitWriter {
    pub out: Vec<u8>,
    bits: u64,
    nbits: u32,
    last_huffman: bool,
    lit_enc: HuffEnc,
    tmp_lit_enc: HuffEnc,
    off_enc: HuffEnc,
    codegen_enc: HuffEnc,
    last_header: i64,
    pub log_new_table_penalty: u32,
    /// 1.18.2 and later: see `Variant::always_eob`.
    pub always_eob: bool,
    literal_freq: [u16; LENGTH_CODES_START + 32],
    offset_freq: [u16; 32],
    codegen_freq: [u16; CODEGEN_COUNT],
    codegen: [u8; LITERAL_COUNT + OFFSET_CODE_COUNT + 1],
    fixed_lit: HuffEnc,
    fixed_off: HuffEnc,
    huff_off: HuffEnc,
}

impl BitWriter {
    pub fn new(out: Vec<u8>) -> BitWriter {
        let mut huff_off = HuffEnc::new(OFFSET_CODE_COUNT);
        let mut f = [0u16; OFFSET_CODE_COUNT];
        f[0] = 1;
        huff_off.generate(&f, 15);
        BitWriter {
            out,
            bits: 0,
            nbits: 0,
            last_huffman: false,
            lit_enc: HuffEnc::new(LITERAL_COUNT),
            tmp_lit_enc: HuffEnc::new(LITERAL_COUNT),
            off_enc: HuffEnc::new(OFFSET_CODE_COUNT),
            codegen_enc: HuffEnc::new(CODEGEN_COUNT),
            last_header: 0,
            log_new_table_penalty: 0,
            always_eob: false,
            literal_freq: [0; LENGTH_CODES_START + 32],
            offset_freq: [0; 32],
            codegen_freq: [0; CODEGEN_COUNT],
            codegen: [0; LITERAL_COUNT + OFFSET_CODE_COUNT + 1],
            fixed_lit: HuffEnc::fixed_literal(),
            fixed_off: HuffEnc::fixed_offset(),
            huff_off,
        }
    }

    #[inline]
    fn write_bits(&mut self, b: u64, nb: u32) {
        self.bits |= b << (self.nbits & 63);
        self.nbits += nb;
        if self.nbits >= 48 {
            self.out.extend_from_slice(&self.bits.to_le_bytes()[..6]);
            self.bits >>= 48;
            self.nbits -= 48;
        }
    }

    #[inline]
    fn write_code(&mut self, c: HCode) {
        self.write_bits(hbits(c), hlen(c));
    }

    fn write_eob_owed(&mut self) {
        if self.last_header > 0 {
            let c = self.lit_enc.codes[END_BLOCK];
            self.write_code(c);
            self.last_header = 0;
        }
    }

    /// Pads to a byte boundary and moves all pending bits to `out`.
    pub fn flush(&mut self) {
        self.write_eob_owed();
        while self.nbits > 0 {
            self.out.push(self.bits as u8);
            self.bits >>= 8;
            self.nbits = self.nbits.saturating_sub(8);
        }
        self.bits = 0;
    }

    fn write_bytes(&mut self, b: &[u8]) {
        debug_assert!(self.nbits & 7 == 0);
        while self.nbits > 0 {
            self.out.push(self.bits as u8);
            self.bits >>= 8;
            self.nbits -= 8;
        }
        self.out.extend_from_slice(b);
    }

    pub fn write_stored_header(&mut self, length: usize, eof: bool) {
        self.write_eob_owed();
        if length == 0 && eof {
            self.write_fixed_header(true);
            self.write_bits(0, 7);
            self.flush();
            return;
        }
        self.write_bits(eof as u64, 3);
        self.flush();
        self.write_bits(length as u64, 16);
        self.write_bits(!(length as u16) as u64, 16);
    }

    /// A stored block holding `buf`.
    pub fn write_stored(&mut self, buf: &[u8]) {
        self.write_stored_header(buf.len(), false);
        self.write_bytes(buf);
    }

    fn write_fixed_header(&mut self, eof: bool) {
        self.write_eob_owed();
        self.write_bits(if eof { 3 } else { 2 }, 3);
    }

    #[allow(clippy::needless_range_loop)] // mirrors the producer's index loops, kept for review
    fn generate_codegen(&mut self, num_literals: usize, num_offsets: usize, huff_only: bool) {
        self.codegen_freq = [0; CODEGEN_COUNT];
        let cg = &mut self.codegen;
        for i in 0..num_literals {
            cg[i] = hlen(self.lit_enc.codes[i]) as u8;
        }
        let off = if huff_only { &self.huff_off } else { &self.off_enc };
        for i in 0..num_offsets {
            cg[num_literals + i] = hlen(off.codes[i]) as u8;
        }
        cg[num_literals + num_offsets] = BAD_CODE;
        let freq = &mut self.codegen_freq;
        let mut size = cg[0];
        let mut count: i32 = 1;
        let mut out = 0usize;
        let mut inp = 1usize;
        while size != BAD_CODE {
            let next = cg[inp];
            inp += 1;
            if next == size {
                count += 1;
                continue;
            }
            if size != 0 {
                cg[out] = size;
                out += 1;
                freq[size as usize] += 1;
                count -= 1;
                while count >= 3 {
                    let n = count.min(6);
                    cg[out] = 16;
                    cg[out + 1] = (n - 3) as u8;
                    out += 2;
                    freq[16] += 1;
                    count -= n;
                }
            } else {
                while count >= 11 {
                    let n = count.min(138);
                    cg[out] = 18;
                    cg[out + 1] = (n - 11) as u8;
                    out += 2;
                    freq[18] += 1;
                    count -= n;
                }
                if count >= 3 {
                    cg[out] = 17;
                    cg[out + 1] = (count - 3) as u8;
                    out += 2;
                    freq[17] += 1;
                    count = 0;
                }
            }
            count -= 1;
            while count >= 0 {
                cg[out] = size;
                out += 1;
                freq[size as usize] += 1;
                count -= 1;
            }
            size = next;
            count = 1;
        }
        cg[out] = BAD_CODE;
    }

    fn num_codegens(&self) -> usize {
        let mut n = CODEGEN_COUNT;
        while n > 4 && self.codegen_freq[CODEGEN_ORDER[n - 1]] == 0 {
            n -= 1;
        }
        n
    }

    fn header_size(&self) -> (i64, usize) {
        let n = self.num_codegens();
        let f = &self.codegen_freq;
        (
            3 + 5
                + 5
                + 4
                + 3 * n as i64
                + self.codegen_enc.bit_length(f)
                + f[16] as i64 * 2
                + f[17] as i64 * 3
                + f[18] as i64 * 7,
            n,
        )
    }

    fn extra_bit_size(&self) -> i64 {
        let mut total = 0i64;
        for (i, &n) in self.literal_freq[257..LITERAL_COUNT].iter().enumerate() {
            total += n as i64 * LENGTH_EXTRA_BITS[i & 31] as i64;
        }
        for (i, &n) in self.offset_freq[..OFFSET_CODE_COUNT].iter().enumerate() {
            total += n as i64 * OFFSET_EXTRA_BITS[i & 31] as i64;
        }
        total
    }

    fn fixed_size(&self, extra: i64) -> i64 {
        3 + self.fixed_lit.bit_length(&self.literal_freq) + self.fixed_off.bit_length(&self.offset_freq) + extra
    }

    fn stored_size(input: Option<&[u8]>) -> (i64, bool) {
        match input {
            Some(b) if b.len() <= MAX_STORE_BLOCK => ((b.len() as i64 + 5) * 8, true),
            _ => (0, false),
        }
    }

    fn write_dynamic_header(&mut self, num_literals: usize, num_offsets: usize, num_codegens: usize, eof: bool) {
        self.write_bits(if eof { 5 } else { 4 }, 3);
        self.write_bits((num_literals - 257) as u64, 5);
        self.write_bits((num_offsets - 1) as u64, 5);
        self.write_bits((num_codegens - 4) as u64, 4);
        for &o in CODEGEN_ORDER.iter().take(num_codegens) {
            let v = hlen(self.codegen_enc.codes[o]);
            self.write_bits(v as u64, 3);
        }
        let mut i = 0;
        loop {
            let cw = self.codegen[i];
            i += 1;
            if cw == BAD_CODE {
                break;
            }
            let c = self.codegen_enc.codes[cw as usize];
            self.write_code(c);
            let extra = match cw {
                16 => 2,
                17 => 3,
                18 => 7,
                _ => 0,
            };
            if extra > 0 {
                let v = self.codegen[i] as u64;
                i += 1;
                self.write_bits(v, extra);
            }
        }
    }

    fn can_reuse(&self, t: &Tokens) -> bool {
        let off = &self.off_enc.codes;
        for (i, &v) in t.off_hist[..OFFSET_CODE_COUNT].iter().enumerate() {
            if v != 0 && off[i] == 0 {
                return false;
            }
        }
        let lit = &self.lit_enc.codes;
        for (i, &v) in t.extra_hist[..LITERAL_COUNT - 256].iter().enumerate() {
            if v != 0 && lit[256 + i] == 0 {
                return false;
            }
        }
        for (i, &v) in t.lit_hist.iter().enumerate() {
            if v != 0 && lit[i] == 0 {
                return false;
            }
        }
        true
    }

    /// Copies the histograms; the alphabet sizes to send (all of them when `filled`: a table that may be reused).
    fn index_tokens(&mut self, t: &Tokens, filled: bool) -> (usize, usize) {
        self.literal_freq[..256].copy_from_slice(&t.lit_hist);
        self.literal_freq[256..288].copy_from_slice(&t.extra_hist);
        self.offset_freq = t.off_hist;
        if t.n() == 0 {
            return (0, 0);
        }
        if filled {
            return (LITERAL_COUNT, OFFSET_CODE_COUNT);
        }
        self.used_sizes()
    }

    /// The alphabet sizes up to the highest used code (at least one distance code, counted if none is).
    fn used_sizes(&mut self) -> (usize, usize) {
        let mut nl = self.literal_freq.len();
        while self.literal_freq[nl - 1] == 0 {
            nl -= 1;
        }
        let mut no = self.offset_freq.len();
        while no > 0 && self.offset_freq[no - 1] == 0 {
            no -= 1;
        }
        if no == 0 {
            self.offset_freq[0] = 1;
            no = 1;
        }
        (nl, no)
    }

    /// The 1.18.2+ indexing for dynamic blocks: end-of-block counted once whatever the tokens hold, and
    /// the alphabet sizes trimmed to the highest code in use, flushed or not.
    fn index_tokens_with_eob(&mut self, t: &Tokens) -> (usize, usize) {
        if t.n() == 0 {
            return self.index_tokens(t, false);
        }
        // (copies the histograms; the sizes it returns are not the ones wanted here)
        self.index_tokens(t, true);
        self.literal_freq[END_BLOCK] = 1;
        self.used_sizes()
    }

    fn generate(&mut self) {
        self.lit_enc.generate(&self.literal_freq[..LITERAL_COUNT], 15);
        self.off_enc.generate(&self.offset_freq[..OFFSET_CODE_COUNT], 15);
    }

    /// `writeBlockDynamic` (eof is always false in the flate writer's callers).
    pub fn write_block_dynamic(&mut self, tokens: &mut Tokens, input: Option<&[u8]>, sync: bool) {
        let eof = false;
        if sync {
            tokens.add_eob();
        }
        if self.last_huffman && self.last_header > 0 {
            let c = self.lit_enc.codes[END_BLOCK];
            self.write_code(c);
            self.last_header = 0;
            self.last_huffman = false;
        }
        if self.last_header > 0 && !self.can_reuse(tokens) {
            let c = self.lit_enc.codes[END_BLOCK];
            self.write_code(c);
            self.last_header = 0;
        }
        let (num_literals, num_offsets) = if self.always_eob {
            self.index_tokens_with_eob(tokens)
        } else {
            self.index_tokens(tokens, !sync)
        };
        let mut extra = 0;
        let (ssize, storable) = Self::stored_size(input);
        if storable || self.last_header > 0 {
            extra = self.extra_bit_size();
        }
        let mut size;
        if self.last_header > 0 {
            let mut new_size = self.last_header + tokens.estimated_bits();
            new_size += hlen(self.lit_enc.codes[END_BLOCK]) as i64 + (new_size >> self.log_new_table_penalty);
            let reuse_size =
                self.lit_enc.bit_length(&self.literal_freq) + self.off_enc.bit_length(&self.offset_freq) + extra;
            if new_size < reuse_size {
                let c = self.lit_enc.codes[END_BLOCK];
                self.write_code(c);
                size = new_size;
                self.last_header = 0;
            } else {
                size = reuse_size;
            }
            if tokens.n() < MAX_PREDEFINED_TOKENS {
                let pre = self.fixed_size(extra) + 7;
                if pre < size {
                    if storable && ssize <= size {
                        self.write_stored_header(input.unwrap().len(), eof);
                        self.write_bytes(input.unwrap());
                        return;
                    }
                    self.write_fixed_header(eof);
                    if !sync {
                        tokens.add_eob();
                    }
                    self.write_tokens(tokens, true);
                    return;
                }
            }
            if storable && ssize <= size {
                self.write_stored_header(input.unwrap().len(), eof);
                self.write_bytes(input.unwrap());
                return;
            }
        }
        if self.last_header == 0 {
            self.literal_freq[END_BLOCK] = 1;
            self.generate();
            self.generate_codegen(num_literals, num_offsets, false);
            self.codegen_enc.generate(&self.codegen_freq, 7);
            let (header, num_codegens) = self.header_size();
            size = header
                + self.lit_enc.bit_length(&self.literal_freq)
                + self.off_enc.bit_length(&self.offset_freq)
                + extra;
            if tokens.n() < MAX_PREDEFINED_TOKENS {
                let pre = self.fixed_size(extra);
                if pre <= size {
                    if storable && ssize <= pre {
                        self.write_stored_header(input.unwrap().len(), eof);
                        self.write_bytes(input.unwrap());
                        return;
                    }
                    self.write_fixed_header(eof);
                    if !sync {
                        tokens.add_eob();
                    }
                    self.write_tokens(tokens, true);
                    return;
                }
            }
            if storable && ssize <= size {
                self.write_stored_header(input.unwrap().len(), eof);
                self.write_bytes(input.unwrap());
                return;
            }
            self.write_dynamic_header(num_literals, num_offsets, num_codegens, eof);
            if !sync {
                self.last_header = self.header_size().0;
            }
            self.last_huffman = false;
        }
        if sync {
            self.last_header = 0;
        }
        self.write_tokens(tokens, false);
    }

    fn write_tokens(&mut self, tokens: &Tokens, fixed: bool) {
        let (le, oe) = if fixed {
            (&self.fixed_lit.codes, &self.fixed_off.codes)
        } else {
            (&self.lit_enc.codes, &self.off_enc.codes)
        };
        let mut toks = &tokens.toks[..];
        if toks.is_empty() {
            return;
        }
        let mut defer_eob = false;
        if *toks.last().unwrap() == END_BLOCK as u32 {
            toks = &toks[..toks.len() - 1];
            defer_eob = true;
        }
        let (mut bits, mut nbits) = (self.bits, self.nbits);
        let out = &mut self.out;
        macro_rules! put {
            ($v:expr, $n:expr) => {
                bits |= ($v) << (nbits & 63);
                nbits += $n;
                if nbits >= 48 {
                    out.extend_from_slice(&bits.to_le_bytes()[..6]);
                    bits >>= 48;
                    nbits -= 48;
                }
            };
        }
        for &t in toks {
            if t < 256 {
                let c = le[t as usize];
                put!(hbits(c), hlen(c));
                continue;
            }
            let length = (t >> LENGTH_SHIFT) as u8;
            let lc = (LENGTH_CODES[length as usize] & 31) as usize;
            let c = le[LENGTH_CODES_START + lc];
            put!(hbits(c), hlen(c));
            if lc >= 8 {
                let eb = LENGTH_EXTRA_BITS[lc] as u32;
                put!((length - LENGTH_BASE[lc]) as u64, eb);
            }
            let offset = t & OFFSET_MASK;
            let oc = ((offset >> 16) & 31) as usize;
            let c = oe[oc];
            put!(hbits(c), hlen(c));
            if oc >= 4 {
                put!(
                    ((offset - OFFSET_BASE[oc]) & 0xffff) as u64,
                    OFFSET_EXTRA_BITS[oc] as u32
                );
            }
        }
        self.bits = bits;
        self.nbits = nbits;
        if defer_eob {
            let c = le[END_BLOCK];
            self.write_code(c);
        }
    }

    /// `writeBlockHuff`: literals only (or stored when it does not pay).
    pub fn write_block_huff(&mut self, input: &[u8], sync: bool) {
        let eof = false;
        self.literal_freq = [0; LENGTH_CODES_START + 32];
        if !self.last_huffman {
            self.offset_freq = [0; 32];
        }
        const NUM_LITERALS: usize = END_BLOCK + 1;
        const GUESS_HEADER_BITS: i64 = 70 * 8;
        histogram(input, &mut self.literal_freq[..NUM_LITERALS]);
        let (ssize, storable) = Self::stored_size(Some(input));
        if storable && input.len() > 1024 {
            let mut abs = 0f64;
            let avg = input.len() as f64 / 256.0;
            let max = (input.len() * 2) as f64;
            for &v in &self.literal_freq[..256] {
                let d = v as f64 - avg;
                abs += d * d;
                if abs > max {
                    break;
                }
            }
            if abs < max {
                self.write_stored_header(input.len(), eof);
                self.write_bytes(input);
                return;
            }
        }
        self.literal_freq[END_BLOCK] = 1;
        self.tmp_lit_enc.generate(&self.literal_freq[..NUM_LITERALS], 15);
        let mut est = self.tmp_lit_enc.can_reuse_bits(&self.literal_freq[..NUM_LITERALS]);
        if est < i32::MAX as i64 {
            est += self.last_header;
            if self.last_header == 0 {
                est += GUESS_HEADER_BITS;
            }
            est += est >> self.log_new_table_penalty;
        }
        if storable && ssize <= est {
            self.write_stored_header(input.len(), eof);
            self.write_bytes(input);
            return;
        }
        if self.last_header > 0 {
            let reuse = self.lit_enc.can_reuse_bits(&self.literal_freq[..256]);
            if est < reuse {
                let c = self.lit_enc.codes[END_BLOCK];
                self.write_code(c);
                self.last_header = 0;
            }
        }
        if self.last_header == 0 {
            std::mem::swap(&mut self.lit_enc, &mut self.tmp_lit_enc);
            self.generate_codegen(NUM_LITERALS, 1, true);
            self.codegen_enc.generate(&self.codegen_freq, 7);
            let n = self.num_codegens();
            self.write_dynamic_header(NUM_LITERALS, 1, n, eof);
            self.last_huffman = true;
            self.last_header = self.header_size().0;
        }
        let enc = &self.lit_enc.codes;
        let (mut bits, mut nbits) = (self.bits, self.nbits);
        let out = &mut self.out;
        for &t in input {
            let c = enc[t as usize];
            bits |= hbits(c) << (nbits & 63);
            nbits += hlen(c);
            if nbits >= 48 {
                out.extend_from_slice(&bits.to_le_bytes()[..6]);
                bits >>= 48;
                nbits -= 48;
            }
        }
        self.bits = bits;
        self.nbits = nbits;
        if eof || sync {
            let c = self.lit_enc.codes[END_BLOCK];
            self.write_code(c);
            self.last_header = 0;
            self.last_huffman = false;
        }
    }
}
