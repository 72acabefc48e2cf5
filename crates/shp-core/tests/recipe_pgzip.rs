//! pgzip recipe against the real producer: klauspost/pgzip 1.2.5 on klauspost/compress 1.15.12 (Debian's Go
//! sources), built from tests/producers/pgzip, plus the committed klauspost 1.18.0 and 1.19.1 vectors.
//!
//! Without Go or the Debian Go sources the producer tests are skipped, unless SHP_REQUIRE_PRODUCERS=1 (CI),
//! where they fail.

mod common;

use sha2::{Digest, Sha256};
use shp_core::recipe::pgzip::{self, Class, Params};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const PROBE_STREAM: usize = 4 << 20;

/// Builds tests/producers/pgzip once per test binary.
fn producer() -> Option<PathBuf> {
    common::go_producer(
        "pgzip",
        Some((
            "github.com/klauspost/pgzip/gzip.go",
            "golang-github-klauspost-pgzip-dev",
        )),
    )
}

fn run_producer(bin: &Path, level: i32, block: u64, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(bin)
        .args([level.to_string(), block.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run producer");
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&data));
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    feeder.join().unwrap().unwrap();
    assert!(child.wait().unwrap().success());
    out
}

/// The raw deflate stream of a one-member gzip file whose header has no optional fields (as pgzip writes).
/// A committed vector, checked against tests/data/pgzip/SHA256SUMS first.
fn vector(dir: &Path, name: &str) -> Vec<u8> {
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).expect("SHA256SUMS");
    let b = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let line = sums
        .lines()
        .find(|l| l.ends_with(&format!("  {name}")))
        .unwrap_or_else(|| panic!("{name} not in SHA256SUMS"));
    assert_eq!(sha(&b), line[..64], "{name}: sha256");
    b
}

fn deflate_of(gz: &[u8]) -> &[u8] {
    assert_eq!(&gz[..4], &[0x1f, 0x8b, 8, 0], "plain gzip header");
    &gz[10..gz.len() - 8]
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
            "{what}: rebuilt {} bytes sha256 {} != producer {} bytes sha256 {}; first difference at offset {first}",
            got.len(),
            sha(got),
            want.len(),
            sha(want)
        );
    }
}

fn check(name: &str, data: &[u8], stream: &[u8], want: &Params) {
    let sp = &stream[..stream.len().min(PROBE_STREAM)];
    let complete = sp.len() == stream.len();
    let dp = if complete {
        data
    } else {
        &data[..data.len().min(6 << 20)]
    };
    let mut rebuilt = Vec::new();
    pgzip::encoder(want, data).read_to_end(&mut rebuilt).unwrap();
    assert_same(&format!("{name} {}", want.profile()), &rebuilt, stream);
    let found = pgzip::probe(sp, dp, complete);
    assert!(found.contains(want), "{name}: {} not among {found:?}", want.profile());
    if data.len() < 64 {
        // Trivially small inputs come out the same at every level: the first candidate must rebuild them too.
        let mut first = Vec::new();
        pgzip::encoder(&found[0], data).read_to_end(&mut first).unwrap();
        assert_same(&format!("{name} {}", found[0].profile()), &first, stream);
    } else {
        assert_eq!(found.first(), Some(want), "{name}: probe order {found:?}");
    }
}

// ---- inputs ----

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn tar_header(name: &str, size: usize, mode: &str) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let field = |h: &mut [u8; 512], off: usize, s: &str| h[off..off + s.len()].copy_from_slice(s.as_bytes());
    field(&mut h, 100, mode);
    field(&mut h, 108, "0001750\0");
    field(&mut h, 116, "0001750\0");
    field(&mut h, 124, &format!("{size:011o}\0"));
    field(&mut h, 136, "14563217250\0");
    h[156] = b'0';
    field(&mut h, 257, "ustar\x0000");
    field(&mut h, 265, "user");
    field(&mut h, 297, "user");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    field(&mut h, 148, &format!("{sum:06o}\0 "));
    h
}

/// A tar of generated files: text, random bytes, runs, empty and tiny files.
fn random_tar(seed: u64, target: usize) -> Vec<u8> {
    let mut r = Rng(seed);
    let words: Vec<&[u8]> = vec![
        b"the ",
        b"layer ",
        b"container ",
        b"image ",
        b"of ",
        b"and ",
        b"\n",
        b"lib",
        b"/usr/",
    ];
    let mut tar = Vec::new();
    let mut i = 0;
    while tar.len() < target {
        let kind = r.next() % 6;
        let size = match kind {
            0 => 0,
            1 => (r.next() % 40) as usize,
            _ => (r.next() % 300_000) as usize,
        };
        let mut body = Vec::with_capacity(size);
        while body.len() < size {
            match kind {
                2 => body.extend_from_slice(words[(r.next() % words.len() as u64) as usize]),
                3 => body.extend_from_slice(&r.next().to_le_bytes()),
                4 => {
                    let b = r.next() as u8;
                    body.extend(std::iter::repeat_n(b, (r.next() % 5000) as usize));
                }
                _ => {
                    if r.next().is_multiple_of(3) {
                        body.extend_from_slice(&r.next().to_le_bytes()[..3]);
                    } else {
                        body.extend_from_slice(words[(r.next() % words.len() as u64) as usize]);
                    }
                }
            }
        }
        body.truncate(size);
        tar.extend_from_slice(&tar_header(&format!("dir{}/file{i}.{kind}", i % 7), size, "0000644\0"));
        tar.extend_from_slice(&body);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
        i += 1;
    }
    tar.resize(tar.len() + 1024, 0);
    tar.resize(tar.len().div_ceil(10240) * 10240, 0);
    tar
}

