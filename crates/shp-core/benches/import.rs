//! Importing an uncompressed ~64 MiB layer tar into a MemoryStore, as `shp push` does for each
//! layer: tar split, FastCDC, sha256 of every block and of the whole blob, dag-cbor nodes.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sha2::{Digest, Sha256};
use shp_core::blob::{import_blob, BlobKind, ImportOptions, Storage};
use shp_core::dag::DagWriter;
use shp_core::store::{Blockstore, MemoryStore};
use shp_core::Result;
use std::io::Read;
use std::time::Duration;

mod common;

fn import(c: &mut Criterion) {
    let tar = common::layer_tar(64 << 20, 7);
    let digest: [u8; 32] = Sha256::digest(&tar).into();
    let opts = ImportOptions::default();
    let mut g = c.benchmark_group("import");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Bytes(tar.len() as u64));
    g.bench_function("layer_tar_64MiB", |b| {
        b.iter(|| {
            let store = MemoryStore::new();
            let mut batch = store.batch().unwrap();
            let mut w = DagWriter::new(&mut *batch);
            let open = || -> Result<Box<dyn Read>> { Ok(Box::new(&tar[..])) };
            let blob = import_blob(
                &mut w,
                BlobKind::Layer,
                &open,
                Some((&digest, tar.len() as u64)),
                &[],
                &opts,
            )
            .unwrap();
            assert!(matches!(blob.storage, Storage::Uncompressed));
            batch.commit().unwrap();
            blob.cid
        })
    });
    g.finish();
}

criterion_group!(benches, import);
criterion_main!(benches);
