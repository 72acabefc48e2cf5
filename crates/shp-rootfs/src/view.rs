//! UnixFS views: a layer's files, or an image's merged root file system, as a UnixFS directory
//! tree (dag-pb, CIDv1) whose files link the layer's own raw chunks as their leaves — so a view
//! costs only its directory and file nodes, and any IPFS tool (a gateway, Kubo, Helia) can browse
//! and read an image's files by path.
//!
//! View format 1 (the CIDs are a function of the layer's tar DAG and this format only):
//! - a **layer view** shows the layer's tar as it is: whiteouts stay the empty files `.wh.NAME`
//!   and `.wh..wh..opq` the OCI layer format writes; a **root file system view** is the image's
//!   layers merged as `shp unpack` merges them (whiteouts applied, nothing of them left);
//! - regular files: a UnixFS file node (with `mode` and `mtime`) over the file's chunks, in a
//!   balanced tree of ≤ 174 links per node; hard links are the same node under each name;
//! - directories: UnixFS directories (HAMT-sharded over 256 KiB of links, as Kubo does), with
//!   `mode` and `mtime`; symlinks: UnixFS symlinks (the target as text);
//! - left out, as UnixFS has no place for them: devices, fifos, owners, xattrs; and from a layer
//!   view, a hard link to a file of a lower layer (its content is not in the layer).
//!
//! Views are built on request ([`layer_view`], [`rootfs_view`]: `shp inspect` asks for every
//! one of an image), in one batch, and recorded with [`Home::record_view`] so gc keeps a view as
//! long as what it was built from; a view already built is found and not built again.

use crate::path::clean;
use crate::tree::{layer_entries, Inode, Kind, Tree, ROOT};
use crate::Result;
use shp_core::blob::BlobNode;
use shp_core::cid::{Cid, RAW};
use shp_core::store::Blockstore;
use shp_core::unixfs::{Entry, Writer};
use shp_core::Home;
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;

/// The view format this build writes (see the module docs).
pub const VIEW_FORMAT: u32 = 1;

/// The UnixFS view of one layer (built once, then found).
pub fn layer_view(home: &Home, layer: &BlobNode) -> Result<Cid> {
    let Some(tar) = layer.tar else {
        return Err(crate::Error::Tar {
            layer: layer.digest_str(),
            reason: format!("stored opaque ({} encoding): it has no file tree to view", layer.enc),
        });
    };
    if let Some(v) = home.view(&tar)? {
        return Ok(v);
    }
    let mut tree = Tree::new();
    tree.overlay_whiteouts = true;
    // A hard link to a lower layer's file has no content in this layer: it is left out.
    let mut seen = std::collections::HashSet::new();
    let entries: Vec<_> = layer_entries(home.store(), layer)?
        .into_iter()
        .filter(|e| match &e.hardlink {
            Some(t) => clean(t).is_ok_and(|t| seen.contains(&t)),
            None => {
                if let Ok(c) = clean(&e.name) {
                    seen.insert(c);
                }
                true
            }
        })
        .collect();
    tree.apply(&layer.digest_str(), entries)?;
    let view = write(home, &tree, true)?;
    home.record_view(&tar, &view)?;
    Ok(view)
}

/// The UnixFS view of the root file system `layers` (lowest first) make; `key` is the blob node
/// of the manifest that lists them.
pub fn rootfs_view(home: &Home, key: &Cid, layers: &[BlobNode]) -> Result<Cid> {
    if let Some(v) = home.view(key)? {
        return Ok(v);
    }
    let mut tree = Tree::new();
    for l in layers {
        tree.apply(&l.digest_str(), layer_entries(home.store(), l)?)?;
    }
    let view = write(home, &tree, false)?;
    home.record_view(key, &view)?;
    Ok(view)
}

/// The views of every manifest of the image `id` names: for each manifest (by digest) its root
/// file system's view and each layer's (`None` for a layer stored opaque, which has no tree).
pub fn image_views(home: &Home, id: &str) -> Result<Vec<ManifestViews>> {
    let root = home.resolve(id)?;
    let store = home.store();
    let img = shp_core::image::ImageRoot::load(store, &root)?;
    let blobs = img.blobs(store)?;
    let mut out = Vec::new();
    for m in &blobs {
        let Some(doc) = m.doc.as_ref().filter(|d| d.kind == shp_core::oci::DocKind::Manifest) else {
            continue;
        };
        let mut layers = Vec::new();
        for l in &doc.layers {
            if let Some(b) = blobs.iter().find(|b| b.node.digest == l.digest) {
                layers.push(b.node.clone());
            }
        }
        let mut views = Vec::new();
        for l in &layers {
            views.push((
                l.digest_str(),
                if l.tar.is_some() {
                    Some(layer_view(home, l)?)
                } else {
                    None
                },
            ));
        }
        let complete = layers.len() == doc.layers.len() && layers.iter().all(|l| l.tar.is_some());
        let rootfs = if complete {
            Some(rootfs_view(home, &m.node.cid, &layers)?)
        } else {
            None
        };
        out.push(ManifestViews {
            digest: m.node.digest_str(),
            rootfs,
            layers: views,
        });
    }
    Ok(out)
}

