//! zstd layers written by libzstd (the `zstd` CLI and other users of the library's streaming API), rebuilt with the
//! system libzstd through the `zstd` crate (linked via pkg-config, never a bundled copy).
//!
//! # What is reproduced
//! One zstd frame, written the way the `zstd` CLI writes it (programs/fileio.c of zstd 1.5.x):
//! `ZSTD_compressStream2` fed in `ZSTD_CStreamInSize()` (128 KiB) chunks with `ZSTD_e_continue`, ended with
//! `ZSTD_e_end` on the chunk that completes a known size (the CLI pledges a file's size) or on an empty read (stdin,
//! size unknown), output buffer `ZSTD_CStreamOutSize()`. Everything else is libzstd's defaults, which is what the CLI
//! sets unless told otherwise. The parameters that change the bytes:
//!
//! - the compression level (`-1`..`-19`, `--ultra -20..-22`, `--fast=N` = level −N);
//! - the checksum flag (the CLI writes one unless `--no-check`);
//! - the content size, when the producer pledged it (CLI compressing a file: yes; from stdin: no). It is read from
//!   the frame header and is part of the profile: it selects libzstd's parameters for small inputs;
//! - single-threaded (`--single-thread`, or library users with `nbWorkers = 0`) versus libzstd's multi-threaded job
//!   framing (`nbWorkers >= 1`: the CLI's default, `-T0`, `-T#`). libzstd's multi-threaded output does not depend on
//!   the number of workers, so one profile covers them all; the rebuild uses two workers;
//! - `--long[=W]` (long-distance matching with window log W, 27 without a value): the rebuild sets them as the CLI
//!   does (`ZSTD_c_enableLongDistanceMatching`, `ZSTD_c_windowLog`, the other LDM parameters left at their defaults).
//!   The probe tries it only when no plain level agrees, at levels up to 19, with W from the frame's window
//!   descriptor, or 27 for a single-segment frame (which names no window).
//!
//! Not reproduced: dictionaries (a frame naming a dictionary id gets no candidate), more than one frame (only the
//! first frame is probed; a stream with concatenated frames fails the caller's proof), `--long=W` other than 27 on
//! an input small enough to be one segment, `--ultra` levels with `--long`, `--rsyncable`, `--adapt`, explicit
//! advanced parameters (`--zstd=...`, `-B#` job size), and one-shot compression of a whole input held in memory
//! (e.g. python-zstandard's `ZstdCompressor.compress()`): that compresses from one contiguous buffer, which a
//! rebuild with bounded memory cannot imitate once the input outgrows the window. python-zstandard also bundles its
//! own libzstd (1.5.7 in 0.25), so even its streaming output needs that exact library version.
//!
//! libzstd's output changes between releases, so a profile names the exact library version that wrote it, and a
//! rebuild refuses to run with another one (the caller's proof would fail anyway).
//!
//! # Profile names
//! `zstd-<major>.<minor>.<patch>/<level>/<threads>/<check>/<size>[/long=<W>]` where `<threads>` is `mt` or `st`,
//! `<check>` is `ck` or `nock`, `<size>` is `cs=<decimal bytes>` or `nocs`; e.g. `zstd-1.5.4/3/mt/ck/cs=1048576`,
//! `zstd-1.5.4/19/st/nock/nocs`, `zstd-1.5.4/-3/mt/ck/nocs/long=27`.

use crate::error::Error;
use ::zstd::zstd_safe::{self, zstd_sys::ZSTD_EndDirective, CCtx, CParameter, InBuffer, OutBuffer, ResetDirective};
use std::io::{self, Read};

/// The levels tried, in this fixed order (ties go to the first).
const LEVELS: [i32; 27] = [
    3, 1, 19, 9, 2, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 21, 22, -1, -2, -3, -4, -5,
];
/// libzstd's largest block, and the CLI's input chunk (`ZSTD_CStreamInSize()`).
const BLOCK: usize = 128 * 1024;
/// Data re-encoded by the probe: per level (after one block), and at most per threading mode.
const PROBE_FIRST: usize = 2 * BLOCK;
const PROBE_SECOND: usize = 6 << 20;
/// libzstd hands out no jobs for a frame whose pledged size is at most this (`ZSTDMT_JOBSIZE_MIN`).
const JOBSIZE_MIN: u64 = 512 * 1024;
/// The window log of the CLI's `--long` without a value.
const LONG_DEFAULT: u32 = 27;
/// Worker threads of the multi-threaded rebuild (the output does not depend on it).
const WORKERS: u32 = 2;

