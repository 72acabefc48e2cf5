//! Recipe records from the DAG (untrusted: any store or CAR may carry them): decoding never
//! panics, and an accepted record encodes back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shp_core::cbor::decode;
use shp_core::recipe::Recipe;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = decode(data) {
        if let Ok(r) = Recipe::from_value(&v) {
            let again = Recipe::from_value(&r.to_value()).expect("a record it wrote decodes");
            assert_eq!(again, r);
        }
    }
});
