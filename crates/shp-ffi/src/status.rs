//! Status codes, the per-thread last error message, and how `shp_core::Error` maps onto codes.

use shp_core::Error;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};

/// What an entry point returns. Functions declared `int` return one of these (`SHP_OK` on
/// success); `shp_blob_reader_read` returns one negated. Codes are stable; new ones may be added.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum shp_status {
    /// Success.
    SHP_OK = 0,
    /// The blob, image or name asked for is not in the store.
    SHP_NOT_FOUND = 1,
    /// A NULL where a pointer is needed, a string that is not UTF-8, a malformed digest, image
    /// reference or CID, or a handle used after it finished (a writer after commit).
    SHP_INVALID_ARGUMENT = 2,
    /// The content does not have the digest (or size) it was announced with. Nothing was stored.
    SHP_DIGEST_MISMATCH = 3,
    /// An operating-system I/O error (disk full, permission denied, no such file, ...).
    SHP_IO = 4,
    /// The store holds bad data: a block that does not hash to its CID, a missing block, a DAG
    /// node that breaks the schema, or a blob that rebuilds to other bytes than its digest.
    SHP_CORRUPT = 5,
    /// shp panicked (a bug). The process is fine, but the handles the call used may only be freed.
    SHP_PANIC = 6,
    /// Input shp refuses: a corrupt tar, gzip or zstd stream, a layer that expands past the
    /// limit, an invalid manifest or index, an image that lacks a blob its manifest names.
    SHP_INVALID_INPUT = 7,
    /// An output buffer is smaller than `SHP_DIGEST_BUF_LEN` / `SHP_CID_BUF_LEN`. Nothing was done.
    SHP_BUFFER_TOO_SMALL = 8,
    /// The store cannot be used: the directory is not an shp home, or another store-level failure.
    SHP_STORE = 9,
    /// `shp_blob_list` stopped because the callback returned non-zero.
    SHP_ABORTED = 10,
}

/// A failed call: its code and message.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The code the entry point returns.
    pub status: shp_status,
    /// What `shp_last_error_message` returns afterwards.
    pub message: String,
}

impl Failure {
    /// A failure with a code and message.
    pub fn new(status: shp_status, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    /// `SHP_INVALID_ARGUMENT` with a message.
    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(shp_status::SHP_INVALID_ARGUMENT, message)
    }
}

/// The code for an engine error. Errors from blocks the store holds are corruption; errors about
/// what the caller handed in are invalid input or arguments.
pub fn status_of(e: &Error) -> shp_status {
    use shp_status::*;
    match e {
        Error::Io(_) | Error::IoPath { .. } => SHP_IO,
        Error::InvalidCid(_) | Error::InvalidDigest(_) | Error::InvalidReference { .. } => SHP_INVALID_ARGUMENT,
        Error::ImageNotFound(_) | Error::BlobNotFound(_) => SHP_NOT_FOUND,
        Error::DigestMismatch { .. } => SHP_DIGEST_MISMATCH,
        Error::BlockNotFound { .. }
        | Error::CorruptBlock { .. }
        | Error::Cbor(_)
        | Error::Schema { .. }
        | Error::RebuildMismatch { .. } => SHP_CORRUPT,
        Error::BlockTooLarge { .. }
        | Error::Tar { .. }
        | Error::Compression { .. }
        | Error::TooLarge { .. }
        | Error::MissingBlob { .. }
        | Error::InvalidManifest { .. }
        | Error::Car(_) => SHP_INVALID_INPUT,
        _ => SHP_STORE,
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        // Readers hand engine errors through io::Error; take them back out first.
        let e = match e {
            Error::Io(io) => shp_core::dag::unwrap_io(io),
            e => e,
        };
        Failure::new(status_of(&e), e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::from(shp_core::dag::unwrap_io(e))
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Records this thread's last error message.
pub(crate) fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|l| *l.borrow_mut() = Some(c));
}

/// Forgets this thread's last error (every entry point starts with this).
pub(crate) fn clear_last_error() {
    let _ = LAST_ERROR.try_with(|l| l.borrow_mut().take());
}

/// The message of the last failed call made on this thread, or NULL if the last call succeeded.
///
/// Ownership: the string belongs to shp and stays valid until the next call on this thread of a
/// function that returns a status (the `*_free` functions, `shp_status_name` and this one leave
/// it alone, so a handle may be freed before the message is read); copy it to keep it. Never
/// free it.
///
/// Threading: the message is per OS thread. A caller whose calls may move between threads (Go's
/// goroutines) must read it on the thread that made the failed call: the Go package locks the
/// goroutine to its OS thread (`runtime.LockOSThread`) around each call and this read.
#[no_mangle]
pub extern "C" fn shp_last_error_message() -> *const c_char {
    LAST_ERROR
        .try_with(|l| l.borrow().as_ref().map_or(std::ptr::null(), |c| c.as_ptr()))
        .unwrap_or(std::ptr::null())
}

/// The name of a status code (`"SHP_NOT_FOUND"`), or `"SHP_UNKNOWN"` for a code this library
/// does not define.
///
/// Ownership: a static string; never free it.
#[no_mangle]
pub extern "C" fn shp_status_name(status: c_int) -> *const c_char {
    let s: &'static [u8] = match status {
        0 => b"SHP_OK\0",
        1 => b"SHP_NOT_FOUND\0",
        2 => b"SHP_INVALID_ARGUMENT\0",
        3 => b"SHP_DIGEST_MISMATCH\0",
        4 => b"SHP_IO\0",
        5 => b"SHP_CORRUPT\0",
        6 => b"SHP_PANIC\0",
        7 => b"SHP_INVALID_INPUT\0",
        8 => b"SHP_BUFFER_TOO_SMALL\0",
        9 => b"SHP_STORE\0",
        10 => b"SHP_ABORTED\0",
        _ => b"SHP_UNKNOWN\0",
    };
    s.as_ptr().cast()
}
