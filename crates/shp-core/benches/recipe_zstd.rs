//! zstd rebuild speed against the producer: the `zstd` CLI (the same libzstd) compressing a ~64 MiB real tar (files
//! of /usr) from a file in the page cache to /dev/null, versus `recipe::zstd::encoder` from memory. The CLI's process
//! start is a millisecond against seconds of compression. Skipped (with a message) when `zstd` is not installed.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shp_core::recipe::zstd::{encoder, Params};
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A real tar of about `limit` bytes: regular files under /usr/lib and /usr/share, sorted.
fn real_tar(limit: u64) -> Vec<u8> {
    let mut files = Vec::new();
    let mut size = 0u64;
    let mut stack = vec![
        Path::new("/usr/lib").to_path_buf(),
        Path::new("/usr/share").to_path_buf(),
    ];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = match std::fs::read_dir(&d) {
            Ok(r) => r.flatten().map(|e| e.path()).collect(),
            Err(_) => continue,
        };
        entries.sort();
        entries.reverse();
        for p in entries {
            let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() && size + m.len() <= limit && std::fs::File::open(&p).is_ok() {
                size += m.len();
                files.push(p.strip_prefix("/").unwrap().to_path_buf());
            }
        }
        if size + (1 << 20) > limit {
            break;
        }
    }
    let out = Command::new("tar")
        .arg("-cf")
        .arg("-")
        .arg("-C")
        .arg("/")
        .args(&files)
        .output()
        .expect("tar");
    out.stdout
}

fn bench(c: &mut Criterion) {
    if Command::new("zstd")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("skipping: zstd is not installed");
        return;
    }
    let tar = real_tar(64 << 20);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("layer.tar");
    std::fs::write(&file, &tar).unwrap();
    let version = zstd::zstd_safe::version_number();
    let mut g = c.benchmark_group("recipe_zstd");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Bytes(tar.len() as u64));
    for (level, threads) in [(3, true), (3, false), (1, true), (9, true)] {
        let name = format!("{level}{}", if threads { "" } else { "_single_thread" });
        g.bench_function(format!("producer_cli_{name}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut cmd = Command::new("zstd");
                    cmd.arg("-q").arg("-c").arg(format!("-{level}"));
                    if !threads {
                        cmd.arg("--single-thread");
                    }
                    let t = Instant::now();
                    let st = cmd.arg(&file).stdout(Stdio::null()).status().unwrap();
                    total += t.elapsed();
                    assert!(st.success());
                }
                total
            })
        });
        let p = Params {
            version,
            level,
            threads,
            checksum: true,
            content_size: Some(tar.len() as u64),
            long: None,
        };
        g.bench_function(format!("rebuild_{name}"), |b| {
            b.iter(|| io::copy(&mut encoder(&p, &tar[..]), &mut io::sink()).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
