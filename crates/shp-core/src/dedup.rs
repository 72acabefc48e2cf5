//! Dedup accounting: what each image costs given the images before it, at three granularities —
//! whole blobs (what a registry stores), whole files, and chunks (what shp stores, before
//! compression at rest). The figures people quote when comparing dedup schemes.

use crate::cbor::Value;
use crate::cid::{Cid, RAW};
use crate::dag::{get_node, links_of, schema_err};
use crate::error::Result;
use crate::image::ImageRoot;
use crate::store::Blockstore;
use serde::Serialize;
use std::collections::HashSet;

/// One image's cost given those before it (bytes, uncompressed except `layer_bytes`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DedupRow {
    pub image: String,
    pub root: String,
    /// Bytes of all the image's blobs (as a registry holds them).
    pub total_bytes: u64,
    /// New blobs only: layer-level dedup.
    pub layer_bytes: u64,
    /// New files' contents plus tar headers of new layers and new non-layer blobs.
    pub file_bytes: u64,
    /// New chunks plus tar headers of new layers: chunk-level dedup.
    pub chunk_bytes: u64,
    /// New DAG blocks of every kind (chunks and structure): what shp adds before compression.
    pub block_bytes: u64,
}

#[derive(Default)]
struct Seen {
    blobs: HashSet<[u8; 32]>,
    files: HashSet<Vec<Cid>>,
    chunks: HashSet<Cid>,
    blocks: HashSet<Cid>,
}

fn leaves(store: &dyn Blockstore, links: &[Cid], seen: &mut Seen, row: &mut DedupRow, depth: u8) -> Result<()> {
    for c in links {
        let new_block = seen.blocks.insert(*c);
        if c.codec() == RAW {
            if seen.chunks.insert(*c) {
                let n = store.size_of(c)?;
                row.chunk_bytes += n;
                row.block_bytes += n;
            }
        } else {
            if depth > 16 {
                return Err(schema_err(c, "link tree deeper than 16"));
            }
            let node = get_node(store, c)?;
            if new_block {
                row.block_bytes += store.size_of(c)?;
            }
            leaves(store, &links_of(c, node.get("l"), "l")?, seen, row, depth + 1)?;
        }
    }
    Ok(())
}

fn count_node(store: &dyn Blockstore, c: &Cid, seen: &mut Seen, row: &mut DedupRow) -> Result<()> {
    if seen.blocks.insert(*c) {
        row.block_bytes += store.size_of(c)?;
    }
    Ok(())
}

/// Accounts for `images` (label, root) in order.
pub fn account(store: &dyn Blockstore, images: &[(String, Cid)]) -> Result<Vec<DedupRow>> {
    let mut seen = Seen::default();
    let mut rows = Vec::new();
    for (label, root) in images {
        let mut row = DedupRow {
            image: label.clone(),
            root: root.to_string(),
            ..Default::default()
        };
        let img = ImageRoot::load(store, root)?;
        count_node(store, root, &mut seen, &mut row)?;
        for b in img.blobs(store)? {
            row.total_bytes += b.node.size;
            count_node(store, &b.node.cid, &mut seen, &mut row)?;
            if !seen.blobs.insert(b.node.digest) {
                continue;
            }
            row.layer_bytes += b.node.size;
            match b.node.tar {
                None => {
                    let before = row.chunk_bytes;
                    leaves(store, &b.node.data, &mut seen, &mut row, 0)?;
                    row.file_bytes += if seen.files.insert(b.node.data.clone()) {
                        b.node.size
                    } else {
                        0
                    };
                    let _ = before;
                }
                Some(tar) => {
                    count_node(store, &tar, &mut seen, &mut row)?;
                    let t = get_node(store, &tar)?;
                    let tail = t.get("tail").and_then(Value::as_bytes).map_or(0, |b| b.len() as u64);
                    row.file_bytes += tail;
                    row.chunk_bytes += tail;
                    let mut lists = Vec::new();
                    flatten(
                        store,
                        &links_of(&tar, t.get("lists"), "lists")?,
                        &mut lists,
                        &mut seen,
                        &mut row,
                        0,
                    )?;
                    for l in lists {
                        count_node(store, &l, &mut seen, &mut row)?;
                        let node = get_node(store, &l)?;
                        let list = crate::dag::load_entry_list(store, &l, &node)?;
                        if let Some(d) = list.data {
                            count_node(store, &d, &mut seen, &mut row)?;
                        }
                        let m = list.m.len() as u64;
                        row.file_bytes += m;
                        row.chunk_bytes += m;
                        for e in list.entries {
                            let (size, links) = (e.size, e.links);
                            if size > 0 && seen.files.insert(links.clone()) {
                                row.file_bytes += size;
                            }
                            leaves(store, &links, &mut seen, &mut row, 0)?;
                        }
                    }
                }
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Expands a link tree of entry lists into the lists themselves.
fn flatten(
    store: &dyn Blockstore,
    links: &[Cid],
    out: &mut Vec<Cid>,
    seen: &mut Seen,
    row: &mut DedupRow,
    depth: u8,
) -> Result<()> {
    for c in links {
        let node = get_node(store, c)?;
        if let Some(l) = node.get("l") {
            if depth > 16 {
                return Err(schema_err(c, "link tree deeper than 16"));
            }
            count_node(store, c, seen, row)?;
            flatten(store, &links_of(c, Some(l), "l")?, out, seen, row, depth + 1)?;
        } else {
            out.push(*c);
        }
    }
    Ok(())
}
