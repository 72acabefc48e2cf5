//! A tar splitter that keeps every byte.
//!
//! It does not interpret a tar beyond what it needs to find where regular files' contents lie:
//! everything else (headers of every flavour, PAX and GNU extension records, padding, the
//! end-of-archive blocks and any bytes after them) is handed on verbatim as *meta* bytes, in
//! order. Concatenating meta and file data as emitted gives back the input exactly, whatever
//! oddities it holds, so rebuilding a layer never depends on parsing it "right". Names are
//! never interpreted as paths.

use crate::error::{Error, Result};
use std::io::{self, Read};

const BLOCK: usize = 512;
/// Largest PAX or GNU long-name record we hold in memory (Go's archive/tar uses the same bound).
pub const MAX_SPECIAL: u64 = 1 << 20;
/// Trailing bytes are handed on in pieces of this size.
const TAIL_PIECE: usize = 64 * 1024;

/// Receives the pieces of a tar stream in order.
pub trait TarSink {
    /// Bytes to keep verbatim (headers, extension records, padding, trailer).
    fn meta(&mut self, bytes: &[u8]) -> Result<()>;
    /// A regular file's contents: exactly `size` bytes must be read from `data`.
    fn file(&mut self, size: u64, data: &mut dyn Read) -> Result<()>;
}

/// What a split saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TarSummary {
    /// Bytes in the stream.
    pub bytes: u64,
    /// Headers (entries, including extension headers).
    pub headers: u64,
    /// Regular files.
    pub files: u64,
}

/// Parses a numeric header field: octal (NUL/space terminated) or GNU base-256.
pub fn parse_numeric(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] == 0xff {
            return None; // negative base-256
        }
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(b as u64)?;
        }
        return Some(v);
    }
    let s: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ' || b == 0)
        .take_while(|&b| b != 0 && b != b' ')
        .collect();
    if s.is_empty() {
        return Some(0);
    }
    let mut v: u64 = 0;
    for b in s {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add((b - b'0') as u64)?;
    }
    Some(v)
}

/// Checks a header's checksum under either convention (unsigned, as POSIX says, or the signed
/// sum some old tars wrote). Returns the three numbers when neither matches.
pub fn check_checksum(h: &[u8; BLOCK]) -> std::result::Result<(), (Option<u64>, u64, i64)> {
    let stored = parse_numeric(&h[148..156]);
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += b as u64;
        signed += b as i8 as i64;
    }
    match stored {
        Some(s) if s == unsigned || s as i64 == signed => Ok(()),
        _ => Err((stored, unsigned, signed)),
    }
}

/// Types whose header size field is ignored: no data blocks follow them.
fn header_only(typeflag: u8) -> bool {
    matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6')
}

/// Reads until `buf` is full or EOF; returns bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The `size` record of a PAX extended header, if any.
fn pax_size(data: &[u8]) -> std::result::Result<Option<u64>, String> {
    let mut rest = data;
    let mut size = None;
    while !rest.is_empty() {
        // A record is "<len> <key>=<value>\n"; NUL padding may end the data.
        if rest[0] == 0 {
            break;
        }
        let sp = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or("PAX record without a length")?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("PAX record length is not a number")?;
        if len <= sp + 1 || len > rest.len() {
            return Err("PAX record length out of range".into());
        }
        let rec = &rest[sp + 1..len];
        if let Some(v) = rec.strip_prefix(b"size=") {
            let v = v.strip_suffix(b"\n").unwrap_or(v);
            size = Some(
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or("PAX size record is not a number")?,
            );
        }
        rest = &rest[len..];
    }
    Ok(size)
}