/// A real tar (GNU tar of some docs and binaries), about `mb` MB; None when tar or the files are missing.
fn real_tar(mb: usize) -> Option<Vec<u8>> {
    let mut files: Vec<String> = Vec::new();
    let mut total = 0u64;
    for dir in ["/usr/share/doc"] {
        let Ok(rd) = std::fs::read_dir(dir) else { continue };
        let mut names: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        names.sort();
        for d in names.into_iter().take(60) {
            if let Ok(m) = std::fs::metadata(&d) {
                total += m.len();
                files.push(d.to_string_lossy().into_owned());
            }
        }
    }
    for bin in [
        "/usr/bin/tar",
        "/usr/bin/gzip",
        "/usr/bin/pigz",
        "/usr/bin/zstd",
        "/usr/bin/ls",
        "/usr/bin/cp",
    ] {
        if let Ok(m) = std::fs::metadata(bin) {
            if total + m.len() > (mb as u64) << 20 {
                continue;
            }
            total += m.len();
            files.push(bin.to_string());
        }
    }
    let out = Command::new("tar")
        .args(["-c", "--sort=name", "-f", "-"])
        .args(&files)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    (out.stdout.len() > 100_000).then_some(out.stdout)
}

fn inputs() -> Vec<(String, Vec<u8>)> {
    let mut v = vec![
        ("random-tar".to_string(), random_tar(0x5eed, 1_500_000)),
        ("empty".to_string(), Vec::new()),
        ("tiny".to_string(), b"hello, layer\n".to_vec()),
    ];
    match real_tar(3) {
        Some(t) => v.push(("real-tar".to_string(), t)),
        None if common::require_producers() => panic!("SHP_REQUIRE_PRODUCERS=1 but no real tar could be made"),
        None => eprintln!("no real tar (tar or /usr/share/doc missing)"),
    }
    v
}

/// (level given to pgzip, level in the profile)
const LEVELS: [(i32, i8); 8] = [(-1, 5), (1, 1), (2, 2), (3, 3), (4, 4), (6, 6), (0, 0), (-2, -2)];

#[test]
fn pgzip_1_15_12_every_level_and_block_size() {
    let Some(bin) = producer() else { return };
    let inputs = inputs();
    for (level, plevel) in LEVELS {
        for block in [1u64 << 20, 256 << 10] {
            for (name, data) in &inputs {
                let gz = run_producer(&bin, level, block, data);
                let stream = deflate_of(&gz);
                // A lone block (shorter than B) reads the same for every B > its length: the probe names 1 MiB.
                let b = if (data.len() as u64) < block { 1 << 20 } else { block };
                let want = Params {
                    class: Class::V1_15_12,
                    level: plevel,
                    block_size: b,
                };
                check(&format!("{name} level {level} block {block}"), data, stream, &want);
            }
        }
    }
}

#[test]
fn pgzip_odd_block_sizes() {
    let Some(bin) = producer() else { return };
    let data = random_tar(77, 600_000);
    for block in [16_385u64, 65_535, 65_536, 100_000] {
        for (level, plevel) in [(-1, 5), (1, 1)] {
            let gz = run_producer(&bin, level, block, &data);
            let want = Params {
                class: Class::V1_15_12,
                level: plevel,
                block_size: block,
            };
            check(&format!("level {level} block {block}"), &data, deflate_of(&gz), &want);
        }
    }
    // The lazy levels at the sizes where their window is exactly full (64 KiB) or barely above the dictionary.
    for (level, block) in [(9i8, 16_385u64), (9, 65_536), (7, 65_535), (8, 100_000)] {
        let gz = run_producer(&bin, level as i32, block, &data);
        let want = Params {
            class: Class::V1_15_12,
            level,
            block_size: block,
        };
        check(&format!("level {level} block {block}"), &data, deflate_of(&gz), &want);
    }
}