/// The parameters that determine the bytes of a libzstd frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// libzstd version that wrote it, as `ZSTD_versionNumber()` (10504 = 1.5.4).
    pub version: u32,
    pub level: i32,
    /// Multi-threaded job framing (`nbWorkers >= 1`) rather than single-threaded.
    pub threads: bool,
    pub checksum: bool,
    /// The pledged content size written in the frame header, if any.
    pub content_size: Option<u64>,
    /// Long-distance matching with this window log.
    pub long: Option<u32>,
}

impl Params {
    pub fn profile(&self) -> String {
        let v = self.version;
        let mut s = format!(
            "zstd-{}.{}.{}/{}/{}/{}/",
            v / 10000,
            v / 100 % 100,
            v % 100,
            self.level,
            if self.threads { "mt" } else { "st" },
            if self.checksum { "ck" } else { "nock" }
        );
        match self.content_size {
            Some(n) => s.push_str(&format!("cs={n}")),
            None => s.push_str("nocs"),
        }
        if let Some(w) = self.long {
            s.push_str(&format!("/long={w}"));
        }
        s
    }

    pub fn from_profile(s: &str) -> Option<Params> {
        let mut parts = s.split('/');
        let version = parts.next()?.strip_prefix("zstd-")?;
        let mut v = version.split('.');
        let (major, minor, patch) = (num::<u32>(v.next()?)?, num::<u32>(v.next()?)?, num::<u32>(v.next()?)?);
        if v.next().is_some() || major > 99 || minor > 99 || patch > 99 {
            return None;
        }
        let level = num::<i32>(parts.next()?)?;
        if !(-(1 << 17)..=22).contains(&level) || level == 0 {
            return None;
        }
        let threads = match parts.next()? {
            "mt" => true,
            "st" => false,
            _ => return None,
        };
        let checksum = match parts.next()? {
            "ck" => true,
            "nock" => false,
            _ => return None,
        };
        let content_size = match parts.next()? {
            "nocs" => None,
            t => Some(num::<u64>(t.strip_prefix("cs=")?)?),
        };
        let long = match parts.next() {
            None => None,
            Some(t) => Some(num::<u32>(t.strip_prefix("long=")?).filter(|w| (10..=31).contains(w))?),
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Params {
            version: major * 10000 + minor * 100 + patch,
            level,
            threads,
            checksum,
            content_size,
            long,
        })
    }

    /// A compression context set up as the producer's was.
    fn context(&self, workers: u32) -> io::Result<CCtx<'static>> {
        let mut c = CCtx::try_create().ok_or_else(|| other("cannot allocate a zstd context".into()))?;
        self.configure(&mut c, workers)?;
        Ok(c)
    }

    /// Sets a (fresh or reset) context's parameters to the producer's.
    fn configure(&self, c: &mut CCtx<'static>, workers: u32) -> io::Result<()> {
        let linked = zstd_safe::version_number();
        if linked != self.version {
            return Err(other(format!(
                "profile {} needs libzstd {}, this build links {}",
                self.profile(),
                self.version,
                zstd_safe::version_string()
            )));
        }
        let zerr = |e: usize| other(format!("libzstd: {}", zstd_safe::get_error_name(e)));
        c.reset(ResetDirective::SessionAndParameters).map_err(zerr)?;
        c.set_parameter(CParameter::CompressionLevel(self.level))
            .map_err(zerr)?;
        c.set_parameter(CParameter::ChecksumFlag(self.checksum)).map_err(zerr)?;
        c.set_parameter(CParameter::ContentSizeFlag(true)).map_err(zerr)?;
        if let Some(w) = self.long {
            c.set_parameter(CParameter::EnableLongDistanceMatching(true))
                .map_err(zerr)?;
            c.set_parameter(CParameter::WindowLog(w)).map_err(zerr)?;
        }
        c.set_parameter(CParameter::NbWorkers(if self.threads { workers } else { 0 }))
            .map_err(zerr)?;
        c.set_pledged_src_size(self.content_size).map_err(zerr)?;
        Ok(())
    }
}

/// A decimal number in canonical form (no sign, no leading zeros, except a leading '-' for negatives).
fn num<T: std::str::FromStr + ToString>(s: &str) -> Option<T> {
    let n: T = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

fn other(reason: String) -> io::Error {
    io::Error::other(Error::Compression {
        blob: "zstd rebuild".into(),
        reason,
    })
}

/// What a zstd frame header says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FrameHeader {
    len: usize,
    checksum: bool,
    content_size: Option<u64>,
    dict_id: bool,
}

