//! Private-network key files (`swarm.key`, `--net KEY`): arbitrary bytes never panic; a key that
//! parses prints as a file that parses back to the same key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shp_station::p2p::NetKey;

fuzz_target!(|data: &[u8]| {
    if let Ok(k) = NetKey::parse(data, "fuzz") {
        let text = k.to_file_text();
        assert_eq!(NetKey::parse(text.as_bytes(), "again").expect("printed key parses"), k);
    }
});
