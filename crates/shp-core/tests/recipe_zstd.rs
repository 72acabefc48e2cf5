//! Ground truth for the zstd recipe: the real `zstd` CLI (Debian 1.5.4, same libzstd as the one linked) compresses
//! random tars and a real tar at several levels, from a file (content size pledged) and from stdin, multi-threaded
//! (the CLI's default, `-T0`) and `--single-thread`, with and without `--no-check`; the probe must name the producer's
//! parameters first and the rebuild must give back the producer's bytes.
//!
//! Missing `zstd`: the test is skipped, or fails when `SHP_REQUIRE_PRODUCERS=1`.

use sha2::{Digest, Sha256};
use shp_core::recipe::zstd::{encoder, probe, Params};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("SHP_REQUIRE_PRODUCERS").as_deref() == Ok("1") {
            panic!("producer `{name}` is not installed but SHP_REQUIRE_PRODUCERS=1 (apt-get install zstd)");
        }
        eprintln!("skipping: producer `{name}` is not installed");
    }
    found
}

/// A ustar archive of the given (name, content) entries.
fn tar(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
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
fn random_tar(size: usize, seed: u64) -> Vec<u8> {
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
fn real_tar(limit: u64) -> Vec<u8> {
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

fn sha(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

fn assert_same(what: &str, got: &[u8], want: &[u8]) {
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

fn rebuild(p: &Params, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encoder(p, data).read_to_end(&mut out).expect("rebuild");
    out
}

/// Runs the zstd CLI on `data` (as a file, or on stdin) with `args`.
fn zstd_cli(zstd: &Path, dir: &Path, data: &[u8], level: i32, args: &[&str], from_file: bool) -> Vec<u8> {
    let mut cmd = Command::new(zstd);
    cmd.arg("-q").arg("-c").args(args);
    if level >= 20 {
        cmd.arg("--ultra");
    }
    if level < 0 {
        cmd.arg(format!("--fast={}", -level));
    } else {
        cmd.arg(format!("-{level}"));
    }
    if from_file {
        let f = dir.join("in.tar");
        std::fs::write(&f, data).unwrap();
        let out = cmd.arg(&f).output().expect("run zstd");
        assert!(out.status.success(), "zstd: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    } else {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run zstd");
        let mut stdin = child.stdin.take().unwrap();
        let owned = data.to_vec();
        let w = std::thread::spawn(move || stdin.write_all(&owned));
        let out = child.wait_with_output().unwrap();
        w.join().unwrap().unwrap();
        assert!(out.status.success());
        out.stdout
    }
}

/// Checks one producer run: probe names `want` first (or an earlier candidate is byte-identical on this input,
/// which can only be the other threading mode when both frame the input the same), and the rebuild is exact.
fn check(what: &str, z: &[u8], data: &[u8], want: &Params) {
    let cands = probe(&z[..z.len().min(4 << 20)], data, z.len() <= 4 << 20);
    let pos = cands
        .iter()
        .position(|c| c == want)
        .unwrap_or_else(|| panic!("{what}: probe missed {} ({cands:?})", want.profile()));
    for earlier in &cands[..pos] {
        assert_eq!(
            Params {
                threads: want.threads,
                ..earlier.clone()
            },
            *want,
            "{what}: probe put {} before {}",
            earlier.profile(),
            want.profile()
        );
        assert_same(
            &format!("{what}: earlier candidate {}", earlier.profile()),
            &rebuild(earlier, data),
            z,
        );
    }
    assert_same(what, &rebuild(want, data), z);
    // A prefix (as the importer sees a large layer): the producer's parameters must be among the candidates.
    if z.len() > 1 << 20 {
        let cands = probe(&z[..1 << 20], &data[..data.len().min(3 << 20)], false);
        assert!(
            cands.contains(want),
            "{what}: prefix probe missed {} ({cands:?})",
            want.profile()
        );
    }
}

#[test]
fn zstd_cli_levels_modes_and_sources() {
    let Some(zstd) = tool("zstd") else { return };
    let dir = tempfile::tempdir().unwrap();
    let version = zstd::zstd_safe::version_number();
    let inputs = [
        ("random", random_tar(1_300_000, 1)),
        ("real", real_tar(1_500_000)),
        ("small", random_tar(200_000, 2)),
    ];
    let cases: &[(i32, &[&str])] = &[
        (3, &[]),
        (3, &["--single-thread"]),
        (3, &["-T0", "--no-check"]),
        (1, &[]),
        (1, &["--single-thread", "--no-check"]),
        (9, &[]),
        (9, &["--single-thread"]),
        (19, &[]),
        (19, &["--single-thread"]),
        (2, &[]),
        (6, &["--single-thread"]),
    ];
    for (name, data) in &inputs {
        for &(level, args) in cases {
            for from_file in [true, false] {
                // Level 19 is slow: the small input only. The large inputs take one source per case
                // (alternating), the small one both.
                if level == 19 && data.len() > 1 << 20 {
                    continue;
                }
                if data.len() > 1 << 20 && from_file != (level % 2 == 1) {
                    continue;
                }
                let z = zstd_cli(&zstd, dir.path(), data, level, args, from_file);
                let want = Params {
                    version,
                    level,
                    threads: !args.contains(&"--single-thread"),
                    checksum: !args.contains(&"--no-check"),
                    content_size: from_file.then_some(data.len() as u64),
                    long: None,
                };
                // libzstd compresses a pledged size of at most 512 KiB single-threaded: one canonical profile.
                let want = if want.content_size.is_some_and(|n| n <= 512 * 1024) {
                    Params { threads: false, ..want }
                } else {
                    want
                };
                let what = format!(
                    "{name} zstd -{level} {args:?} {}",
                    if from_file { "file" } else { "stdin" }
                );
                check(&what, &z, data, &want);
            }
        }
    }
}
