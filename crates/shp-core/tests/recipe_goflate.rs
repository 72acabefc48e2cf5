//! Ground truth for the goflate recipes: Go's own compress/gzip (tests/producers/gostd, built with
//! the system Go) compresses generated and real tars at every level; the probe must name that level
//! first and the encoder must give back the producer's deflate bytes exactly.
//!
//! Without Go the test is skipped, unless SHP_REQUIRE_PRODUCERS=1 (CI), where it fails.

mod common;

use common::missing;
use sha2::{Digest, Sha256};
use shp_core::recipe::goflate::{self, Params, Version};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const LEVELS: [i8; 11] = [-2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

/// Builds tests/producers/gostd once per test binary.
fn producer() -> Option<PathBuf> {
    common::go_producer("gostd", None)
}

/// Go's gzip of `data` at `level`, written with writes of `chunk` bytes (0: one write).
fn go_gzip(bin: &Path, data: &[u8], level: i8, chunk: usize) -> Vec<u8> {
    let mut cmd = Command::new(bin);
    if chunk > 0 {
        cmd.args(["-chunk", &chunk.to_string()]);
    }
    let mut child = cmd
        .arg(level.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run gostd");
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    feeder.join().unwrap().unwrap();
    assert!(child.wait().unwrap().success(), "gostd {level} failed");
    out
}

/// The raw deflate stream inside Go's single-member gzip output.
fn raw_deflate(gz: &[u8]) -> &[u8] {
    let h = shp_core::gzip::parse_header(gz).expect("gzip header");
    &gz[h.bytes.len()..gz.len() - 8]
}

/// What a prefix of a raw deflate stream decodes to.
fn inflate_prefix(stream: &[u8]) -> Vec<u8> {
    let mut d = flate2::Decompress::new(false);
    let mut out = Vec::with_capacity(stream.len() * 4);
    let mut pos = 0;
    loop {
        out.reserve(1 << 20);
        let (i, o) = (d.total_in(), d.total_out());
        let st = d.decompress_vec(&stream[pos..], &mut out, flate2::FlushDecompress::None);
        pos += (d.total_in() - i) as usize;
        match st {
            Ok(flate2::Status::StreamEnd) => break,
            Ok(_) if d.total_in() == i && d.total_out() == o => break,
            Ok(_) => {}
            Err(e) => panic!("inflate: {e}"),
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn check_same(what: &str, input: &[u8], got: &[u8], want: &[u8]) {
    if got != want {
        let at = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        // Keep the evidence for a look with other tools.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("goflate-mismatch");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("input"), input);
        let _ = std::fs::write(dir.join("rebuilt.deflate"), got);
        let _ = std::fs::write(dir.join("producer.deflate"), want);
        panic!(
            "{what}: rebuilt {} bytes sha256 {} vs producer {} bytes sha256 {}; first difference at byte {at} \
             (files in {})",
            got.len(),
            hex(&Sha256::digest(got)),
            want.len(),
            hex(&Sha256::digest(want)),
            dir.display()
        );
    }
    assert_eq!(
        (got.len(), hex(&Sha256::digest(got))),
        (want.len(), hex(&Sha256::digest(want)))
    );
}

/// Probe as the importer does (≤ 4 MiB of stream and what it decodes to), then rebuild all.
/// `strict`: the producer's level must come first. Otherwise (inputs so small that several levels
/// write the very same bytes) it must be among the candidates and the first one must write the
/// producer's bytes too.
fn verify(bin: &Path, name: &str, data: &[u8], levels: &[i8], strict: bool) {
    for &level in levels {
        let what = format!("{name} ({} bytes) at level {level}", data.len());
        let gz = go_gzip(bin, data, level, 0);
        let want = raw_deflate(&gz);
        let (prefix, complete) = if want.len() <= 4 << 20 {
            (want, true)
        } else {
            (&want[..4 << 20], false)
        };
        let decoded = if complete {
            data.to_vec()
        } else {
            inflate_prefix(prefix)
        };
        let p18 = Params {
            level,
            version: Version::V1_8,
        };
        let found = goflate::probe(prefix, &decoded, complete);
        if strict || found.first() == Some(&p18) {
            assert_eq!(found.first(), Some(&p18), "{what}: probe said {found:?}");
        } else {
            assert!(found.contains(&p18), "{what}: probe said {found:?}");
            let first = found[0].level;
            let other = go_gzip(bin, data, first, 0);
            assert_eq!(raw_deflate(&other), want, "{what}: probe put level {first} first");
        }
        // Also from a short prefix, as a truncated read would give it.
        let short = &want[..want.len().min(96 << 10)];
        let found = goflate::probe(short, &inflate_prefix(short), false);
        assert!(found.contains(&p18), "{what}: short probe said {found:?}");

        let mut got = Vec::new();
        goflate::encoder(&p18, data).read_to_end(&mut got).unwrap();
        check_same(&what, data, &got, want);
    }
}

/// xorshift64
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn tar_header(name: &str, size: usize) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"14712345670\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A tar of text, random bytes, long runs, empty and tiny files, in a seeded mix.
fn random_tar(seed: u64, target: usize) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    let words = [
        "the ",
        "layer ",
        "image ",
        "docker ",
        "config ",
        "usr/lib/",
        "#include <stdio.h>\n",
        "return 0;\n",
        "{\"a\": 1}",
        "\n",
        "    ",
        "copyright ",
        "license ",
    ];
    let mut tar = Vec::with_capacity(target + (1 << 16));
    let mut i = 0;
    while tar.len() < target {
        let body: Vec<u8> = match r.below(6) {
            0 => Vec::new(),
            1 => (0..r.below(20)).map(|_| r.next() as u8).collect(),
            2 => {
                let n = r.below(200_000) as usize;
                let mut v = Vec::with_capacity(n);
                while v.len() < n {
                    v.extend_from_slice(words[r.below(words.len() as u64) as usize].as_bytes());
                }
                v
            }
            3 => (0..r.below(100_000)).map(|_| r.next() as u8).collect(),
            4 => vec![r.next() as u8; r.below(70_000) as usize],
            _ => {
                // Copies of earlier material: long-distance matches.
                let n = r.below(50_000) as usize;
                let start = r.below(tar.len().max(1) as u64) as usize;
                tar[start..(start + n).min(tar.len())].to_vec()
            }
        };
        tar.extend_from_slice(&tar_header(&format!("f{i}"), body.len()));
        tar.extend_from_slice(&body);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
        i += 1;
    }
    tar.resize(tar.len() + 1024, 0);
    tar
}

/// `tar -c` of real files: documentation and a few binaries, about `target` bytes.
fn real_tar(target: usize) -> Option<Vec<u8>> {
    let mut files = Vec::new();
    let mut total = 0u64;
    let mut add = |dir: &str, limit: u64, files: &mut Vec<PathBuf>| {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        let mut stack = entries;
        stack.reverse();
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
            } else if m.is_file() && m.len() < (2 << 20) {
                used += m.len();
                files.push(p);
            }
        }
        total += used;
    };
    add("/usr/share/doc", target as u64 / 2, &mut files);
    add("/usr/bin", target as u64 / 2, &mut files);
    if total < target as u64 / 4 {
        return None;
    }
    let mut cmd = Command::new("tar");
    cmd.args(["-c", "--no-recursion", "-f", "-"])
        .args(&files)
        .stderr(Stdio::null());
    let out = cmd.output().ok()?;
    (!out.stdout.is_empty()).then_some(out.stdout)
}

#[test]
fn generated_tars_every_level() {
    let Some(bin) = producer() else { return };
    let debug = cfg!(debug_assertions);
    let data = random_tar(0x5eed, if debug { 1 << 20 } else { 3 << 20 });
    verify(&bin, "generated tar", &data, &LEVELS, true);
    // Edge sizes: empty, tiny, around Go's 65535-byte pieces and 16384-token blocks.
    for n in [0usize, 1, 16, 17, 127, 128, 65534, 65535, 65536, 131070, 200_000] {
        let d = random_tar(n as u64 + 1, 0);
        let mut d = d[..d.len().min(n)].to_vec();
        d.resize(n, b'x');
        verify(&bin, "small input", &d, &LEVELS, false);
    }
}

#[test]
fn real_tar_every_level() {
    let Some(bin) = producer() else { return };
    let debug = cfg!(debug_assertions);
    let Some(data) = real_tar(if debug { 2 << 20 } else { 6 << 20 }) else {
        missing::<()>("no files under /usr/share/doc and /usr/bin to tar");
        return;
    };
    verify(&bin, "real tar", &data, &LEVELS, true);
}

#[test]
fn io_copy_sized_writes_give_the_same_bytes() {
    // Go's output for levels 2–9 is the same for one big write and for 32 KiB / 512-byte writes.
    let Some(bin) = producer() else { return };
    let data = random_tar(99, 1 << 20);
    for level in [1, 6, 9] {
        let one = go_gzip(&bin, &data, level, 0);
        for chunk in [32 << 10, 512] {
            assert_eq!(
                go_gzip(&bin, &data, level, chunk),
                one,
                "level {level}, writes of {chunk}"
            );
        }
    }
}

/// A Go-written layer imported through the store (as `shp push`, the registry and the C ABI do)
/// is kept as a goflate recipe and read back bit-exact. Its first MiB is noise, which several
/// levels write alike, so the probe hands over more than one candidate: when the first one's
/// proof fails the import proves the next ones instead of falling back to opaque.
#[test]
fn imported_layers_become_goflate_recipes() {
    let Some(bin) = producer() else { return };
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..(1 << 20) + 300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut text = random_tar(7, 600_000);
    text.truncate(text.len() - 1024); // drop its end-of-archive blocks; ours follow
    let mut tar = tar_header("noise.bin", noise.len()).to_vec();
    tar.extend_from_slice(&noise);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    tar.extend_from_slice(&text);
    tar.extend_from_slice(&[0u8; 1024]);
    let plain = random_tar(11, 400_000);
    let dir = std::env::temp_dir().join(format!("shp-goflate-import-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let home = std::sync::Arc::new(shp_core::Home::init(&dir).expect("init"));
    for (what, data, level) in [
        ("plain", &plain, 6i8),
        ("plain", &plain, 1),
        ("noise first", &tar, 4),
        ("noise first", &tar, 2),
    ] {
        let gz = go_gzip(&bin, data, level, 0);
        let digest = format!("sha256:{}", hex(&Sha256::digest(&gz)));
        let got = home.put_blob(&mut &gz[..], Some(&digest), true).expect("import");
        assert_eq!(
            got.storage.to_string(),
            format!("recipe:goflate-1.8/{level}"),
            "{what}, level {level}"
        );
        let mut back = Vec::new();
        home.open_blob(&digest).unwrap().read_to_end(&mut back).unwrap();
        assert!(back == gz, "{what}, level {level}: read back differs");
    }
    drop(home);
    let _ = std::fs::remove_dir_all(&dir);
}