/// Splits the tar stream `r` into meta and file pieces for `sink`. `blob` names the stream in
/// errors. Fails on a header whose checksum matches neither convention and on truncation.
pub fn split(r: &mut dyn Read, blob: &str, sink: &mut dyn TarSink) -> Result<TarSummary> {
    let mut sum = TarSummary::default();
    let mut pending_size: Option<u64> = None;
    let err = |offset: u64, reason: String| Error::Tar {
        blob: blob.to_string(),
        offset,
        reason,
    };
    let io_err = |offset: u64, e: io::Error| match e.into_inner() {
        Some(inner) => match inner.downcast::<Error>() {
            Ok(e) => *e,
            Err(inner) => Error::Tar {
                blob: blob.to_string(),
                offset,
                reason: format!("read failed: {inner}"),
            },
        },
        None => Error::Tar {
            blob: blob.to_string(),
            offset,
            reason: "read failed".into(),
        },
    };
    let mut h = [0u8; BLOCK];
    loop {
        let at = sum.bytes;
        let n = read_full(r, &mut h).map_err(|e| io_err(at, e))?;
        if n == 0 {
            return Ok(sum); // no end-of-archive marker: accepted, nothing more to keep
        }
        if n < BLOCK || h.iter().all(|&b| b == 0) {
            // End of archive (or bytes after the last entry that are not a header): keep them all.
            if n < BLOCK && h[..n].iter().any(|&b| b != 0) {
                return Err(err(at, format!("truncated tar header ({n} of 512 bytes)")));
            }
            sink.meta(&h[..n])?;
            sum.bytes += n as u64;
            let mut buf = vec![0u8; TAIL_PIECE];
            loop {
                let k = read_full(r, &mut buf).map_err(|e| io_err(sum.bytes, e))?;
                if k == 0 {
                    return Ok(sum);
                }
                sink.meta(&buf[..k])?;
                sum.bytes += k as u64;
            }
        }
        if let Err((stored, unsigned, signed)) = check_checksum(&h) {
            let stored = stored.map_or_else(
                || format!("{:?}", String::from_utf8_lossy(&h[148..156])),
                |s| s.to_string(),
            );
            return Err(err(
                at,
                format!("header checksum mismatch: stored {stored}, unsigned sum {unsigned}, signed sum {signed}"),
            ));
        }
        sum.headers += 1;
        let typeflag = h[156];
        let raw_size = parse_numeric(&h[124..136]).ok_or_else(|| {
            err(
                at,
                format!("invalid size field {:?}", String::from_utf8_lossy(&h[124..136])),
            )
        })?;
        sink.meta(&h)?;
        sum.bytes += BLOCK as u64;
        let size = match typeflag {
            b'x' | b'g' | b'L' | b'K' => {
                if raw_size > MAX_SPECIAL {
                    return Err(err(
                        at,
                        format!("extension header of {raw_size} bytes (limit {MAX_SPECIAL})"),
                    ));
                }
                let padded = raw_size.div_ceil(BLOCK as u64) * BLOCK as u64;
                let mut data = vec![0u8; padded as usize];
                let k = read_full(r, &mut data).map_err(|e| io_err(sum.bytes, e))?;
                if k < padded as usize {
                    return Err(err(sum.bytes + k as u64, "truncated extension header".into()));
                }
                if typeflag == b'x' {
                    pending_size = pax_size(&data[..raw_size as usize]).map_err(|m| err(at, m))?;
                }
                sink.meta(&data)?;
                sum.bytes += padded;
                continue;
            }
            t if header_only(t) => 0,
            _ => pending_size.unwrap_or(raw_size),
        };
        pending_size = None;
        if size > 0 {
            let start = sum.bytes;
            let mut counted = Counted {
                inner: r.take(size),
                n: 0,
                size,
                short: false,
            };
            let res = sink.file(size, &mut counted);
            if counted.short {
                return Err(err(
                    start + counted.n,
                    format!("truncated file data ({} of {size} bytes)", counted.n),
                ));
            }
            res?;
            if counted.n != size {
                // The sink stopped early or the input ended: drain to tell which.
                let rest = io::copy(&mut counted, &mut io::sink()).map_err(|e| io_err(start + counted.n, e))?;
                if counted.n != size {
                    return Err(err(
                        start + counted.n,
                        format!("truncated file data ({} of {size} bytes)", counted.n),
                    ));
                }
                debug_assert_eq!(rest, 0, "sink must consume the whole file");
            }
            sum.bytes += size;
            sum.files += 1;
            let pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
            if pad > 0 {
                let k = read_full(r, &mut h[..pad as usize]).map_err(|e| io_err(sum.bytes, e))?;
                sink.meta(&h[..k])?;
                sum.bytes += k as u64;
                if k < pad as usize {
                    return Ok(sum); // padding cut short at EOF: kept as is
                }
            }
        } else if typeflag == b'0' || typeflag == 0 || typeflag == b'7' {
            sum.files += 1;
        }
    }
}

struct Counted<R> {
    inner: R,
    n: u64,
    size: u64,
    short: bool,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        if k == 0 && !buf.is_empty() && self.n < self.size {
            self.short = true;
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(k)
    }
}

/// Builds ustar header blocks: for the archives shp writes (docker-archive export) and for
/// tests that need exact tars. Numeric fields are zero-padded octal with a NUL, as GNU tar and
/// Docker write them; names and link targets over 100 bytes get GNU `././@LongLink` records.
#[derive(Debug, Clone)]
pub struct HeaderBuilder<'a> {
    pub name: &'a [u8],
    pub typeflag: u8,
    pub size: u64,
    pub linkname: &'a [u8],
    pub mode: u32,
    pub mtime: u64,
    /// Sum the header bytes as signed chars (an old, still valid convention) instead of unsigned.
    pub signed_checksum: bool,
}

impl<'a> HeaderBuilder<'a> {
    /// A regular-file-style header: mode 0644, mtime 0, no link target.
    pub fn new(name: &'a [u8], typeflag: u8, size: u64) -> HeaderBuilder<'a> {
        HeaderBuilder {
            name,
            typeflag,
            size,
            linkname: b"",
            mode: 0o644,
            mtime: 0,
            signed_checksum: false,
        }
    }

    /// The one 512-byte header block (name and link target cut at 100 bytes).
    pub fn block(&self) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        let n = self.name.len().min(100);
        h[..n].copy_from_slice(&self.name[..n]);
        h[100..108].copy_from_slice(format!("{:07o}\0", self.mode & 0o7777777).as_bytes());
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", self.size & 0o77777777777).as_bytes());
        h[136..148].copy_from_slice(format!("{:011o}\0", self.mtime & 0o77777777777).as_bytes());
        h[156] = self.typeflag;
        let l = self.linkname.len().min(100);
        h[157..157 + l].copy_from_slice(&self.linkname[..l]);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: i64 = if self.signed_checksum {
            h.iter().map(|&b| b as i8 as i64).sum()
        } else {
            h.iter().map(|&b| b as i64).sum()
        };
        h[148..156].copy_from_slice(format!("{:06o}\0 ", sum as u64 & 0o777777).as_bytes());
        h
    }

