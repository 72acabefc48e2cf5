//! Content identifiers: CIDv1 with a sha2-256 multihash, for `raw`, `dag-cbor` and (read only)
//! `dag-pb` blocks.
//!
//! shp writes exactly two kinds of block, so this type is deliberately narrow: parsing rejects
//! anything else (other hashes, other codecs) with an error that says which part was wrong. A
//! CIDv0 (`Qm…`, a bare sha2-256 multihash: dag-pb) is read as the CIDv1 of the same block
//! ([`Cid::from_str`], [`Cid::from_link_bytes`]) and always printed as CIDv1; [`Cid::to_v0`]
//! gives its CIDv0 text back.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Multicodec of blocks holding bytes (file chunks, verbatim JSON, opaque layer bytes).
pub const RAW: u64 = 0x55;
/// Multicodec of blocks holding structure.
pub const DAG_CBOR: u64 = 0x71;
/// Multicodec of other IPFS tools' structure blocks (UnixFS): fetched and stored, never written.
pub const DAG_PB: u64 = 0x70;
const SHA2_256: u64 = 0x12;
/// Length of a binary CID: version, codec, hash code, digest length, 32-byte digest.
pub const CID_LEN: usize = 36;

/// A CIDv1 over sha2-256, codec raw or dag-cbor.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cid {
    codec: u8,
    digest: [u8; 32],
}

impl Cid {
    /// The CID of `data` under `codec` ([`RAW`] or [`DAG_CBOR`]).
    ///
    /// ```
    /// use shp_core::cid::{Cid, RAW};
    /// let cid = Cid::hash(RAW, b"hello");
    /// assert!(cid.to_string().starts_with("bafkrei"));
    /// assert_eq!(cid.to_string().parse::<Cid>().unwrap(), cid);
    /// ```
    pub fn hash(codec: u64, data: &[u8]) -> Cid {
        Cid::from_digest(codec, Sha256::digest(data).into())
    }

    /// A CID from a precomputed sha2-256 digest.
    pub fn from_digest(codec: u64, digest: [u8; 32]) -> Cid {
        assert!(
            codec == RAW || codec == DAG_CBOR || codec == DAG_PB,
            "shp only holds raw, dag-cbor and dag-pb blocks"
        );
        Cid {
            codec: codec as u8,
            digest,
        }
    }

    pub fn codec(&self) -> u64 {
        self.codec as u64
    }

    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// True when `data` hashes to this CID.
    pub fn matches(&self, data: &[u8]) -> bool {
        let d: [u8; 32] = Sha256::digest(data).into();
        d == self.digest
    }

    /// Binary form: `0x01 codec 0x12 0x20 digest` (all varints fit one byte here).
    pub fn to_bytes(&self) -> [u8; CID_LEN] {
        let mut out = [0u8; CID_LEN];
        out[0] = 1;
        out[1] = self.codec;
        out[2] = SHA2_256 as u8;
        out[3] = 32;
        out[4..].copy_from_slice(&self.digest);
        out
    }

    /// Parses a binary CID, returning it and the bytes it used.
    pub fn read_bytes(b: &[u8]) -> Result<(Cid, usize)> {
        let mut pos = 0;
        let version = read_varint(b, &mut pos)?;
        if version == 0x12 {
            return Err(Error::InvalidCid("CIDv0 is not supported (shp uses CIDv1)".into()));
        }
        if version != 1 {
            return Err(Error::InvalidCid(format!("unsupported CID version {version}")));
        }
        let codec = read_varint(b, &mut pos)?;
        if codec != RAW && codec != DAG_CBOR && codec != DAG_PB {
            return Err(Error::InvalidCid(format!(
                "unsupported codec 0x{codec:x} (shp holds raw 0x55, dag-cbor 0x71 and dag-pb 0x70)"
            )));
        }
        let hcode = read_varint(b, &mut pos)?;
        if hcode != SHA2_256 {
            return Err(Error::InvalidCid(format!(
                "unsupported multihash 0x{hcode:x} (shp uses sha2-256)"
            )));
        }
        let len = read_varint(b, &mut pos)?;
        if len != 32 {
            return Err(Error::InvalidCid(format!("sha2-256 digest length {len}, expected 32")));
        }
        let digest: [u8; 32] = b
            .get(pos..pos + 32)
            .ok_or_else(|| Error::InvalidCid("truncated digest".into()))?
            .try_into()
            .expect("32 bytes");
        Ok((
            Cid {
                codec: codec as u8,
                digest,
            },
            pos + 32,
        ))
    }

