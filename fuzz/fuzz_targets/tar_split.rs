//! `tar::split` keeps every byte: what it hands the sink, meta and file data concatenated in
//! order, is the input itself when it succeeds, and a prefix of the input when it fails.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shp_core::tar::{split, TarSink};
use shp_core::Result;
use std::io::{self, Read};

#[derive(Default)]
struct Concat {
    out: Vec<u8>,
    files: u64,
}

impl TarSink for Concat {
    fn meta(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    fn file(&mut self, size: u64, data: &mut dyn Read) -> Result<()> {
        // Reads exactly what the splitter offers; a short file surfaces as the splitter's error.
        let before = self.out.len();
        data.read_to_end(&mut self.out).map_err(shp_core::dag::unwrap_io)?;
        assert!(
            (self.out.len() - before) as u64 <= size,
            "sink was offered more than the file's size"
        );
        self.files += 1;
        Ok(())
    }
}

/// Hands the input out in small, uneven reads, as a network or decoder would.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
    n: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.n += 1;
        let k = buf.len().min(self.data.len()).min(1 + (self.n * self.step) % 701);
        buf[..k].copy_from_slice(&self.data[..k]);
        self.data = &self.data[k..];
        Ok(k)
    }
}

fn run(r: &mut dyn Read, data: &[u8]) -> Option<shp_core::tar::TarSummary> {
    let mut sink = Concat::default();
    match split(r, "fuzz", &mut sink) {
        Ok(summary) => {
            assert_eq!(sink.out, data, "split succeeded but lost or changed bytes");
            assert_eq!(summary.bytes, data.len() as u64);
            assert!(summary.files >= sink.files);
            Some(summary)
        }
        Err(_) => {
            assert!(
                data.starts_with(&sink.out),
                "split emitted bytes that are not the input's prefix"
            );
            None
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = run(&mut &data[..], data);
    // How the bytes arrive must not change the outcome.
    let trickled = run(&mut Trickle { data, step: 97, n: 0 }, data);
    assert_eq!(whole, trickled, "outcome depends on read sizes");
});
