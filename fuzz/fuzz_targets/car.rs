//! CARv1 import: on success every stored block hashes to its CID and every root is present; on
//! failure nothing is stored (the batch is dropped uncommitted).
//!
//! Random bytes almost never hash to the CID in front of them, so each input is imported twice:
//! as given, and with every section's CID digest rewritten to the sha256 of its bytes (a small
//! framing parser below), so the fuzzer also reaches what lies behind the hash check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shp_core::car::import;
use shp_core::cid::Cid;
use shp_core::store::{Blockstore, MemoryStore};

fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..9 {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The input with each section's CID digest set to what its bytes hash to (as far as the
/// framing can be followed).
fn fix_hashes(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut pos = 0;
    let Some(hlen) = varint(data, &mut pos) else { return out };
    pos = pos.saturating_add(hlen as usize);
    while pos < data.len() {
        let Some(len) = varint(data, &mut pos) else { break };
        let Some(end) = pos.checked_add(len as usize).filter(|&e| e <= data.len()) else {
            break;
        };
        let sec = &data[pos..end];
        if let Ok((cid, used)) = Cid::read_bytes(sec) {
            let fixed = Cid::hash(cid.codec(), &sec[used..]);
            out[pos + used - 32..pos + used].copy_from_slice(fixed.digest());
        }
        pos = end;
    }
    out
}

fn check(data: &[u8]) {
    let store = MemoryStore::new();
    let mut batch = store.batch().unwrap();
    match import(&mut *batch, &mut &data[..]) {
        Ok((roots, n)) => {
            batch.commit().unwrap();
            let cids = store.cids().unwrap();
            assert!(cids.len() as u64 <= n, "more blocks stored than the file holds");
            for c in &cids {
                let block = store.get(c).expect("stored block must read back verified");
                assert!(c.matches(&block), "block {c} does not hash to its CID");
            }
            for r in &roots {
                assert!(store.has(r).unwrap(), "root {r} missing after a successful import");
            }
        }
        Err(_) => {
            drop(batch);
            assert!(store.cids().unwrap().is_empty(), "a failed import left blocks behind");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let fixed = fix_hashes(data);
    if fixed != data {
        check(&fixed);
    }
});
