//! klauspost/pgzip framing over klauspost/compress flate: what skopeo, podman, buildah (containers/image),
//! umoci and go-containerregistry write.
//!
//! # What determines the bytes
//! pgzip cuts the input into blocks of `B` bytes. Each block is compressed by a fresh klauspost flate writer
//! whose preset dictionary is the last 16 KiB of the previous block's *input* (none for the first block), and
//! sync-flushed (an empty stored block, `00 00 ff ff`). The final block — the remainder, possibly empty — is
//! also closed (a final empty fixed-code block, `03 00`). Blocks are independent given their dictionaries,
//! so they are rebuilt on two threads and emitted in order. The flate writer hands its encoder chunks of at
//! most 65535 bytes; levels 1–6 use klauspost's own single-pass match finders, -2 is Huffman-only, 0 stored;
//! -1 (DefaultCompression) *is* level 5 (same bytes, same gzip header), so it is named 5. Levels 7–9 instead
//! run a lazy hash-chain matcher over a 64 KiB window sliding by 32 KiB and cut a block every 32768 tokens
//! (`lazy`); level 9 weighs matches by a literal cost estimate. Their dictionary is hashed into the window,
//! and the first block's stored-size estimate counts it (as klauspost does).
//!
//! # Profile names
//! `pgzip-1.2/kpflate-<class>/<level>/<B>`: `<class>` is the oldest klauspost/compress release known to write
//! those bytes, `<level>` a klauspost level the class names, `<B>` the block size in bytes (decimal,
//! > 16384, ≤ 1 GiB). Classes:
//! - `1.15.12`: klauspost/compress 1.15.12 (Debian bookworm), levels `-2 0 1 2 3 4 5 6 7 8 9`. Also what
//!   1.18.0 writes at levels 1, 2, 3, 5 (-1) and 6 (checked against the committed 1.18.0 vectors).
//! - `1.15.15`: levels `7 8 9` only: the lazy matcher as reworked in 1.15.15 (klauspost/compress#739: another
//!   second look at a match's end, level 9's gain threshold), which writes other bytes than 1.15.12's and
//!   is what 1.18.0 writes (checked against the committed 1.18.0 vectors at levels 7, 8 and 9; 1.15.15
//!   itself checked by hand on the same input at level 9).
//! - `1.18.0`: level `4` only: 1.18.0 rewrote level 4's second look at the next position's long candidate
//!   and since measures that candidate's match length at its distance taken as a position; the comparison
//!   decides which match is kept, so the bytes differ from 1.15.12's (checked against the committed 1.18.0
//!   vector; 1.17.11 still has the old code).
//! - `1.18.2`: klauspost/compress 1.18.2 up to at least 1.19.1 (the newest release; checked against the
//!   committed 1.19.1 vectors at every level 1–9), with 1.18.0's level 4. The match finders are unchanged; the dynamic-block writer
//!   changed in 1.18.1/1.18.2 (PRs #1103, #1115): a block that is not the last before a flush used to announce
//!   all 286 literal/length and 30 distance codes so that the next block could reuse its table; now every
//!   dynamic block announces only the codes up to the highest one used, and end-of-block always counts once
//!   in the reuse / fixed / stored size comparisons. 1.18.1 (retracted) did the former without the latter, so
//!   its bytes can differ; no class names it. Levels 0 and -2 write the same bytes as `1.15.12` and are only
//!   named in that class. At levels 7–9 the class is 1.15.15's lazy matcher with the new block writer, and
//!   level 9's literal-cost histogram counts only the first 32768 unprocessed bytes of the window (1.18.2);
//!   checked against the committed 1.19.1 vectors at levels 7, 8 and 9.
//!
//! The probe tries the classes oldest first. Where the first ~2 MiB leave several candidates (levels or
//! classes: noise codes alike everywhere, and input that uses every code writes the same headers in both
//! classes), the newer classes join and all are compared over the whole prefix it was given.
//!
//! Not reproduced (layers stay opaque): the retracted 1.18.1 at the levels where its half of the block-writer
//! change shows. Between 1.15.15 and 1.18.0, only 1.17.11 was compared (a scratch producer built from its tag,
//! every level on the first MiB of input.tar, not committed): it writes 1.15.15's bytes at every level (1.15.12's
//! at -2…6, `1.15.15` at 7–9); the releases in between are expected to as well, and the proof decides.
//!
//! # Probe cost
//! The lazy levels come last and are screened cheaply: the stream's first block is read back as tokens and
//! compared with the matcher's first 384, then 4096 tokens (`peek`), so a layer of another level or
//! producer costs them well under a millisecond each; a stored first block is compared by its bytes.

