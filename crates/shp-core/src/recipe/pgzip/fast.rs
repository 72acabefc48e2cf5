//! klauspost/compress flate's fast match finders (levels 1–6): single-pass hash-table encoders that keep up
//! to 32 KiB of history across the ≤ 64 KiB chunks the flate writer hands them.

use super::huff::Tokens;

const TABLE_BITS: u32 = 15;
const TABLE_SIZE: usize = 1 << TABLE_BITS;
const B_TABLE_BITS: u32 = 17;
const B_TABLE_SIZE: usize = 1 << B_TABLE_BITS;
const L3_TABLE_BITS: u32 = 16;
const L3_TABLE_SIZE: usize = 1 << L3_TABLE_BITS;
const MAX_MATCH_OFFSET: i32 = 1 << 15;
const MAX_MATCH_LENGTH: i32 = 258;
const MAX_STORE_BLOCK: i32 = 65535;
const ALLOC_HISTORY: usize = MAX_STORE_BLOCK as usize * 5;
const BUFFER_RESET: i32 = i32::MAX - ALLOC_HISTORY as i32 - MAX_STORE_BLOCK - 1;
const INPUT_MARGIN: i32 = 12 - 1;
const MIN_NON_LITERAL_BLOCK: usize = 1 + 1 + INPUT_MARGIN as usize;

const PRIME3: u32 = 506_832_829;
const PRIME4: u32 = 2_654_435_761;
const PRIME5: u64 = 889_523_592_379;
const PRIME7: u64 = 58_295_818_150_454_627;

#[inline(always)]
fn load64(b: &[u8], i: i32) -> u64 {
    u64::from_le_bytes(b[i as usize..i as usize + 8].try_into().unwrap())
}
#[inline(always)]
fn load32(b: &[u8], i: i32) -> u32 {
    u32::from_le_bytes(b[i as usize..i as usize + 4].try_into().unwrap())
}
#[inline(always)]
fn hash4(u: u64, bits: u32) -> u32 {
    (u as u32).wrapping_mul(PRIME4) >> (32 - bits)
}
#[inline(always)]
fn hash5(u: u64, bits: u32) -> u32 {
    ((u << 24).wrapping_mul(PRIME5) >> (64 - bits)) as u32
}
#[inline(always)]
fn hash7(u: u64, bits: u32) -> u32 {
    ((u << 8).wrapping_mul(PRIME7) >> (64 - bits)) as u32
}
#[allow(dead_code)]
#[inline(always)]
fn hash3(u: u64, bits: u32) -> u32 {
    ((u as u32) << 8).wrapping_mul(PRIME3) >> (32 - bits)
}

/// Length of the common prefix of `a` and `b` (a no longer than b).
#[inline(always)]
pub fn match_len(a: &[u8], b: &[u8]) -> usize {
    let mut n = 0;
    while a.len() - n >= 8 {
        let x = u64::from_le_bytes(a[n..n + 8].try_into().unwrap());
        let y = u64::from_le_bytes(b[n..n + 8].try_into().unwrap());
        let d = x ^ y;
        if d != 0 {
            return n + (d.trailing_zeros() >> 3) as usize;
        }
        n += 8;
    }
    while n < a.len() {
        if a[n] != b[n] {
            return n;
        }
        n += 1;
    }
    n
}

/// History shared by all fast levels: `hist` holds earlier input, `cur` offsets table entries.
struct Gen {
    hist: Vec<u8>,
    cur: i32,
}

impl Gen {
    fn new() -> Gen {
        // What a pooled writer has right after its first Reset; any value ≥ 32 KiB makes empty entries unusable.
        Gen {
            hist: Vec::with_capacity(ALLOC_HISTORY),
            cur: MAX_STORE_BLOCK + MAX_MATCH_OFFSET,
        }
    }

    fn add_block(&mut self, src: &[u8]) -> i32 {
        if self.hist.len() + src.len() > ALLOC_HISTORY {
            let offset = self.hist.len() - MAX_MATCH_OFFSET as usize;
            self.hist.copy_within(offset.., 0);
            self.cur += offset as i32;
            self.hist.truncate(MAX_MATCH_OFFSET as usize);
        }
        let s = self.hist.len() as i32;
        self.hist.extend_from_slice(src);
        s
    }

    /// Bounded match length: at most 258 - 4 from `s`.
    #[inline(always)]
    fn matchlen(&self, s: i32, t: i32) -> i32 {
        let src = &self.hist;
        let s1 = (s as usize + MAX_MATCH_LENGTH as usize - 4).min(src.len());
        match_len(&src[s as usize..s1], &src[t as usize..]) as i32
    }

