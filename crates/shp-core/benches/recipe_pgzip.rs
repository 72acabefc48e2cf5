//! pgzip rebuild vs the real producer (klauspost/pgzip on Debian's klauspost/compress, 2 threads) on the same
//! real tar (~64 MiB: GNU tar of /usr/lib and /usr/share files), levels -1 (= 5) and 1, 1 MiB blocks.
//! The producer's time is measured inside its own program, compressing from memory (best of 3), and printed
//! next to criterion's numbers together with the ratio. Without Go the producer side is skipped.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shp_core::recipe::pgzip::{self, Class, Params};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn real_tar(dir: &Path) -> Option<PathBuf> {
    let out = dir.join("pgzip-bench.tar");
    if out.exists() {
        return Some(out);
    }
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find /usr/lib/x86_64-linux-gnu /usr/share/doc /usr/share/perl5 -type f 2>/dev/null | sort | head -n 4000 \
             | tar -c -T - -f - 2>/dev/null | head -c 67108864 > {}",
            out.display()
        ))
        .status()
        .ok()?;
    (st.success() && std::fs::metadata(&out).ok()?.len() > 8 << 20).then_some(out)
}

fn producer(dir: &Path) -> Option<PathBuf> {
    let bin = dir.join("pgzip-bench-producer");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/producers/pgzip/main.go");
    let ok = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(src)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(bin)
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir();
    let Some(tar_path) = real_tar(&dir) else {
        eprintln!("no real tar could be made; skipping");
        return;
    };
    let tar = std::fs::read(&tar_path).unwrap();
    let prod = producer(&dir);
    let mut g = c.benchmark_group("recipe_pgzip");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Bytes(tar.len() as u64));
    for (level, plevel) in [(-1, 5i8), (1, 1)] {
        let p = Params {
            class: Class::V1_15_12,
            level: plevel,
            block_size: 1 << 20,
        };
        let mut ours = Duration::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let mut n = 0u64;
            let mut r = pgzip::encoder(&p, &tar[..]);
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let k = r.read(&mut buf).unwrap();
                if k == 0 {
                    break;
                }
                n += k as u64;
            }
            ours = ours.min(t.elapsed());
            assert!(n > 0);
        }
        if let Some(bin) = &prod {
            let out = Command::new(bin)
                .args([level.to_string(), (1 << 20).to_string(), "time".into()])
                .arg(&tar_path)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(ns) = text.split_whitespace().next().and_then(|s| s.parse::<u64>().ok()) {
                let theirs = Duration::from_nanos(ns);
                eprintln!(
                    "pgzip level {level} on {} MiB: rebuild {:?}, producer {:?} (2 threads): ratio {:.2}",
                    tar.len() >> 20,
                    ours,
                    theirs,
                    ours.as_secs_f64() / theirs.as_secs_f64()
                );
            }
        }
        g.bench_function(format!("rebuild_level{level}_1MiB"), |b| {
            b.iter(|| {
                let mut r = pgzip::encoder(&p, &tar[..]);
                std::io::copy(&mut r, &mut std::io::sink()).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