    /// A binary CID as dag-pb links hold them: CIDv1, or CIDv0 (`0x12 0x20` + digest, a dag-pb
    /// block) read as the CIDv1 of the same block. Must use all of `b`.
    pub fn from_link_bytes(b: &[u8]) -> Result<Cid> {
        if b.len() == 34 && b[0] == 0x12 && b[1] == 0x20 {
            return Ok(Cid::from_digest(DAG_PB, b[2..].try_into().expect("32 bytes")));
        }
        Cid::from_bytes(b)
    }

    /// The CIDv0 text (`Qm…`) of a dag-pb CID; `None` for other codecs.
    pub fn to_v0(&self) -> Option<String> {
        if self.codec() != DAG_PB {
            return None;
        }
        let mut mh = vec![0x12, 0x20];
        mh.extend_from_slice(&self.digest);
        Some(base58btc(&mh))
    }

    /// Parses a binary CID that must use all of `b`.
    pub fn from_bytes(b: &[u8]) -> Result<Cid> {
        let (cid, used) = Cid::read_bytes(b)?;
        if used != b.len() {
            return Err(Error::InvalidCid(format!(
                "{} trailing bytes after CID",
                b.len() - used
            )));
        }
        Ok(cid)
    }
}

/// Reads an unsigned LEB128 varint (at most 9 bytes, as multiformats requires).
pub(crate) fn read_varint(b: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v: u64 = 0;
    for i in 0..9 {
        let byte = *b
            .get(*pos)
            .ok_or_else(|| Error::InvalidCid("truncated varint".into()))?;
        *pos += 1;
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(Error::InvalidCid("varint is not minimally encoded".into()));
            }
            return Ok(v);
        }
    }
    Err(Error::InvalidCid("varint longer than 9 bytes".into()))
}

/// Appends an unsigned LEB128 varint.
pub(crate) fn write_varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

const B32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

impl fmt::Display for Cid {
    /// Multibase base32 lower-case (prefix `b`), the canonical CIDv1 text form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.to_bytes();
        let mut s = String::with_capacity(1 + (CID_LEN * 8).div_ceil(5));
        s.push('b');
        let (mut acc, mut bits) = (0u32, 0u32);
        for &byte in &bytes {
            acc = (acc << 8) | byte as u32;
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                s.push(B32[((acc >> bits) & 31) as usize] as char);
            }
        }
        if bits > 0 {
            s.push(B32[((acc << (5 - bits)) & 31) as usize] as char);
        }
        f.write_str(&s)
    }
}

impl fmt::Debug for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cid({self})")
    }
}

impl FromStr for Cid {
    type Err = Error;

