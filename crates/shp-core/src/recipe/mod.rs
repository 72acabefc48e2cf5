//! Recipes: how to re-encode a layer's tar into exactly the compressed bytes its producer wrote.
//!
//! A recipe names a versioned encoder *profile* and the framing around it (gzip member headers
//! kept verbatim, member sizes, bytes after the last member). It is found by a quick probe of the
//! stream's start and trusted only after the whole layer has been re-encoded and its sha256
//! matched at import. One module per producer family; each exposes `Params` (with `profile()` /
//! `from_profile()`), `probe(stream, data, complete)` and a streaming `encoder(params, input)`.
//!
//! Profile set 4 (recorded in every image root as `"profiles"`):
//! - `pgzip-1.2/kpflate-<version>/<L>/<B>` — klauspost pgzip over klauspost flate (skopeo,
//!   podman, buildah, umoci, go-containerregistry), see [`pgzip`];
//! - `goflate-1.8/L` — Go's compress/gzip, Go 1.8 to 1.26 (docker, buildkit, containerd), and
//!   `goflate-1.27/L` — Go 1.27's new encoder (a port of klauspost flate), see [`goflate`];
//! - `zlib-1.2/L` — zlib (Python, Java, most C users), see [`zlib`];
//! - `pigz-2.6/zlib-1.2/<L>/<KiB>[/p1]` — pigz's independent blocks over zlib, see [`pigz`];
//! - `zstd-1.5.4/<L>/<mt|st>/<ck|nock>/<cs=N|nocs>` — the zstd CLI over the system libzstd, see
//!   [`zstd`] (whole-stream profile: no gzip framing);
//! - `gnugzip-1.12/L` — GNU gzip's own deflate (1…9), see [`gnugzip`].
//!
//! Probe order across families is fixed (the order of [`DEFLATE_FAMILIES`]): when two profiles
//! give the same bytes for a stream, the earlier one is recorded, so every machine with the same
//! profile set writes the same blob node.
//!
//! Recipe record (in the blob node):
//! - one gzip member, nothing after it: `{"profile": P, "header": bytes}`;
//! - several members and/or trailing bytes: `{"profile": P, "members": [{"header": bytes,
//!   "size": tar bytes in the member}, …], "tail": bytes}` — every member was written by the same
//!   profile (a producer writes its members alike), each with its own header and standard trailer.

pub mod gnugzip;
pub mod goflate;
pub mod pgzip;
pub mod pigz;
pub mod zlib;
pub mod zstd;

use crate::cbor::Value;
use crate::error::{Error, Result};
use crate::gzip;
use std::io::{self, Read};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

/// Bytes after the last gzip member a recipe may keep (more: the layer is kept opaque).
pub const MAX_TAIL: usize = 64 * 1024;
/// Gzip members a recipe may list (more: the layer is kept opaque).
pub const MAX_MEMBERS: usize = 4096;

/// The gzip (deflate) producer families, in probe order.
pub const DEFLATE_FAMILIES: &[&str] = &["pgzip-1.2", "goflate-1.8", "zlib-1.2", "pigz-2.6", "gnugzip-1.12"];

/// A versioned encoder profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    Zlib(zlib::Params),
    Pgzip(pgzip::Params),
    Go(goflate::Params),
    Pigz(pigz::Params),
    Gnu(gnugzip::Params),
    Zstd(zstd::Params),
}

impl Profile {
    pub fn name(&self) -> String {
        match self {
            Profile::Zlib(p) => p.profile(),
            Profile::Pgzip(p) => p.profile(),
            Profile::Go(p) => p.profile(),
            Profile::Pigz(p) => p.profile(),
            Profile::Gnu(p) => p.profile(),
            Profile::Zstd(p) => p.profile(),
        }
    }

    /// The profile a name denotes, if this build knows it.
    pub fn parse(s: &str) -> Option<Profile> {
        None.or_else(|| zlib::Params::from_profile(s).map(Profile::Zlib))
            .or_else(|| pgzip::Params::from_profile(s).map(Profile::Pgzip))
            .or_else(|| goflate::Params::from_profile(s).map(Profile::Go))
            .or_else(|| pigz::Params::from_profile(s).map(Profile::Pigz))
            .or_else(|| gnugzip::Params::from_profile(s).map(Profile::Gnu))
            .or_else(|| zstd::Params::from_profile(s).map(Profile::Zstd))
    }