fn parse_header(s: &[u8]) -> Option<FrameHeader> {
    if s.len() < 5 || s[..4] != [0x28, 0xb5, 0x2f, 0xfd] {
        return None;
    }
    let fhd = s[4];
    if fhd & 0x08 != 0 {
        return None; // reserved bit
    }
    let single = fhd & 0x20 != 0;
    let did = [0, 1, 2, 4][(fhd & 3) as usize];
    let fcs = match fhd >> 6 {
        0 => usize::from(single),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let len = 5 + usize::from(!single) + did + fcs;
    if s.len() < len {
        return None;
    }
    let content_size = (fcs > 0).then(|| {
        let b = &s[len - fcs..len];
        let mut v = 0u64;
        for (i, x) in b.iter().enumerate() {
            v |= u64::from(*x) << (8 * i);
        }
        if fcs == 2 {
            v + 256
        } else {
            v
        }
    });
    Some(FrameHeader {
        len,
        checksum: fhd & 4 != 0,
        content_size,
        dict_id: did > 0
            && s[5 + usize::from(!single)..5 + usize::from(!single) + did]
                .iter()
                .any(|&b| b != 0),
    })
}

/// Compresses `data` as the CLI would, as a prefix of the input, on `c` (reset first): `end` says `data` is all of
/// it (then the frame is finished), otherwise the data is flushed (only whole blocks of it may be compared).
fn encode_prefix(c: &mut CCtx<'static>, p: &Params, data: &[u8], end: bool) -> Option<Vec<u8>> {
    p.configure(c, WORKERS).ok()?;
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(data.len()) + 64);
    let mut buf = vec![0u8; CCtx::out_size()];
    // As the CLI: a known size ends with the chunk that completes it, an unknown one with an empty read.
    let mut chunks: Vec<(&[u8], ZSTD_EndDirective)> = data
        .chunks(BLOCK)
        .map(|ch| (ch, ZSTD_EndDirective::ZSTD_e_continue))
        .collect();
    let last = if end {
        ZSTD_EndDirective::ZSTD_e_end
    } else {
        ZSTD_EndDirective::ZSTD_e_flush
    };
    if chunks.is_empty() || (end && p.content_size.is_none()) {
        chunks.push((&[], last));
    } else if let Some(l) = chunks.last_mut() {
        l.1 = last;
    }
    for (chunk, op) in chunks {
        let mut inb = InBuffer::around(chunk);
        loop {
            let mut ob = OutBuffer::around(&mut buf[..]);
            let left = c.compress_stream2(&mut ob, &mut inb, op).ok()?;
            let n = ob.pos();
            out.extend_from_slice(&buf[..n]);
            if inb.pos() == chunk.len() && (op == ZSTD_EndDirective::ZSTD_e_continue || left == 0) {
                break;
            }
        }
    }
    // Leave the context clean for the next candidate (workers idle, no frame pending).
    if !end {
        c.reset(ResetDirective::SessionOnly).ok()?;
    }
    Some(out)
}

/// The window log libzstd 1.5 uses at a level for an input of unknown (or large) size: what the frame header of such
/// an input says (a unit test checks it against the linked library).
fn level_window(level: i32) -> u32 {
    match level {
        ..=1 => 19,
        2 => 20,
        3..=8 => 21,
        9..=16 => 22,
        17..=19 => 23,
        20 => 25,
        21 => 26,
        _ => 27,
    }
}

