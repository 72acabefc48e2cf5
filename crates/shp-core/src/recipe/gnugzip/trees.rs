//! The block writer of GNU gzip's deflate (the tree half of trees.c and bits.c).
//!
//! Huffman trees are built exactly as gzip builds them — heap order, the depth tie-break, the
//! bit-length overflow repair, at least two codes per tree — because the chosen code lengths are
//! part of the output. The block type follows gzip's rule: stored if its bytes are still in the
//! window and `stored_len + 4` bytes is no more than the best tree encoding, else static trees if
//! they are no larger than dynamic ones, else dynamic trees.

// Index loops mirror gzip's tree loops one to one.
#![allow(clippy::needless_range_loop)]

use super::lz::{Block, Codes, D_CODES, END_BLOCK, EXTRA_DBITS, EXTRA_LBITS, LITERALS, L_CODES};

const MAX_BITS: usize = 15;
const MAX_BL_BITS: usize = 7;
const BL_CODES: usize = 19;
const HEAP_SIZE: usize = 2 * L_CODES + 1;
const EXTRA_BLBITS: [u8; BL_CODES] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 7];
const BL_ORDER: [usize; BL_CODES] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
const REP_3_6: usize = 16;
const REPZ_3_10: usize = 17;
const REPZ_11_138: usize = 18;

/// An LSB-first bit sink; bytes come out exactly as gzip's 16-bit buffer writes them.
pub(super) struct Bits {
    pub out: Vec<u8>,
    buf: u64,
    n: u32,
}

impl Bits {
    pub fn new() -> Bits {
        Bits {
            out: Vec::new(),
            buf: 0,
            n: 0,
        }
    }

    #[inline(always)]
    pub fn send(&mut self, value: u32, len: u32) {
        self.buf |= (value as u64) << self.n;
        self.n += len;
        if self.n >= 32 {
            self.out.extend_from_slice(&(self.buf as u32).to_le_bytes());
            self.buf >>= 32;
            self.n -= 32;
        }
    }

    /// Pads to a byte boundary with zero bits.
    pub fn windup(&mut self) {
        while self.n > 0 {
            self.out.push(self.buf as u8);
            self.buf >>= 8;
            self.n = self.n.saturating_sub(8);
        }
        self.buf = 0;
    }
}

/// One tree under construction (gzip's `ct_data` array with its descriptor).
struct Tree {
    freq: Vec<u16>,
    code: Vec<u16>,
    len: Vec<u16>,
    dad: Vec<u16>,
    elems: usize,
    max_length: usize,
    max_code: usize,
}

impl Tree {
    fn new(size: usize, elems: usize, max_length: usize) -> Tree {
        Tree {
            freq: vec![0; size],
            code: vec![0; size],
            len: vec![0; size],
            dad: vec![0; size],
            elems,
            max_length,
            max_code: 0,
        }
    }
}

/// Which tree `build_tree` works on: its extra bits and static counterpart for the cost sums.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Lit,
    Dist,
    BitLen,
}

pub(super) struct Writer {
    codes: std::sync::Arc<Codes>,
    ltree: Tree,
    dtree: Tree,
    bltree: Tree,
    static_llen: [u16; L_CODES + 2],
    static_lcode: [u16; L_CODES + 2],
    static_dcode: [u16; D_CODES],
    heap: [usize; HEAP_SIZE],
    heap_len: usize,
    heap_max: usize,
    depth: [u8; HEAP_SIZE],
    bl_count: [u16; MAX_BITS + 1],
    opt_len: u64,
    static_len: u64,
    pub bits: Bits,
}

fn bi_reverse(mut code: u32, mut len: u32) -> u16 {
    let mut res = 0u32;
    loop {
        res |= code & 1;
        code >>= 1;
        res <<= 1;
        len -= 1;
        if len == 0 {
            break;
        }
    }
    (res >> 1) as u16
}