    /// Whether the profile writes raw deflate inside gzip members (else it writes the whole stream).
    pub fn is_deflate(&self) -> bool {
        match self {
            Profile::Zlib(_) | Profile::Pgzip(_) | Profile::Go(_) | Profile::Pigz(_) | Profile::Gnu(_) => true,
            Profile::Zstd(_) => false,
        }
    }

    /// The profile's encoder: raw deflate for gzip families, the whole stream otherwise.
    fn encoder<'a, R: Read + Send + 'a>(&self, input: R) -> Box<dyn Read + Send + 'a> {
        match self {
            Profile::Zlib(p) => zlib::encoder(p, input),
            Profile::Pgzip(p) => pgzip::encoder(p, input),
            Profile::Go(p) => goflate::encoder(p, input),
            Profile::Pigz(p) => pigz::encoder(p, input),
            Profile::Gnu(p) => gnugzip::encoder(p, input),
            Profile::Zstd(p) => zstd::encoder(p, input),
        }
    }
}

/// The first deflate profile whose output starts like `stream` (a gzip member's deflate bytes);
/// `data` is what `stream` inflates to, `complete` says `stream` is all of it.
pub fn probe_deflate(stream: &[u8], data: &[u8], complete: bool) -> Option<Profile> {
    probe_deflate_all(stream, data, complete).into_iter().next()
}

/// Every deflate candidate for `stream`, best first: the families in the fixed order of
/// [`DEFLATE_FAMILIES`], stopping at the first family that has any (its candidates in its own
/// order); `goflate-1.27` candidates count only when no other family has any. The import proves the first and, if that proof fails, a few more.
pub fn probe_deflate_all(stream: &[u8], data: &[u8], complete: bool) -> Vec<Profile> {
    let families: [&dyn Fn() -> Vec<Profile>; 5] = [
        &|| {
            pgzip::probe(stream, data, complete)
                .into_iter()
                .map(Profile::Pgzip)
                .collect()
        },
        &|| {
            goflate::probe(stream, data, complete)
                .into_iter()
                .map(Profile::Go)
                .collect()
        },
        &|| {
            zlib::probe(stream, data, complete)
                .into_iter()
                .map(Profile::Zlib)
                .collect()
        },
        &|| {
            pigz::probe(stream, data, complete)
                .into_iter()
                .map(Profile::Pigz)
                .collect()
        },
        &|| {
            gnugzip::probe(stream, data, complete)
                .into_iter()
                .map(Profile::Gnu)
                .collect()
        },
    ];
    // Go 1.27's encoder is klauspost's, which writes what zlib writes for tiny inputs (an empty layer,
    // a few hundred bytes): its profiles come after every other family's, so those streams keep the
    // name of the older, more common producer.
    let is_go127 = |p: &Profile| matches!(p, Profile::Go(g) if g.version == goflate::Version::V1_27);
    let mut last = Vec::new();
    for f in families {
        let c = f();
        if c.is_empty() {
            continue;
        }
        if c.iter().all(is_go127) {
            if last.is_empty() {
                last = c;
            }
            continue;
        }
        return c;
    }
    last
}

/// The first zstd profile whose output starts like `stream` (a zstd stream's first bytes);
/// `data` is what `stream` decodes to, `complete` says `stream` is all of it.
pub fn probe_zstd(stream: &[u8], data: &[u8], complete: bool) -> Option<Profile> {
    probe_zstd_all(stream, data, complete).into_iter().next()
}

/// Every zstd candidate for `stream`, best first.
pub fn probe_zstd_all(stream: &[u8], data: &[u8], complete: bool) -> Vec<Profile> {
    zstd::probe(stream, data, complete)
        .into_iter()
        .map(Profile::Zstd)
        .collect()
}

/// One gzip member of a recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's header, verbatim.
    pub header: Vec<u8>,
    /// Tar bytes the member holds; None: the rest (single-member records).
    pub size: Option<u64>,
}

/// A proven recipe for a compressed layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    pub profile: Profile,
    /// Gzip members (empty for whole-stream profiles).
    pub members: Vec<Member>,
    /// Bytes after the last member.
    pub tail: Vec<u8>,
}

fn bad(r: String) -> Error {
    Error::Schema {
        cid: "recipe".into(),
        reason: r,
    }
}

impl Recipe {
    pub fn profile(&self) -> String {
        self.profile.name()
    }

