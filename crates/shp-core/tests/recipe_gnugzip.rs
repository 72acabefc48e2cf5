//! GNU gzip 1.12 as ground truth for the `gnugzip-1.12/L` profiles: the real `/usr/bin/gzip` compresses
//! generated tars and a real one at every level, from a named file (with and without `-n`), from
//! standard input redirected from the file and from a pipe; the deflate streams must all be the same
//! and equal to the rebuilt one, and the probe must name the level first.
//!
//! Without gzip the test is skipped, unless `SHP_REQUIRE_PRODUCERS=1` (CI) makes that a failure.

use sha2::{Digest, Sha256};
use shp_core::recipe::gnugzip::{encoder, probe, Params};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const GZIP: &str = "/usr/bin/gzip";

/// The gzip binary, if usable; panics when it is required but missing.
fn gzip() -> Option<&'static str> {
    let ok = Command::new(GZIP)
        .arg("--version")
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).starts_with("gzip 1.12"))
        .unwrap_or(false);
    if ok {
        return Some(GZIP);
    }
    if std::env::var("SHP_REQUIRE_PRODUCERS").as_deref() == Ok("1") {
        panic!("{GZIP} (GNU gzip 1.12, Debian package gzip) is required (SHP_REQUIRE_PRODUCERS=1) but missing");
    }
    eprintln!("skipping: {GZIP} is not GNU gzip 1.12");
    None
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A ustar archive of `files` (name, content).
fn tar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0001750");
        h[116..123].copy_from_slice(b"0001750");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(b"14672751212");
        h[148..156].copy_from_slice(b"        ");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Text, random bytes, runs, empty and tiny files.
fn random_tar(seed: u64, files: usize) -> Vec<u8> {
    let mut r = Rng(seed);
    let words: [&[u8]; 8] = [
        b"the ",
        b"layer ",
        b"of ",
        b"image ",
        b"config\n",
        b"0123 ",
        b"{\"a\": 1}, ",
        b"/usr/lib/",
    ];
    let mut v = Vec::new();
    for i in 0..files {
        let data: Vec<u8> = match r.next() % 6 {
            0 => Vec::new(),
            1 => (0..r.next() % 40).map(|_| r.next() as u8).collect(),
            2 => (0..r.next() % 150_000).map(|_| r.next() as u8).collect(),
            3 => vec![r.next() as u8; (r.next() % 200_000) as usize],
            _ => {
                let mut t = Vec::new();
                let n = r.next() % 60_000;
                while (t.len() as u64) < n {
                    t.extend_from_slice(words[(r.next() % 8) as usize]);
                    if r.next().is_multiple_of(50) {
                        t.push(r.next() as u8);
                    }
                }
                t
            }
        };
        v.push((format!("dir{}/file{i}.bin", i % 7), data));
    }
    tar(&v)
}

/// `tar -c` of some documentation and a few binaries of this machine, about `limit` bytes.
fn real_tar(dir: &Path, limit: u64) -> Vec<u8> {
    let mut files = Vec::new();
    let mut total = 0;
    for bin in ["/usr/bin/gzip", "/usr/bin/tar", "/usr/bin/ls"] {
        if let Ok(m) = std::fs::metadata(bin) {
            total += m.len();
            files.push(PathBuf::from(bin));
        }
    }
    let mut stack = vec![PathBuf::from("/usr/share/doc")];
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
                files.push(p);
            }
        }
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
    assert!(!out.stdout.is_empty(), "tar produced nothing");
    out.stdout
}

/// The raw deflate stream of a single-member gzip file.
fn deflate_of(gz: &[u8]) -> &[u8] {
    let h = shp_core::gzip::parse_header(gz).expect("gzip header");
    &gz[h.bytes.len()..gz.len() - 8]
}

fn run_gzip(bin: &str, args: &[&str], stdin: Stdio) -> Vec<u8> {
    let out = Command::new(bin).args(args).stdin(stdin).output().expect("run gzip");
    assert!(
        out.status.success(),
        "gzip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// gzip reading a pipe fed in 48 KiB writes.
fn run_gzip_piped(bin: &str, level: &str, data: &[u8]) -> Vec<u8> {
    let mut child = Command::new(bin)
        .args(["-c", level])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run gzip");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let feeder = std::thread::spawn(move || {
        for c in data.chunks(48 << 10) {
            stdin.write_all(c).unwrap();
        }
    });
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    feeder.join().unwrap();
    assert!(child.wait().unwrap().success());
    out
}

