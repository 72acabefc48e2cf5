//! Reads the first block of a raw deflate stream as tokens (literals and length/distance pairs), so the
//! probe can reject a slow candidate after matching a few thousand positions instead of a whole block.

/// A deflate token: a literal byte, or a match as (length, distance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tok {
    Lit(u8),
    Match(u16, u16),
}

struct Bits<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.b.get(self.pos >> 3)?;
        let v = (byte >> (self.pos & 7)) & 1;
        self.pos += 1;
        Some(v as u32)
    }
    fn take(&mut self, n: u32) -> Option<u32> {
        let mut v = 0;
        for i in 0..n {
            v |= self.bit()? << i;
        }
        Some(v)
    }
}

/// A canonical Huffman decoder: symbols per code length and the symbols in code order.
struct Code {
    count: [u16; 16],
    symbol: Vec<u16>,
}

impl Code {
    fn new(lengths: &[u8]) -> Code {
        let mut count = [0u16; 16];
        for &l in lengths {
            count[l as usize] += 1;
        }
        count[0] = 0;
        let mut offs = [0u16; 16];
        for l in 1..15 {
            offs[l + 1] = offs[l] + count[l];
        }
        let mut symbol = vec![0u16; lengths.len()];
        for (s, &l) in lengths.iter().enumerate() {
            if l != 0 {
                symbol[offs[l as usize] as usize] = s as u16;
                offs[l as usize] += 1;
            }
        }
        Code { count, symbol }
    }

    fn decode(&self, br: &mut Bits) -> Option<u16> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= br.bit()? as i32;
            let count = self.count[len] as i32;
            if code - count < first {
                return self.symbol.get((index + code - first) as usize).copied();
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        None
    }
}

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
    8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
];
const CL_ORDER: [usize; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/// Up to `max` tokens of the stream's first block; None when that block is stored or cannot be read.
/// Fewer than `max` when the block (or the available stream) ends first.
pub fn first_block_tokens(stream: &[u8], max: usize) -> Option<Vec<Tok>> {
    let mut br = Bits { b: stream, pos: 0 };
    let _final = br.take(1)?;
    let (lit, dist) = match br.take(2)? {
        1 => {
            let mut l = [8u8; 288];
            l[144..256].fill(9);
            l[256..280].fill(7);
            (Code::new(&l), Code::new(&[5u8; 30]))
        }
        2 => {
            let nlit = br.take(5)? as usize + 257;
            let ndist = br.take(5)? as usize + 1;
            let ncl = br.take(4)? as usize + 4;
            let mut cl = [0u8; 19];
            for &i in &CL_ORDER[..ncl] {
                cl[i] = br.take(3)? as u8;
            }
            let clc = Code::new(&cl);
            let mut lens = Vec::with_capacity(nlit + ndist);
            while lens.len() < nlit + ndist {
                let (v, n) = match clc.decode(&mut br)? {
                    s @ 0..=15 => (s as u8, 1),
                    16 => (*lens.last()?, 3 + br.take(2)?),
                    17 => (0, 3 + br.take(3)?),
                    18 => (0, 11 + br.take(7)?),
                    _ => return None,
                };
                lens.extend(std::iter::repeat_n(v, n as usize));
            }
            if lens.len() != nlit + ndist {
                return None;
            }
            (Code::new(&lens[..nlit]), Code::new(&lens[nlit..]))
        }
        _ => return None,
    };
    let mut out = Vec::with_capacity(max.min(1 << 16));
    while out.len() < max {
        let Some(s) = lit.decode(&mut br) else { break };
        match s {
            0..=255 => out.push(Tok::Lit(s as u8)),
            256 => break,
            257..=285 => {
                let i = s as usize - 257;
                let Some(e) = br.take(LEN_EXTRA[i] as u32) else { break };
                let len = LEN_BASE[i] + e as u16;
                let Some(d) = dist.decode(&mut br) else { break };
                let d = d as usize;
                if d >= 30 {
                    return None;
                }
                let Some(e) = br.take(DIST_EXTRA[d] as u32) else { break };
                out.push(Tok::Match(len, DIST_BASE[d] + e as u16));
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_back_what_zlib_wrote() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8 ^ (i / 700) as u8).collect();
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(&data).unwrap();
        let raw = e.finish().unwrap();
        let toks = first_block_tokens(&raw, usize::MAX).unwrap();
        let mut back: Vec<u8> = Vec::new();
        for t in toks {
            match t {
                Tok::Lit(b) => back.push(b),
                Tok::Match(l, d) => {
                    for _ in 0..l {
                        back.push(back[back.len() - d as usize]);
                    }
                }
            }
        }
        assert!(data.starts_with(&back) && !back.is_empty());
    }
}
