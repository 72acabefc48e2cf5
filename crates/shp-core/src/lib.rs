//! shp-core: container images as deduplicated, bit-exact IPLD DAGs.
//!
//! Data flows one way: a source (OCI layout, docker-archive) is decoded ([`tar`], gzip/zstd),
//! chunked ([`chunk`]), written as schema-v1 blocks ([`dag`], [`image`]) into a [`store`]; export is
//! the mirror image. Start with [`home::Home`], which ties a store and its refs together.
#![forbid(unsafe_code)]

pub mod cbor;
pub mod chunk;
pub mod cid;
pub mod dag;
pub mod error;
pub mod store;
pub mod tar;

pub use cid::Cid;
pub use error::{Error, Result};
