//! Pack objects and their indexes in the bucket.
//!
//! ```text
//! PREFIX/packs/<name>.pack  records: cid(36) comp(1) stored_len(u32 LE) raw_len(u32 LE) payload
//! PREFIX/packs/<name>.idx   "SHPS3IX1", pack_len(u64 LE), count(u64 LE),
//!                           entries: cid(36) offset(u64 LE) stored(u32 LE) raw(u32 LE) comp(1),
//!                           sha256 of everything before it
//! ```
//! A pack is written first and its index second: a pack without an index is invisible (a batch in
//! flight, or one that died), and gc removes it once it is older than the grace period. Records
//! carry their own CID and sizes, so a pack can be checked without its index. `offset` points at a
//! record's payload. An index read from the bucket or the local cache is trusted only after its
//! checksum and every entry's bounds check out.

use crate::cid::{Cid, CID_LEN};
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};

pub const IDX_MAGIC: &[u8; 8] = b"SHPS3IX1";
pub const REC_HEAD: usize = CID_LEN + 1 + 4 + 4;
const ENTRY: usize = CID_LEN + 8 + 4 + 4 + 1;
const HEAD: usize = 8 + 8 + 8;
pub const COMP_RAW: u8 = 0;
pub const COMP_ZSTD: u8 = 1;

/// Where one block lives in its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub cid: Cid,
    /// Offset of the payload (after the record head) in the pack.
    pub offset: u64,
    pub stored: u32,
    pub raw: u32,
    pub comp: u8,
}

/// A pack index: the pack's length and its entries in the order they were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub pack_len: u64,
    pub entries: Vec<Entry>,
}

impl Index {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD + self.entries.len() * ENTRY + 32);
        out.extend_from_slice(IDX_MAGIC);
        out.extend_from_slice(&self.pack_len.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.cid.to_bytes());
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(&e.stored.to_le_bytes());
            out.extend_from_slice(&e.raw.to_le_bytes());
            out.push(e.comp);
        }
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    }

    /// Parses and checks an index; `what` names it in errors (the object key or cache file).
    pub fn decode(b: &[u8], what: &str) -> Result<Index> {
        let bad = |reason: String| Error::Store(format!("pack index {what}: {reason}"));
        if b.len() < HEAD + 32 || &b[..8] != IDX_MAGIC {
            return Err(bad("not an shp pack index (bad magic or truncated)".into()));
        }
        let (body, sum) = b.split_at(b.len() - 32);
        if Sha256::digest(body).as_slice() != sum {
            return Err(bad("checksum mismatch (truncated or corrupt)".into()));
        }
        let pack_len = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
        let count = u64::from_le_bytes(body[16..24].try_into().expect("8 bytes"));
        let rest = &body[HEAD..];
        if count.checked_mul(ENTRY as u64) != Some(rest.len() as u64) {
            return Err(bad(format!("{count} entries do not fill {} bytes", rest.len())));
        }
        let mut entries = Vec::with_capacity(count as usize);
        for rec in rest.chunks_exact(ENTRY) {
            let cid = Cid::from_bytes(&rec[..CID_LEN]).map_err(|e| bad(format!("entry CID: {e}")))?;
            let mut at = CID_LEN;
            let offset = u64::from_le_bytes(rec[at..at + 8].try_into().expect("8 bytes"));
            at += 8;
            let stored = u32::from_le_bytes(rec[at..at + 4].try_into().expect("4 bytes"));
            at += 4;
            let raw = u32::from_le_bytes(rec[at..at + 4].try_into().expect("4 bytes"));
            at += 4;
            let comp = rec[at];
            let fits = offset
                .checked_add(stored as u64)
                .is_some_and(|end| offset >= REC_HEAD as u64 && end <= pack_len);
            if !fits || raw as usize > super::super::MAX_BLOCK || comp > COMP_ZSTD {
                return Err(bad(format!("entry {cid} is out of bounds or malformed")));
            }
            entries.push(Entry {
                cid,
                offset,
                stored,
                raw,
                comp,
            });
        }
        Ok(Index { pack_len, entries })
    }
}