fn assert_same(what: &str, ours: &[u8], theirs: &[u8]) {
    let (a, b) = (Sha256::digest(ours), Sha256::digest(theirs));
    if a != b || ours.len() != theirs.len() {
        let at = ours
            .iter()
            .zip(theirs)
            .position(|(x, y)| x != y)
            .unwrap_or(ours.len().min(theirs.len()));
        panic!(
            "{what}: rebuilt {} bytes (sha256 {a:x}), gzip wrote {} bytes (sha256 {b:x}); first difference at byte {at}",
            ours.len(),
            theirs.len()
        );
    }
}

fn check_input(bin: &str, dir: &Path, name: &str, data: &[u8]) {
    let path = dir.join(format!("{name}.tar"));
    std::fs::write(&path, data).unwrap();
    let p = path.to_str().unwrap();
    for level in 1..=9u32 {
        let l = format!("-{level}");
        let by_name = run_gzip(bin, &["-c", &l, p], Stdio::null());
        let mut streams = vec![("file -n", run_gzip(bin, &["-c", "-n", &l, p], Stdio::null()))];
        // Standard input (redirected from the file, and a pipe) for levels of both loop kinds.
        if [1, 3, 4, 6, 9].contains(&level) {
            let file = std::fs::File::open(&path).unwrap();
            streams.push(("stdin", run_gzip(bin, &["-c", &l], file.into())));
            streams.push(("pipe", run_gzip_piped(bin, &l, data)));
        }
        let raw = deflate_of(&by_name);
        for (how, gz) in &streams {
            assert_same(
                &format!("{name} -{level}: gzip from {how} vs from file"),
                deflate_of(gz),
                raw,
            );
        }
        let mut ours = Vec::new();
        encoder(&Params { level }, data).read_to_end(&mut ours).unwrap();
        assert_same(&format!("{name} -{level}"), &ours, raw);

        // The probe sees at most 4 MiB of stream; its first candidate must be this level, or one
        // whose whole output is identical (then the streams cannot tell them apart).
        let found = probe(&raw[..raw.len().min(4 << 20)], data, raw.len() <= 4 << 20);
        let first = found
            .first()
            .unwrap_or_else(|| panic!("{name} -{level}: probe found nothing"));
        if first.level != level {
            let mut alt = Vec::new();
            encoder(first, data).read_to_end(&mut alt).unwrap();
            assert_same(
                &format!("{name} -{level}: probe chose -{} first", first.level),
                &alt,
                raw,
            );
            eprintln!("{name}: -{} and -{level} write the same stream", first.level);
        }
        // And from a prefix: 200 KiB of stream, 1.5 MiB of tar.
        if raw.len() > 200 << 10 && data.len() > 3 << 19 {
            let found = probe(&raw[..200 << 10], &data[..3 << 19], false);
            assert!(
                found.contains(&Params { level }),
                "{name} -{level} from a prefix: {found:?}"
            );
        }
    }
}

#[test]
fn gnu_gzip_every_level_bit_exact() {
    let Some(bin) = gzip() else { return };
    let dir = tempfile::tempdir().unwrap();
    check_input(bin, dir.path(), "random-a", &random_tar(0x9e37_79b9, 30));
    check_input(bin, dir.path(), "random-b", &random_tar(12345, 12));
    check_input(bin, dir.path(), "tiny", &tar(&[("a".into(), b"hello\n".to_vec())]));
    let real = real_tar(dir.path(), 5 << 19);
    check_input(bin, dir.path(), "real", &real);
}

/// GNU-gzipped layers imported through the store become recipes (gnugzip, or an earlier family
/// in the fixed order when it writes the very same bytes) and read back bit-exact.
#[test]
fn imported_layers_become_recipes() {
    let Some(bin) = gzip() else { return };
    let data = random_tar(21, 40);
    let dir = std::env::temp_dir().join(format!("shp-gnugzip-import-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let home = std::sync::Arc::new(shp_core::Home::init(&dir).expect("init"));
    for level in ["-1", "-6", "-9"] {
        let gz = run_gzip_piped(bin, level, &data);
        let digest = format!("sha256:{:x}", Sha256::digest(&gz));
        let got = home.put_blob(&mut &gz[..], Some(&digest), true).expect("import");
        let s = got.storage.to_string();
        assert!(s.starts_with("recipe:"), "gzip {level}: stored as {s}");
        let mut back = Vec::new();
        home.open_blob(&digest).unwrap().read_to_end(&mut back).unwrap();
        assert_same(&format!("gzip {level} read back"), &back, &gz);
    }
    drop(home);
    let _ = std::fs::remove_dir_all(&dir);
}
