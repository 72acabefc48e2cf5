//! Layer tars from outside, stored as tar DAGs and read back the way `shp mount` reads them: from
//! the headers alone, with file data as holes the `tar` crate seeks over. Whatever the bytes:
//! - it never panics;
//! - when the tar itself parses, the entries found this way are the tar's own, in order: the same
//!   names, types, sizes and link names as the `tar` crate reads from the real bytes, and each
//!   file's data links hold its data (a differential check of the hole-punched stream);
//! - the merged tree (`Tree::apply`, one or two layers, split at the first `\0NEXT\0`) only links
//!   to inodes that exist, and a directory's children name their directory as parent.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shp_core::dag::{DagReader, DagWriter, TarDag};
use shp_core::store::{Blockstore, MemoryStore};
use std::io::Read;

const SPLIT: &[u8] = b"\0NEXT\0";

/// (name, type byte, size, link name) of every entry, as the tar crate reads the real bytes.
fn direct(t: &[u8]) -> Option<Vec<(Vec<u8>, u8, u64, Option<Vec<u8>>)>> {
    let mut ar = tar::Archive::new(t);
    let mut out = Vec::new();
    for e in ar.entries().ok()? {
        let mut e = e.ok()?;
        let kind = e.header().entry_type().as_byte();
        let size = e.size();
        let link = e.link_name_bytes().map(|l| l.into_owned());
        out.push((e.path_bytes().into_owned(), kind, size, link));
        let mut sink = Vec::new();
        e.read_to_end(&mut sink).ok()?;
    }
    Some(out)
}

fn one(store: &MemoryStore, t: &[u8], tree: &mut shp_rootfs::tree::Tree, n: usize) -> bool {
    let mut b = store.batch().unwrap();
    let tar = {
        let mut w = DagWriter::new(&mut *b);
        let mut sink = TarDag::new(&mut w);
        if shp_core::tar::split(&mut &t[..], "fuzz", &mut sink).is_err() {
            return false;
        }
        match sink.finish() {
            Ok((cid, _, _)) => cid,
            Err(_) => return false,
        }
    };
    b.commit().unwrap();
    let got = shp_rootfs::tree::tar_entries(store, &tar, "sha256:fuzz");
    if let (Ok(got), Some(want)) = (&got, direct(t)) {
        // Regular files (and the like) only: the tar crate folds PAX/GNU records into entries
        // the same way on both paths, so the sequences must agree entry for entry.
        let fs_kinds = |k: u8| matches!(k, b'0' | 0 | b'1' | b'2' | b'3' | b'4' | b'5' | b'6' | b'7');
        let want: Vec<_> = want.into_iter().filter(|w| fs_kinds(w.1)).collect();
        assert_eq!(got.len(), want.len(), "entry count");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.name, w.0, "name");
            if g.size > 0 {
                assert_eq!(g.size, w.2, "size of {:?}", String::from_utf8_lossy(&g.name));
                let mut data = Vec::new();
                DagReader::new(store, &g.data).read_to_end(&mut data).unwrap();
                assert_eq!(data.len() as u64, g.size, "data links hold the file");
            }
            if w.1 == b'1' {
                assert_eq!(g.hardlink, w.3, "hard link target");
            }
            if w.1 == b'2' {
                assert_eq!(g.target, w.3.clone().unwrap_or_default(), "symlink target");
            }
        }
    }
    match got {
        Ok(entries) => tree.apply(&format!("sha256:fuzz-{n}"), entries).is_ok(),
        Err(_) => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let (a, b) = match data.windows(SPLIT.len()).position(|w| w == SPLIT) {
        Some(i) => (&data[..i], Some(&data[i + SPLIT.len()..])),
        None => (data, None),
    };
    let store = MemoryStore::new();
    let mut tree = shp_rootfs::tree::Tree::new();
    if one(&store, a, &mut tree, 1) {
        if let Some(b) = b {
            one(&store, b, &mut tree, 2);
        }
    }
    for (i, n) in tree.inodes.iter().enumerate().skip(1) {
        for c in n.children.values() {
            let child = tree.get(*c).expect("a child inode exists");
            if child.kind == shp_rootfs::tree::Kind::Dir {
                assert_eq!(child.parent, i as u64, "a directory's parent");
            }
        }
    }
});