/// Builds one pack in memory: records appended as blocks arrive.
pub struct PackBuilder {
    pub bytes: Vec<u8>,
    pub entries: Vec<Entry>,
}

impl PackBuilder {
    pub fn new(capacity: usize) -> PackBuilder {
        PackBuilder {
            bytes: Vec::with_capacity(capacity),
            entries: Vec::new(),
        }
    }

    /// Appends a block, stored compressed when `compressed` is given and smaller.
    pub fn push(&mut self, cid: &Cid, data: &[u8], compressed: Option<Vec<u8>>) {
        let (comp, payload) = match &compressed {
            Some(z) if z.len() < data.len() => (COMP_ZSTD, &z[..]),
            _ => (COMP_RAW, data),
        };
        self.bytes.extend_from_slice(&cid.to_bytes());
        self.bytes.push(comp);
        self.bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(&(data.len() as u32).to_le_bytes());
        let offset = self.bytes.len() as u64;
        self.bytes.extend_from_slice(payload);
        self.entries.push(Entry {
            cid: *cid,
            offset,
            stored: payload.len() as u32,
            raw: data.len() as u32,
            comp,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn index(&self) -> Index {
        Index {
            pack_len: self.bytes.len() as u64,
            entries: self.entries.clone(),
        }
    }
}

/// A block's bytes from its stored payload, checked against its CID.
pub fn open_payload(e: &Entry, payload: &[u8], where_: &str) -> Result<Vec<u8>> {
    let corrupt = |reason: String| Error::CorruptBlock {
        cid: e.cid.to_string(),
        reason: format!("{reason} ({where_})"),
    };
    if payload.len() != e.stored as usize {
        return Err(corrupt(format!(
            "{} stored bytes, the index says {}",
            payload.len(),
            e.stored
        )));
    }
    let data = match e.comp {
        COMP_RAW => payload.to_vec(),
        COMP_ZSTD => zstd::bulk::decompress(payload, e.raw as usize).map_err(|z| corrupt(format!("zstd: {z}")))?,
        c => return Err(corrupt(format!("unknown compression {c}"))),
    };
    if data.len() != e.raw as usize || !e.cid.matches(&data) {
        return Err(corrupt("bytes in the bucket do not hash to the CID".into()));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pack_of(blocks: &[Vec<u8>]) -> PackBuilder {
        let mut p = PackBuilder::new(0);
        for (i, b) in blocks.iter().enumerate() {
            let cid = Cid::hash(crate::cid::RAW, b);
            let z = (i % 2 == 0).then(|| zstd::bulk::compress(b, 3).unwrap());
            p.push(&cid, b, z);
        }
        p
    }

    proptest! {
        #[test]
        fn index_round_trips_and_blocks_open(blocks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 0..20)) {
            let p = pack_of(&blocks);
            let idx = p.index();
            let enc = idx.encode();
            let dec = Index::decode(&enc, "t").unwrap();
            prop_assert_eq!(&dec, &idx);
            for (e, b) in dec.entries.iter().zip(&blocks) {
                let payload = &p.bytes[e.offset as usize..(e.offset + e.stored as u64) as usize];
                prop_assert_eq!(&open_payload(e, payload, "t").unwrap(), b);
            }
        }

        #[test]
        fn any_flipped_byte_is_refused(blocks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..200), 1..5), at in any::<prop::sample::Index>()) {
            let mut enc = pack_of(&blocks).index().encode();
            let i = at.index(enc.len());
            enc[i] ^= 0x20;
            prop_assert!(Index::decode(&enc, "t").is_err());
        }
    }

    #[test]
    fn wrong_payload_is_corrupt() {
        let p = pack_of(&[b"hello world hello world hello world".to_vec()]);
        let e = p.entries[0];
        let mut payload = p.bytes[e.offset as usize..].to_vec();
        payload[0] ^= 1;
        let err = open_payload(&e, &payload, "packs/x.pack").unwrap_err().to_string();
        assert!(
            err.contains("packs/x.pack") && err.contains(&e.cid.to_string()),
            "{err}"
        );
    }
}
