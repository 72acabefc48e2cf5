//! containerd's `containerd.services.snapshots.v1.Snapshots` service on a unix socket, each call
//! run on tokio's blocking pool (mounting a layer reads its tree from the store).

use crate::proto::*;
use crate::snapshots::{Prepared, Snapshotter};
use std::collections::BTreeMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status};

#[allow(clippy::all, unreachable_pub, missing_docs)]
mod generated {
    include!(concat!(
        env!("OUT_DIR"),
        "/containerd.services.snapshots.v1.Snapshots.rs"
    ));
}
pub use generated::snapshots_server::{Snapshots, SnapshotsServer};

/// The service: a [`Snapshotter`] behind containerd's API.
#[derive(Clone)]
pub struct Service(pub Arc<Snapshotter>);

async fn blocking<T: Send + 'static>(
    s: &Service,
    f: impl FnOnce(&Snapshotter) -> crate::Result<T> + Send + 'static,
) -> Result<T, Status> {
    let sn = s.0.clone();
    tokio::task::spawn_blocking(move || f(&sn))
        .await
        .map_err(|e| Status::internal(format!("snapshotter task: {e}")))?
        .map_err(Status::from)
}

fn labels(m: std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

type InfoStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<ListSnapshotsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Snapshots for Service {
    async fn prepare(&self, r: Request<PrepareSnapshotRequest>) -> Result<Response<PrepareSnapshotResponse>, Status> {
        let r = r.into_inner();
        let key = r.key.clone();
        match blocking(self, move |s| s.prepare(&r.key, &r.parent, labels(r.labels))).await? {
            Prepared::Mounts(mounts) => Ok(Response::new(PrepareSnapshotResponse { mounts })),
            Prepared::Target(t) => Err(Status::already_exists(format!(
                "target snapshot {t:?}: the layer is served from shp's store ({key:?} was not made)"
            ))),
        }
    }

    async fn view(&self, r: Request<ViewSnapshotRequest>) -> Result<Response<ViewSnapshotResponse>, Status> {
        let r = r.into_inner();
        let mounts = blocking(self, move |s| s.view(&r.key, &r.parent, labels(r.labels))).await?;
        Ok(Response::new(ViewSnapshotResponse { mounts }))
    }

    async fn mounts(&self, r: Request<MountsRequest>) -> Result<Response<MountsResponse>, Status> {
        let r = r.into_inner();
        let mounts = blocking(self, move |s| s.mounts(&r.key)).await?;
        Ok(Response::new(MountsResponse { mounts }))
    }

    async fn commit(&self, r: Request<CommitSnapshotRequest>) -> Result<Response<()>, Status> {
        let r = r.into_inner();
        blocking(self, move |s| s.commit(&r.name, &r.key, labels(r.labels))).await?;
        Ok(Response::new(()))
    }

    async fn remove(&self, r: Request<RemoveSnapshotRequest>) -> Result<Response<()>, Status> {
        let r = r.into_inner();
        blocking(self, move |s| s.remove(&r.key)).await?;
        Ok(Response::new(()))
    }

    async fn stat(&self, r: Request<StatSnapshotRequest>) -> Result<Response<StatSnapshotResponse>, Status> {
        let r = r.into_inner();
        let info = blocking(self, move |s| s.stat(&r.key)).await?;
        Ok(Response::new(StatSnapshotResponse { info: Some(info) }))
    }

    async fn update(&self, r: Request<UpdateSnapshotRequest>) -> Result<Response<UpdateSnapshotResponse>, Status> {
        let r = r.into_inner();
        let info = r
            .info
            .ok_or_else(|| Status::invalid_argument("an update needs the snapshot's info"))?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let info = blocking(self, move |s| s.update(info, &paths)).await?;
        Ok(Response::new(UpdateSnapshotResponse { info: Some(info) }))
    }

    type ListStream = InfoStream;

    async fn list(&self, r: Request<ListSnapshotsRequest>) -> Result<Response<Self::ListStream>, Status> {
        let r = r.into_inner();
        let infos = blocking(self, move |s| s.list(&r.filters)).await?;
        // In batches, as containerd's own service sends them (a message stays small).
        let batches: Vec<Result<ListSnapshotsResponse, Status>> = infos
            .chunks(100)
            .map(|c| Ok(ListSnapshotsResponse { info: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    async fn usage(&self, r: Request<UsageRequest>) -> Result<Response<UsageResponse>, Status> {
        let r = r.into_inner();
        let (size, inodes) = blocking(self, move |s| s.usage(&r.key)).await?;
        Ok(Response::new(UsageResponse { size, inodes }))
    }

    async fn cleanup(&self, _r: Request<CleanupRequest>) -> Result<Response<()>, Status> {
        let n = blocking(self, |s| s.cleanup()).await?;
        tracing::info!(removed = n, "cleanup");
        Ok(Response::new(()))
    }
}

/// Binds the unix socket `address` (a tokio runtime must be current). A socket file left by a
/// dead process is replaced; one a live process answers on is refused.
pub fn bind(address: &Path) -> std::io::Result<tokio::net::UnixListener> {
    let named = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", address.display()));
    if address.exists() {
        if std::os::unix::net::UnixStream::connect(address).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{}: another process is listening on it", address.display()),
            ));
        }
        std::fs::remove_file(address).map_err(named)?;
    }
    if let Some(d) = address.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(named)?;
    }
    tokio::net::UnixListener::bind(address).map_err(named)
}

/// Serves `snapshotter` on `listener` (bound to `address`) until `shutdown` completes, then
/// unmounts every layer and removes the socket.
pub async fn serve(
    snapshotter: Arc<Snapshotter>,
    listener: tokio::net::UnixListener,
    address: &Path,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let res = tonic::transport::Server::builder()
        .add_service(SnapshotsServer::new(Service(snapshotter.clone())))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    let sn = snapshotter.clone();
    let _ = tokio::task::spawn_blocking(move || sn.shutdown()).await;
    let _ = std::fs::remove_file(address);
    res.map_err(|e| std::io::Error::other(format!("serving {}: {e}", address.display())))
}