    #[inline(always)]
    fn matchlen_long(&self, s: i32, t: i32) -> i32 {
        let src = &self.hist;
        match_len(&src[s as usize..], &src[t as usize..]) as i32
    }

    /// Rebases single-entry tables when `cur` nears overflow (after ~2 GiB through one writer).
    fn rebase(&mut self, tables: &mut [&mut [i32]], pairs: &mut [&mut [(i32, i32)]], pair_cur_gates_prev: bool) {
        while self.cur >= BUFFER_RESET {
            if self.hist.is_empty() {
                for t in tables.iter_mut() {
                    t.fill(0);
                }
                for t in pairs.iter_mut() {
                    t.fill((0, 0));
                }
                self.cur = MAX_MATCH_OFFSET;
                break;
            }
            let min_off = self.cur + self.hist.len() as i32 - MAX_MATCH_OFFSET;
            let cur = self.cur;
            let fix = |v: i32| if v <= min_off { 0 } else { v - cur + MAX_MATCH_OFFSET };
            for t in tables.iter_mut() {
                for v in t.iter_mut() {
                    *v = fix(*v);
                }
            }
            for t in pairs.iter_mut() {
                for v in t.iter_mut() {
                    if pair_cur_gates_prev && v.0 <= min_off {
                        *v = (0, 0);
                    } else {
                        *v = (fix(v.0), fix(v.1));
                    }
                }
            }
            self.cur = MAX_MATCH_OFFSET;
        }
    }
}

/// Which klauspost/compress generation to reproduce (see `super::Class`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// 1.15.12 … 1.17.11.
    V1_15,
    /// 1.18.0: level 4's second look at the next position's long candidate measures it at the wrong place
    /// (see [`Variant::l4_next_at_distance`]); everything else as `V1_15`.
    V1_18_0,
    /// 1.18.2 and later: 1.18.0's level 4, and the block writer differs (a dynamic block that is not the last
    /// before a flush announces exactly the codes it uses, and end-of-block always counts in the size
    /// estimates) — see [`Variant::always_eob`].
    V1_18_2,
}

impl Variant {
    /// Whether `writeBlockDynamic` always counts end-of-block and sizes the alphabets exactly (1.18.2 on),
    /// rather than announcing all 286 literal/length and 30 distance codes for a block that is not flushed.
    pub fn always_eob(self) -> bool {
        match self {
            Variant::V1_15 | Variant::V1_18_0 => false,
            Variant::V1_18_2 => true,
        }
    }

    /// Since 1.18.0, level 4 compares the next position's long candidate by the match length found at the
    /// candidate's *distance* taken as a position (`src[nextS-lOff+4:]` after `lOff` became the candidate's
    /// position): the comparison still decides which match is kept, so it changes the bytes.
    pub fn l4_next_at_distance(self) -> bool {
        !matches!(self, Variant::V1_15)
    }
}

pub struct FastEnc {
    level: u8,
    #[allow(dead_code)]
    variant: Variant,
    g: Gen,
    table: Vec<i32>,
    btable: Vec<i32>,
    ptable: Vec<(i32, i32)>, // (cur, prev)
}

impl FastEnc {
    pub fn new(level: u8, variant: Variant) -> FastEnc {
        let (t, b, p) = match level {
            1 => (TABLE_SIZE, 0, 0),
            2 => (B_TABLE_SIZE, 0, 0),
            3 => (0, 0, L3_TABLE_SIZE),
            4 => (TABLE_SIZE, TABLE_SIZE, 0),
            5 | 6 => (TABLE_SIZE, 0, TABLE_SIZE),
            _ => panic!("fast level {level}"),
        };
        FastEnc {
            level,
            variant,
            g: Gen::new(),
            table: vec![0; t],
            btable: vec![0; b],
            ptable: vec![(0, 0); p],
        }
    }

    /// A fresh encoder of the same kind (what `Reset` amounts to: every old entry out of reach).
    pub fn new_like(other: &FastEnc) -> FastEnc {
        FastEnc::new(other.level, other.variant)
    }

