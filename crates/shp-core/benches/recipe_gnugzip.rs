//! Rebuilding a GNU gzip layer (`gnugzip-1.12/L`) against GNU gzip itself, on the same real tar of
//! about 96 MiB (Go sources, binaries and documentation of this machine; `SHP_BENCH_MB` changes
//! the size). gzip is timed compressing the tar from a file to /dev/null; the rebuild encodes the
//! tar from memory into a sink. Each level ends with a line giving rebuild time / gzip time.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shp_core::recipe::gnugzip::{encoder, Params};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GZIP: &str = "/usr/bin/gzip";

/// Up to `limit` bytes of regular files under `root`, in sorted order.
fn collect(root: &str, limit: u64, out: &mut Vec<PathBuf>) {
    let mut total = 0;
    let mut stack = vec![PathBuf::from(root)];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        entries.sort();
        for p in entries.into_iter().rev() {
            let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() && total < limit {
                total += m.len();
                out.push(p);
            }
        }
    }
}

fn real_tar(dir: &Path) -> Vec<u8> {
    let mb: u64 = std::env::var("SHP_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(96);
    let mut files = Vec::new();
    for root in ["/usr/share/gocode/src", "/usr/bin", "/usr/share/doc"] {
        collect(root, (mb << 20) / 3, &mut files);
    }
    let list = dir.join("files.txt");
    let names: Vec<String> = files.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    std::fs::write(&list, names.join("\n")).unwrap();
    let out = Command::new("tar")
        .args(["-c", "-f", "-", "-P", "-T"])
        .arg(&list)
        .stderr(Stdio::null())
        .output()
        .expect("run tar");
    out.stdout
}

fn gzip_once(level: u32, path: &Path) -> Duration {
    let t = Instant::now();
    let st = Command::new(GZIP)
        .args(["-c", &format!("-{level}")])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .expect("run gzip");
    assert!(st.success());
    t.elapsed()
}

fn rebuild_once(level: u32, tar: &[u8]) -> Duration {
    let t = Instant::now();
    let n = io::copy(&mut encoder(&Params { level }, tar), &mut io::sink()).unwrap();
    assert!(n > 0);
    t.elapsed()
}

fn bench(c: &mut Criterion) {
    if !Path::new(GZIP).exists() {
        eprintln!("skipping: no {GZIP}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tar = real_tar(dir.path());
    let path = dir.path().join("layer.tar");
    std::fs::write(&path, &tar).unwrap();
    let mut g = c.benchmark_group("recipe_gnugzip");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Bytes(tar.len() as u64));
    for level in [6, 9, 1] {
        g.bench_function(format!("rebuild/{level}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| rebuild_once(level, &tar)).sum())
        });
        g.bench_function(format!("gzip/{level}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| gzip_once(level, &path)).sum())
        });
        // Interleaved pairs, so both sides see the same machine load.
        let (mut ours, mut theirs) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..3 {
            ours += rebuild_once(level, &tar);
            theirs += gzip_once(level, &path);
        }
        eprintln!(
            "gnugzip -{level} on {} MiB: rebuild {:.2}s, gzip {:.2}s, ratio {:.2}",
            tar.len() >> 20,
            ours.as_secs_f64() / 3.0,
            theirs.as_secs_f64() / 3.0,
            ours.as_secs_f64() / theirs.as_secs_f64()
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