    pub fn to_value(&self) -> Value {
        let mut f = vec![("profile", Value::text(self.profile.name()))];
        match self.members.as_slice() {
            [] => {}
            [one] if one.size.is_none() && self.tail.is_empty() => f.push(("header", Value::Bytes(one.header.clone()))),
            ms => {
                let list = ms
                    .iter()
                    .map(|m| {
                        Value::map([
                            ("header", Value::Bytes(m.header.clone())),
                            ("size", Value::UInt(m.size.unwrap_or(0))),
                        ])
                    })
                    .collect();
                f.push(("members", Value::Array(list)));
                f.push(("tail", Value::Bytes(self.tail.clone())));
            }
        }
        Value::Map(f.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    pub fn from_value(v: &Value) -> Result<Recipe> {
        let name = v
            .get("profile")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no profile".into()))?;
        let profile = Profile::parse(name).ok_or_else(|| {
            bad(format!(
                "profile {name:?} is unknown to this build (profile set {})",
                crate::image::PROFILE_SET
            ))
        })?;
        let header = |v: &Value| -> Result<Vec<u8>> {
            let h = v
                .get("header")
                .and_then(Value::as_bytes)
                .ok_or_else(|| bad("member without header".into()))?;
            let parsed = gzip::parse_header(h)?;
            if parsed.bytes.len() != h.len() {
                return Err(bad("member header has trailing bytes".into()));
            }
            Ok(h.to_vec())
        };
        let (members, tail) = match (profile.is_deflate(), v.get("header"), v.get("members")) {
            (false, None, None) => (Vec::new(), Vec::new()),
            (true, Some(_), None) => (
                vec![Member {
                    header: header(v)?,
                    size: None,
                }],
                Vec::new(),
            ),
            (true, None, Some(Value::Array(ms))) if !ms.is_empty() && ms.len() <= MAX_MEMBERS => {
                let members = ms
                    .iter()
                    .map(|m| {
                        Ok(Member {
                            header: header(m)?,
                            size: Some(
                                m.get("size")
                                    .and_then(Value::as_u64)
                                    .ok_or_else(|| bad("member without size".into()))?,
                            ),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let tail = v
                    .get("tail")
                    .and_then(Value::as_bytes)
                    .ok_or_else(|| bad("no tail".into()))?
                    .to_vec();
                if tail.len() > MAX_TAIL {
                    return Err(bad("tail over the limit".into()));
                }
                (members, tail)
            }
            _ => return Err(bad(format!("framing does not fit profile {name}"))),
        };
        Ok(Recipe { profile, members, tail })
    }

    /// Streams the re-encoded blob from the tar.
    pub fn encoder<'a, R: Read + Send + 'a>(&self, tar: R) -> Box<dyn Read + Send + 'a> {
        if !self.profile.is_deflate() {
            return self.profile.encoder(tar);
        }
        let src = Listed {
            input: tar,
            members: self.members.clone().into_iter(),
            left: Some(0),
            tail: Some(self.tail.clone()),
        };
        Box::new(GzipFrame::new(self.profile.clone(), src))
    }
}

/// What the import's decoder tells the prover, in stream order.
#[derive(Debug)]
pub enum Feed {
    /// A gzip member begins, with this header.
    Member(Vec<u8>),
    /// Decoded bytes.
    Data(Vec<u8>),
    /// Bytes after the last member.
    Tail(Vec<u8>),
}

/// The encoder a prover runs: the blob re-encoded with `profile` from what the decoder feeds,
/// member by member, so the recipe is proven while the layer is imported.
pub fn proving_encoder(profile: &Profile, rx: Receiver<Feed>) -> Box<dyn Read + Send> {
    let src = Fed {
        rx,
        pending: None,
        buf: Vec::new(),
        pos: 0,
    };
    if profile.is_deflate() {
        Box::new(GzipFrame::new(profile.clone(), src))
    } else {
        profile.encoder(FedData(src))
    }
}

/// Where a gzip framer gets members from.
trait Members: Send {
    /// The next member's header, or None when the members are over.
    fn next_header(&mut self) -> io::Result<Option<Vec<u8>>>;
    /// The current member's data; 0 at its end.
    fn read_data(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Bytes after the last member (called once, after `next_header` gave None).
    fn tail(&mut self) -> Vec<u8>;
}

/// Members as a recipe lists them, over the tar.
struct Listed<R> {
    input: R,
    members: std::vec::IntoIter<Member>,
    left: Option<u64>,
    tail: Option<Vec<u8>>,
}

impl<R: Read + Send> Members for Listed<R> {
    fn next_header(&mut self) -> io::Result<Option<Vec<u8>>> {
        Ok(self.members.next().map(|m| {
            self.left = m.size;
            m.header
        }))
    }
    fn read_data(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(left) = self.left else {
            return self.input.read(buf); // the rest of the tar
        };
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let k = self.input.read(&mut buf[..n])?;
        if k == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the tar is shorter than the recipe's members",
            ));
        }
        self.left = Some(left - k as u64);
        Ok(k)
    }
    fn tail(&mut self) -> Vec<u8> {
        self.tail.take().unwrap_or_default()
    }
}

/// Members as the import's decoder feeds them.
struct Fed {
    rx: Receiver<Feed>,
    pending: Option<Feed>,
    buf: Vec<u8>,
    pos: usize,
}

impl Fed {
    fn next(&mut self) -> Option<Feed> {
        self.pending.take().or_else(|| self.rx.recv().ok())
    }
}

impl Members for Fed {
    fn next_header(&mut self) -> io::Result<Option<Vec<u8>>> {
        match self.next() {
            Some(Feed::Member(h)) => Ok(Some(h)),
            Some(Feed::Data(_)) => Err(io::Error::other("decoded data outside a gzip member")),
            Some(t @ Feed::Tail(_)) => {
                self.pending = Some(t);
                Ok(None)
            }
            None => Ok(None),
        }
    }
    fn read_data(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.next() {
                Some(Feed::Data(d)) => {
                    self.buf = d;
                    self.pos = 0;
                }
                Some(other) => {
                    self.pending = Some(other);
                    return Ok(0);
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
    fn tail(&mut self) -> Vec<u8> {
        match self.next() {
            Some(Feed::Tail(t)) => t,
            _ => Vec::new(),
        }
    }
}

/// The whole fed stream as one reader (whole-stream profiles).
struct FedData(Fed);

impl Read for FedData {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.0.read_data(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            match self.0.next() {
                None => return Ok(0),
                Some(Feed::Data(d)) => self.0.pending = Some(Feed::Data(d)),
                Some(_) => continue, // framing markers mean nothing to whole-stream profiles
            }
        }
    }
}

struct Shared<M> {
    src: M,
    crc: flate2::Crc,
}

/// One member's data, CRC'd on the way to the encoder.
struct MemberData<M>(Arc<Mutex<Shared<M>>>);

impl<M: Members> Read for MemberData<M> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.0.lock().map_err(|_| io::Error::other("recipe input poisoned"))?;
        let n = s.src.read_data(buf)?;
        s.crc.update(&buf[..n]);
        Ok(n)
    }
}

enum Phase<'a> {
    Start,
    Header(Vec<u8>, usize),
    Body(Box<dyn Read + Send + 'a>),
    Trailer([u8; 8], usize),
    Tail(Vec<u8>, usize),
    Done,
}

/// Gzip framing around a deflate profile: header, deflate, trailer per member, then the tail.
struct GzipFrame<'a, M> {
    profile: Profile,
    shared: Arc<Mutex<Shared<M>>>,
    phase: Phase<'a>,
}

impl<'a, M: Members + 'a> GzipFrame<'a, M> {
    fn new(profile: Profile, src: M) -> Self {
        GzipFrame {
            profile,
            shared: Arc::new(Mutex::new(Shared {
                src,
                crc: flate2::Crc::new(),
            })),
            phase: Phase::Start,
        }
    }
}

/// Copies what is left of `b` from `pos`; true when all of it is out.
fn emit(b: &[u8], pos: &mut usize, out: &mut [u8]) -> (usize, bool) {
    let n = (b.len() - *pos).min(out.len());
    out[..n].copy_from_slice(&b[*pos..*pos + n]);
    *pos += n;
    (n, *pos == b.len())
}

impl<'a, M: Members + 'a> Read for GzipFrame<'a, M> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let poisoned = || io::Error::other("recipe input poisoned");
        loop {
            let (n, next) = match &mut self.phase {
                Phase::Start => {
                    let mut s = self.shared.lock().map_err(|_| poisoned())?;
                    let next = match s.src.next_header()? {
                        Some(h) => {
                            s.crc.reset();
                            Phase::Header(h, 0)
                        }
                        None => Phase::Tail(s.src.tail(), 0),
                    };
                    (0, Some(next))
                }
                Phase::Header(b, pos) => match emit(b, pos, out) {
                    (n, true) => (
                        n,
                        Some(Phase::Body(self.profile.encoder(MemberData(self.shared.clone())))),
                    ),
                    (n, false) => (n, None),
                },
                Phase::Body(enc) => match enc.read(out)? {
                    0 => {
                        let s = self.shared.lock().map_err(|_| poisoned())?;
                        (
                            0,
                            Some(Phase::Trailer(gzip::trailer(s.crc.sum(), s.crc.amount() as u64), 0)),
                        )
                    }
                    n => (n, None),
                },
                Phase::Trailer(t, pos) => match emit(t, pos, out) {
                    (n, true) => (n, Some(Phase::Start)),
                    (n, false) => (n, None),
                },
                Phase::Tail(b, pos) => match emit(b, pos, out) {
                    (n, true) => (n, Some(Phase::Done)),
                    (n, false) => (n, None),
                },
                Phase::Done => return Ok(0),
            };
            if let Some(p) = next {
                self.phase = p;
            }
            if n > 0 {
                return Ok(n);
            }
        }
    }
}

