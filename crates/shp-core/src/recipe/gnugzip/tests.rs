use super::*;
use proptest::prelude::*;

fn encode(level: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encoder(&Params { level }, data).read_to_end(&mut out).unwrap();
    out
}

fn inflate(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(raw).read_to_end(&mut out).unwrap();
    out
}

/// Text, noise, runs and zeros: every block type and both match loops get exercised.
fn sample(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let words: [&[u8]; 6] = [
        b"layer ",
        b"tar ",
        b"gzip ",
        b"deflate ",
        b"window\n",
        b"usr/share/doc/",
    ];
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        match rnd() % 5 {
            0 => (0..rnd() % 3000).for_each(|_| v.push(rnd() as u8)),
            1 => v.extend(std::iter::repeat_n(rnd() as u8, (rnd() % 5000) as usize)),
            _ => (0..rnd() % 400).for_each(|_| v.extend_from_slice(words[(rnd() % 6) as usize])),
        }
    }
    v.truncate(len);
    v
}

#[test]
fn profiles_round_trip_and_reject_junk() {
    for level in 1..=9 {
        let p = Params { level };
        assert_eq!(p.profile(), format!("gnugzip-1.12/{level}"));
        assert_eq!(Params::from_profile(&p.profile()), Some(p));
    }
    for bad in [
        "gnugzip-1.12/0",
        "gnugzip-1.12/10",
        "gnugzip-1.12/+6",
        "gnugzip-1.12/",
        "gnugzip-1.11/6",
        "zlib-1.2/6",
    ] {
        assert_eq!(Params::from_profile(bad), None, "{bad}");
    }
}

#[test]
fn every_level_inflates_back() {
    let data = sample(600_000, 3);
    for level in 1..=9 {
        assert_eq!(inflate(&encode(level, &data)), data, "level {level}");
    }
    for level in [1, 6, 9] {
        assert_eq!(inflate(&encode(level, b"")), b"", "empty, level {level}");
        assert_eq!(inflate(&encode(level, b"x")), b"x", "one byte, level {level}");
    }
}

#[test]
fn probe_finds_its_own_level_on_a_prefix() {
    let data = sample(2_500_000, 11);
    for level in [1, 4, 6, 9] {
        let raw = encode(level, &data);
        let stream = &raw[..raw.len().min(300_000)];
        let got = probe(stream, &data[..2_000_000], false);
        assert!(got.contains(&Params { level }), "level {level}: {got:?}");
        let whole = probe(&raw, &data, true);
        assert!(whole.contains(&Params { level }), "level {level}, complete: {whole:?}");
    }
}

#[test]
fn probe_decides_long_runs_with_more_data() {
    let data = vec![0u8; 3 << 20];
    let raw = encode(6, &data);
    let got = probe(&raw, &data, true);
    assert_eq!(got.first(), Some(&Params { level: 6 }), "{got:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn arbitrary_input_inflates_back(level in 1u32..=9, seed in any::<u64>(), len in 0usize..200_000,
                                     bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut data = sample(len, seed);
        data.extend_from_slice(&bytes);
        prop_assert_eq!(inflate(&encode(level, &data)), data);
    }
}