mod deflate;
mod fast;
mod huff;
mod lazy;
mod peek;

pub(crate) use deflate::Compressor;
use fast::Variant;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

/// pgzip's dictionary: the previous block's last bytes.
const TAIL: usize = 16384;
const MAX_BLOCK: u64 = 1 << 30;
/// The levels in the probe's order: most common first (5 = DefaultCompression, 1 = BestSpeed), the lazy
/// levels (9 = BestCompression) last.
const LEVEL_ORDER: [i8; 11] = [5, 1, 6, 4, 3, 2, 0, -2, 9, 7, 8];

/// klauspost/compress output classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 1.15.12 (and 1.18.0 at levels 1 and 5).
    V1_15_12,
    /// 1.18.0 at level 4 (level 4's changed second look; the only level this class names).
    V1_18_0,
    /// 1.15.15 to 1.18.0 at levels 7–9 (the lazy matcher changed; the only levels this class names).
    V1_15_15,
    /// 1.18.2 … 1.19.1 at levels 1–9 (exact dynamic table sizes; level 9's histogram capped).
    V1_18_2,
}

/// The classes in the order the probe tries them.
const CLASSES: [Class; 4] = [Class::V1_15_12, Class::V1_15_15, Class::V1_18_0, Class::V1_18_2];

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::V1_15_12 => "1.15.12",
            Class::V1_15_15 => "1.15.15",
            Class::V1_18_0 => "1.18.0",
            Class::V1_18_2 => "1.18.2",
        }
    }
    fn from_name(s: &str) -> Option<Class> {
        match s {
            "1.15.12" => Some(Class::V1_15_12),
            "1.15.15" => Some(Class::V1_15_15),
            "1.18.0" => Some(Class::V1_18_0),
            "1.18.2" => Some(Class::V1_18_2),
            _ => None,
        }
    }
    /// The levels a class names. Levels 0 (stored) and -2 (Huffman only) write the same bytes in every
    /// class: only the oldest names them.
    fn has_level(self, level: i8) -> bool {
        match self {
            Class::V1_15_12 => LEVEL_ORDER.contains(&level),
            Class::V1_15_15 => (7..=9).contains(&level),
            Class::V1_18_0 => level == 4,
            Class::V1_18_2 => (1..=9).contains(&level),
        }
    }
    fn variant(self) -> Variant {
        match self {
            Class::V1_15_12 | Class::V1_15_15 => Variant::V1_15,
            Class::V1_18_0 => Variant::V1_18_0,
            Class::V1_18_2 => Variant::V1_18_2,
        }
    }
    /// The lazy matcher of a class that names levels 7–9.
    fn lazy(self) -> lazy::Lazy {
        match self {
            Class::V1_15_12 => lazy::Lazy::V1_15_12,
            // 1.18.0 names no lazy level (its lazy bytes are 1.15.15's).
            Class::V1_15_15 | Class::V1_18_0 => lazy::Lazy::V1_15_15,
            Class::V1_18_2 => lazy::Lazy::V1_18_2,
        }
    }
}

/// Everything besides the gzip header that determines a pgzip stream's deflate bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub class: Class,
    /// klauspost level with -1 mapped to 5: one of -2, 0..=9.
    pub level: i8,
    /// pgzip block size in bytes.
    pub block_size: u64,
}

impl Params {
    pub fn profile(&self) -> String {
        format!(
            "pgzip-1.2/kpflate-{}/{}/{}",
            self.class.name(),
            self.level,
            self.block_size
        )
    }