/// Candidates for a zstd stream whose first bytes are `stream`, decoding to `data` (see the module doc).
///
/// The frame header gives the checksum flag and the content size, and (unless the frame is a single segment) the
/// window log, which narrows the levels. Levels are tried in order: the first block, then the first two, are
/// re-encoded; a level that agrees is then compared as far as single- and multi-threaded framing can part (they
/// agree until libzstd's single-threaded input buffer, window + one block, wraps), multi-threaded (the CLI's
/// default) first. The first level that agrees all the way is the answer; when the data is too short to get that
/// far, both framings of every level that agrees as far as it goes are returned, in order.
pub fn probe(stream: &[u8], data: &[u8], complete: bool) -> Vec<Params> {
    let Some(h) = parse_header(stream) else {
        return Vec::new();
    };
    if h.dict_id {
        return Vec::new();
    }
    // A whole input the frame says is larger (or smaller) than it is cannot be ours.
    if complete && h.content_size.is_some_and(|n| n != data.len() as u64) {
        return Vec::new();
    }
    let Some(mut c) = CCtx::try_create() else {
        return Vec::new();
    };
    let version = zstd_safe::version_number();
    let base = |level, long| Params {
        version,
        level,
        threads: false,
        checksum: h.checksum,
        content_size: h.content_size,
        long,
    };
    let window = window_log(stream);
    let levels: Vec<Params> = LEVELS
        .iter()
        .filter(|&&l| match window {
            // A window descriptor: the input was not known to fit in the window, so the level's own window log.
            Some(w) => level_window(l) == w,
            None => true,
        })
        .map(|&l| base(l, None))
        .collect();
    let telling = stream.get(h.len).is_some_and(|b| (b >> 1) & 3 == 2) && data.len() >= BLOCK;
    let found = settle(&mut c, stream, data, complete, window, telling, &levels);
    if !found.is_empty() {
        return found;
    }
    // No plain level: `--long[=W]` (long-distance matching, window log W), tried at the levels the CLI takes
    // without `--ultra`. W is the frame's window log; a single-segment frame names none, so the CLI's default
    // (27) is tried.
    let w = window.unwrap_or(LONG_DEFAULT);
    let long: Vec<Params> = LEVELS.iter().filter(|&&l| l <= 19).map(|&l| base(l, Some(w))).collect();
    settle(&mut c, stream, data, complete, window, telling, &long)
}

/// The first of `levels` (in order) whose re-encoding agrees with the stream as far as the framings are compared,
/// with both framings where the data cannot tell them apart (see [`probe`]).
fn settle(
    c: &mut CCtx<'static>,
    stream: &[u8],
    data: &[u8],
    complete: bool,
    window: Option<u32>,
    telling: bool,
    levels: &[Params],
) -> Vec<Params> {
    // A compressed first block tells levels apart, mostly: neighbouring levels can write the same first blocks
    // (11 and 12 often do), so a level is the answer only once it also survives the longer comparison below;
    // until then the next levels are tried too.
    let mut found = Vec::new();
    for p in levels {
        let ok = stage(c, stream, data, complete, std::slice::from_ref(p), BLOCK);
        let Some(p) = stage(c, stream, data, complete, &ok, PROBE_FIRST).pop() else {
            continue;
        };
        let st = p.clone();
        let mt = Params { threads: true, ..p };
        // A frame pledged at most JOBSIZE_MIN is compressed single-threaded either way: one canonical profile.
        if st.content_size.is_some_and(|n| n <= JOBSIZE_MIN) {
            found.push(st);
            if telling {
                break;
            }
            continue;
        }
        // Where the two framings can part: the single-threaded input buffer (window + one block) wraps, the first
        // multi-threaded job (2^max(20, window log + 2)) ends. A complete input short enough is re-encoded whole.
        let reach = if complete && data.len() <= PROBE_SECOND {
            Some(data.len())
        } else {
            window.and_then(|w| {
                let wrap = (1usize << w) + 3 * BLOCK;
                let job = (1usize << (w + 2).max(20)) + 3 * BLOCK;
                let r = wrap.max(job).min(PROBE_SECOND).min(data.len());
                (r >= wrap).then_some(r)
            })
        };
        match reach {
            Some(r) => {
                let confirmed = stage(c, stream, data, complete, &[mt, st], r);
                let done = telling && !confirmed.is_empty();
                found.extend(confirmed);
                if done {
                    break;
                }
            }
            None => {
                // Too little data to tell the framings (or this level from the next) apart: keep both, and the
                // later levels that agree as far as the data goes.
                found.push(mt);
                found.push(st);
            }
        }
    }
    found
}

/// The window log of a frame with a window descriptor whose mantissa is zero.
fn window_log(stream: &[u8]) -> Option<u32> {
    let fhd = *stream.get(4)?;
    if fhd & 0x20 != 0 {
        return None;
    }
    let wd = *stream.get(5)?;
    (wd & 7 == 0).then_some(10 + u32::from(wd >> 3))
}

