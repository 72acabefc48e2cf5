//! pigz rebuild speed against the producer: `pigz -p 2` compressing a ~64 MiB real tar (files of /usr) from a file in
//! the page cache to /dev/null, versus `recipe::pigz::encoder` (two worker threads) from memory. pigz's process start
//! is a millisecond against seconds of compression. Skipped (with a message) when `pigz` is not installed.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shp_core::recipe::pigz::{encoder, Params};
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
    if Command::new("pigz")
        .arg("--version")
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("skipping: pigz is not installed");
        return;
    }
    let tar = real_tar(64 << 20);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("layer.tar");
    std::fs::write(&file, &tar).unwrap();
    let mut g = c.benchmark_group("recipe_pigz");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Bytes(tar.len() as u64));
    for level in [6u32, 1, 9] {
        g.bench_function(format!("producer_pigz_p2_{level}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let st = Command::new("pigz")
                        .args(["-c", "-p", "2", &format!("-{level}")])
                        .arg(&file)
                        .stdout(Stdio::null())
                        .status()
                        .unwrap();
                    total += t.elapsed();
                    assert!(st.success());
                }
                total
            })
        });
        let p = Params {
            level,
            block_kib: 128,
            single: false,
        };
        g.bench_function(format!("rebuild_{level}"), |b| {
            b.iter(|| io::copy(&mut encoder(&p, &tar[..]), &mut io::sink()).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
