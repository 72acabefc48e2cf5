//! Ground-truth helpers shared by the recipe integration tests: finding a producer (missing is a
//! failure under `SHP_REQUIRE_PRODUCERS=1`), generated and real tars, and byte comparisons.
#![allow(dead_code)] // each test binary uses its own subset

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether a missing producer is a failure (CI sets `SHP_REQUIRE_PRODUCERS=1`) rather than a skip.
pub fn require_producers() -> bool {
    std::env::var("SHP_REQUIRE_PRODUCERS").as_deref() == Ok("1")
}

/// A producer or input that is not there: a failure under `SHP_REQUIRE_PRODUCERS=1`, else a skip.
pub fn missing<T>(what: &str) -> Option<T> {
    if require_producers() {
        panic!("SHP_REQUIRE_PRODUCERS=1 but {what}");
    }
    eprintln!("skipping: {what}");
    None
}

/// Builds the Go program `tests/producers/<name>/main.go` once per test binary, in GOPATH mode
/// against Debian's Go sources; `needs` is the GOPATH source file it imports from and the Debian
/// package that ships it, checked first so a missing package is named.
pub fn go_producer(name: &str, needs: Option<(&str, &str)>) -> Option<PathBuf> {
    static BIN: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    const GOPATH: &str = "/usr/share/gocode";
    let r = BIN.get_or_init(|| {
        if let Some((file, package)) = needs {
            if !Path::new(GOPATH).join("src").join(file).exists() {
                return Err(format!("{GOPATH}/src/{file} is missing (apt-get install {package})"));
            }
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/producers/{name}/main.go"));
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-producer-{}", std::process::id()));
        let st = Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(&src)
            .env("GO111MODULE", "off")
            .env("GOPATH", GOPATH)
            .env("GOFLAGS", "")
            .status();
        match st {
            Ok(s) if s.success() => Ok(out),
            Ok(s) => Err(format!("`go build` of {} failed ({s})", src.display())),
            Err(e) => Err(format!("the Go toolchain (`go`) is not available: {e}")),
        }
    });
    match r {
        Ok(p) => Some(p.clone()),
        Err(e) => missing(e),
    }
}

pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if require_producers() {
            panic!("producer `{name}` is not installed but SHP_REQUIRE_PRODUCERS=1 (apt-get install {name})");
        }
        eprintln!("skipping: producer `{name}` is not installed");
    }
    found
}

/// A ustar archive of the given (name, content) entries.
pub fn tar(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in entries {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0001750");
        h[116..123].copy_from_slice(b"0001750");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(b"14736125510");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// A random tar of about `size` bytes: text, random bytes, repeated runs, empty and tiny files.
pub fn random_tar(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut rng = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let words = [
        "layer", "image", "the ", "config", "usr/lib/", "\n", "0x7f", "sha256:", " = ", "rootfs",
    ];
    let mut entries = Vec::new();
    let mut total = 0;
    let mut i = 0;
    while total < size {
        let kind = rng() % 5;
        let len = match kind {
            0 => 0,
            1 => (rng() % 64) as usize,
            _ => (rng() % 300_000) as usize,
        };
        let data: Vec<u8> = match kind {
            2 => (0..len).map(|_| rng() as u8).collect(),
            3 => {
                let b = rng() as u8;
                let mut v = vec![b; len];
                for k in (0..len).step_by(997) {
                    v[k] = rng() as u8;
                }
                v
            }
            _ => {
                let mut v = Vec::with_capacity(len + 16);
                while v.len() < len {
                    v.extend_from_slice(words[(rng() % words.len() as u64) as usize].as_bytes());
                }
                v.truncate(len);
                v
            }
        };
        total += data.len() + 512;
        entries.push((format!("dir{}/file{i}.{kind}", i % 7), data));
        i += 1;
    }
    tar(&entries)
}

/// A real tar of a few MB: documentation files and a few binaries of this machine.
pub fn real_tar(limit: u64) -> Vec<u8> {
    let mut files = Vec::new();
    let mut size = 0;
    let mut add = |p: &Path, size: &mut u64| {
        if let Ok(m) = std::fs::symlink_metadata(p) {
            if m.is_file() && *size + m.len() < limit {
                *size += m.len();
                files.push(p.strip_prefix("/").unwrap().to_path_buf());
            }
        }
    };
    for bin in [
        "/usr/bin/zstd",
        "/usr/bin/tar",
        "/usr/bin/gzip",
        "/usr/bin/ls",
        "/usr/bin/cp",
    ] {
        add(Path::new(bin), &mut size);
    }
    let mut docs: Vec<_> = std::fs::read_dir("/usr/share/doc")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    docs.sort();
    for d in docs {
        let mut inner: Vec<_> = std::fs::read_dir(&d)
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        inner.sort();
        for f in inner {
            add(&f, &mut size);
        }
    }
    let out = Command::new("tar")
        .arg("-cf")
        .arg("-")
        .arg("-C")
        .arg("/")
        .args(&files)
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "tar failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn sha(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

pub fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    if got != want {
        let first = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: rebuilt {} bytes sha256 {}, producer {} bytes sha256 {}; first difference at byte {first}",
            got.len(),
            sha(got),
            want.len(),
            sha(want)
        );
    }
    assert_eq!((sha(got), got.len()), (sha(want), want.len()), "{what}");
}
