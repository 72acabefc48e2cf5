//! dag-pb (codec 0x70): the links of a node, so DAGs made by other IPFS tools (Kubo's UnixFS files,
//! CIDv0 `Qm…`) can be fetched, stored, verified and served; and whole nodes, read ([`decode`]) and
//! written ([`encode`]) for the UnixFS views of layers ([`crate::unixfs`]).
//!
//! A node is the protobuf `PBNode { repeated PBLink Links = 2; optional bytes Data = 1; }`, a link
//! `PBLink { optional bytes Hash = 1; optional string Name = 2; optional uint64 Tsize = 3; }`; the
//! hash is a binary CID, CIDv0 (a bare sha2-256 multihash) or CIDv1. Anything else (other wire
//! types, truncated fields, a link without a hash, a hash shp cannot hold) is an error.

use crate::cid::Cid;
use crate::error::{Error, Result};

fn bad(reason: impl Into<String>) -> Error {
    Error::InvalidCid(format!("dag-pb node: {}", reason.into()))
}

/// A protobuf varint at `pos` (advanced past it). Shared with [`crate::unixfs`].
pub(crate) fn read_varint(b: &[u8], pos: &mut usize) -> std::result::Result<u64, &'static str> {
    let mut v = 0u64;
    for i in 0..10 {
        let byte = *b.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes")
}

fn varint(b: &[u8], pos: &mut usize) -> Result<u64> {
    read_varint(b, pos).map_err(bad)
}

/// Calls `f(field, bytes)` for each length-delimited field of a message; varint fields are skipped;
/// other wire types are an error.
fn fields<'a>(b: &'a [u8], mut f: impl FnMut(u64, Option<&'a [u8]>) -> Result<()>) -> Result<()> {
    let mut pos = 0;
    while pos < b.len() {
        let key = varint(b, &mut pos)?;
        match key & 7 {
            0 => {
                varint(b, &mut pos)?;
                f(key >> 3, None)?;
            }
            2 => {
                let len = varint(b, &mut pos)? as usize;
                let end = pos
                    .checked_add(len)
                    .filter(|&e| e <= b.len())
                    .ok_or_else(|| bad("truncated field"))?;
                f(key >> 3, Some(&b[pos..end]))?;
                pos = end;
            }
            w => return Err(bad(format!("wire type {w} in field {}", key >> 3))),
        }
    }
    Ok(())
}

/// One link of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbLink {
    pub hash: Cid,
    /// The link's name (a directory entry's name; empty in file nodes). Absent is read as empty.
    pub name: Vec<u8>,
    /// The cumulative size of the DAG the link points to (absent is read as 0).
    pub tsize: u64,
}

/// A whole node: its links in order and its `Data` (a UnixFS message, for UnixFS DAGs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PbNode {
    pub links: Vec<PbLink>,
    pub data: Option<Vec<u8>>,
}

