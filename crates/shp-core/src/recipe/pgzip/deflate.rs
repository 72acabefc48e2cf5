//! klauspost/compress flate's `compressor`: how input is cut into windows and which block writer each level
//! uses (stored for 0, literal-only Huffman for -2, the fast encoders for 1–6, the lazy matcher for 7–9),
//! plus sync flush and close.

use super::fast::{FastEnc, Variant};
use super::huff::{BitWriter, Tokens, MAX_STORE_BLOCK};
use super::lazy::{Lazy, LazyEnc};

enum Mode {
    Store,
    Huff,
    Fast(Box<FastEnc>),
    /// Levels 7–9 keep their own window (64 KiB, sliding) and tokens.
    Lazy(Box<LazyEnc>),
}

pub struct Compressor {
    w: BitWriter,
    mode: Mode,
    window: Vec<u8>,
    window_cap: usize,
    tokens: Tokens,
    sync: bool,
}

impl Compressor {
    /// `level` is klauspost's level after mapping -1 to 5 (so one of -2, 0..=6).
    pub fn new(level: i8, variant: Variant, out: Vec<u8>) -> Compressor {
        let mut w = BitWriter::new(out);
        w.always_eob = variant.always_eob();
        let (mode, cap) = match level {
            0 => (Mode::Store, MAX_STORE_BLOCK),
            -2 => {
                w.log_new_table_penalty = 10;
                (Mode::Huff, 32 << 10)
            }
            1..=6 => {
                w.log_new_table_penalty = 7;
                (
                    Mode::Fast(Box::new(FastEnc::new(level as u8, variant))),
                    MAX_STORE_BLOCK,
                )
            }
            _ => panic!("klauspost flate level {level}"),
        };
        Compressor {
            w,
            mode,
            window: Vec::with_capacity(cap),
            window_cap: cap,
            tokens: Tokens::default(),
            sync: false,
        }
    }

    /// A level 7–9 compressor of the given release.
    pub fn new_lazy(level: u8, version: Lazy, out: Vec<u8>) -> Compressor {
        let mut w = BitWriter::new(out);
        w.log_new_table_penalty = 8;
        // 1.18.2's block writer came with its matcher change (see `Variant::always_eob`).
        w.always_eob = version == Lazy::V1_18_2;
        Compressor {
            w,
            mode: Mode::Lazy(Box::new(LazyEnc::new(level, version))),
            window: Vec::new(),
            window_cap: 0,
            tokens: Tokens::default(),
            sync: false,
        }
    }

    /// Primes the history with a preset dictionary (no output), as `ResetDict` does.
    pub fn fill_dict(&mut self, dict: &[u8]) {
        match &mut self.mode {
            Mode::Store | Mode::Huff => {}
            Mode::Fast(f) => {
                let d = &dict[dict.len().saturating_sub(1 << 15)..];
                f.encode(&mut self.tokens, d);
                self.tokens.reset();
            }
            Mode::Lazy(l) => l.fill_dict(dict),
        }
    }

    pub fn write(&mut self, mut b: &[u8]) {
        if let Mode::Lazy(l) = &mut self.mode {
            l.write(&mut self.w, b);
            return;
        }
        while !b.is_empty() {
            if self.window.len() == self.window_cap || self.sync {
                self.step();
            }
            let n = (self.window_cap - self.window.len()).min(b.len());
            self.window.extend_from_slice(&b[..n]);
            b = &b[n..];
        }
    }

    fn step(&mut self) {
        let sync = self.sync;
        let full = self.window.len() == self.window_cap;
        match &mut self.mode {
            Mode::Lazy(l) => l.step(&mut self.w, sync),
            Mode::Store => {
                if !self.window.is_empty() && (full || sync) {
                    self.w.write_stored(&self.window);
                    self.window.clear();
                }
            }
            Mode::Huff => {
                if (!full && !sync) || self.window.is_empty() {
                    return;
                }
                self.w.write_block_huff(&self.window, sync);
                self.window.clear();
            }
            Mode::Fast(f) => {
                let n = self.window.len();
                if !full {
                    if !sync {
                        return;
                    }
                    if n < 128 {
                        if n == 0 {
                            return;
                        }
                        if n <= 32 {
                            self.w.write_stored(&self.window);
                        } else {
                            self.w.write_block_huff(&self.window, true);
                        }
                        self.tokens.reset();
                        self.window.clear();
                        // The encoder is reset here: history is dropped.
                        **f = FastEnc::new_like(f);
                        return;
                    }
                }
                f.encode(&mut self.tokens, &self.window);
                if self.tokens.n() == 0 {
                    self.w.write_stored(&self.window);
                } else if self.tokens.n() > n - (n >> 4) {
                    self.w.write_block_huff(&self.window, sync);
                } else {
                    self.w.write_block_dynamic(&mut self.tokens, Some(&self.window), sync);
                }
                self.tokens.reset();
                self.window.clear();
            }
        }
    }

    /// Sync flush: everything written so far, then an empty stored block (00 00 ff ff).
    pub fn sync_flush(&mut self) {
        self.sync = true;
        self.step();
        self.w.write_stored_header(0, false);
        self.w.flush();
        self.sync = false;
    }

    /// Close: flushes pending input and writes the final (empty, fixed-code) block.
    pub fn close(&mut self) {
        self.sync = true;
        self.step();
        self.w.write_stored_header(0, true);
        self.w.flush();
    }

    pub fn into_output(self) -> Vec<u8> {
        self.w.out
    }

    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.w.out
    }
}