/// Canonical codes from lengths and `bl_count` (gzip's gen_codes).
fn gen_codes(len: &[u16], code: &mut [u16], bl_count: &[u16; MAX_BITS + 1], max_code: usize) {
    let mut next_code = [0u16; MAX_BITS + 1];
    let mut c = 0u16;
    for bits in 1..=MAX_BITS {
        c = (c.wrapping_add(bl_count[bits - 1])) << 1;
        next_code[bits] = c;
    }
    for n in 0..=max_code {
        let l = len[n] as usize;
        if l == 0 {
            continue;
        }
        code[n] = bi_reverse(next_code[l] as u32, l as u32);
        next_code[l] = next_code[l].wrapping_add(1);
    }
}

impl Writer {
    pub fn new(codes: std::sync::Arc<Codes>) -> Writer {
        let mut w = Writer {
            codes,
            ltree: Tree::new(HEAP_SIZE, L_CODES, MAX_BITS),
            dtree: Tree::new(2 * D_CODES + 1, D_CODES, MAX_BITS),
            bltree: Tree::new(2 * BL_CODES + 1, BL_CODES, MAX_BL_BITS),
            static_llen: [0; L_CODES + 2],
            static_lcode: [0; L_CODES + 2],
            static_dcode: [0; D_CODES],
            heap: [0; HEAP_SIZE],
            heap_len: 0,
            heap_max: 0,
            depth: [0; HEAP_SIZE],
            bl_count: [0; MAX_BITS + 1],
            opt_len: 0,
            static_len: 0,
            bits: Bits::new(),
        };
        let mut bl_count = [0u16; MAX_BITS + 1];
        for n in 0..L_CODES + 2 {
            let l = match n {
                0..=143 => 8,
                144..=255 => 9,
                256..=279 => 7,
                _ => 8,
            };
            w.static_llen[n] = l;
            bl_count[l as usize] += 1;
        }
        gen_codes(&w.static_llen, &mut w.static_lcode, &bl_count, L_CODES + 1);
        for n in 0..D_CODES {
            w.static_dcode[n] = bi_reverse(n as u32, 5);
        }
        w
    }

    fn tree(&mut self, k: Kind) -> &mut Tree {
        match k {
            Kind::Lit => &mut self.ltree,
            Kind::Dist => &mut self.dtree,
            Kind::BitLen => &mut self.bltree,
        }
    }

    #[inline]
    fn smaller(t: &Tree, depth: &[u8; HEAP_SIZE], n: usize, m: usize) -> bool {
        t.freq[n] < t.freq[m] || (t.freq[n] == t.freq[m] && depth[n] <= depth[m])
    }

    fn pqdownheap(&mut self, k: Kind, mut i: usize) {
        let t = match k {
            Kind::Lit => &self.ltree,
            Kind::Dist => &self.dtree,
            Kind::BitLen => &self.bltree,
        };
        let heap = &mut self.heap;
        let v = heap[i];
        let mut j = i << 1;
        while j <= self.heap_len {
            if j < self.heap_len && Self::smaller(t, &self.depth, heap[j + 1], heap[j]) {
                j += 1;
            }
            if Self::smaller(t, &self.depth, v, heap[j]) {
                break;
            }
            heap[i] = heap[j];
            i = j;
            j <<= 1;
        }
        heap[i] = v;
    }

