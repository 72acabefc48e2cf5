//! CAR v1 (content-addressed archive) export and import of any DAG.
//!
//! Export streams blocks in depth-first order from the root (each once), so a reader can verify
//! and use them as they arrive. Import verifies every block against its CID before it is stored,
//! and stores nothing unless the whole file is valid.

use crate::cbor::{self, Value};
use crate::cid::{read_varint, write_varint, Cid};
use crate::error::{Error, Result};
use crate::store::{Batch, Blockstore, MAX_BLOCK};
use std::collections::HashSet;
use std::io::{Read, Write};

/// The CIDs of the whole DAG under `root`, depth-first, each once. Fails on a missing block.
pub fn walk(store: &dyn Blockstore, root: &Cid, f: &mut dyn FnMut(&Cid, &[u8]) -> Result<()>) -> Result<u64> {
    let mut seen = HashSet::new();
    let mut stack = vec![*root];
    let mut n = 0;
    while let Some(cid) = stack.pop() {
        if !seen.insert(cid) {
            continue;
        }
        let data = store.get(&cid)?;
        f(&cid, &data)?;
        n += 1;
        stack.extend(crate::dag::block_links(&cid, &data)?.into_iter().rev());
    }
    Ok(n)
}

/// Writes the DAG under `root` as a CARv1 stream. Returns the number of blocks.
pub fn export(store: &dyn Blockstore, root: &Cid, out: &mut dyn Write) -> Result<u64> {
    let header = cbor::encode(&Value::map([
        ("roots", Value::links(&[*root])),
        ("version", Value::UInt(1)),
    ]));
    let mut buf = Vec::new();
    write_varint(header.len() as u64, &mut buf);
    out.write_all(&buf)?;
    out.write_all(&header)?;
    walk(store, root, &mut |cid, data| {
        let c = cid.to_bytes();
        let mut len = Vec::new();
        write_varint((c.len() + data.len()) as u64, &mut len);
        out.write_all(&len)?;
        out.write_all(&c)?;
        out.write_all(data)?;
        Ok(())
    })
}

fn read_frame(r: &mut dyn Read, limit: usize) -> Result<Option<Vec<u8>>> {
    // Varint length, read byte by byte (at most 9).
    let mut len_bytes = Vec::new();
    loop {
        let mut b = [0u8; 1];
        match r.read(&mut b)? {
            0 if len_bytes.is_empty() => return Ok(None),
            0 => return Err(Error::Car("truncated length prefix".into())),
            _ => {}
        }
        len_bytes.push(b[0]);
        if b[0] & 0x80 == 0 || len_bytes.len() >= 9 {
            break;
        }
    }
    let mut pos = 0;
    let len = read_varint(&len_bytes, &mut pos).map_err(|e| Error::Car(format!("length prefix: {e}")))? as usize;
    if len > limit {
        return Err(Error::Car(format!(
            "section of {len} bytes, over the {limit}-byte limit"
        )));
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data)
        .map_err(|_| Error::Car(format!("truncated section ({len} bytes expected)")))?;
    Ok(Some(data))
}

/// Reads a CARv1 stream into `batch`, verifying every block. Returns the roots and block count.
pub fn import(batch: &mut dyn Batch, r: &mut dyn Read) -> Result<(Vec<Cid>, u64)> {
    let header = read_frame(r, 1 << 20)?.ok_or_else(|| Error::Car("empty file".into()))?;
    let h = cbor::decode(&header).map_err(|e| Error::Car(format!("header: {e}")))?;
    if h.get("version").and_then(Value::as_u64) != Some(1) {
        return Err(Error::Car("header version is not 1 (only CARv1 is supported)".into()));
    }
    let roots: Vec<Cid> = h
        .get("roots")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Car("header has no roots".into()))?
        .iter()
        .map(|v| v.as_link().ok_or_else(|| Error::Car("a root is not a CID".into())))
        .collect::<Result<_>>()?;
    let mut n = 0;
    while let Some(sec) = read_frame(r, MAX_BLOCK + 64)? {
        let (cid, used) = Cid::read_bytes(&sec).map_err(|e| Error::Car(format!("block {n}: {e}")))?;
        let data = &sec[used..];
        if !cid.matches(data) {
            return Err(Error::Car(format!("block {n} ({cid}): bytes do not hash to its CID")));
        }
        batch.put(&cid, data)?;
        n += 1;
    }
    for root in &roots {
        if !batch.has(root)? {
            return Err(Error::Car(format!("root {root} is not in the file or the store")));
        }
    }
    Ok((roots, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::{DAG_CBOR, RAW};
    use crate::store::MemoryStore;

    #[test]
    fn roundtrip_and_corruption() {
        let a = MemoryStore::new();
        let leaf = b"hello".to_vec();
        let lc = Cid::hash(RAW, &leaf);
        let node = cbor::encode(&Value::map([("l", Value::links(&[lc, lc]))]));
        let root = Cid::hash(DAG_CBOR, &node);
        a.put(&lc, &leaf).unwrap();
        a.put(&root, &node).unwrap();
        let mut car = Vec::new();
        assert_eq!(export(&a, &root, &mut car).unwrap(), 2);
        let b = MemoryStore::new();
        let mut batch = b.batch().unwrap();
        let (roots, n) = import(&mut *batch, &mut &car[..]).unwrap();
        batch.commit().unwrap();
        assert_eq!((roots, n), (vec![root], 2));
        assert_eq!(b.get(&lc).unwrap(), leaf);
        let mut bad = car.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let c = MemoryStore::new();
        let mut batch = c.batch().unwrap();
        assert!(import(&mut *batch, &mut &bad[..])
            .unwrap_err()
            .to_string()
            .contains("do not hash"));
        drop(batch);
        assert!(c.cids().unwrap().is_empty());
        assert!(import(&mut *MemoryStore::new().batch().unwrap(), &mut &car[..car.len() - 2]).is_err());
    }
}
