//! The segment-cutting deflate decoder against zlib, on arbitrary bytes taken as a raw deflate
//! stream: never a panic, and when zlib decodes the bytes to the stream's end, the decoder gives
//! the very same data and stops at the same byte (what follows stays unread).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shp_core::inflate::{Inflater, Pushback};
use std::io::Read;

fuzz_target!(|data: &[u8]| {
    let mut z = flate2::Decompress::new(false);
    let mut want = Vec::with_capacity(1 << 22);
    let zlib = z.decompress_vec(data, &mut want, flate2::FlushDecompress::Finish);
    let zlib_ok = matches!(zlib, Ok(flate2::Status::StreamEnd));

    let mut input = Pushback::new(std::io::BufReader::with_capacity(512, data));
    let mut inf = Inflater::new();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let ours = loop {
        match inf.read(&mut input, &mut buf) {
            Ok((n, ended)) => {
                got.extend_from_slice(&buf[..n]);
                if ended {
                    break true;
                }
                if got.len() > 1 << 22 {
                    return; // beyond zlib's buffer above: not compared
                }
            }
            Err(_) => break false,
        }
    };
    if zlib_ok {
        assert!(ours, "zlib decodes this stream, the decoder must too");
        assert!(got == want, "decoded data differs from zlib's");
        let mut rest = Vec::new();
        input.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, &data[z.total_in() as usize..], "the decoder must stop where the stream ends");
    }
});
