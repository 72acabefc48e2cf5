//! The one error type of the engine. Every variant names what was wrong and where.

use std::io;

/// Errors of shp-core. Marked non-exhaustive: new failure kinds may appear in minor releases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("I/O error on {path}: {source}")]
    IoPath { path: String, source: io::Error },
    #[error("invalid CID: {0}")]
    InvalidCid(String),
    #[error("block {cid} not found")]
    BlockNotFound { cid: String },
    #[error("block {cid} is corrupt: {reason}")]
    CorruptBlock { cid: String, reason: String },
    #[error("block {cid} is {size} bytes, over the {limit}-byte block limit")]
    BlockTooLarge { cid: String, size: usize, limit: usize },
    #[error("invalid dag-cbor: {0}")]
    Cbor(String),
    #[error("DAG node {cid} does not follow the shp DAG schema: {reason}")]
    Schema { cid: String, reason: String },
    #[error("tar stream of {blob}: {reason} (at byte {offset})")]
    Tar { blob: String, offset: u64, reason: String },
    #[error("compressed layer {blob}: {reason}")]
    Compression { blob: String, reason: String },
    #[error("layer {blob} expands past the {limit}-byte limit (decompression bomb?)")]
    TooLarge { blob: String, limit: u64 },
    #[error("blob {expected}: content has digest {actual} and {size} bytes (descriptor says {expected_size} bytes)")]
    DigestMismatch {
        expected: String,
        actual: String,
        size: u64,
        expected_size: u64,
    },
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex>")]
    InvalidDigest(String),
    #[error("blob {digest} is missing (referenced by {referrer})")]
    MissingBlob { digest: String, referrer: String },
    #[error("invalid {what}: {reason}")]
    InvalidManifest { what: String, reason: String },
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("image {0} not found")]
    ImageNotFound(String),
    /// No blob with this digest (`sha256:<hex>`) is stored, on its own or in any image.
    #[error("blob {0} not found")]
    BlobNotFound(String),
    #[error("invalid CAR file: {0}")]
    Car(String),
    #[error("rebuilt blob {digest} does not match (got {actual}); the store may be corrupt")]
    RebuildMismatch { digest: String, actual: String },
    #[error("store: {0}")]
    Store(String),
}

/// Result of shp-core operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io_path(path: &std::path::Path, source: io::Error) -> Self {
        Error::IoPath {
            path: path.display().to_string(),
            source,
        }
    }
}
