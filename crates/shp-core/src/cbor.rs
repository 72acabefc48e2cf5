//! A strict, deterministic dag-cbor codec for the subset the DAG schema uses.
//!
//! Encoding is canonical (shortest integer heads, map keys sorted length-first then bytewise,
//! definite lengths), so one value has one byte form and one CID. Decoding accepts only that
//! canonical form: a block that could be re-encoded differently is rejected, which keeps
//! "same image, same root CID" true for anything we read back from peers as well.

use crate::cid::Cid;
use crate::error::{Error, Result};

/// A dag-cbor value. Floats are not part of the DAG schema and are rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    /// Unsigned integer.
    UInt(u64),
    /// Negative integer, `-1 - n`.
    NegInt(u64),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Value>),
    /// Map entries; [`encode`] sorts them canonically.
    Map(Vec<(String, Value)>),
    Link(Cid),
}

const MAX_DEPTH: usize = 32;

impl Value {
    pub fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
        Value::Map(entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }
    pub fn text(s: impl Into<String>) -> Value {
        Value::Text(s.into())
    }
    pub fn links(cids: &[Cid]) -> Value {
        Value::Array(cids.iter().map(|c| Value::Link(*c)).collect())
    }
    /// Looks a key up in a map.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::UInt(n) => Some(*n),
            _ => None,
        }
    }
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
    pub fn as_link(&self) -> Option<Cid> {
        match self {
            Value::Link(c) => Some(*c),
            _ => None,
        }
    }
    /// Every link in this value, depth first, in order.
    pub fn collect_links(&self, out: &mut Vec<Cid>) {
        match self {
            Value::Link(c) => out.push(*c),
            Value::Array(a) => a.iter().for_each(|v| v.collect_links(out)),
            Value::Map(m) => m.iter().for_each(|(_, v)| v.collect_links(out)),
            _ => {}
        }
    }
}

fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