    fn gen_bitlen(&mut self, k: Kind) {
        let (extra, base): (&[u8], usize) = match k {
            Kind::Lit => (&EXTRA_LBITS, LITERALS + 1),
            Kind::Dist => (&EXTRA_DBITS, 0),
            Kind::BitLen => (&EXTRA_BLBITS, 0),
        };
        let heap = self.heap;
        let heap_max = self.heap_max;
        let mut bl_count = [0u16; MAX_BITS + 1];
        let mut opt_len = self.opt_len;
        let mut static_len = self.static_len;
        let static_llen = self.static_llen;
        let t = self.tree(k);
        let max_code = t.max_code;
        let max_length = t.max_length;
        let mut overflow = 0i32;
        t.len[heap[heap_max]] = 0;
        for &n in &heap[heap_max + 1..HEAP_SIZE] {
            let mut bits = t.len[t.dad[n] as usize] as usize + 1;
            if bits > max_length {
                bits = max_length;
                overflow += 1;
            }
            t.len[n] = bits as u16;
            if n > max_code {
                continue;
            }
            bl_count[bits] += 1;
            let xbits = if n >= base { extra[n - base] as u64 } else { 0 };
            let f = t.freq[n] as u64;
            opt_len = opt_len.wrapping_add(f * (bits as u64 + xbits));
            match k {
                Kind::Lit => static_len = static_len.wrapping_add(f * (static_llen[n] as u64 + xbits)),
                Kind::Dist => static_len = static_len.wrapping_add(f * (5 + xbits)),
                Kind::BitLen => {}
            }
        }
        if overflow != 0 {
            loop {
                let mut bits = max_length - 1;
                while bl_count[bits] == 0 {
                    bits -= 1;
                }
                bl_count[bits] -= 1;
                bl_count[bits + 1] += 2;
                bl_count[max_length] -= 1;
                overflow -= 2;
                if overflow <= 0 {
                    break;
                }
            }
            let mut h = HEAP_SIZE;
            for bits in (1..=max_length).rev() {
                let mut n = bl_count[bits];
                while n != 0 {
                    h -= 1;
                    let m = heap[h];
                    if m > max_code {
                        continue;
                    }
                    if t.len[m] as usize != bits {
                        let delta = (bits as i64 - t.len[m] as i64) * t.freq[m] as i64;
                        opt_len = opt_len.wrapping_add(delta as u64);
                        t.len[m] = bits as u16;
                    }
                    n -= 1;
                }
            }
        }
        self.bl_count = bl_count;
        self.opt_len = opt_len;
        self.static_len = static_len;
    }

    fn build_tree(&mut self, k: Kind) {
        self.heap_len = 0;
        self.heap_max = HEAP_SIZE;
        let mut max_code: isize = -1;
        {
            let t = match k {
                Kind::Lit => &mut self.ltree,
                Kind::Dist => &mut self.dtree,
                Kind::BitLen => &mut self.bltree,
            };
            for n in 0..t.elems {
                if t.freq[n] != 0 {
                    self.heap_len += 1;
                    self.heap[self.heap_len] = n;
                    max_code = n as isize;
                    self.depth[n] = 0;
                } else {
                    t.len[n] = 0;
                }
            }
            while self.heap_len < 2 {
                let new = if max_code < 2 {
                    max_code += 1;
                    max_code as usize
                } else {
                    0
                };
                self.heap_len += 1;
                self.heap[self.heap_len] = new;
                t.freq[new] = 1;
                self.depth[new] = 0;
                self.opt_len = self.opt_len.wrapping_sub(1);
                match k {
                    Kind::Lit => self.static_len = self.static_len.wrapping_sub(self.static_llen[new] as u64),
                    Kind::Dist => self.static_len = self.static_len.wrapping_sub(5),
                    Kind::BitLen => {}
                }
            }
            t.max_code = max_code as usize;
        }
        let elems = self.tree(k).elems;
        for n in (1..=self.heap_len / 2).rev() {
            self.pqdownheap(k, n);
        }
        let mut node = elems;
        loop {
            let n = self.heap[1];
            self.heap[1] = self.heap[self.heap_len];
            self.heap_len -= 1;
            self.pqdownheap(k, 1);
            let m = self.heap[1];
            self.heap_max -= 1;
            self.heap[self.heap_max] = n;
            self.heap_max -= 1;
            self.heap[self.heap_max] = m;
            let d = self.depth[n].max(self.depth[m]) + 1;
            let t = self.tree(k);
            t.freq[node] = t.freq[n].wrapping_add(t.freq[m]);
            t.dad[n] = node as u16;
            t.dad[m] = node as u16;
            self.depth[node] = d;
            self.heap[1] = node;
            node += 1;
            self.pqdownheap(k, 1);
            if self.heap_len < 2 {
                break;
            }
        }
        self.heap_max -= 1;
        self.heap[self.heap_max] = self.heap[1];
        self.gen_bitlen(k);
        let bl_count = self.bl_count;
        let t = self.tree(k);
        let mc = t.max_code;
        gen_codes(&t.len, &mut t.code, &bl_count, mc);
    }

