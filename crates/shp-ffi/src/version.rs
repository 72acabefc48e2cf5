//! The library's version, so that a program can check the library it linked against the header
//! it was compiled with.

use std::ffi::c_char;

// The header's `SHP_VERSION` string is written in cbindgen.toml (`after_includes`), as cbindgen
// copies no string constants, and the numbers below are literals, as cbindgen evaluates nothing.
// tests/version.rs fails when any of them is not the crate version.

/// The major part of `SHP_VERSION`.
pub const SHP_VERSION_MAJOR: u32 = 0;

/// The minor part of `SHP_VERSION`.
pub const SHP_VERSION_MINOR: u32 = 1;

/// The patch part of `SHP_VERSION`.
pub const SHP_VERSION_PATCH: u32 = 0;

/// The version of the library linked (`"0.1.0"`): equal to `SHP_VERSION` when header and
/// library come from the same build.
///
/// Ownership: a static NUL-terminated string; never free it. Leaves the last error message alone.
#[no_mangle]
pub extern "C" fn shp_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
