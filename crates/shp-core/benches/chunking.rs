//! FastCDC (16/64/256 KiB) over 64 MiB of pseudo-random bytes: the chunker alone, no hashing,
//! next to a plain sha256 pass over the same bytes as the yardstick.
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sha2::{Digest, Sha256};
use shp_core::chunk::chunk_stream;
use std::time::Duration;

mod common;

const SIZE: usize = 64 << 20;

fn chunking(c: &mut Criterion) {
    let data = common::random_bytes(SIZE, 1);
    let mut g = c.benchmark_group("chunking");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.bench_function("fastcdc_64MiB", |b| {
        b.iter(|| {
            let mut chunks = 0usize;
            chunk_stream(&mut &data[..], SIZE as u64, &mut |c| {
                chunks += black_box(c).len().min(1);
                Ok(())
            })
            .unwrap();
            chunks
        })
    });
    // The peer: one sha256 pass over the same bytes (import hashes every byte at least twice).
    g.bench_function("sha256_64MiB", |b| b.iter(|| Sha256::digest(black_box(&data[..]))));
    g.finish();
}

criterion_group!(benches, chunking);
criterion_main!(benches);