    /// Counts the bit-length codes needed to send `t` (gzip's scan_tree).
    fn scan_tree(t: &mut Tree, bl: &mut Tree) {
        let max_code = t.max_code;
        let mut prevlen: i32 = -1;
        let mut nextlen = t.len[0] as i32;
        let mut count = 0;
        let (mut max_count, mut min_count) = if nextlen == 0 { (138, 3) } else { (7, 4) };
        t.len[max_code + 1] = 0xffff;
        for n in 0..=max_code {
            let curlen = nextlen;
            nextlen = t.len[n + 1] as i32;
            count += 1;
            if count < max_count && curlen == nextlen {
                continue;
            } else if count < min_count {
                bl.freq[curlen as usize] += count as u16;
            } else if curlen != 0 {
                if curlen != prevlen {
                    bl.freq[curlen as usize] += 1;
                }
                bl.freq[REP_3_6] += 1;
            } else if count <= 10 {
                bl.freq[REPZ_3_10] += 1;
            } else {
                bl.freq[REPZ_11_138] += 1;
            }
            count = 0;
            prevlen = curlen;
            (max_count, min_count) = if nextlen == 0 {
                (138, 3)
            } else if curlen == nextlen {
                (6, 3)
            } else {
                (7, 4)
            };
        }
    }

    fn send_tree(bits: &mut Bits, t: &Tree, bl: &Tree, max_code: usize) {
        let mut prevlen: i32 = -1;
        let mut nextlen = t.len[0] as i32;
        let mut count = 0;
        let (mut max_count, mut min_count) = if nextlen == 0 { (138, 3) } else { (7, 4) };
        let send_code = |bits: &mut Bits, c: usize| bits.send(bl.code[c] as u32, bl.len[c] as u32);
        for n in 0..=max_code {
            let curlen = nextlen;
            nextlen = t.len[n + 1] as i32;
            count += 1;
            if count < max_count && curlen == nextlen {
                continue;
            } else if count < min_count {
                while count > 0 {
                    send_code(bits, curlen as usize);
                    count -= 1;
                }
            } else if curlen != 0 {
                if curlen != prevlen {
                    send_code(bits, curlen as usize);
                    count -= 1;
                }
                send_code(bits, REP_3_6);
                bits.send(count - 3, 2);
            } else if count <= 10 {
                send_code(bits, REPZ_3_10);
                bits.send(count - 3, 3);
            } else {
                send_code(bits, REPZ_11_138);
                bits.send(count - 11, 7);
            }
            count = 0;
            prevlen = curlen;
            (max_count, min_count) = if nextlen == 0 {
                (138, 3)
            } else if curlen == nextlen {
                (6, 3)
            } else {
                (7, 4)
            };
        }
    }

    fn build_bl_tree(&mut self) -> usize {
        self.bltree.freq[..BL_CODES].fill(0);
        Self::scan_tree(&mut self.ltree, &mut self.bltree);
        Self::scan_tree(&mut self.dtree, &mut self.bltree);
        self.build_tree(Kind::BitLen);
        let mut max_blindex = BL_CODES - 1;
        while max_blindex >= 3 {
            if self.bltree.len[BL_ORDER[max_blindex]] != 0 {
                break;
            }
            max_blindex -= 1;
        }
        self.opt_len = self.opt_len.wrapping_add(3 * (max_blindex as u64 + 1) + 5 + 5 + 4);
        max_blindex
    }

