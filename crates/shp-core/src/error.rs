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
    /// A write that a concurrent gc raced (on a shared bucket): nothing was committed, and the
    /// same write run again succeeds. `Home::push` runs it again by itself.
    #[error("store: {0}")]
    Raced(String),
    #[error("no space left on the file system of home {home} ({detail}); nothing was changed: free some space and run the command again")]
    NoSpace { home: String, detail: String },
    /// A path under a UnixFS root (a layer's view) that names nothing there.
    #[error("/ipfs/{root}/{path}: {reason}")]
    PathNotFound { root: String, path: String, reason: String },
}

/// Result of shp-core operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether this is (or wraps) a "file system full" or "quota exceeded" I/O error.
    pub fn is_no_space(&self) -> bool {
        fn io_full(e: &io::Error) -> bool {
            e.kind() == io::ErrorKind::StorageFull
                || e.kind() == io::ErrorKind::QuotaExceeded
                || matches!(e.raw_os_error(), Some(28) | Some(122))
                || e.get_ref()
                    .and_then(|i| i.downcast_ref::<Error>())
                    .is_some_and(Error::is_no_space)
                || e.get_ref()
                    .and_then(|i| i.downcast_ref::<io::Error>())
                    .is_some_and(io_full)
        }
        match self {
            Error::Io(e) | Error::IoPath { source: e, .. } => io_full(e),
            Error::NoSpace { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn io_path(path: &std::path::Path, source: io::Error) -> Self {
        Error::IoPath {
            path: path.display().to_string(),
            source,
        }
    }

    /// The same error again, for each of several waiters on one failed operation (an
    /// `io::Error` source keeps its kind and message).
    pub(crate) fn duplicate(&self) -> Error {
        let io = |e: &io::Error| io::Error::new(e.kind(), e.to_string());
        match self {
            Error::Io(e) => Error::Io(io(e)),
            Error::IoPath { path, source } => Error::IoPath {
                path: path.clone(),
                source: io(source),
            },
            Error::InvalidCid(s) => Error::InvalidCid(s.clone()),
            Error::BlockNotFound { cid } => Error::BlockNotFound { cid: cid.clone() },
            Error::CorruptBlock { cid, reason } => Error::CorruptBlock {
                cid: cid.clone(),
                reason: reason.clone(),
            },
            Error::BlockTooLarge { cid, size, limit } => Error::BlockTooLarge {
                cid: cid.clone(),
                size: *size,
                limit: *limit,
            },
            Error::Cbor(s) => Error::Cbor(s.clone()),
            Error::Schema { cid, reason } => Error::Schema {
                cid: cid.clone(),
                reason: reason.clone(),
            },
            Error::Tar { blob, offset, reason } => Error::Tar {
                blob: blob.clone(),
                offset: *offset,
                reason: reason.clone(),
            },
            Error::Compression { blob, reason } => Error::Compression {
                blob: blob.clone(),
                reason: reason.clone(),
            },
            Error::TooLarge { blob, limit } => Error::TooLarge {
                blob: blob.clone(),
                limit: *limit,
            },
            Error::DigestMismatch {
                expected,
                actual,
                size,
                expected_size,
            } => Error::DigestMismatch {
                expected: expected.clone(),
                actual: actual.clone(),
                size: *size,
                expected_size: *expected_size,
            },
            Error::InvalidDigest(s) => Error::InvalidDigest(s.clone()),
            Error::MissingBlob { digest, referrer } => Error::MissingBlob {
                digest: digest.clone(),
                referrer: referrer.clone(),
            },
            Error::InvalidManifest { what, reason } => Error::InvalidManifest {
                what: what.clone(),
                reason: reason.clone(),
            },
            Error::InvalidReference { reference, reason } => Error::InvalidReference {
                reference: reference.clone(),
                reason: reason.clone(),
            },
            Error::ImageNotFound(s) => Error::ImageNotFound(s.clone()),
            Error::BlobNotFound(s) => Error::BlobNotFound(s.clone()),
            Error::Car(s) => Error::Car(s.clone()),
            Error::RebuildMismatch { digest, actual } => Error::RebuildMismatch {
                digest: digest.clone(),
                actual: actual.clone(),
            },
            Error::Store(s) => Error::Store(s.clone()),
            Error::Raced(s) => Error::Raced(s.clone()),
            Error::PathNotFound { root, path, reason } => Error::PathNotFound {
                root: root.clone(),
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::NoSpace { home, detail } => Error::NoSpace {
                home: home.clone(),
                detail: detail.clone(),
            },
        }
    }
}
