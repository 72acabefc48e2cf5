//! Untrusted DAGs (from a peer, a CAR file, a corrupt store) are refused with errors, never a
//! panic, a hang or unbounded memory: `BlobNode::load`, `ImageRoot::load` (and what they lead
//! to: `BlobNode::open`, `ImageRoot::blobs`) and a `DagReader` over the root.
//!
//! Input: blocks separated by `SEP`. Each block is stored twice, as dag-cbor and as raw; the
//! last block's dag-cbor CID is the root. The fuzzer cannot compute sha256, so every link in a
//! block that decodes is rewritten to name an earlier block (chosen by the link's first digest
//! byte, codec kept) before it is stored: random bytes then grow into real multi-block DAGs,
//! shared subtrees included (a link that already names an earlier block is kept, so the real
//! DAGs in the seed corpus stay whole). Reads are bounded (`LIMIT`), so a DAG that stands for
//! more bytes than that is cut short by the harness, not an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shp_core::blob::BlobNode;
use shp_core::cbor::{decode, encode, Value};
use shp_core::cid::{Cid, DAG_CBOR, RAW};
use shp_core::dag::DagReader;
use shp_core::image::ImageRoot;
use shp_core::store::{Blockstore, MemoryStore};
use std::io::{self, Read};

const SEP: &[u8] = b"\xffSHP";
const LIMIT: u64 = 4 << 20;

fn relink(v: Value, earlier: &[(Cid, Cid)]) -> Value {
    match v {
        // A link that already names an earlier block stays (so real DAGs in the seeds stay whole).
        Value::Link(c) if earlier.iter().any(|&(r, d)| c == r || c == d) => Value::Link(c),
        Value::Link(c) if !earlier.is_empty() => {
            let (raw, cbor) = earlier[c.digest()[0] as usize % earlier.len()];
            Value::Link(if c.codec() == RAW { raw } else { cbor })
        }
        Value::Array(a) => Value::Array(a.into_iter().map(|x| relink(x, earlier)).collect()),
        Value::Map(m) => Value::Map(m.into_iter().map(|(k, x)| (k, relink(x, earlier))).collect()),
        v => v,
    }
}

fn split_blocks(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(SEP.len()).position(|w| w == SEP) {
        out.push(&rest[..i]);
        rest = &rest[i + SEP.len()..];
    }
    out.push(rest);
    out
}

/// Reads at most LIMIT bytes; an error is fine, a panic or hang is not.
fn drain(r: &mut dyn Read) {
    let _ = io::copy(&mut r.take(LIMIT), &mut io::sink());
}

fuzz_target!(|data: &[u8]| {
    let store = MemoryStore::new();
    let mut earlier: Vec<(Cid, Cid)> = Vec::new();
    for block in split_blocks(data) {
        let bytes = match decode(block) {
            Ok(v) => encode(&relink(v, &earlier)),
            Err(_) => block.to_vec(),
        };
        let (raw, cbor) = (Cid::hash(RAW, &bytes), Cid::hash(DAG_CBOR, &bytes));
        store.put(&raw, &bytes).unwrap();
        store.put(&cbor, &bytes).unwrap();
        earlier.push((raw, cbor));
    }
    let root = earlier.last().unwrap().1;

    if let Ok(node) = BlobNode::load(&store, &root) {
        drain(&mut node.open(&store));
        if let Ok(mut tar) = node.open_tar(&store) {
            drain(&mut tar);
        }
    }
    if let Ok(image) = ImageRoot::load(&store, &root) {
        let _ = image.blobs(&store);
    }
    drain(&mut DagReader::new(&store, &[root]));
});