/// The candidates whose re-encoding of the first `limit` bytes of `data` (whole blocks, or all of a complete input
/// if it is that short) agrees with `stream`.
fn stage(
    c: &mut CCtx<'static>,
    stream: &[u8],
    data: &[u8],
    complete: bool,
    cands: &[Params],
    limit: usize,
) -> Vec<Params> {
    let whole = complete && data.len() <= limit;
    let n = if whole {
        data.len()
    } else {
        data.len().min(limit) / BLOCK * BLOCK
    };
    if n == 0 && !whole {
        // Not one whole block: only the frame header to go by.
        let Some(h) = parse_header(stream) else {
            return Vec::new();
        };
        let one = &data[..data.len().min(1)];
        return cands
            .iter()
            .filter(|p| encode_prefix(c, p, one, false).is_some_and(|o| o.starts_with(&stream[..h.len])))
            .cloned()
            .collect();
    }
    cands
        .iter()
        .filter(|p| {
            let Some(out) = encode_prefix(c, p, &data[..n], whole) else {
                return false;
            };
            if whole {
                out == stream || (stream.len() < out.len() && out.starts_with(stream))
            } else {
                let m = out.len().min(stream.len());
                out[..m] == stream[..m]
            }
        })
        .cloned()
        .collect()
}

/// Streams the whole rebuilt zstd stream from the input, as the producer's call sequence did (see the module doc).
pub fn encoder<'a, R: Read + Send + 'a>(p: &Params, input: R) -> Box<dyn Read + Send + 'a> {
    match p.context(WORKERS) {
        Ok(cctx) => Box::new(Encode {
            input,
            cctx,
            content_size: p.content_size,
            inbuf: vec![0; BLOCK],
            in_pos: 0,
            in_len: 0,
            read: 0,
            out: vec![0; CCtx::out_size()],
            out_pos: 0,
            out_len: 0,
            phase: Phase::Read,
        }),
        Err(e) => Box::new(Failed(Some(e))),
    }
}

struct Failed(Option<io::Error>);