fn head(major: u8, n: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= u8::MAX as u64 {
        out.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= u16::MAX as u64 {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u32::MAX as u64 {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Canonical dag-cbor bytes of `v`.
///
/// ```
/// use shp_core::cbor::{decode, encode, Value};
/// let v = Value::map([("size", Value::UInt(3)), ("t", Value::text("tar"))]);
/// let bytes = encode(&v);
/// assert_eq!(bytes[0], 0xa2); // a map of two entries, keys sorted length-first ("t" < "size")
/// assert_eq!(encode(&decode(&bytes).unwrap()), bytes);
/// ```
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(v, &mut out);
    out
}

fn encode_into(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(0xf6),
        Value::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        Value::UInt(n) => head(0, *n, out),
        Value::NegInt(n) => head(1, *n, out),
        Value::Bytes(b) => {
            head(2, b.len() as u64, out);
            out.extend_from_slice(b);
        }
        Value::Text(s) => {
            head(3, s.len() as u64, out);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(a) => {
            head(4, a.len() as u64, out);
            a.iter().for_each(|v| encode_into(v, out));
        }
        Value::Map(m) => {
            let mut sorted: Vec<&(String, Value)> = m.iter().collect();
            sorted.sort_by(|a, b| key_order(&a.0, &b.0));
            head(5, sorted.len() as u64, out);
            for (k, v) in sorted {
                head(3, k.len() as u64, out);
                out.extend_from_slice(k.as_bytes());
                encode_into(v, out);
            }
        }
        Value::Link(c) => {
            head(6, 42, out);
            let b = c.to_bytes();
            head(2, b.len() as u64 + 1, out);
            out.push(0);
            out.extend_from_slice(&b);
        }
    }
}

/// Decodes one canonical dag-cbor value that must span all of `b`.
pub fn decode(b: &[u8]) -> Result<Value> {
    let mut d = Decoder { b, pos: 0 };
    let v = d.value(0)?;
    if d.pos != b.len() {
        return Err(Error::Cbor(format!(
            "{} trailing bytes after the value",
            b.len() - d.pos
        )));
    }
    Ok(v)
}

struct Decoder<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Decoder<'_> {
    fn err<T>(&self, msg: impl std::fmt::Display) -> Result<T> {
        Err(Error::Cbor(format!("{msg} at byte {}", self.pos)))
    }

    fn take(&mut self, n: u64) -> Result<&[u8]> {
        let n = usize::try_from(n).ok().filter(|n| self.b.len() - self.pos >= *n);
        match n {
            Some(n) => {
                let s = &self.b[self.pos..self.pos + n];
                self.pos += n;
                Ok(s)
            }
            None => self.err("truncated input"),
        }
    }

    fn head(&mut self) -> Result<(u8, u64)> {
        let first = self.take(1)?[0];
        let (major, info) = (first >> 5, first & 31);
        let n = match info {
            0..=23 => info as u64,
            24 => {
                let v = self.take(1)?[0] as u64;
                if v < 24 {
                    return self.err("non-minimal integer encoding");
                }
                v
            }
            25 => {
                let v = u16::from_be_bytes(self.take(2)?.try_into().unwrap()) as u64;
                if v <= u8::MAX as u64 {
                    return self.err("non-minimal integer encoding");
                }
                v
            }
            26 => {
                let v = u32::from_be_bytes(self.take(4)?.try_into().unwrap()) as u64;
                if v <= u16::MAX as u64 {
                    return self.err("non-minimal integer encoding");
                }
                v
            }
            27 => {
                let v = u64::from_be_bytes(self.take(8)?.try_into().unwrap());
                if v <= u32::MAX as u64 {
                    return self.err("non-minimal integer encoding");
                }
                v
            }
            31 => return self.err("indefinite lengths are not allowed in dag-cbor"),
            _ => return self.err(format!("reserved additional info {info}")),
        };
        Ok((major, n))
    }

    fn value(&mut self, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return self.err("nesting deeper than 32");
        }
        let start = self.pos;
        let (major, n) = self.head()?;
        Ok(match major {
            0 => Value::UInt(n),
            1 => Value::NegInt(n),
            2 => Value::Bytes(self.take(n)?.to_vec()),
            3 => Value::Text(self.text(n)?),
            4 => {
                // Each element takes at least one byte: bound the allocation by what is left.
                if n > (self.b.len() - self.pos) as u64 {
                    return self.err("array longer than the input");
                }
                let mut a = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    a.push(self.value(depth + 1)?);
                }
                Value::Array(a)
            }
            5 => {
                if n > (self.b.len() - self.pos) as u64 / 2 {
                    return self.err("map longer than the input");
                }
                let mut m: Vec<(String, Value)> = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let (km, kn) = self.head()?;
                    if km != 3 {
                        return self.err("map key is not a string");
                    }
                    let k = self.text(kn)?;
                    if let Some((prev, _)) = m.last() {
                        if key_order(prev, &k) != std::cmp::Ordering::Less {
                            return self.err(format!("map keys out of canonical order or repeated ({prev:?}, {k:?})"));
                        }
                    }
                    let v = self.value(depth + 1)?;
                    m.push((k, v));
                }
                Value::Map(m)
            }
            6 => {
                if n != 42 {
                    return self.err(format!("tag {n} is not allowed (only 42, CID)"));
                }
                let (bm, bn) = self.head()?;
                if bm != 2 {
                    return self.err("tag 42 must wrap a byte string");
                }
                let bytes = self.take(bn)?;
                if bytes.first() != Some(&0) {
                    return self.err("CID bytes must start with the 0x00 multibase prefix");
                }
                Value::Link(Cid::from_bytes(&bytes[1..])?)
            }
            7 => match (self.b[start] & 31, n) {
                (20, _) => Value::Bool(false),
                (21, _) => Value::Bool(true),
                (22, _) => Value::Null,
                (25..=27, _) => return self.err("floats are not used by the shp DAG schema"),
                _ => return self.err("undefined or unassigned simple value"),
            },
            _ => unreachable!("major type is 3 bits"),
        })
    }

    fn text(&mut self, n: u64) -> Result<String> {
        let b = self.take(n)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => self.err("text string is not UTF-8"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::RAW;
    use proptest::prelude::*;

    #[test]
    fn canonical_bytes() {
        let v = Value::map([("bb", Value::UInt(1)), ("a", Value::UInt(500)), ("c", Value::Null)]);
        assert_eq!(
            encode(&v),
            [0xa3, 0x61, b'a', 0x19, 0x01, 0xf4, 0x61, b'c', 0xf6, 0x62, b'b', b'b', 0x01]
        );
        let link = Value::Link(Cid::hash(RAW, b""));
        let e = encode(&link);
        assert_eq!(&e[..4], &[0xd8, 0x2a, 0x58, 0x25]);
        assert_eq!(decode(&e).unwrap(), link);
    }

    #[test]
    fn rejects_non_canonical() {
        assert!(decode(&[0x18, 0x05]).is_err()); // 5 in two bytes
        assert!(decode(&[0x9f, 0xff]).is_err()); // indefinite array
        assert!(decode(&[0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02]).is_err()); // unsorted keys
        assert!(decode(&[0xfb, 0, 0, 0, 0, 0, 0, 0, 0]).is_err()); // float
        assert!(decode(&[0x01, 0x02]).is_err()); // trailing
        assert!(decode(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
        // huge array
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::UInt),
            any::<u64>().prop_map(Value::NegInt),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
            ".{0,12}".prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(|b| Value::Link(Cid::hash(RAW, &b))),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,6}", inner, 0..8)
                    .prop_map(|m| Value::Map(m.into_iter().collect())),
            ]
        })
    }

    fn sorted(v: Value) -> Value {
        match v {
            Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
            Value::Map(mut m) => {
                m.sort_by(|a, b| key_order(&a.0, &b.0));
                Value::Map(m.into_iter().map(|(k, v)| (k, sorted(v))).collect())
            }
            v => v,
        }
    }

    proptest! {
        #[test]
        fn roundtrip(v in arb_value()) {
            let bytes = encode(&v);
            let back = decode(&bytes).unwrap();
            prop_assert_eq!(&back, &sorted(v));
            prop_assert_eq!(encode(&back), bytes);
        }

        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(v) = decode(&b) {
                prop_assert_eq!(encode(&v), b);
            }
        }
    }
}