    /// The header block preceded by GNU long-link and long-name records where needed.
    pub fn with_long_names(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (flag, long) in [(b'K', self.linkname), (b'L', self.name)] {
            if long.len() > 100 {
                let mut d = long.to_vec();
                d.push(0);
                let rec = HeaderBuilder {
                    name: b"././@LongLink",
                    typeflag: flag,
                    size: d.len() as u64,
                    linkname: b"",
                    mode: self.mode,
                    mtime: 0,
                    signed_checksum: self.signed_checksum,
                };
                out.extend_from_slice(&rec.block());
                out.extend_from_slice(&d);
                out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
            }
        }
        out.extend_from_slice(&self.block());
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Collects what the splitter emits.
    #[derive(Default)]
    pub struct Collect {
        pub out: Vec<u8>,
        pub files: Vec<Vec<u8>>,
    }
    impl TarSink for Collect {
        fn meta(&mut self, b: &[u8]) -> Result<()> {
            self.out.extend_from_slice(b);
            Ok(())
        }
        fn file(&mut self, size: u64, data: &mut dyn Read) -> Result<()> {
            let mut v = Vec::new();
            data.read_to_end(&mut v)?;
            if v.len() as u64 != size {
                return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            self.out.extend_from_slice(&v);
            self.files.push(v);
            Ok(())
        }
    }

    pub fn header(name: &[u8], typeflag: u8, size: u64, signed: bool) -> [u8; 512] {
        HeaderBuilder {
            signed_checksum: signed,
            mtime: 0o14000000000,
            ..HeaderBuilder::new(name, typeflag, size)
        }
        .block()
    }

    #[test]
    fn splits_and_keeps_everything() {
        let mut t = Vec::new();
        t.extend_from_slice(&header(b"a.txt", b'0', 5, false));
        t.extend_from_slice(b"hello");
        t.extend_from_slice(&[0u8; 507]);
        t.extend_from_slice(&header(b"../../etc/evil", b'2', 0, false));
        t.extend_from_slice(&[0u8; 1024]);
        t.extend_from_slice(b"trailing junk");
        let mut c = Collect::default();
        let s = split(&mut &t[..], "t", &mut c).unwrap();
        assert_eq!(c.out, t);
        assert_eq!(c.files, vec![b"hello".to_vec()]);
        assert_eq!(s.headers, 2);
    }

    #[test]
    fn pax_size_overrides_header() {
        let rec = b"16 size=1000000\n";
        let mut t = Vec::new();
        t.extend_from_slice(&header(b"PaxHeader", b'x', rec.len() as u64, false));
        let mut d = rec.to_vec();
        d.resize(512, 0);
        t.extend_from_slice(&d);
        t.extend_from_slice(&header(b"big", b'0', 0, false));
        t.extend(std::iter::repeat_n(7u8, 1_000_000));
        t.resize(t.len().div_ceil(512) * 512 + 1024, 0);
        let mut c = Collect::default();
        split(&mut &t[..], "t", &mut c).unwrap();
        assert_eq!(c.files.len(), 1);
        assert_eq!(c.files[0].len(), 1_000_000);
        assert_eq!(c.out, t);
    }

    #[test]
    fn checksum_conventions() {
        // A name with high-bit bytes makes the signed and unsigned sums differ.
        let name = "caf\u{e9}-\u{fc}ber".as_bytes();
        for signed in [false, true] {
            let mut t = header(name, b'0', 0, signed).to_vec();
            t.extend_from_slice(&[0u8; 1024]);
            let mut c = Collect::default();
            split(&mut &t[..], "t", &mut c).unwrap();
            assert_eq!(c.out, t);
        }
        let mut bad = header(b"x", b'0', 0, false);
        bad[148..155].copy_from_slice(b"000001\0");
        let e = split(&mut &bad[..], "layer0", &mut Collect::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("checksum mismatch") && e.contains("layer0"), "{e}");
    }

    #[test]
    fn truncated_data_is_an_error() {
        let mut t = header(b"f", b'0', 100, false).to_vec();
        t.extend_from_slice(&[1u8; 40]);
        let e = split(&mut &t[..], "t", &mut Collect::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated file data (40 of 100 bytes)"), "{e}");
    }

    #[test]
    fn base256_size() {
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[11] = 0x10;
        f[10] = 0x01;
        assert_eq!(parse_numeric(&f), Some(0x110));
        assert_eq!(parse_numeric(b"00000000017\0"), Some(15));
        assert_eq!(parse_numeric(b"   17 \0\0\0\0\0\0"), Some(15));
        assert_eq!(parse_numeric(b"0000009\0"), None);
    }
}