/// Levels 7–9 (the lazy matcher): a generated and a real tar, small so the slow levels stay cheap, at a block
/// size that cuts them into several blocks (each with its predecessor's tail as dictionary) and at the default.
#[test]
fn pgzip_1_15_12_lazy_levels() {
    let Some(bin) = producer() else { return };
    let mut inputs = vec![
        ("random-tar".to_string(), random_tar(0x1a27, 600_000)),
        ("tiny".to_string(), b"hello, layer\n".to_vec()),
    ];
    match real_tar(3) {
        Some(mut t) => {
            t.truncate(700_000);
            inputs.push(("real-tar".to_string(), t));
        }
        None if common::require_producers() => panic!("SHP_REQUIRE_PRODUCERS=1 but no real tar could be made"),
        None => eprintln!("no real tar (tar or /usr/share/doc missing)"),
    }
    for level in [9i8, 7, 8] {
        for block in [1u64 << 20, 200_000] {
            for (name, data) in &inputs {
                let gz = run_producer(&bin, level as i32, block, data);
                let b = if (data.len() as u64) < block { 1 << 20 } else { block };
                let want = Params {
                    class: Class::V1_15_12,
                    level,
                    block_size: b,
                };
                check(
                    &format!("{name} level {level} block {block}"),
                    data,
                    deflate_of(&gz),
                    &want,
                );
            }
        }
    }
}

/// The committed vectors of klauspost/compress releases newer than Debian's (tests/data/pgzip, checked against their
/// SHA256SUMS first; see its README), each with the class and level that must rebuild it and be probed first:
/// - 1.18.0 writes what 1.15.12 writes at levels -1 (= 5), 1, 2, 3 and 6; its level 4 is class 1.18.0; its lazy
///   levels 7–9 are 1.15.15's matcher (class 1.15.15);
/// - 1.19.1 (the newest release) is class 1.18.2 at every level: the new block writer, 1.18.0's level 4, and at
///   level 9 the literal histogram capped at 32768 bytes.
///
/// The shared vectors (levels -1, 1, 9 at 1 MiB and 256 KiB blocks) cover all of input.tar; those written here cover
/// levels 7 and 8 of 1.18.0 on all of it, and the other levels on its first MiB (four 256 KiB blocks, three of them
/// with a dictionary).
#[test]
fn klauspost_newer_release_vectors() {
    const ALL: usize = usize::MAX;
    const MIB: usize = 1 << 20;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pgzip");
    let input = vector(&dir, "input.tar");
    let (v15, v15_15, v18_0, v18_2) = (Class::V1_15_12, Class::V1_15_15, Class::V1_18_0, Class::V1_18_2);
    // (release, level as the producer was called, class, level as named, block size, input length)
    let cases: &[(&str, i32, Class, i8, u64, usize)] = &[
        ("1.18.0", -1, v15, 5, 1 << 20, ALL),
        ("1.18.0", -1, v15, 5, 256 << 10, ALL),
        ("1.18.0", 1, v15, 1, 1 << 20, ALL),
        ("1.18.0", 1, v15, 1, 256 << 10, ALL),
        ("1.18.0", 2, v15, 2, 256 << 10, MIB),
        ("1.18.0", 3, v15, 3, 256 << 10, MIB),
        ("1.18.0", 4, v18_0, 4, 256 << 10, MIB),
        ("1.18.0", 6, v15, 6, 256 << 10, MIB),
        ("1.18.0", 7, v15_15, 7, 256 << 10, ALL),
        ("1.18.0", 8, v15_15, 8, 256 << 10, ALL),
        ("1.18.0", 9, v15_15, 9, 1 << 20, ALL),
        ("1.18.0", 9, v15_15, 9, 256 << 10, ALL),
        ("1.19.1", -1, v18_2, 5, 1 << 20, ALL),
        ("1.19.1", -1, v18_2, 5, 256 << 10, ALL),
        ("1.19.1", 1, v18_2, 1, 1 << 20, ALL),
        ("1.19.1", 1, v18_2, 1, 256 << 10, ALL),
        ("1.19.1", 2, v18_2, 2, 256 << 10, MIB),
        ("1.19.1", 3, v18_2, 3, 256 << 10, MIB),
        ("1.19.1", 4, v18_2, 4, 256 << 10, MIB),
        ("1.19.1", 6, v18_2, 6, 256 << 10, MIB),
        ("1.19.1", 7, v18_2, 7, 256 << 10, MIB),
        ("1.19.1", 8, v18_2, 8, 256 << 10, MIB),
        ("1.19.1", 9, v18_2, 9, 1 << 20, ALL),
        ("1.19.1", 9, v18_2, 9, 256 << 10, ALL),
    ];
    for &(release, called, class, level, block, len) in cases {
        let suffix = if len == ALL { "" } else { ".first1MiB" };
        let gz = vector(
            &dir,
            &format!("klauspost-{release}.pgzip.level{called}.block{block}{suffix}.gz"),
        );
        let want = Params {
            class,
            level,
            block_size: block,
        };
        assert_eq!(Params::from_profile(&want.profile()), Some(want.clone()));
        let data = &input[..len.min(input.len())];
        check(
            &format!("{release} level {called} block {block}"),
            data,
            deflate_of(&gz),
            &want,
        );
    }
}