    /// Encodes `src` (appended to the history) into `dst`.
    pub fn encode(&mut self, dst: &mut Tokens, src: &[u8]) {
        {
            let (g, t, b, p) = (&mut self.g, &mut self.table, &mut self.btable, &mut self.ptable);
            g.rebase(&mut [t, b], &mut [p], self.level >= 5);
        }
        let s = self.g.add_block(src);
        if src.len() < MIN_NON_LITERAL_BLOCK {
            // The caller stores or Huffman-codes such chunks; the count is only for the dictionary path.
            return;
        }
        match self.level {
            1 => self.l1(dst, s),
            2 => self.l2(dst, s),
            3 => self.l3(dst, s),
            4 => self.l4(dst, s),
            5 => self.l5(dst, s),
            _ => self.l6(dst, s),
        }
    }

    fn emit_remainder(&self, dst: &mut Tokens, next_emit: i32) {
        let src = &self.g.hist;
        if (next_emit as usize) < src.len() {
            if dst.n() == 0 {
                return;
            }
            dst.add_literals(&src[next_emit as usize..]);
        }
    }

    fn l1(&mut self, dst: &mut Tokens, mut s: i32) {
        let src = &self.g.hist;
        let cur = self.g.cur;
        let table = &mut self.table;
        let mut next_emit = s;
        let s_limit = src.len() as i32 - INPUT_MARGIN;
        let mut cv = load64(src, s);
        'outer: loop {
            let mut next_s;
            let mut candidate;
            loop {
                let mut nh = hash5(cv, TABLE_BITS) as usize;
                candidate = table[nh];
                next_s = s + 2 + ((s - next_emit) >> 5);
                if next_s > s_limit {
                    break 'outer;
                }
                let mut now = load64(src, next_s);
                table[nh] = s + cur;
                nh = hash5(now, TABLE_BITS) as usize;
                let offset = s - (candidate - cur);
                if offset < MAX_MATCH_OFFSET && cv as u32 == load32(src, candidate - cur) {
                    table[nh] = next_s + cur;
                    break;
                }
                cv = now;
                s = next_s;
                next_s += 1;
                candidate = table[nh];
                now >>= 8;
                table[nh] = s + cur;
                let offset = s - (candidate - cur);
                if offset < MAX_MATCH_OFFSET && cv as u32 == load32(src, candidate - cur) {
                    table[nh] = next_s + cur;
                    break;
                }
                cv = now;
                s = next_s;
            }
            loop {
                let mut t = candidate - cur;
                let mut l = match_len(&src[s as usize + 4..], &src[t as usize + 4..]) as i32 + 4;
                while t > 0 && s > next_emit && src[t as usize - 1] == src[s as usize - 1] {
                    s -= 1;
                    t -= 1;
                    l += 1;
                }
                if next_emit < s {
                    dst.add_literals(&src[next_emit as usize..s as usize]);
                }
                dst.add_match_long(l, (s - t - 1) as u32);
                s += l;
                next_emit = s;
                if next_s >= s {
                    s = next_s + 1;
                }
                if s >= s_limit {
                    if ((s + l + 8) as usize) < src.len() {
                        let cv = load64(src, s);
                        table[hash5(cv, TABLE_BITS) as usize] = s + cur;
                    }
                    break 'outer;
                }
                let x = load64(src, s - 2);
                let o = cur + s - 2;
                table[hash5(x, TABLE_BITS) as usize] = o;
                let x = x >> 16;
                let ch = hash5(x, TABLE_BITS) as usize;
                candidate = table[ch];
                table[ch] = o + 2;
                let offset = s - (candidate - cur);
                if offset > MAX_MATCH_OFFSET || x as u32 != load32(src, candidate - cur) {
                    cv = x >> 8;
                    s += 1;
                    break;
                }
            }
        }
        self.emit_remainder(dst, next_emit);
    }

    fn l2(&mut self, dst: &mut Tokens, mut s: i32) {
        let src = &self.g.hist;
        let cur = self.g.cur;
        let table = &mut self.table;
        let mut next_emit = s;
        let s_limit = src.len() as i32 - INPUT_MARGIN;
        let mut cv = load64(src, s);
        'outer: loop {
            let mut next_s = s;
            let mut candidate;
            loop {
                let mut nh = hash5(cv, B_TABLE_BITS) as usize;
                s = next_s;
                next_s = s + 2 + ((s - next_emit) >> 5);
                if next_s > s_limit {
                    break 'outer;
                }
                candidate = table[nh];
                let mut now = load64(src, next_s);
                table[nh] = s + cur;
                nh = hash5(now, B_TABLE_BITS) as usize;
                let offset = s - (candidate - cur);
                if offset < MAX_MATCH_OFFSET && cv as u32 == load32(src, candidate - cur) {
                    table[nh] = next_s + cur;
                    break;
                }
                cv = now;
                s = next_s;
                next_s += 1;
                candidate = table[nh];
                now >>= 8;
                table[nh] = s + cur;
                let offset = s - (candidate - cur);
                if offset < MAX_MATCH_OFFSET && cv as u32 == load32(src, candidate - cur) {
                    break;
                }
                cv = now;
            }
            loop {
                let mut t = candidate - cur;
                let mut l = self.g.matchlen_long(s + 4, t + 4) + 4;
                while t > 0 && s > next_emit && src[t as usize - 1] == src[s as usize - 1] {
                    s -= 1;
                    t -= 1;
                    l += 1;
                }
                if next_emit < s {
                    dst.add_literals(&src[next_emit as usize..s as usize]);
                }
                dst.add_match_long(l, (s - t - 1) as u32);
                s += l;
                next_emit = s;
                if next_s >= s {
                    s = next_s + 1;
                }
                if s >= s_limit {
                    if ((s + l + 8) as usize) < src.len() {
                        let cv = load64(src, s);
                        table[hash5(cv, B_TABLE_BITS) as usize] = s + cur;
                    }
                    break 'outer;
                }
                let mut i = s - l + 2;
                while i < s - 5 {
                    let x = load64(src, i);
                    table[hash5(x, B_TABLE_BITS) as usize] = cur + i;
                    table[hash5(x >> 16, B_TABLE_BITS) as usize] = cur + i + 2;
                    table[hash5(x >> 32, B_TABLE_BITS) as usize] = cur + i + 4;
                    i += 7;
                }
                let x = load64(src, s - 2);
                let o = cur + s - 2;
                table[hash5(x, B_TABLE_BITS) as usize] = o;
                table[hash5(x >> 8, B_TABLE_BITS) as usize] = o + 1;
                let ch = hash5(x >> 16, B_TABLE_BITS) as usize;
                candidate = table[ch];
                table[ch] = o + 2;
                let offset = s - (candidate - cur);
                if offset > MAX_MATCH_OFFSET || (x >> 16) as u32 != load32(src, candidate - cur) {
                    cv = x >> 24;
                    s += 1;
                    break;
                }
            }
        }
        self.emit_remainder(dst, next_emit);
    }

    fn l3(&mut self, dst: &mut Tokens, mut s: i32) {
        let src = &self.g.hist;
        let cur = self.g.cur;
        let table = &mut self.ptable;
        let mut next_emit = s;
        let s_limit = src.len() as i32 - INPUT_MARGIN;
        let mut cv = load64(src, s);
        'outer: loop {
            let mut next_s = s;
            let mut candidate;
            loop {
                let nh = hash5(cv, L3_TABLE_BITS) as usize;
                s = next_s;
                next_s = s + 1 + ((s - next_emit) >> 7);
                if next_s > s_limit {
                    break 'outer;
                }
                let cands = table[nh];
                let now = load64(src, next_s);
                let min_offset = cur + s - (MAX_MATCH_OFFSET - 4);
                table[nh] = (s + cur, cands.0);
                candidate = cands.0;
                if candidate < min_offset {
                    cv = now;
                    continue;
                }
                if cv as u32 == load32(src, candidate - cur) {
                    if cands.1 < min_offset || cv as u32 != load32(src, cands.1 - cur) {
                        break;
                    }
                    let offset = s - (candidate - cur);
                    let o2 = s - (cands.1 - cur);
                    let l1 = match_len(&src[s as usize + 4..], &src[(s - offset + 4) as usize..]);
                    let l2 = match_len(&src[s as usize + 4..], &src[(s - o2 + 4) as usize..]);
                    if l2 > l1 {
                        candidate = cands.1;
                    }
                    break;
                } else {
                    candidate = cands.1;
                    if candidate > min_offset && cv as u32 == load32(src, candidate - cur) {
                        break;
                    }
                }
                cv = now;
            }
            loop {
                let mut t = candidate - cur;
                let mut l = self.g.matchlen_long(s + 4, t + 4) + 4;
                while t > 0 && s > next_emit && src[t as usize - 1] == src[s as usize - 1] {
                    s -= 1;
                    t -= 1;
                    l += 1;
                }
                if next_emit < s {
                    dst.add_literals(&src[next_emit as usize..s as usize]);
                }
                dst.add_match_long(l, (s - t - 1) as u32);
                s += l;
                next_emit = s;
                if next_s >= s {
                    s = next_s + 1;
                }
                if s >= s_limit {
                    t += l;
                    if ((t + 8) as usize) < src.len() && t > 0 {
                        let cv = load64(src, t);
                        let nh = hash5(cv, L3_TABLE_BITS) as usize;
                        table[nh] = (cur + t, table[nh].0);
                    }
                    break 'outer;
                }
                let mut i = s - l + 2;
                while i < s - 5 {
                    let nh = hash5(load64(src, i), L3_TABLE_BITS) as usize;
                    table[nh] = (cur + i, table[nh].0);
                    i += 6;
                }
                let mut x = load64(src, s - 2);
                let ph = hash5(x, L3_TABLE_BITS) as usize;
                table[ph] = (cur + s - 2, table[ph].0);
                x >>= 8;
                let ph = hash5(x, L3_TABLE_BITS) as usize;
                table[ph] = (cur + s - 1, table[ph].0);
                x >>= 8;
                let ch = hash5(x, L3_TABLE_BITS) as usize;
                let cands = table[ch];
                cv = x;
                table[ch] = (s + cur, cands.0);
                candidate = cands.0;
                let min_offset = cur + s - (MAX_MATCH_OFFSET - 4);
                if candidate > min_offset {
                    if cv as u32 == load32(src, candidate - cur) {
                        continue;
                    }
                    candidate = cands.1;
                    if candidate > min_offset && cv as u32 == load32(src, candidate - cur) {
                        continue;
                    }
                }
                cv = x >> 8;
                s += 1;
                break;
            }
        }
        self.emit_remainder(dst, next_emit);
    }

    fn l4(&mut self, dst: &mut Tokens, mut s: i32) {
        let next_at_distance = self.variant.l4_next_at_distance();
        let src = &self.g.hist;
        let cur = self.g.cur;
        let (table, btable) = (&mut self.table, &mut self.btable);
        let mut next_emit = s;
        let s_limit = src.len() as i32 - INPUT_MARGIN;
        let mut cv = load64(src, s);
        'outer: loop {
            let mut next_s = s;
            let mut t;
            loop {
                let nhs = hash4(cv, TABLE_BITS) as usize;
                let nhl = hash7(cv, TABLE_BITS) as usize;
                s = next_s;
                next_s = s + 1 + ((s - next_emit) >> 6);
                if next_s > s_limit {
                    break 'outer;
                }
                let s_cand = table[nhs];
                let l_cand = btable[nhl];
                let next = load64(src, next_s);
                table[nhs] = s + cur;
                btable[nhl] = s + cur;
                t = l_cand - cur;
                if s - t < MAX_MATCH_OFFSET && cv as u32 == load32(src, l_cand - cur) {
                    break;
                }
                t = s_cand - cur;
                if s - t < MAX_MATCH_OFFSET && cv as u32 == load32(src, s_cand - cur) {
                    let l_cand = btable[hash7(next, TABLE_BITS) as usize];
                    let l_off = next_s - (l_cand - cur);
                    if l_off < MAX_MATCH_OFFSET && load32(src, l_cand - cur) == next as u32 {
                        let l1 = match_len(&src[s as usize + 4..], &src[t as usize + 4..]);
                        let at = if next_at_distance { l_off } else { l_cand - cur };
                        let l2 = match_len(&src[next_s as usize + 4..], &src[(at + 4) as usize..]);
                        if l2 > l1 {
                            s = next_s;
                            t = l_cand - cur;
                        }
                    }
                    break;
                }
                cv = next;
            }
            let mut l = self.g.matchlen_long(s + 4, t + 4) + 4;
            while t > 0 && s > next_emit && src[t as usize - 1] == src[s as usize - 1] {
                s -= 1;
                t -= 1;
                l += 1;
            }
            if next_emit < s {
                dst.add_literals(&src[next_emit as usize..s as usize]);
            }
            dst.add_match_long(l, (s - t - 1) as u32);
            s += l;
            next_emit = s;
            if next_s >= s {
                s = next_s + 1;
            }
            if s >= s_limit {
                if ((s + 8) as usize) < src.len() {
                    let cv = load64(src, s);
                    table[hash4(cv, TABLE_BITS) as usize] = s + cur;
                    btable[hash7(cv, TABLE_BITS) as usize] = s + cur;
                }
                break 'outer;
            }
            let mut i = next_s;
            if i < s - 1 {
                let cv = load64(src, i);
                let t = i + cur;
                btable[hash7(cv, TABLE_BITS) as usize] = t;
                btable[hash7(cv >> 8, TABLE_BITS) as usize] = t + 1;
                table[hash4(cv >> 8, TABLE_BITS) as usize] = t + 1;
                i += 3;
                while i < s - 1 {
                    let cv = load64(src, i);
                    let t = i + cur;
                    btable[hash7(cv, TABLE_BITS) as usize] = t;
                    btable[hash7(cv >> 8, TABLE_BITS) as usize] = t + 1;
                    table[hash4(cv >> 8, TABLE_BITS) as usize] = t + 1;
                    i += 3;
                }
            }
            let x = load64(src, s - 1);
            let o = cur + s - 1;
            table[hash4(x, TABLE_BITS) as usize] = o;
            btable[hash7(x, TABLE_BITS) as usize] = o;
            cv = x >> 8;
        }
        self.emit_remainder(dst, next_emit);
    }

    #[inline(always)]
    fn push_long(p: &mut [(i32, i32)], h: usize, v: i32) {
        p[h] = (v, p[h].0);
    }

    fn l5(&mut self, dst: &mut Tokens, mut s: i32) {
        let cur = self.g.cur;
        let mut next_emit = s;
        let s_limit = self.g.hist.len() as i32 - INPUT_MARGIN;
        let mut cv = load64(&self.g.hist, s);
        'outer: loop {
            let mut next_s = s;
            let mut l: i32 = 0;
            let mut t;
            {
                let src = &self.g.hist;
                let (table, bt) = (&mut self.table, &mut self.ptable);
                loop {
                    let mut nhs = hash4(cv, TABLE_BITS) as usize;
                    let mut nhl = hash7(cv, TABLE_BITS) as usize;
                    s = next_s;
                    next_s = s + 1 + ((s - next_emit) >> 6);
                    if next_s > s_limit {
                        break 'outer;
                    }
                    let s_cand = table[nhs];
                    let mut l_cand = bt[nhl];
                    let next = load64(src, next_s);
                    table[nhs] = s + cur;
                    Self::push_long(bt, nhl, s + cur);
                    nhs = hash4(next, TABLE_BITS) as usize;
                    nhl = hash7(next, TABLE_BITS) as usize;
                    t = l_cand.0 - cur;
                    if s - t < MAX_MATCH_OFFSET {
                        if cv as u32 == load32(src, l_cand.0 - cur) {
                            table[nhs] = next_s + cur;
                            Self::push_long(bt, nhl, next_s + cur);
                            let t2 = l_cand.1 - cur;
                            if s - t2 < MAX_MATCH_OFFSET && cv as u32 == load32(src, l_cand.1 - cur) {
                                l = self.g.matchlen(s + 4, t + 4) + 4;
                                let ml1 = self.g.matchlen(s + 4, t2 + 4) + 4;
                                if ml1 > l {
                                    t = t2;
                                    l = ml1;
                                    break;
                                }
                            }
                            break;
                        }
                        t = l_cand.1 - cur;
                        if s - t < MAX_MATCH_OFFSET && cv as u32 == load32(src, l_cand.1 - cur) {
                            table[nhs] = next_s + cur;
                            Self::push_long(bt, nhl, next_s + cur);
                            break;
                        }
                    }
                    t = s_cand - cur;
                    if s - t < MAX_MATCH_OFFSET && cv as u32 == load32(src, s_cand - cur) {
                        l = self.g.matchlen(s + 4, t + 4) + 4;
                        l_cand = bt[nhl];
                        table[nhs] = next_s + cur;
                        Self::push_long(bt, nhl, next_s + cur);
                        let t2 = l_cand.0 - cur;
                        if next_s - t2 < MAX_MATCH_OFFSET {
                            if load32(src, l_cand.0 - cur) == next as u32 {
                                let ml = self.g.matchlen(next_s + 4, t2 + 4) + 4;
                                if ml > l {
                                    t = t2;
                                    s = next_s;
                                    l = ml;
                                    break;
                                }
                            }
                            let t2 = l_cand.1 - cur;
                            if next_s - t2 < MAX_MATCH_OFFSET && load32(src, l_cand.1 - cur) == next as u32 {
                                let ml = self.g.matchlen(next_s + 4, t2 + 4) + 4;
                                if ml > l {
                                    t = t2;
                                    s = next_s;
                                    l = ml;
                                    break;
                                }
                            }
                        }
                        break;
                    }
                    cv = next;
                }
            }
            if l == 0 {
                l = self.g.matchlen_long(s + 4, t + 4) + 4;
            } else if l == MAX_MATCH_LENGTH {
                l += self.g.matchlen_long(s + l, t + l);
            }
            let src = &self.g.hist;
            let (table, bt) = (&mut self.table, &mut self.ptable);
            let s_at = s + l;
            if l < 30 && s_at < s_limit {
                let e_long = bt[hash7(load64(src, s_at), TABLE_BITS) as usize].0;
                let t2 = e_long - cur - l + 2;
                let s2 = s + 2;
                let off = s2 - t2;
                if t2 >= 0 && off < MAX_MATCH_OFFSET && off > 0 {
                    let l2 = match_len(&src[s2 as usize..], &src[t2 as usize..]) as i32;
                    if l2 > l {
                        t = t2;
                        l = l2;
                        s = s2;
                    }
                }
            }
            while t > 0 && s > next_emit && src[t as usize - 1] == src[s as usize - 1] {
                s -= 1;
                t -= 1;
                l += 1;
            }
            if next_emit < s {
                dst.add_literals(&src[next_emit as usize..s as usize]);
            }
            dst.add_match_long(l, (s - t - 1) as u32);
            s += l;
            next_emit = s;
            if next_s >= s {
                s = next_s + 1;
            }
            if s >= s_limit {
                break 'outer;
            }
            let mut i = s - l + 1;
            if i < s - 1 {
                let mut cv = load64(src, i);
                let mut tt = i + cur;
                table[hash4(cv, TABLE_BITS) as usize] = tt;
                Self::push_long(bt, hash7(cv, TABLE_BITS) as usize, tt);
                cv >>= 8;
                tt += 1;
                Self::push_long(bt, hash7(cv, TABLE_BITS) as usize, tt);
                cv >>= 8;
                tt += 1;
                table[hash4(cv, TABLE_BITS) as usize] = tt;
                i += 4;
                while i < s - 1 {
                    let cv = load64(src, i);
                    let tt = i + cur;
                    Self::push_long(bt, hash7(cv, TABLE_BITS) as usize, tt);
                    table[hash4(cv >> 8, TABLE_BITS) as usize] = tt + 1;
                    i += 3;
                }
            }
            let x = load64(src, s - 1);
            let o = cur + s - 1;
            table[hash4(x, TABLE_BITS) as usize] = o;
            Self::push_long(bt, hash7(x, TABLE_BITS) as usize, o);
            cv = x >> 8;
        }
        self.emit_remainder(dst, next_emit);
    }

    fn l6(&mut self, dst: &mut Tokens, mut s: i32) {
        let cur = self.g.cur;
        let mut next_emit = s;
        let s_limit = self.g.hist.len() as i32 - INPUT_MARGIN;
        let mut cv = load64(&self.g.hist, s);
        let mut repeat: i32 = 1;
        'outer: loop {
            let mut next_s = s;
            let mut l: i32 = 0;
            let mut t;
            {
                let src = &self.g.hist;
                let (table, bt) = (&mut self.table, &mut self.ptable);
                loop {
                    let mut nhs = hash4(cv, TABLE_BITS) as usize;
                    let mut nhl = hash7(cv, TABLE_BITS) as usize;
                    s = next_s;
                    next_s = s + 1 + ((s - next_emit) >> 7);
                    if next_s > s_limit {
                        break 'outer;
                    }
                    let s_cand = table[nhs];
                    let mut l_cand = bt[nhl];
                    let next = load64(src, next_s);
                    table[nhs] = s + cur;
                    Self::push_long(bt, nhl, s + cur);
                    nhs = hash4(next, TABLE_BITS) as usize;
                    nhl = hash7(next, TABLE_BITS) as usize;
                    t = l_cand.0 - cur;
                    if s - t < MAX_MATCH_OFFSET {
                        if cv as u32 == load32(src, l_cand.0 - cur) {
                            table[nhs] = next_s + cur;
                            Self::push_long(bt, nhl, next_s + cur);
                            let t2 = l_cand.1 - cur;
                            if s - t2 < MAX_MATCH_OFFSET && cv as u32 == load32(src, l_cand.1 - cur) {
                                l = self.g.matchlen(s + 4, t + 4) + 4;
                                let ml1 = self.g.matchlen(s + 4, t2 + 4) + 4;
                                if ml1 > l {
                                    t = t2;
                                    l = ml1;
                                    break;
                                }
                            }
                            break;
                        }
                        t = l_cand.1 - cur;
                        if s - t < MAX_MATCH_OFFSET && cv as u32 == load32(src, l_cand.1 - cur) {
                            table[nhs] = next_s + cur;
                            Self::push_long(bt, nhl, next_s + cur);
                            break;
                        }
                    }
                    t = s_cand - cur;
                    if s - t < MAX_MATCH_OFFSET && cv as u32 == load32(src, s_cand - cur) {
                        l = self.g.matchlen(s + 4, t + 4) + 4;
                        l_cand = bt[nhl];
                        table[nhs] = next_s + cur;
                        Self::push_long(bt, nhl, next_s + cur);
                        let t2 = s - repeat + 1;
                        if load32(src, t2) == (cv >> 8) as u32 {
                            let ml = self.g.matchlen(s + 5, t2 + 4) + 4;
                            if ml > l {
                                t = t2;
                                l = ml;
                                s += 1;
                                break;
                            }
                        }
                        let t2 = l_cand.0 - cur;
                        if next_s - t2 < MAX_MATCH_OFFSET {
                            if load32(src, l_cand.0 - cur) == next as u32 {
                                let ml = self.g.matchlen(next_s + 4, t2 + 4) + 4;
                                if ml > l {
                                    t = t2;
                                    s = next_s;
                                    l = ml;
                                }
                            }
                            let t2 = l_cand.1 - cur;
                            if next_s - t2 < MAX_MATCH_OFFSET && load32(src, l_cand.1 - cur) == next as u32 {
                                let ml = self.g.matchlen(next_s + 4, t2 + 4) + 4;
                                if ml > l {
                                    t = t2;
                                    s = next_s;
                                    l = ml;
                                    break;
                                }
                            }
                        }
                        break;
                    }
                    cv = next;
                }
            }
            if l == 0 {
                l = self.g.matchlen_long(s + 4, t + 4) + 4;
            } else if l == MAX_MATCH_LENGTH {
                l += self.g.matchlen_long(s + l, t + l);
            }
            let src = &self.g.hist;
            let (table, bt) = (&mut self.table, &mut self.ptable);
            let s_at = s + l;
            if s_at < s_limit {
                let e_long = bt[hash7(load64(src, s_at), TABLE_BITS) as usize];
                let s2 = s + 2;
                let t2 = e_long.0 - cur - l + 2;
                let off = s2 - t2;
                if off < MAX_MATCH_OFFSET {
                    if off > 0 && t2 >= 0 {
                        let l2 = match_len(&src[s2 as usize..], &src[t2 as usize..]) as i32;
                        if l2 > l {
                            t = t2;
                            l = l2;
                            s = s2;
                        }
                    }
                    let t2 = e_long.1 - cur - l + 2;
                    let off = s2 - t2;
                    if off > 0 && off < MAX_MATCH_OFFSET && t2 >= 0 {
                        let l2 = match_len(&src[s2 as usize..], &src[t2 as usize..]) as i32;
                        if l2 > l {
                            t = t2;
                            l = l2;
                            s = s2;
                        }
                    }
                }
            }
            while t > 0 && s > next_emit && src[t as usize - 1] == src[s as usize - 1] {
                s -= 1;
                t -= 1;
                l += 1;
            }
            if next_emit < s {
                dst.add_literals(&src[next_emit as usize..s as usize]);
            }
            dst.add_match_long(l, (s - t - 1) as u32);
            repeat = s - t;
            s += l;
            next_emit = s;
            if next_s >= s {
                s = next_s + 1;
            }
            if s >= s_limit {
                let mut i = next_s + 1;
                while i < src.len() as i32 - 8 {
                    let cv = load64(src, i);
                    table[hash4(cv, TABLE_BITS) as usize] = i + cur;
                    Self::push_long(bt, hash7(cv, TABLE_BITS) as usize, i + cur);
                    i += 2;
                }
                break 'outer;
            }
            let mut i = next_s + 1;
            while i < s - 1 {
                let cv = load64(src, i);
                let tt = i + cur;
                let h1 = hash7(cv, TABLE_BITS) as usize;
                let h2 = hash7(cv >> 8, TABLE_BITS) as usize;
                table[hash4(cv, TABLE_BITS) as usize] = tt;
                Self::push_long(bt, h1, tt);
                Self::push_long(bt, h2, tt + 1);
                i += 2;
            }
            cv = load64(src, s);
        }
        self.emit_remainder(dst, next_emit);
    }
}