/// What the gzip header says, for reports.
pub fn describe(h: &gzip::Header) -> String {
    format!("xfl={} os={} mtime={}", h.xfl, h.os, h.mtime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8], level: u32) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn sample() -> Vec<u8> {
        let mut x = 9u64;
        (0..3_000_000u32)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 3 == 0 {
                    (x % 7) as u8 + b'a'
                } else {
                    b"the quick brown fox "[(i % 20) as usize]
                }
            })
            .collect()
    }

    #[test]
    fn zlib_levels_probe_and_rebuild() {
        let data = sample();
        for level in [1, 6, 9] {
            let blob = gz(&data, level);
            let h = gzip::parse_header(&blob).unwrap();
            let stream = &blob[h.bytes.len()..blob.len().min(1 << 20)];
            let complete = blob.len() <= 1 << 20;
            let p = probe_deflate(stream, &data, complete).expect("found");
            assert_eq!(p.name(), format!("zlib-1.2/{level}"));
            let r = Recipe {
                profile: p,
                members: vec![Member {
                    header: h.bytes.clone(),
                    size: None,
                }],
                tail: Vec::new(),
            };
            let mut back = Vec::new();
            r.encoder(&data[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, blob, "level {level}");
            assert_eq!(Recipe::from_value(&r.to_value()).unwrap(), r);
        }
    }

    #[test]
    fn members_and_tail_rebuild() {
        let data = sample();
        let (a, b) = data.split_at(1_234_567);
        let mut blob = gz(a, 9);
        let h1 = blob[..10].to_vec();
        let second = gz(b, 9);
        blob.extend_from_slice(&second);
        blob.extend_from_slice(b"\0\0junk");
        let r = Recipe {
            profile: Profile::Zlib(zlib::Params { level: 9 }),
            members: vec![
                Member {
                    header: h1,
                    size: Some(a.len() as u64),
                },
                Member {
                    header: second[..10].to_vec(),
                    size: Some(b.len() as u64),
                },
            ],
            tail: b"\0\0junk".to_vec(),
        };
        let mut back = Vec::new();
        r.encoder(&data[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, blob);
        assert_eq!(Recipe::from_value(&r.to_value()).unwrap(), r);
        // A tar shorter than the members say is an error, not a shorter blob.
        assert!(r.encoder(&data[..data.len() - 1]).read_to_end(&mut Vec::new()).is_err());
    }

    #[test]
    fn bad_records_are_refused() {
        let h = Value::Bytes(gz(b"x", 6)[..10].to_vec());
        let recs = [
            Value::map([("profile", Value::text("zlib-1.2/6"))]),
            Value::map([("profile", Value::text("nope/6")), ("header", h.clone())]),
            Value::map([
                ("profile", Value::text("zlib-1.2/6")),
                ("header", Value::Bytes(vec![0x1f, 0x8b])),
            ]),
            Value::map([
                ("profile", Value::text("zlib-1.2/6")),
                ("header", Value::Bytes([&gz(b"x", 6)[..10], b"extra"].concat())),
            ]),
            Value::map([
                ("profile", Value::text("zlib-1.2/6")),
                ("members", Value::Array(vec![])),
                ("tail", Value::Bytes(vec![])),
            ]),
            Value::map([
                ("profile", Value::text("zlib-1.2/6")),
                ("members", Value::Array(vec![Value::map([("header", h.clone())])])),
                ("tail", Value::Bytes(vec![])),
            ]),
            Value::map([
                ("profile", Value::text("zlib-1.2/6")),
                (
                    "members",
                    Value::Array(vec![Value::map([("header", h.clone()), ("size", Value::UInt(1))])]),
                ),
                ("tail", Value::Bytes(vec![0; MAX_TAIL + 1])),
            ]),
        ];
        for r in recs {
            assert!(Recipe::from_value(&r).is_err(), "{r:?}");
        }
    }
}
