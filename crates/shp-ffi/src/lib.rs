//! The C ABI of shp: a thin layer over [`shp_core::Home`] for C and Go (cgo).
//!
//! This crate is the only one in the workspace with `unsafe`: it turns C pointers into Rust
//! references at the boundary and nothing else. Every entry point runs inside one panic boundary
//! ([`boundary::run`]), checks every pointer for NULL, and reports failures as an
//! [`shp_status`] code plus a message readable with [`shp_last_error_message`]. The header
//! `include/shp.h` is generated from this crate by cbindgen (see `cbindgen.toml`); the doc
//! comments here are the header's documentation, so ownership rules are written on each item.
//!
//! Modules: [`status`] (codes, messages, the mapping from `shp_core::Error`), [`boundary`] (panic
//! boundary and pointer checks), [`store`] (store handle, stat, list, images), [`writer`] and
//! [`reader`] (streaming blobs), [`version`] (what a caller linked).
#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

// Declared in the order the header lists their functions (cbindgen keeps source order).
pub mod boundary;
pub mod reader;
pub mod status;
pub mod store;
pub mod version;
pub mod writer;

pub use reader::*;
pub use status::*;
pub use store::*;
pub use version::*;
pub use writer::*;

/// Room `shp_blob_writer_commit` needs for a digest: `sha256:` + 64 hex digits + NUL.
pub const SHP_DIGEST_BUF_LEN: usize = 72;

/// Room `shp_image_import` needs for a root CID: a CIDv1 (sha2-256) in base32 is 59 characters,
/// plus NUL.
pub const SHP_CID_BUF_LEN: usize = 60;
