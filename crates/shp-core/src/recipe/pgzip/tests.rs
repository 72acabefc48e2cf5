use super::*;
use proptest::prelude::*;
use std::io::Read;

fn inflate(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(raw)
        .read_to_end(&mut out)
        .expect("valid deflate");
    out
}

fn encode_all(p: &Params, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encoder(p, data).read_to_end(&mut out).unwrap();
    out
}

fn sample(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let words: [&[u8]; 6] = [
        b"usr/share/doc ",
        b"copyright ",
        b"\0\0\0\0\0\0\0\0",
        b"0000644 ",
        b"Debian ",
        b"\n",
    ];
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match x % 5 {
            0 => v.extend((0..(x >> 8) % 40).map(|i| (x >> (i % 50)) as u8)),
            _ => v.extend_from_slice(words[(x >> 3) as usize % words.len()]),
        }
    }
    v.truncate(n);
    v
}

/// Every (class, level) the profile grammar names, in the probe's order.
fn candidates() -> Vec<(Class, i8)> {
    CLASSES
        .iter()
        .flat_map(|&c| {
            LEVEL_ORDER
                .into_iter()
                .filter(move |&l| c.has_level(l))
                .map(move |l| (c, l))
        })
        .collect()
}

#[test]
fn profile_roundtrip_and_rejects() {
    for level in LEVEL_ORDER {
        let p = Params {
            class: Class::V1_15_12,
            level,
            block_size: 1 << 20,
        };
        assert_eq!(Params::from_profile(&p.profile()), Some(p.clone()));
    }
    for (class, level) in candidates() {
        let p = Params {
            class,
            level,
            block_size: 262_144,
        };
        assert_eq!(
            p.profile(),
            format!("pgzip-1.2/kpflate-{}/{level}/262144", class.name())
        );
        assert_eq!(Params::from_profile(&p.profile()), Some(p.clone()));
    }
    for bad in [
        "pgzip-1.2/kpflate-1.18.2/0/1048576",
        "pgzip-1.2/kpflate-1.18.2/-2/1048576",
        "pgzip-1.2/kpflate-1.18.1/5/1048576",
        "pgzip-1.2/kpflate-1.15.12/5/1048576/",
        "pgzip-1.2/kpflate-1.15.12/05/1048576",
        "pgzip-1.2/kpflate-1.15.12/5/16384",
        "pgzip-1.2/kpflate-1.15.12/-1/1048576",
        "pgzip-1.2/kpflate-1.15.12/10/1048576",
        "pgzip-1.2/kpflate-9.9/5/1048576",
        "pgzip-1.2/kpflate-1.15.15/5/1048576",
        "pgzip-1.2/kpflate-1.15.15/6/1048576",
        "pgzip-1.2/kpflate-1.15.15/-2/1048576",
        "pgzip-1.2/kpflate-1.18.0/9/1048576",
        "pgzip-1.2/kpflate-1.18.2/10/1048576",
        "pgzip-1.2/kpflate-1.15.12/5/+1048576",
        "zlib-1.2/6",
        "",
    ] {
        assert_eq!(Params::from_profile(bad), None, "{bad}");
    }
}

#[test]
fn every_level_inflates_back() {
    let big = sample(700_000, 7);
    for (class, level) in candidates() {
        // The lazy levels are slow in unoptimised builds: a smaller input, still several blocks.
        let data = if level >= 7 { &big[..250_000] } else { &big[..] };
        for b in [100_000u64, 1 << 20] {
            let p = Params {
                class,
                level,
                block_size: b,
            };
            let raw = encode_all(&p, data);
            assert!(inflate(&raw) == data, "{}", p.profile());
            let found = probe(&raw, data, true);
            assert!(
                found.contains(&p) || found.iter().any(|q| q.level == p.level),
                "{} not in {found:?}",
                p.profile()
            );
        }
    }
}

/// 2.5 MiB of noise (Huffman-only chunks, the same bytes in both classes) and then text: the classes part
/// only after the probe's first 2 MiB, and each stream must still be named for its own class.
#[test]
fn probe_tells_classes_apart_after_the_first_2_mib() {
    let mut data = Vec::with_capacity(3 << 20);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    while data.len() < 5 << 19 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.extend_from_slice(&sample(600_000, 3));
    for level in [1i8, 5] {
        let [old, new] = [Class::V1_15_12, Class::V1_18_2].map(|class| Params {
            class,
            level,
            block_size: 1 << 20,
        });
        let (a, b) = (encode_all(&old, &data), encode_all(&new, &data));
        assert_eq!(a[..a.len() / 2], b[..a.len() / 2], "level {level}: same start");
        assert_ne!(a, b, "level {level}: different end");
        assert_eq!(probe(&a, &data, true).first(), Some(&old));
        assert_eq!(probe(&b, &data, true).first(), Some(&new));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn arbitrary_input_inflates_back(
        data in proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), any::<u8>()], 0..150_000),
        (class, level) in proptest::sample::select(candidates().into_iter().filter(|c| c.1 < 7).collect::<Vec<_>>()),
        block in proptest::sample::select(vec![16_385u64, 40_000, 1 << 20]),
    ) {
        let p = Params { class, level, block_size: block };
        let raw = encode_all(&p, &data);
        prop_assert_eq!(inflate(&raw), data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn lazy_levels_inflate_back(
        data in proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), any::<u8>()], 0..70_000),
        (class, level) in proptest::sample::select(candidates().into_iter().filter(|c| c.1 >= 7).collect::<Vec<_>>()),
        block in proptest::sample::select(vec![16_385u64, 40_000, 1 << 20]),
    ) {
        let p = Params { class, level, block_size: block };
        let raw = encode_all(&p, &data);
        prop_assert_eq!(inflate(&raw), data);
    }
}

/// The lazy levels' screen passes on their own output and rejects other levels' output, whether the first
/// block holds tokens or is stored (incompressible input).
#[test]
fn lazy_screen_accepts_own_rejects_others() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    for data in [sample(300_000, 11), noise] {
        lazy_screen_case(&data);
    }
}

fn lazy_screen_case(data: &[u8]) {
    for (class, level) in candidates().into_iter().filter(|c| c.1 >= 7) {
        let p = Params {
            class,
            level,
            block_size: 1 << 20,
        };
        let raw = encode_all(&p, data);
        assert!(lazy_screen(&p, &raw, data, true), "{}", p.profile());
        for other in [1i8, 5, 6] {
            let q = Params {
                class: Class::V1_15_12,
                level: other,
                block_size: 1 << 20,
            };
            assert!(
                !lazy_screen(&p, &encode_all(&q, data), data, true),
                "{} vs {other}",
                p.profile()
            );
        }
    }
}
