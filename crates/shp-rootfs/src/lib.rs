//! Container root file systems from shp's DAG.
//!
//! - [`unpack`] — `shp unpack IMAGE DIR`: an image's layers applied in order to a directory, as the
//!   OCI image spec says (whiteouts `.wh.NAME`, opaque directories `.wh..wh..opq`), streamed from
//!   the store's tar DAGs with no layer rebuilt or decompressed.
//! - [`path`] — layer entry names made safe: cleaned, refused when they climb out, and resolved
//!   inside the root with symlinks followed as if the root were `/`, so nothing is ever written
//!   outside it.
//!
//! - [`tree`] — a layer's file tree from its tar DAG's headers alone (no file data read), and
//!   layers merged in memory by the same rules as [`unpack`]; [`index`] — a layer's entries kept in
//!   the home between mounts.
//! - [`mount`] — `shp mount IMAGE DIR`: that tree as a read-only FUSE file system (`fuser`), each
//!   read fetching and verifying only the chunks it touches; [`lazy`] — the store view a lazy
//!   mount reads through (the home's store, then peers for what it lacks, verified).
//!
//! - [`view`] — UnixFS views: a layer's files, or the merged root file system, as a UnixFS tree
//!   whose files link the layer's own chunks, browsable by path in any IPFS tool.
//!
//! Every file-system call goes through `rustix` or `fuser` (no unsafe code here either).

#![forbid(unsafe_code)]

pub mod index;
pub mod lazy;
pub mod mount;
pub mod path;
mod pax;
pub mod tree;
pub mod unpack;
pub mod view;

pub use unpack::{unpack, Applier, UnpackOptions, UnpackReport};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] shp_core::Error),
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    Entry {
        layer: String,
        entry: String,
        reason: String,
    },
    #[error("layer {layer}: reading its tar: {reason}")]
    Tar { layer: String, reason: String },
    #[error("{path}: {reason}")]
    Dest { path: String, reason: String },
}

pub type Result<T> = std::result::Result<T, Error>;