    pub fn from_profile(s: &str) -> Option<Params> {
        let rest = s.strip_prefix("pgzip-1.2/kpflate-")?;
        let mut it = rest.split('/');
        let class = Class::from_name(it.next()?)?;
        let level_s = it.next()?;
        let block_s = it.next()?;
        if it.next().is_some() {
            return None;
        }
        let level: i8 = level_s.parse().ok()?;
        let block_size: u64 = block_s.parse().ok()?;
        // Canonical spelling only (no "+5", "05", "-0").
        if level.to_string() != level_s || block_size.to_string() != block_s {
            return None;
        }
        if !class.has_level(level) || block_size <= TAIL as u64 || block_size > MAX_BLOCK {
            return None;
        }
        Some(Params {
            class,
            level,
            block_size,
        })
    }
}

/// A fresh flate writer as Go 1.27's `compress/flate` makes it for `level` (-2, 0..=9; -1 is 6 there).
/// Go 1.27's encoder is a port of klauspost/compress flate that writes class 1.18.2's bytes at levels 1–9
/// (levels -2 and 0 write the same bytes in every class); see `goflate`'s module doc.
pub(crate) fn go_compressor(level: i8) -> Compressor {
    let p = Params {
        class: Class::V1_18_2,
        level,
        block_size: 1 << 20,
    };
    compressor(&p, Vec::new())
}

/// Go 1.27's levels 7–9, screened cheaply: the first tokens of `stream`'s first block against those the
/// lazy matcher (class 1.18.2, no dictionary) finds in the first 64 KiB of `data`. False only on a certain
/// mismatch (a stored first block, or too little of an incomplete input, is not screened).
pub(crate) fn go_lazy_screen(level: i8, stream: &[u8], data: &[u8], complete: bool) -> bool {
    let n = data.len().min(1 << 16);
    if n == data.len() && !complete {
        return true;
    }
    let whole = n == data.len();
    for k in SCREEN_TOKENS {
        let Some(want) = peek::first_block_tokens(stream, k) else {
            return true;
        };
        let mut w = huff::Tokens::default();
        for t in want {
            match t {
                peek::Tok::Lit(b) => w.add_literal(b),
                peek::Tok::Match(l, d) => w.add_match_long(l as i32, d as u32 - 1),
            }
        }
        let got = lazy::LazyEnc::first_tokens(level as u8, lazy::Lazy::V1_18_2, &data[..n], whole, k);
        if got.iter().zip(&w.toks).any(|(a, b)| a != b) {
            return false;
        }
    }
    true
}

/// A fresh flate writer for `p`.
fn compressor(p: &Params, out: Vec<u8>) -> Compressor {
    if p.level >= 7 {
        Compressor::new_lazy(p.level as u8, p.class.lazy(), out)
    } else {
        Compressor::new(p.level, p.class.variant(), out)
    }
}

/// Compresses one pgzip block as pgzip's `compressBlock` does.
fn compress_block(p: &Params, dict: Option<&[u8]>, data: &[u8], last: bool) -> Vec<u8> {
    let mut c = compressor(p, Vec::with_capacity(data.len() / 2 + 64));
    if let Some(d) = dict {
        c.fill_dict(d);
    }
    c.write(data);
    c.sync_flush();
    if last {
        c.close();
    }
    c.into_output()
}

/// Where sync-flush markers end in `stream`, as (compressed end offset, uncompressed offset), in order.
/// Byte patterns that merely look like a marker (inside stored data) are included; callers verify.
fn sync_points(stream: &[u8], limit: usize) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    let mut z = flate2::Decompress::new(false);
    let mut buf = vec![0u8; 1 << 16];
    let mut fed = 0usize;
    let mut i = 0usize;
    while i + 4 <= stream.len() && out.len() < limit {
        if stream[i..i + 4] != [0, 0, 0xff, 0xff] {
            i += 1;
            continue;
        }
        let end = i + 4;
        while fed < end {
            let (bi, bo) = (z.total_in(), z.total_out());
            match z.decompress(&stream[fed..end], &mut buf, flate2::FlushDecompress::Sync) {
                Ok(flate2::Status::StreamEnd) | Err(_) => return out,
                Ok(_) => {}
            }
            fed += (z.total_in() - bi) as usize;
            if z.total_in() == bi && z.total_out() == bo {
                break;
            }
        }
        // Drain output still pending for the bytes fed.
        loop {
            let bo = z.total_out();
            if z.decompress(&[], &mut buf, flate2::FlushDecompress::Sync).is_err() || z.total_out() == bo {
                break;
            }
        }
        if fed == end {
            out.push((end, z.total_out()));
        }
        i += 1;
    }
    out
}

