//! Blob read throughput: the Rust API (`Home::blob` + `BlobNode::open`) against the C ABI
//! (`shp_blob_reader_open` + `shp_blob_reader_read`) on the same store and the same blob, with
//! the same 1 MiB buffer. Layers: a 32 MiB uncompressed tar (rebuild is a DAG walk, so any
//! overhead of the C ABI shows most) and the same tar gzip'd by zlib (rebuilt by its recipe).
//!
//! `SHP_BENCH_HOME=DIR` keeps the store in DIR (its digests are printed); with
//! `SHP_BENCH_DIGEST=sha256:…` too, it reads that blob of the existing store instead, to compare
//! with the Go benchmark in examples/go (`BenchmarkGetBlob`) on the very same store and blob.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sha2::{Digest, Sha256};
use shp_core::Home;
use shp_ffi::*;
use std::ffi::CString;
use std::io::{Read, Write};
use std::path::Path;

const BUF: usize = 1 << 20;

/// A ustar archive of `files` regular files of `size` bytes: half pseudo-random, half text.
fn tar(files: usize, size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..files {
        let mut h = [0u8; 512];
        let name = format!("data/file-{i:04}");
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[136..148].copy_from_slice(b"14536336200\0");
        h[156] = b'0';
        h[257..265].copy_from_slice(b"ustar\x0000");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        for j in 0..size {
            if j < size / 2 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                out.push(x as u8);
            } else {
                out.push(b"the quick brown fox jumps over the lazy dog\n"[j % 44]);
            }
        }
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn digest(b: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(b))
}

fn read_rust(home: &Home, d: &str, buf: &mut [u8]) -> u64 {
    let node = home.blob(d).unwrap();
    let mut r = node.open(home.store());
    let mut n = 0;
    loop {
        match r.read(buf).unwrap() {
            0 => return n,
            k => n += k as u64,
        }
    }
}

fn read_ffi(store: *mut shp_store, d: &CString, buf: &mut [u8]) -> u64 {
    let mut r = std::ptr::null_mut();
    unsafe {
        assert_eq!(shp_blob_reader_open(store, d.as_ptr(), &mut r), 0);
        let mut n = 0;
        loop {
            match shp_blob_reader_read(r, buf.as_mut_ptr(), buf.len()) {
                0 => break,
                k if k > 0 => n += k as u64,
                e => panic!("read failed: {e}"),
            }
        }
        shp_blob_reader_free(r);
        n
    }
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, blobs) = match (std::env::var("SHP_BENCH_HOME"), std::env::var("SHP_BENCH_DIGEST")) {
        (Ok(h), Ok(d)) => (Path::new(&h).to_path_buf(), vec![("given".to_string(), d)]),
        (h, _) => {
            let dir = h.map(Into::into).unwrap_or_else(|_| tmp.path().join("home"));
            let home = Home::init(&dir).unwrap();
            let t = tar(64, 512 << 10);
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&t).unwrap();
            let gz = gz.finish().unwrap();
            let mut blobs = Vec::new();
            for (name, b) in [("tar", &t), ("tar+gzip", &gz)] {
                let got = home.put_blob(&mut &b[..], Some(&digest(b)), true).unwrap();
                eprintln!("{name}: {} {} bytes stored as {}", digest(b), b.len(), got.storage);
                blobs.push((name.to_string(), digest(b)));
            }
            (dir, blobs)
        }
    };
    let home = Home::open(&dir).unwrap();
    let mut store = std::ptr::null_mut();
    let cdir = CString::new(dir.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { shp_store_open(cdir.as_ptr(), &mut store) }, 0);
    let mut buf = vec![0u8; BUF];
    for (name, d) in &blobs {
        let size = home.blob(d).unwrap().size;
        let cd = CString::new(d.as_str()).unwrap();
        let mut g = c.benchmark_group(format!("blob_read/{name}"));
        g.throughput(Throughput::Bytes(size));
        g.sample_size(10);
        g.bench_function("rust_api", |b| {
            b.iter(|| assert_eq!(read_rust(&home, d, &mut buf), size))
        });
        g.bench_function("c_abi", |b| b.iter(|| assert_eq!(read_ffi(store, &cd, &mut buf), size)));
        g.finish();
    }
    unsafe { shp_store_free(store) };
}

criterion_group!(benches, bench);
criterion_main!(benches);