    /// Encodes one block (gzip's flush_block without the whole-file stored case, which gzip
    /// never takes since its output is not seekable).
    pub fn flush_block(&mut self, b: &Block) {
        self.ltree.freq[..L_CODES].copy_from_slice(&b.lfreq);
        self.dtree.freq[..D_CODES].copy_from_slice(&b.dfreq);
        self.opt_len = 0;
        self.static_len = 0;
        self.build_tree(Kind::Lit);
        self.build_tree(Kind::Dist);
        let max_blindex = self.build_bl_tree();
        let mut opt_lenb = (self.opt_len.wrapping_add(3 + 7)) >> 3;
        let static_lenb = (self.static_len.wrapping_add(3 + 7)) >> 3;
        if static_lenb <= opt_lenb {
            opt_lenb = static_lenb;
        }
        let eof = b.eof as u32;
        match &b.stored {
            Some(buf) if b.stored_len + 4 <= opt_lenb => {
                self.bits.send(eof, 3);
                self.bits.windup();
                let len = b.stored_len as u16;
                self.bits.out.extend_from_slice(&len.to_le_bytes());
                self.bits.out.extend_from_slice(&(!len).to_le_bytes());
                self.bits.out.extend_from_slice(&buf[..len as usize]);
            }
            _ if static_lenb == opt_lenb => {
                self.bits.send(2 + eof, 3);
                self.compress_block(b, true);
            }
            _ => {
                self.bits.send(4 + eof, 3);
                let (lcodes, dcodes, blcodes) = (self.ltree.max_code + 1, self.dtree.max_code + 1, max_blindex + 1);
                self.bits.send(lcodes as u32 - 257, 5);
                self.bits.send(dcodes as u32 - 1, 5);
                self.bits.send(blcodes as u32 - 4, 4);
                for &r in &BL_ORDER[..blcodes] {
                    self.bits.send(self.bltree.len[r] as u32, 3);
                }
                Self::send_tree(&mut self.bits, &self.ltree, &self.bltree, lcodes - 1);
                Self::send_tree(&mut self.bits, &self.dtree, &self.bltree, dcodes - 1);
                self.compress_block(b, false);
            }
        }
        if b.eof {
            self.bits.windup();
        }
    }

    fn compress_block(&mut self, b: &Block, fixed: bool) {
        let (lcode, llen, dcode, dlen): (&[u16], &[u16], &[u16], &[u16]) = if fixed {
            (&self.static_lcode, &self.static_llen, &self.static_dcode, &[5; D_CODES])
        } else {
            (&self.ltree.code, &self.ltree.len, &self.dtree.code, &self.dtree.len)
        };
        let codes = &*self.codes;
        let bits = &mut self.bits;
        bits.out.reserve(b.syms.len() * 2 + 16);
        for &s in &b.syms {
            if s & (1 << 31) == 0 {
                let lc = s as usize;
                bits.send(lcode[lc] as u32, llen[lc] as u32);
            } else {
                let lc = (s & 0xff) as usize;
                let code = codes.length_code[lc] as usize;
                bits.send(lcode[code + LITERALS + 1] as u32, llen[code + LITERALS + 1] as u32);
                let extra = EXTRA_LBITS[code] as u32;
                if extra != 0 {
                    bits.send((lc - codes.base_length[code] as usize) as u32, extra);
                }
                let dist = ((s >> 8) & 0xffff) as usize;
                let code = codes.d_code(dist);
                bits.send(dcode[code] as u32, dlen[code] as u32);
                let extra = EXTRA_DBITS[code] as u32;
                if extra != 0 {
                    bits.send((dist - codes.base_dist[code] as usize) as u32, extra);
                }
            }
        }
        bits.send(lcode[END_BLOCK] as u32, llen[END_BLOCK] as u32);
    }
}