/// Candidates (most likely first, fixed order) whose output matches the start of `stream` (raw deflate after
/// the gzip header) for `data` (what that prefix decodes to); `complete`: the stream prefix is all of it.
pub fn probe(stream: &[u8], data: &[u8], complete: bool) -> Vec<Params> {
    let points = sync_points(stream, 4096);
    // Block size: the uncompressed offset of the first real marker. Stored data can hold the same four bytes,
    // so a candidate must be confirmed by the structure: a marker at twice its offset, the stream's closing
    // bytes right after it, or no later marker in the prefix.
    let mut sizes: Vec<u64> = Vec::new();
    for (k, &(end, out)) in points.iter().enumerate() {
        if out <= TAIL as u64 || out > MAX_BLOCK {
            continue;
        }
        let tail = &stream[end..];
        let closes = complete && out == data.len() as u64 && tail.starts_with(&[3, 0]);
        let confirmed = closes
            || points[k + 1..].iter().any(|&(_, o)| o == 2 * out)
            || (complete && out == data.len() as u64 && tail.starts_with(&[0, 0, 0, 0xff, 0xff, 3, 0]))
            // the next marker ends the last, shorter block of a complete stream
            || (complete
                && data.len() as u64 <= 2 * out
                && points[k + 1..].iter().any(|&(_, o)| o == data.len() as u64))
            || k + 1 == points.len();
        if !confirmed {
            continue;
        }
        let b = if closes {
            // One closed block: any B above the length writes the same bytes; name the usual one.
            let want = (data.len() as u64 + 1).max(1 << 20);
            if want <= 1 << 20 {
                1 << 20
            } else {
                want.next_power_of_two()
            }
        } else {
            out
        };
        if !sizes.contains(&b) {
            sizes.push(b);
        }
        if closes || sizes.len() >= 8 {
            break;
        }
    }
    // A complete stream's closing marker always names a candidate, however many markers (stored
    // data can hold the same four bytes) came before it.
    if let Some(&(end, out)) = points.last() {
        let closes = complete && out == data.len() as u64 && stream[end..].starts_with(&[3, 0]) && out > TAIL as u64;
        if closes && sizes.len() >= 8 {
            let want = (data.len() as u64 + 1).max(1 << 20);
            let b = if want <= 1 << 20 {
                1 << 20
            } else {
                want.next_power_of_two()
            };
            if !sizes.contains(&b) {
                sizes.push(b);
            }
        }
    }
    if sizes.is_empty() && complete && data.len() <= TAIL && stream.len() >= 2 {
        // Tiny input: the lone block is shorter than the tail; the usual default names it.
        sizes.push(1 << 20);
    }
    let mut found = Vec::new();
    // Classes in order, each tried only when the ones before it match nothing at this block size.
    'sizes: for &b in &sizes {
        for (ci, &class) in CLASSES.iter().enumerate() {
            let mut open = false;
            for level in LEVEL_ORDER.into_iter().filter(|&l| class.has_level(l)) {
                let p = Params {
                    class,
                    level,
                    block_size: b,
                };
                if let Some(all) = compare_prefix(&p, stream, data, complete, PROBE_BUDGET) {
                    open |= !all;
                    found.push(p);
                }
            }
            if found.is_empty() {
                continue;
            }
            if open {
                narrow(&mut found, &CLASSES[ci + 1..], stream, data, complete);
            }
            break 'sizes;
        }
    }
    found
}

/// Input the probe re-encodes per candidate (whole blocks, at least one).
const PROBE_BUDGET: usize = 2 << 20;

/// The first ~2 MiB may not tell candidates apart: noise is Huffman-coded alike at every level 1–6, and the
/// classes differ only in block-writer choices such a prefix may not exercise (input that uses every code
/// writes the same headers either way). So when that check stopped short of the prefix's end, the newer
/// classes that also match at the same levels join, and if more than one candidate is left, each is
/// compared over the whole prefix; those still agreeing stay, in order.
fn narrow(found: &mut Vec<Params>, newer: &[Class], stream: &[u8], data: &[u8], complete: bool) {
    let mut more = Vec::new();
    for &class in newer {
        for p in found.iter().filter(|p| class.has_level(p.level)) {
            let q = Params { class, ..p.clone() };
            if compare_prefix(&q, stream, data, complete, PROBE_BUDGET).is_some() {
                more.push(q);
            }
        }
    }
    found.extend(more);
    if found.len() > 1 {
        found.retain(|p| compare_prefix(p, stream, data, complete, usize::MAX).is_some());
    }
}