    /// Accepts multibase base32 (`b…`, either case as the spec allows for `B…`).
    fn from_str(s: &str) -> Result<Cid> {
        let rest = match s.as_bytes().first() {
            Some(b'b') => &s[1..],
            Some(b'B') => &s[1..],
            Some(b'Q') if s.starts_with("Qm") => {
                let mh = base58btc_decode(s).ok_or_else(|| Error::InvalidCid(format!("{s:?}: not base58btc")))?;
                let c = Cid::from_link_bytes(&mh)
                    .ok()
                    .filter(|_| mh.len() == 34)
                    .ok_or_else(|| Error::InvalidCid(format!("{s:?}: a CIDv0 must be a sha2-256 multihash")))?;
                // One text per CIDv0: no leading zeros beyond the canonical encoding.
                if c.to_v0().as_deref() != Some(s) {
                    return Err(Error::InvalidCid(format!("{s:?}: not canonical base58btc")));
                }
                return Ok(c);
            }
            _ => {
                return Err(Error::InvalidCid(format!(
                    "{s:?}: expected multibase base32 (starting with 'b')"
                )))
            }
        };
        let lower = s.as_bytes()[0] == b'b';
        let mut out = Vec::with_capacity(rest.len() * 5 / 8);
        let (mut acc, mut bits) = (0u32, 0u32);
        for c in rest.bytes() {
            let c = if lower { c } else { c.to_ascii_lowercase() };
            let v = B32
                .iter()
                .position(|&x| x == c)
                .ok_or_else(|| Error::InvalidCid(format!("{s:?}: character {:?} is not base32", c as char)))?;
            acc = (acc << 5) | v as u32;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        if acc != 0 || bits >= 5 {
            return Err(Error::InvalidCid(format!(
                "{s:?}: not canonical base32 (extra characters or padding bits)"
            )));
        }
        Cid::from_bytes(&out).map_err(|e| match e {
            Error::InvalidCid(m) => Error::InvalidCid(format!("{s:?}: {m}")),
            e => e,
        })
    }
}

const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Base58 (bitcoin alphabet): leading zero bytes become '1's, the rest is the big-endian number.
pub fn base58btc(data: &[u8]) -> String {
    let zeros = data.iter().take_while(|&&b| b == 0).count();
    // Little-endian base-58 digits of the number.
    let mut digits: Vec<u8> = Vec::with_capacity(data.len() * 138 / 100 + 1);
    for &byte in &data[zeros..] {
        let mut carry = byte as u32;
        for d in digits.iter_mut() {
            carry += (*d as u32) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut out = String::with_capacity(zeros + digits.len());
    out.extend(std::iter::repeat_n('1', zeros));
    out.extend(digits.iter().rev().map(|&d| ALPHABET[d as usize] as char));
    out
}

/// Decodes base58btc; `None` on a character outside the alphabet.
pub fn base58btc_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() > 256 {
        return None;
    }
    let ones = s.bytes().take_while(|&c| c == b'1').count();
    let mut bytes: Vec<u8> = Vec::new(); // little-endian
    for c in s.bytes().skip(ones) {
        let mut carry = ALPHABET.iter().position(|&a| a == c)? as u32;
        for b in bytes.iter_mut() {
            carry += (*b as u32) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let mut out = vec![0u8; ones];
    out.extend(bytes.iter().rev());
    Some(out)
}

/// An OCI digest `sha256:<hex>` as raw bytes.
pub fn parse_digest(s: &str) -> Result<[u8; 32]> {
    let hex = s
        .strip_prefix("sha256:")
        .ok_or_else(|| Error::InvalidDigest(s.to_string()))?;
    if hex.len() != 64 || !hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
        return Err(Error::InvalidDigest(s.to_string()));
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex");
    }
    Ok(out)
}

/// Formats raw sha256 bytes as an OCI digest.
pub fn format_digest(d: &[u8; 32]) -> String {
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_cid_text() {
        // The raw-codec CID of the empty string, as Kubo prints it.
        let c = Cid::hash(RAW, b"");
        assert_eq!(
            c.to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
        assert_eq!(
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
                .parse::<Cid>()
                .unwrap(),
            c
        );
    }

    #[test]
    fn cidv0_is_the_cidv1_of_a_dag_pb_block() {
        // The empty UnixFS directory, as Kubo names it in both versions.
        let v0 = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn";
        let c: Cid = v0.parse().unwrap();
        assert_eq!(c.codec(), DAG_PB);
        assert_eq!(
            c.to_string(),
            "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
        );
        assert_eq!(c.to_v0().as_deref(), Some(v0));
        assert_eq!(
            Cid::from_link_bytes(&[&[0x12u8, 0x20][..], c.digest()].concat()).unwrap(),
            c
        );
        assert_eq!(Cid::from_link_bytes(&c.to_bytes()).unwrap(), c);
        assert!(Cid::hash(RAW, b"x").to_v0().is_none());
    }

    #[test]
    fn rejects_bad_text() {
        assert!(
            "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbd0".parse::<Cid>().is_err(),
            "0 is no base58"
        );
        assert!("QmYwAPJz".parse::<Cid>().is_err(), "too short for a sha2-256 multihash");
        assert!("bafy!".parse::<Cid>().is_err());
        assert!("".parse::<Cid>().is_err());
        // One character too many still decodes to the same bytes: refused, one text per CID.
        assert!("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvykua"
            .parse::<Cid>()
            .is_err());
        assert!("zb2rhe5P4gXftAwvA4eXQ5HJwsER2owDyS9sKaQRRVQPn93bA"
            .parse::<Cid>()
            .is_err());
    }

    #[test]
    fn digest_roundtrip() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(format_digest(&parse_digest(d).unwrap()), d);
        assert!(parse_digest("sha256:E3B0").is_err());
        assert!(parse_digest("md5:00").is_err());
    }
}
