//! Reading an imported ~64 MiB layer back (`BlobNode::open`): every block fetched and verified,
//! the tar rebuilt and its sha256 checked against the blob's digest.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sha2::{Digest, Sha256};
use shp_core::blob::{import_blob, BlobKind, BlobNode, ImportOptions};
use shp_core::dag::DagWriter;
use shp_core::store::{Blockstore, MemoryStore};
use shp_core::Result;
use std::io::{self, Read};
use std::time::Duration;

mod common;

fn export(c: &mut Criterion) {
    let tar = common::layer_tar(64 << 20, 7);
    let digest: [u8; 32] = Sha256::digest(&tar).into();
    let store = MemoryStore::new();
    let mut batch = store.batch().unwrap();
    let mut w = DagWriter::new(&mut *batch);
    let open = || -> Result<Box<dyn Read>> { Ok(Box::new(&tar[..])) };
    let cid = import_blob(
        &mut w,
        BlobKind::Layer,
        &open,
        Some((&digest, tar.len() as u64)),
        &[],
        &ImportOptions::default(),
    )
    .unwrap()
    .cid;
    batch.commit().unwrap();

    let mut g = c.benchmark_group("export");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Bytes(tar.len() as u64));
    g.bench_function("layer_tar_64MiB", |b| {
        b.iter(|| {
            let node = BlobNode::load(&store, &cid).unwrap();
            let n = io::copy(&mut node.open(&store), &mut io::sink()).unwrap();
            assert_eq!(n, tar.len() as u64);
            n
        })
    });
    g.finish();
}

criterion_group!(benches, export);
criterion_main!(benches);
