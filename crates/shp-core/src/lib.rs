//! shp-core: container images as deduplicated, bit-exact IPLD DAGs.
//!
//! Data flows one way: a source (OCI layout, docker-archive) is decoded ([`tar`], gzip/zstd in
//! [`blob`]), chunked ([`chunk`]), written as DAG-schema blocks ([`dag`], [`image`]) into a
//! [`store`]; export is the mirror image. Start with [`home::Home`], which ties a store and its
//! refs together.
#![forbid(unsafe_code)]

pub mod blob;
pub mod cache;
pub mod car;
pub mod cbor;
pub mod chunk;
pub mod cid;
pub mod config;
pub mod dag;
pub mod dagpb;
pub mod dedup;
pub mod docker_archive;
pub mod error;
pub mod gzip;
pub mod home;
pub mod image;
pub mod inflate;
pub mod name;
pub mod oci;
pub mod publish;
pub mod recipe;
pub mod reference;
pub mod refs;
pub mod store;
pub mod tar;
pub mod unixfs;

pub use cid::Cid;
pub use error::{Error, Result};
pub use home::Home;
