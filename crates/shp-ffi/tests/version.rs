//! The version a C or Go program sees, from the library and from the header, is the crate version.
//! The header's copies are literals (cbindgen evaluates nothing), so these tests are what keeps them
//! from drifting when the version changes; scripts/check-header.sh keeps the header generated.

use shp_ffi::*;
use std::ffi::CStr;

const CRATE_VERSION: &str = env!("CARGO_PKG_VERSION");

fn crate_parts() -> [u32; 3] {
    [
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
    ]
    .map(|p| p.parse().unwrap())
}

#[test]
fn shp_version_is_the_crate_version() {
    let p = shp_version();
    assert!(!p.is_null());
    let linked = unsafe { CStr::from_ptr(p) }.to_str().unwrap();
    assert_eq!(linked, CRATE_VERSION);
    // Static: the same pointer every time, still valid after other calls.
    assert_eq!(shp_version(), p);
}

#[test]
fn version_constants_are_the_crate_version() {
    assert_eq!(
        [SHP_VERSION_MAJOR, SHP_VERSION_MINOR, SHP_VERSION_PATCH],
        crate_parts(),
        "SHP_VERSION_MAJOR/MINOR/PATCH in src/version.rs are not the crate version {CRATE_VERSION}: \
         update them and run scripts/check-header.sh --write"
    );
}

/// The value of `#define NAME VALUE` in the committed header.
fn header_define(header: &str, name: &str) -> String {
    let prefix = format!("#define {name} ");
    let mut found = header.lines().filter_map(|l| l.strip_prefix(&prefix));
    let value = found
        .next()
        .unwrap_or_else(|| panic!("include/shp.h defines no {name}"));
    assert!(found.next().is_none(), "include/shp.h defines {name} twice");
    value.trim().to_string()
}

#[test]
fn header_version_macros_are_the_crate_version() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../include/shp.h");
    let header = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(
        header_define(&header, "SHP_VERSION"),
        format!("\"{CRATE_VERSION}\""),
        "SHP_VERSION in include/shp.h is not the crate version: update `after_includes` in \
         crates/shp-ffi/cbindgen.toml and run scripts/check-header.sh --write"
    );
    let parts = ["SHP_VERSION_MAJOR", "SHP_VERSION_MINOR", "SHP_VERSION_PATCH"]
        .map(|name| header_define(&header, name).parse::<u32>().unwrap());
    assert_eq!(
        parts,
        crate_parts(),
        "SHP_VERSION_MAJOR/MINOR/PATCH in include/shp.h are not the crate version {CRATE_VERSION}: \
         run scripts/check-header.sh --write"
    );
}