/// Writes a protobuf varint. Shared with [`crate::unixfs`].
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Writes a length-delimited protobuf field. Shared with [`crate::unixfs`].
pub(crate) fn put_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    put_varint(out, field << 3 | 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// The node's bytes in dag-pb's canonical form: every link (Hash, Name, Tsize, in that order, all
/// three written) before `Data`. Links are written in the order given: a directory's caller sorts
/// them by name, as the dag-pb spec asks.
pub fn encode(node: &PbNode) -> Vec<u8> {
    let mut out = Vec::new();
    let mut link = Vec::new();
    for l in &node.links {
        link.clear();
        put_bytes(&mut link, 1, &l.hash.to_bytes());
        put_bytes(&mut link, 2, &l.name);
        put_varint(&mut link, 3 << 3);
        put_varint(&mut link, l.tsize);
        put_bytes(&mut out, 2, &link);
    }
    if let Some(d) = &node.data {
        put_bytes(&mut out, 1, d);
    }
    out
}

/// Reads a whole node (links in order, `Data`); the same checks as [`links`].
pub fn decode(node: &[u8]) -> Result<PbNode> {
    let mut out = PbNode::default();
    let mut pos = 0;
    while pos < node.len() {
        let key = varint(node, &mut pos)?;
        let (field, wire) = (key >> 3, key & 7);
        if wire != 2 {
            return Err(bad(format!("wire type {wire} in field {field} of a node")));
        }
        let len = varint(node, &mut pos)? as usize;
        let end = pos
            .checked_add(len)
            .filter(|&e| e <= node.len())
            .ok_or_else(|| bad("truncated field"))?;
        let v = &node[pos..end];
        pos = end;
        match field {
            1 => out.data = Some(v.to_vec()),
            2 => {
                let (mut hash, mut name, mut tsize) = (None, Vec::new(), 0);
                let mut lp = 0;
                while lp < v.len() {
                    let k = varint(v, &mut lp)?;
                    match (k >> 3, k & 7) {
                        (3, 0) => tsize = varint(v, &mut lp)?,
                        (f, 2) => {
                            let n = varint(v, &mut lp)? as usize;
                            let e = lp
                                .checked_add(n)
                                .filter(|&e| e <= v.len())
                                .ok_or_else(|| bad("truncated field"))?;
                            match f {
                                1 => hash = Some(Cid::from_link_bytes(&v[lp..e])?),
                                2 => name = v[lp..e].to_vec(),
                                _ => return Err(bad(format!("unknown link field {f}"))),
                            }
                            lp = e;
                        }
                        (f, w) => return Err(bad(format!("wire type {w} in link field {f}"))),
                    }
                }
                out.links.push(PbLink {
                    hash: hash.ok_or_else(|| bad("a link without a Hash"))?,
                    name,
                    tsize,
                });
            }
            f => return Err(bad(format!("unknown node field {f}"))),
        }
    }
    Ok(out)
}

/// The links of a dag-pb node, in order.
pub fn links(node: &[u8]) -> Result<Vec<Cid>> {
    let mut out = Vec::new();
    fields(node, |field, v| {
        if field == 2 {
            let link = v.ok_or_else(|| bad("Links is not a message"))?;
            let mut hash = None;
            fields(link, |lf, lv| {
                if lf == 1 {
                    hash = Some(lv.ok_or_else(|| bad("Hash is not bytes"))?);
                }
                Ok(())
            })?;
            let hash = hash.ok_or_else(|| bad("a link without a Hash"))?;
            out.push(Cid::from_link_bytes(hash)?);
        }
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::{DAG_PB, RAW};

    fn link(hash: &[u8], name: &str) -> Vec<u8> {
        let mut l = vec![0x0a, hash.len() as u8];
        l.extend_from_slice(hash);
        l.extend_from_slice(&[0x12, name.len() as u8]);
        l.extend_from_slice(name.as_bytes());
        l.extend_from_slice(&[0x18, 0x05]);
        l
    }

    #[test]
    fn links_of_v0_and_v1_hashes() {
        let a = Cid::from_digest(DAG_PB, [7; 32]);
        let b = Cid::hash(RAW, b"leaf");
        let mut v0 = vec![0x12, 0x20];
        v0.extend_from_slice(a.digest());
        let mut node = Vec::new();
        for l in [link(&v0, "a"), link(&b.to_bytes(), "b")] {
            node.push(0x12);
            node.push(l.len() as u8);
            node.extend_from_slice(&l);
        }
        node.extend_from_slice(&[0x0a, 0x02, 0x08, 0x01]);
        assert_eq!(links(&node).unwrap(), vec![a, b]);
        assert!(links(&node[..node.len() - 1]).is_err(), "truncated");
        assert!(links(&[0x12, 0x02, 0x12, 0x00])
            .unwrap_err()
            .to_string()
            .contains("without a Hash"));
        assert!(links(&[0x0d, 0, 0, 0, 0]).is_err(), "fixed32 is no dag-pb field");
        assert!(links(&[]).unwrap().is_empty());
        let whole = decode(&node).unwrap();
        assert_eq!(whole.links.iter().map(|l| l.hash).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(whole.links[1].name, b"b");
        assert_eq!(whole.links[1].tsize, 5);
        assert_eq!(whole.data.as_deref(), Some(&[0x08, 0x01][..]));
    }

    #[test]
    fn encode_is_canonical_and_decodes_back() {
        let n = PbNode {
            links: vec![
                PbLink {
                    hash: Cid::hash(RAW, b"x"),
                    name: b"a".to_vec(),
                    tsize: 1,
                },
                PbLink {
                    hash: Cid::hash(DAG_PB, b"y"),
                    name: Vec::new(),
                    tsize: 300,
                },
            ],
            data: Some(vec![8, 2]),
        };
        let b = encode(&n);
        assert_eq!(b[0], 0x12, "links come before Data");
        assert_eq!(&b[b.len() - 4..], &[0x0a, 2, 8, 2]);
        assert_eq!(decode(&b).unwrap(), n);
        assert_eq!(links(&b).unwrap(), vec![n.links[0].hash, n.links[1].hash]);
        assert_eq!(encode(&PbNode::default()), Vec::<u8>::new());
    }
}