impl Read for Failed {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(self.0.take().unwrap_or_else(|| other("rebuild already failed".into())))
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Phase {
    /// The chunk is consumed: read the next one.
    Read,
    /// Compressing the current chunk with this directive.
    Compress(ZSTD_EndDirective),
    Done,
}

struct Encode<R> {
    input: R,
    cctx: CCtx<'static>,
    content_size: Option<u64>,
    inbuf: Vec<u8>,
    in_pos: usize,
    in_len: usize,
    read: u64,
    out: Vec<u8>,
    out_pos: usize,
    out_len: usize,
    phase: Phase,
}

impl<R: Read> Encode<R> {
    fn fill(&mut self) -> io::Result<usize> {
        let mut n = 0;
        while n < self.inbuf.len() {
            match self.input.read(&mut self.inbuf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}

impl<R: Read> Read for Encode<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.out_pos < self.out_len {
                let n = (self.out_len - self.out_pos).min(buf.len());
                buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
                self.out_pos += n;
                return Ok(n);
            }
            match self.phase {
                Phase::Done => return Ok(0),
                Phase::Read => {
                    let n = self.fill()?;
                    self.read += n as u64;
                    if let Some(cs) = self.content_size {
                        if self.read > cs || (n == 0 && self.read < cs) {
                            return Err(other(format!(
                                "input has {} bytes or more, the frame records {cs}",
                                self.read
                            )));
                        }
                    }
                    self.in_pos = 0;
                    self.in_len = n;
                    let end = n == 0 || self.content_size == Some(self.read);
                    self.phase = Phase::Compress(if end {
                        ZSTD_EndDirective::ZSTD_e_end
                    } else {
                        ZSTD_EndDirective::ZSTD_e_continue
                    });
                }
                Phase::Compress(op) => {
                    let mut inb = InBuffer::around(&self.inbuf[self.in_pos..self.in_len]);
                    let mut ob = OutBuffer::around(&mut self.out[..]);
                    let left = self
                        .cctx
                        .compress_stream2(&mut ob, &mut inb, op)
                        .map_err(|e| other(format!("libzstd: {}", zstd_safe::get_error_name(e))))?;
                    self.out_len = ob.pos();
                    self.out_pos = 0;
                    self.in_pos += inb.pos();
                    if self.in_pos == self.in_len {
                        if op == ZSTD_EndDirective::ZSTD_e_continue {
                            self.phase = Phase::Read;
                        } else if left == 0 {
                            self.phase = Phase::Done;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if (i / 4096) % 3 == 0 {
                    x as u8
                } else {
                    b"layer of text, some of it repeated; "[(x % 37) as usize % 36]
                }
            })
            .collect()
    }

    fn rebuild(p: &Params, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encoder(p, data).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn profiles_roundtrip_and_reject_malformed() {
        let p = Params {
            version: 10504,
            level: -3,
            threads: true,
            checksum: false,
            content_size: Some(1234),
            long: Some(27),
        };
        assert_eq!(p.profile(), "zstd-1.5.4/-3/mt/nock/cs=1234/long=27");
        assert_eq!(Params::from_profile(&p.profile()), Some(p));
        let q = Params::from_profile("zstd-1.5.4/19/st/ck/nocs").unwrap();
        assert_eq!(
            (q.level, q.threads, q.checksum, q.content_size, q.long),
            (19, false, true, None, None)
        );
        for bad in [
            "zstd-1.5.4/3/mt/ck",
            "zstd-1.5.4/03/mt/ck/nocs",
            "zstd-1.5.4/+3/mt/ck/nocs",
            "zstd-1.5.4/0/mt/ck/nocs",
            "zstd-1.5.4/23/mt/ck/nocs",
            "zstd-1.5/3/mt/ck/nocs",
            "zstd-1.5.4/3/xt/ck/nocs",
            "zstd-1.5.4/3/mt/ck/cs=01",
            "zstd-1.5.4/3/mt/ck/nocs/long=9",
            "zstd-1.5.4/3/mt/ck/nocs/long=27/x",
            "zlib-1.2/6",
            "",
        ] {
            assert_eq!(Params::from_profile(bad), None, "{bad}");
        }
    }

    #[test]
    fn probe_finds_own_output_first() {
        let data = sample(1_500_000, 7);
        for (level, threads, checksum, sized) in
            [(3, true, true, true), (1, false, false, false), (9, true, true, false)]
        {
            let p = Params {
                version: zstd_safe::version_number(),
                level,
                threads,
                checksum,
                content_size: sized.then_some(data.len() as u64),
                long: None,
            };
            let t = std::time::Instant::now();
            let z = rebuild(&p, &data);
            eprintln!("rebuild {:?}", t.elapsed());
            let t = std::time::Instant::now();
            let cands = probe(&z[..z.len().min(1 << 20)], &data[..1 << 20], false);
            eprintln!("probe prefix {:?}", t.elapsed());
            assert!(cands.contains(&p), "{} → {cands:?}", p.profile());
            let t = std::time::Instant::now();
            let cands = probe(&z, &data, true);
            eprintln!("probe complete {:?}", t.elapsed());
            let pos = cands.iter().position(|c| c == &p).expect("found");
            for c in &cands[..pos] {
                assert_eq!(rebuild(c, &data), z, "{} before {}", c.profile(), p.profile());
            }
        }
    }

    #[test]
    fn level_windows_are_the_linked_librarys() {
        let mut c = CCtx::create();
        for level in LEVELS.into_iter().filter(|&l| l <= 19) {
            let p = Params {
                version: zstd_safe::version_number(),
                level,
                threads: false,
                checksum: false,
                content_size: None,
                long: None,
            };
            let out = encode_prefix(&mut c, &p, &[0], false).unwrap();
            assert_eq!(window_log(&out), Some(level_window(level)), "level {level}");
        }
    }

    #[test]
    fn wrong_content_size_is_an_error() {
        let p = Params {
            version: zstd_safe::version_number(),
            level: 3,
            threads: false,
            checksum: true,
            content_size: Some(10),
            long: None,
        };
        let mut out = Vec::new();
        assert!(encoder(&p, &b"0123456789A"[..]).read_to_end(&mut out).is_err());
        let mut out = Vec::new();
        assert!(encoder(&p, &b"012345678"[..]).read_to_end(&mut out).is_err());
        let other = Params { version: 10101, ..p };
        assert!(encoder(&other, &b"0123456789"[..]).read_to_end(&mut out).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn rebuild_decodes_to_input(
            data in proptest::collection::vec(any::<u8>(), 0..300_000),
            level in prop_oneof![Just(1), Just(3), Just(-1), Just(6)],
            threads: bool,
            checksum: bool,
            sized: bool,
        ) {
            let p = Params {
                version: zstd_safe::version_number(),
                level,
                threads,
                checksum,
                content_size: sized.then_some(data.len() as u64),
                long: None,
            };
            let z = rebuild(&p, &data);
            prop_assert_eq!(::zstd::decode_all(&z[..]).unwrap(), data.clone());
            let h = parse_header(&z).unwrap();
            prop_assert_eq!(h.checksum, checksum);
            prop_assert_eq!(h.content_size, p.content_size);
            let cands = probe(&z, &data, true);
            prop_assert!(cands.iter().any(|c| rebuild(c, &data) == z));
        }
    }
}
