//! Synthetic inputs shared by the benches: deterministic pseudo-random bytes and an uncompressed
//! layer tar shaped like a real root filesystem (many small files, some medium, a few large,
//! some duplicated), written with plain ustar headers.
#![allow(dead_code)]

/// xorshift64*: fast, deterministic, incompressible enough for FastCDC and sha256.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn fill(&mut self, out: &mut [u8]) {
        for c in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` pseudo-random bytes.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; n];
    Rng::new(seed).fill(&mut v);
    v
}

fn header(name: &str, typeflag: u8, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"14550717200\0");
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// An uncompressed layer tar of about `target` bytes: directories of files whose sizes follow a
/// rough root-filesystem mix (70% under 8 KiB, 25% 8-256 KiB, 5% 256 KiB-4 MiB); one file in
/// ten repeats an earlier one (copies and hard-linked-then-copied files are common in images).
pub fn layer_tar(target: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut tar = Vec::with_capacity(target + (1 << 20));
    let mut earlier: Vec<Vec<u8>> = Vec::new();
    let mut i = 0u64;
    while tar.len() < target {
        if i.is_multiple_of(64) {
            tar.extend_from_slice(&header(&format!("usr/lib/d{}/", i / 64), b'5', 0));
        }
        let body = if !earlier.is_empty() && rng.below(10) == 0 {
            earlier[rng.below(earlier.len() as u64) as usize].clone()
        } else {
            let size = match rng.below(100) {
                0..=69 => rng.below(8 << 10),
                70..=94 => (8 << 10) + rng.below(248 << 10),
                _ => (256 << 10) + rng.below(3840 << 10),
            } as usize;
            let mut b = vec![0u8; size];
            rng.fill(&mut b);
            if earlier.len() < 256 {
                earlier.push(b.clone());
            }
            b
        };
        tar.extend_from_slice(&header(&format!("usr/lib/d{}/f{i}", i / 64), b'0', body.len() as u64));
        tar.extend_from_slice(&body);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
        i += 1;
    }
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}