/// One manifest's views.
#[derive(Debug, Clone)]
pub struct ManifestViews {
    pub digest: String,
    pub rootfs: Option<Cid>,
    /// (layer digest, its view)
    pub layers: Vec<(String, Option<Cid>)>,
}

/// The raw chunks (CID, size) of a file's data links, link trees expanded, in order.
pub fn file_chunks(store: &dyn Blockstore, data: &[Cid]) -> shp_core::Result<Vec<(Cid, u64)>> {
    let mut out = Vec::new();
    let mut todo: Vec<(Cid, usize)> = data.iter().rev().map(|c| (*c, 0)).collect();
    while let Some((c, depth)) = todo.pop() {
        if c.codec() == RAW {
            out.push((c, store.size_of(&c)?));
            continue;
        }
        if depth > 16 {
            return Err(shp_core::Error::Schema {
                cid: c.to_string(),
                reason: "link tree deeper than 16 levels".into(),
            });
        }
        let links = crate::tree::data_tree_links(store, &c)?;
        todo.extend(links.into_iter().rev().map(|l| (l, depth + 1)));
    }
    Ok(out)
}

/// Writes `tree` as UnixFS in one batch; its root's CID. `layer`: whiteouts as the layer wrote them.
fn write(home: &Home, tree: &Tree, layer: bool) -> Result<Cid> {
    let store = home.store();
    let mut batch = store.batch()?;
    let mut put = |c: Cid, b: Vec<u8>| batch.put_own(&c, &b).map(|_| ());
    let root = {
        let mut w = Writer::new(&mut put);
        let mut done: HashMap<u64, (Cid, u64)> = HashMap::new();
        node(store, tree, ROOT, layer, &mut w, &mut done)?
    };
    batch.commit().map_err(|e| home.explain(e))?;
    Ok(root.expect("the root is a directory").0)
}

fn meta(n: &Inode) -> (Option<u32>, Option<(i64, u32)>) {
    (Some(n.mode & 0o7777), Some(n.mtime))
}

/// Writes inode `ino` (children first, iteratively deep: a stack, not recursion); `None` for what
/// UnixFS cannot hold.
fn node(
    store: &dyn Blockstore,
    tree: &Tree,
    ino: u64,
    layer: bool,
    w: &mut Writer,
    done: &mut HashMap<u64, (Cid, u64)>,
) -> Result<Option<(Cid, u64)>> {
    // (directory, whether its children are done)
    let mut stack = vec![(ino, false)];
    while let Some((d, ready)) = stack.pop() {
        let n = &tree.inodes[d as usize];
        if !ready {
            stack.push((d, true));
            for &c in n.children.values() {
                if tree.inodes[c as usize].kind == Kind::Dir {
                    stack.push((c, false));
                }
            }
            continue;
        }
        let mut entries = Vec::with_capacity(n.children.len());
        if layer
            && n.xattrs
                .iter()
                .any(|(k, v)| k == b"trusted.overlay.opaque" && v == b"y")
        {
            let (cid, tsize) = w.file(&[], Some(0), Some((0, 0)))?;
            entries.push(Entry {
                name: b".wh..wh..opq".to_vec(),
                cid,
                tsize,
            });
        }
        for (name, &c) in &n.children {
            let child = &tree.inodes[c as usize];
            let mut name = name.as_bytes().to_vec();
            let made = match child.kind {
                Kind::Dir => done.get(&c).copied(),
                Kind::File => match done.get(&c) {
                    Some(v) => Some(*v),
                    None => {
                        let leaves = file_chunks(store, &child.data)?;
                        let held: u64 = leaves.iter().map(|l| l.1).sum();
                        if held != child.size {
                            return Err(shp_core::Error::Schema {
                                cid: child.data.first().map(|c| c.to_string()).unwrap_or_default(),
                                reason: format!("a file's chunks hold {held} bytes, its header says {}", child.size),
                            }
                            .into());
                        }
                        let (mode, mtime) = meta(child);
                        let v = w.file(&leaves, mode, mtime)?;
                        done.insert(c, v);
                        Some(v)
                    }
                },
                Kind::Symlink => {
                    let (mode, mtime) = meta(child);
                    Some(w.symlink(&child.target, mode, mtime)?)
                }
                Kind::Char if layer && child.dev == (0, 0) => {
                    // a whiteout, as the layer's tar has it
                    name.splice(0..0, b".wh.".iter().copied());
                    Some(w.file(&[], Some(0), Some(child.mtime))?)
                }
                Kind::Char | Kind::Block | Kind::Fifo => None,
            };
            if let Some((cid, tsize)) = made {
                entries.push(Entry { name, cid, tsize });
            }
        }
        let (mode, mtime) = meta(n);
        let v = w.directory(entries, mode, mtime)?;
        done.insert(d, v);
    }
    Ok(done.get(&ino).copied())
}
