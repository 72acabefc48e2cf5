//! goflate rebuild speed against Go's own compress/gzip on the same real tar (~64 MiB of
//! /usr/share/doc and /usr/bin, `tar -c`), at levels 1, 6 and 9. Go is timed inside its own process
//! compressing from memory (tests/producers/gostd `-time`), so process start-up is not counted.
//! Without a Go toolchain only the Rust side runs.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shp_core::recipe::goflate::{encoder, Params, Version};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const TARGET: u64 = 64 << 20;

/// File list of about `limit` bytes under `dir`, in a stable order.
fn files(dir: &Path, limit: u64, out: &mut Vec<PathBuf>) -> u64 {
    let mut stack = vec![dir.to_path_buf()];
    let mut used = 0;
    while let Some(p) = stack.pop() {
        if used >= limit {
            break;
        }
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        if m.is_dir() {
            let mut sub: Vec<PathBuf> = std::fs::read_dir(&p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            sub.sort();
            sub.reverse();
            stack.extend(sub);
        } else if m.is_file() {
            used += m.len();
            out.push(p);
        }
    }
    used
}

fn real_tar(path: &Path) -> Vec<u8> {
    let mut list = Vec::new();
    files(Path::new("/usr/share/doc"), TARGET / 2, &mut list);
    files(Path::new("/usr/bin"), TARGET / 2, &mut list);
    let out = Command::new("tar")
        .args(["-c", "--no-recursion", "-f"])
        .arg(path)
        .args(&list)
        .stderr(Stdio::null())
        .status()
        .expect("run tar");
    assert!(out.success() || path.exists(), "tar failed");
    std::fs::read(path).expect("read tar")
}

fn gostd() -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/producers/gostd/main.go");
    let out = std::env::temp_dir().join(format!("shp-bench-gostd-{}", std::process::id()));
    let ok = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("recipe_goflate bench: no Go toolchain, timing only the Rust encoder");
    }
    ok.then_some(out)
}

fn goflate(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let tar_path = dir.path().join("bench.tar");
    let tar = real_tar(&tar_path);
    let go = gostd();
    let mut g = c.benchmark_group("goflate");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Bytes(tar.len() as u64));
    for level in [1i8, 6, 9] {
        g.bench_function(format!("rust_level{level}"), |b| {
            b.iter(|| {
                let mut e = encoder(
                    &Params {
                        level,
                        version: Version::V1_8,
                    },
                    &tar[..],
                );
                io::copy(&mut e, &mut io::sink()).unwrap()
            })
        });
        if let Some(go) = &go {
            g.bench_function(format!("go_level{level}"), |b| {
                b.iter_custom(|iters| {
                    let out = Command::new(go)
                        .args(["-time", &level.to_string()])
                        .arg(&tar_path)
                        .arg(iters.to_string())
                        .output()
                        .expect("run gostd");
                    assert!(out.status.success());
                    let ns: u64 = String::from_utf8_lossy(&out.stdout)
                        .trim()
                        .parse()
                        .expect("nanoseconds");
                    Duration::from_nanos(ns)
                })
            });
        }
    }
    g.finish();
    if let Some(go) = go {
        let _ = std::fs::remove_file(go);
    }
}

criterion_group!(benches, goflate);
criterion_main!(benches);