/// Tokens the lazy levels' screen compares: a few first (other levels' output differs early), then more.
const SCREEN_TOKENS: [usize; 2] = [384, 4096];

/// The lazy levels' screen: the stream's first tokens against the matcher's (a whole block would cost
/// tens of milliseconds). False only on a certain mismatch.
fn lazy_screen(p: &Params, stream: &[u8], data: &[u8], complete: bool) -> bool {
    let b = p.block_size as usize;
    let blk = if data.len() >= b {
        b
    } else if complete {
        data.len()
    } else {
        return true;
    };
    let n = blk.min(1 << 16);
    for k in SCREEN_TOKENS {
        let Some(want) = peek::first_block_tokens(stream, k) else {
            return stored_screen(p, stream, &data[..blk]);
        };
        let mut w = huff::Tokens::default();
        for t in want {
            match t {
                peek::Tok::Lit(b) => w.add_literal(b),
                peek::Tok::Match(l, d) => w.add_match_long(l as i32, d as u32 - 1),
            }
        }
        let got = lazy::LazyEnc::first_tokens(p.level as u8, p.class.lazy(), &data[..n], blk == n, k);
        if got.iter().zip(&w.toks).any(|(a, b)| a != b) {
            return false;
        }
    }
    true
}

/// The lazy levels' screen when the first block is stored: the bytes written for the first 256 KiB of
/// the first block `blk`.
fn stored_screen(p: &Params, stream: &[u8], blk: &[u8]) -> bool {
    let mut c = compressor(p, Vec::new());
    for piece in blk[..blk.len().min(256 << 10)].chunks(1 << 16) {
        c.write(piece);
        let out = c.output();
        let n = out.len().min(stream.len());
        if out[..n] != stream[..n] {
            return false;
        }
    }
    true
}

/// Re-encodes `data` block by block and compares with `stream`, stopping at the first block that starts
/// `budget` input bytes in (at least one block is compared). None: a difference; Some(true): all of the
/// prefix agrees; Some(false): it agrees as far as the budget went.
fn compare_prefix(p: &Params, stream: &[u8], data: &[u8], complete: bool, budget: usize) -> Option<bool> {
    let b = p.block_size as usize;
    if p.level >= 7 && !lazy_screen(p, stream, data, complete) {
        return None;
    }
    // Screen: the first 64 KiB chunk alone (its bytes are final once the next chunk starts).
    let first = data.len().min(b);
    if first > huff::MAX_STORE_BLOCK && b > huff::MAX_STORE_BLOCK && p.level < 7 {
        let mut c = Compressor::new(p.level, p.class.variant(), Vec::new());
        c.write(&data[..huff::MAX_STORE_BLOCK]);
        c.write(&data[huff::MAX_STORE_BLOCK..huff::MAX_STORE_BLOCK + 1]);
        let out = c.output();
        let n = out.len().min(stream.len());
        if out[..n] != stream[..n] {
            return None;
        }
    }
    // Then whole blocks, as far as the budget allows.
    let mut pos = 0usize;
    let mut spos = 0usize;
    let mut prev: Option<&[u8]> = None;
    let mut checked_any = false;
    while pos < data.len() || (complete && pos == data.len()) {
        let end = pos + b;
        let last = end > data.len();
        if last && !complete {
            break;
        }
        if checked_any && pos >= budget {
            return Some(false);
        }
        let blk = &data[pos..end.min(data.len())];
        let dict = prev.filter(|d| d.len() > TAIL).map(|d| &d[d.len() - TAIL..]);
        let out = compress_block(p, dict, blk, last);
        let n = out.len().min(stream.len().saturating_sub(spos));
        if out[..n] != stream[spos..spos + n] {
            return None;
        }
        checked_any = true;
        if n < out.len() || last {
            break;
        }
        spos += out.len();
        prev = Some(blk);
        pos = end;
    }
    Some(true)
}

