//! dag-pb (codec 0x70), read only: the links of a node, so DAGs made by other IPFS tools (Kubo's
//! UnixFS files, CIDv0 `Qm…`) can be fetched, stored, verified and served. shp never writes it.
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

fn varint(b: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let byte = *b.get(*pos).ok_or_else(|| bad("truncated varint"))?;
        *pos += 1;
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(bad("varint longer than 10 bytes"))
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
    }
}
