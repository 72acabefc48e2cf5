//! dag-pb nodes and the UnixFS data in them, as the gateway reads them from a store that may hold
//! other tools' blocks: arbitrary bytes never panic; a node that decodes encodes back to bytes that
//! decode to the same node (links, names, sizes, data); UnixFS data that decodes round-trips the
//! same way; and path resolution and listing over a store of just this block end in an answer or
//! an error, never a panic or a loop.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shp_core::cid::{Cid, DAG_PB};
use shp_core::{dagpb, unixfs};

fuzz_target!(|data: &[u8]| {
    let Ok(node) = dagpb::decode(data) else { return };
    let again = dagpb::encode(&node);
    assert_eq!(dagpb::decode(&again).expect("an encoded node decodes"), node);
    assert_eq!(
        dagpb::links(data).expect("links of a node that decodes"),
        node.links.iter().map(|l| l.hash).collect::<Vec<_>>()
    );
    let _ = unixfs::entity_links(data);
    if let Some(d) = node.data.as_deref().and_then(|d| unixfs::Data::decode(d).ok()) {
        let e = d.encode();
        assert_eq!(unixfs::Data::decode(&e).expect("encoded data decodes"), d);
    }
    let cid = Cid::hash(DAG_PB, data);
    let bytes = data.to_vec();
    let get = |c: &Cid| {
        if *c == cid {
            Ok(bytes.clone())
        } else {
            Err(shp_core::Error::BlockNotFound { cid: c.to_string() })
        }
    };
    let _ = unixfs::resolve(&get, &cid, "a/b/c");
    let _ = unixfs::list(&get, &cid);
    let _ = unixfs::read_file(&get, &cid, &mut |_| Ok(()));
});