struct Job {
    seq: u64,
    dict: Option<Vec<u8>>,
    data: Vec<u8>,
    last: bool,
}

const MAX_INFLIGHT: usize = 4;

/// Streams the raw deflate stream of the whole input (no gzip header or trailer).
pub fn encoder<'a, R: Read + Send + 'a>(p: &Params, input: R) -> Box<dyn Read + Send + 'a> {
    let (res_tx, res_rx) = channel::<(u64, Vec<u8>)>();
    let (job_tx, job_rx) = channel::<Job>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let mut workers = 0;
    for _ in 0..2 {
        let (rx, tx, p) = (job_rx.clone(), res_tx.clone(), p.clone());
        let spawned = std::thread::Builder::new()
            .name("pgzip-encode".into())
            .spawn(move || loop {
                let job = match rx.lock() {
                    Ok(g) => g.recv(),
                    Err(_) => return,
                };
                let Ok(job) = job else { return };
                let out = compress_block(&p, job.dict.as_deref(), &job.data, job.last);
                if tx.send((job.seq, out)).is_err() {
                    return;
                }
            });
        if spawned.is_ok() {
            workers += 1;
        }
    }
    Box::new(Encoder {
        p: p.clone(),
        input,
        jobs: if workers > 0 { Some(job_tx) } else { None },
        results: res_rx,
        pending: BTreeMap::new(),
        next_seq: 0,
        emit_seq: 0,
        inflight: 0,
        submitted_last: false,
        prev_tail: None,
        cur: Vec::new(),
        cur_pos: 0,
    })
}

struct Encoder<R> {
    p: Params,
    input: R,
    jobs: Option<Sender<Job>>,
    results: Receiver<(u64, Vec<u8>)>,
    pending: BTreeMap<u64, Vec<u8>>,
    next_seq: u64,
    emit_seq: u64,
    inflight: usize,
    submitted_last: bool,
    prev_tail: Option<Vec<u8>>,
    cur: Vec<u8>,
    cur_pos: usize,
}

impl<R: Read> Encoder<R> {
    /// Reads the next block and hands it to a worker (or compresses it here when there are none).
    fn submit(&mut self) -> io::Result<()> {
        let b = self.p.block_size as usize;
        let mut data = Vec::with_capacity(b.min(1 << 24));
        (&mut self.input).take(b as u64).read_to_end(&mut data)?;
        let last = data.len() < b;
        let dict = self.prev_tail.take();
        if data.len() > TAIL {
            self.prev_tail = Some(data[data.len() - TAIL..].to_vec());
        }
        let job = Job {
            seq: self.next_seq,
            dict,
            data,
            last,
        };
        self.next_seq += 1;
        self.submitted_last = last;
        match &self.jobs {
            Some(tx) => {
                tx.send(job)
                    .map_err(|_| io::Error::other("pgzip encoder worker ended"))?;
                self.inflight += 1;
            }
            None => {
                let out = compress_block(&self.p, job.dict.as_deref(), &job.data, job.last);
                self.pending.insert(job.seq, out);
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for Encoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.cur_pos < self.cur.len() {
                let n = (self.cur.len() - self.cur_pos).min(buf.len());
                buf[..n].copy_from_slice(&self.cur[self.cur_pos..self.cur_pos + n]);
                self.cur_pos += n;
                return Ok(n);
            }
            while !self.submitted_last && self.inflight < MAX_INFLIGHT && self.pending.len() < MAX_INFLIGHT {
                self.submit()?;
                if self.jobs.is_none() {
                    break;
                }
            }
            if let Some(out) = self.pending.remove(&self.emit_seq) {
                self.emit_seq += 1;
                self.cur = out;
                self.cur_pos = 0;
                continue;
            }
            if self.inflight == 0 {
                if self.submitted_last {
                    return Ok(0);
                }
                continue;
            }
            let (seq, out) = self
                .results
                .recv()
                .map_err(|_| io::Error::other("pgzip encoder worker failed"))?;
            self.inflight -= 1;
            self.pending.insert(seq, out);
        }
    }
}

#[cfg(test)]
mod tests;
