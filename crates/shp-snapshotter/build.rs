//! Generates the server stubs of containerd's `containerd.services.snapshots.v1.Snapshots`
//! service from a description in Rust (no protoc): the messages are in `src/proto.rs`.

fn main() {
    let methods = [
        (
            "prepare",
            "Prepare",
            "PrepareSnapshotRequest",
            "PrepareSnapshotResponse",
            false,
        ),
        ("view", "View", "ViewSnapshotRequest", "ViewSnapshotResponse", false),
        ("mounts", "Mounts", "MountsRequest", "MountsResponse", false),
        ("commit", "Commit", "CommitSnapshotRequest", "Empty", false),
        ("remove", "Remove", "RemoveSnapshotRequest", "Empty", false),
        ("stat", "Stat", "StatSnapshotRequest", "StatSnapshotResponse", false),
        (
            "update",
            "Update",
            "UpdateSnapshotRequest",
            "UpdateSnapshotResponse",
            false,
        ),
        ("list", "List", "ListSnapshotsRequest", "ListSnapshotsResponse", true),
        ("usage", "Usage", "UsageRequest", "UsageResponse", false),
        ("cleanup", "Cleanup", "CleanupRequest", "Empty", false),
    ];
    let ty = |t: &str| format!("crate::proto::{t}");
    let mut svc = tonic_build::manual::Service::builder()
        .name("Snapshots")
        .package("containerd.services.snapshots.v1");
    for (name, route, input, output, stream) in methods {
        let mut m = tonic_build::manual::Method::builder()
            .name(name)
            .route_name(route)
            .input_type(ty(input))
            .output_type(ty(output))
            .codec_path("tonic_prost::ProstCodec");
        if stream {
            m = m.server_streaming();
        }
        svc = svc.method(m.build());
    }
    tonic_build::manual::Builder::new()
        .build_client(false)
        .compile(&[svc.build()]);
}
