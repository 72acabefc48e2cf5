//! A containerd remote snapshotter over shp's store (`shp snapshotter --address SOCK`).
//!
//! containerd runs it as a proxy plugin (`[proxy_plugins.shp] type = "snapshot"`) and calls
//! its snapshots gRPC API on a unix socket. Snapshots are what containerd's overlayfs
//! snapshotter makes — active snapshots are overlay upper directories over their parents,
//! commits keep them, views are read-only — with one difference: when containerd's pull
//! prepares a layer and names it in the labels (`containerd.io/snapshot.ref`, the chain ID it
//! will commit to, with `containerd.io/snapshot/cri.layer-digest`, as CRI, nerdctl and the Go
//! client's remote-snapshot path send them), and an image in the home holds that layer, the
//! snapshotter mounts the layer read-only from the store (FUSE, whiteouts as overlayfs has
//! them, each file's chunks read and verified when touched), records it as the committed target
//! and answers ALREADY_EXISTS: containerd neither downloads nor unpacks it. Without those
//! labels, or for a layer the home lacks, it is an ordinary snapshot that containerd fills.
//!
//! - [`proto`] — the API's messages (hand-written prost; the service stubs are generated from
//!   a Rust description in `build.rs`, so no protoc).
//! - [`state`] — every snapshot, kept across restarts in `ROOT/metadata.json`.
//! - [`snapshots`] — the operations, synchronous, on [`state`] and the directories.
//! - [`filter`] — the filters `List` (containerd's `Walk`) is called with.
//! - [`grpc`] — the service on the socket, each call on the blocking pool.

#![forbid(unsafe_code)]

pub mod filter;
pub mod grpc;
pub mod proto;
pub mod snapshots;
pub mod state;

pub use snapshots::Snapshotter;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Rootfs(#[from] shp_rootfs::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        let msg = e.to_string();
        match e {
            Error::NotFound(_) => tonic::Status::not_found(msg),
            Error::AlreadyExists(_) => tonic::Status::already_exists(msg),
            Error::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            Error::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            Error::Io(_) | Error::Rootfs(_) => tonic::Status::internal(msg),
        }
    }
}
