//! goflate-1.27 (Go 1.27's compress/gzip, a port of klauspost/compress flate) against the committed vectors
//! in tests/data/go127: each is rebuilt byte for byte by its profile, and the deflate probe (all families, in
//! their fixed order) names that profile first.

mod common;

use sha2::{Digest, Sha256};
use shp_core::recipe::goflate::{self, Params, Version};
use shp_core::recipe::{probe_deflate, Profile};
use std::io::Read;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/go127")
}

fn sha(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// Every committed vector with its level, checked against SHA256SUMS.
fn vectors() -> Vec<(i8, String, Vec<u8>)> {
    let sums = std::fs::read_to_string(dir().join("SHA256SUMS")).expect("SHA256SUMS");
    let mut out = Vec::new();
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (sum, name) = line.split_once("  ").expect("sha256sum line");
        let b = std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(sha(&b), sum, "{name}: sha256");
        let level: i8 = name
            .strip_prefix("go1.27.level")
            .and_then(|r| r.split('.').next())
            .and_then(|l| l.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no level in the name"));
        out.push((level, name.to_string(), b));
    }
    out
}

/// The raw deflate stream of a one-member gzip file without optional header fields (as Go writes).
fn deflate_of(gz: &[u8]) -> &[u8] {
    assert_eq!(&gz[..4], &[0x1f, 0x8b, 8, 0], "plain gzip header");
    &gz[10..gz.len() - 8]
}

fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz).read_to_end(&mut out).unwrap();
    out
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then(|| a.len().min(b.len())))
}

#[test]
fn every_level_has_a_vector() {
    let mut levels: Vec<i8> = vectors().iter().map(|v| v.0).collect();
    levels.sort();
    assert_eq!(levels, [-2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
}

#[test]
fn vectors_are_rebuilt_byte_for_byte() {
    for (level, name, gz) in vectors() {
        let data = gunzip(&gz);
        let want = deflate_of(&gz);
        let p = Params {
            level,
            version: Version::V1_27,
        };
        let mut got = Vec::new();
        goflate::encoder(&p, &data[..]).read_to_end(&mut got).unwrap();
        if let Some(at) = first_difference(&got, want) {
            panic!(
                "{name}: {} differs from the vector at deflate offset {at} (ours {} bytes, vector {})",
                p.profile(),
                got.len(),
                want.len()
            );
        }
        // The header is what Go 1.19's compress/gzip writes (XFL 2 for level 9, 4 for level 1).
        let xfl = match level {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        assert_eq!(&gz[4..10], &[0, 0, 0, 0, xfl, 0xff], "{name}: header");
    }
}

#[test]
fn probe_names_the_vectors_profile_first() {
    for (level, name, gz) in vectors() {
        let data = gunzip(&gz);
        let want = Profile::Go(Params {
            level,
            version: Version::V1_27,
        });
        let got = probe_deflate(deflate_of(&gz), &data, true);
        assert_eq!(got.as_ref(), Some(&want), "{name}: whole stream");
        // A prefix (the first 256 KiB of the stream, what it decodes to) names it too.
        let cut = deflate_of(&gz).len().min(256 << 10);
        let stream = &deflate_of(&gz)[..cut];
        let mut prefix = Vec::new();
        let mut z = flate2::read::DeflateDecoder::new(stream);
        let _ = z.read_to_end(&mut prefix);
        let found = goflate::probe(stream, &prefix, false);
        assert!(
            found.contains(&Params {
                level,
                version: Version::V1_27
            }),
            "{name}: prefix: {found:?}"
        );
        if level != 0 {
            // Level 0's stored blocks are Go 1.8's too until the closing block; every other level is
            // told apart from Go 1.8 by its first blocks.
            assert_eq!(
                found.first(),
                Some(&Params {
                    level,
                    version: Version::V1_27
                }),
                "{name}: prefix"
            );
        }
    }
}

#[test]
fn profiles_round_trip() {
    for level in [-2i8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9] {
        let p = Profile::Go(Params {
            level,
            version: Version::V1_27,
        });
        assert_eq!(p.name(), format!("goflate-1.27/{level}"));
        assert_eq!(Profile::parse(&p.name()), Some(p));
    }
    assert_eq!(Profile::parse("goflate-1.27/-1"), None);
}

/// A Go 1.27 layer pushed into a home (the path the CLI, the registry and the C ABI take) is kept as a
/// `goflate-1.27` recipe and read back byte for byte. The layer is a real-shaped tar larger than pgzip's default
/// block (so no pgzip profile writes it), gzip-framed as Go's compress/gzip frames it: the member is built here
/// from the profile's own encoder, so this checks the wiring (probe order, proof, recipe record), while the
/// vectors above check the bytes.
#[test]
fn imported_go127_layers_become_recipes() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let entries: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| {
            let body = (0..60_000)
                .map(|j| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if (j / 700) % 3 == 0 {
                        x as u8
                    } else {
                        b"usr/share/doc copyright Debian\n"[(j + i) % 31]
                    }
                })
                .collect();
            (format!("file{i:02}"), body)
        })
        .collect();
    let tar = common::tar(&entries);
    assert!(tar.len() > 2 << 20);
    let dir = std::env::temp_dir().join(format!("shp-go127-import-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let home = std::sync::Arc::new(shp_core::Home::init(&dir).expect("init"));
    for level in [6i8, 1, 9] {
        let p = Params {
            level,
            version: Version::V1_27,
        };
        let xfl = match level {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 0xff];
        goflate::encoder(&p, &tar[..]).read_to_end(&mut gz).unwrap();
        let mut crc = flate2::Crc::new();
        crc.update(&tar);
        gz.extend_from_slice(&crc.sum().to_le_bytes());
        gz.extend_from_slice(&(tar.len() as u32).to_le_bytes());
        let digest = format!("sha256:{}", sha(&gz));
        let got = home.put_blob(&mut &gz[..], Some(&digest), true).expect("import");
        assert_eq!(
            got.storage.to_string(),
            format!("recipe:goflate-1.27/{level}"),
            "level {level}"
        );
        let mut back = Vec::new();
        home.open_blob(&digest).unwrap().read_to_end(&mut back).unwrap();
        assert!(back == gz, "level {level}: read back differs");
    }
    drop(home);
    let _ = std::fs::remove_dir_all(&dir);
}
