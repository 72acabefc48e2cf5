//! Streaming blob reads: the engine's verified reader (it rebuilds a layer from its DAG and
//! recipe as it goes, and fails at the end if the bytes do not hash to the digest).

use crate::boundary::{self, borrow, borrow_mut, out_handle, utf8};
use crate::status::Failure;
use crate::store::shp_store;
use std::ffi::{c_char, c_int};
use std::io::{ErrorKind, Read};

/// A blob being read. Not thread-safe: use one reader from one thread at a time (different
/// readers may be used from different threads at once).
pub struct shp_blob_reader {
    // The engine's owned reader: it keeps the store open itself (so the store handle may be freed
    // first), and it is `Send`, so C may move the reader between threads between calls.
    inner: Box<dyn Read + Send>,
    /// A read failed: every later read repeats the failure.
    failed: Option<Failure>,
}

/// Opens the blob with this digest for reading, from the start.
///
/// - `digest`: `sha256:<64 lowercase hex>`; borrowed for the call.
/// - `out`: receives the new reader (NULL on failure). The caller owns it and releases it with
///   `shp_blob_reader_free`; it holds a reference to the store, so the store handle may be freed
///   first.
///
/// Returns `SHP_OK`, `SHP_NOT_FOUND`, `SHP_INVALID_ARGUMENT`, `SHP_IO`, `SHP_CORRUPT`.
///
/// # Safety
/// `store` is NULL or a live handle; `digest` is NULL or NUL-terminated; `out` is NULL or points
/// to writable storage for a pointer.
#[no_mangle]
pub unsafe extern "C" fn shp_blob_reader_open(
    store: *mut shp_store,
    digest: *const c_char,
    out: *mut *mut shp_blob_reader,
) -> c_int {
    boundary::status(|| {
        // SAFETY: the caller's contract above.
        let (out, store, digest) = unsafe {
            (
                out_handle(out, "out")?,
                borrow(store, "store")?,
                utf8(digest, "digest")?,
            )
        };
        let inner = store.home.open_blob(digest)?;
        *out = Box::into_raw(Box::new(shp_blob_reader { inner, failed: None }));
        Ok(())
    })
}

/// Reads up to `len` bytes into `buf`. Returns the number of bytes read (> 0), 0 at the end of
/// the blob (the blob's digest has then been verified), or a negated status code on error:
/// `-SHP_CORRUPT` when the store gives back bytes that do not match the digest, `-SHP_IO`,
/// `-SHP_INVALID_ARGUMENT`. After an error every later read fails the same way. A `len` of 0
/// returns 0 without reading.
///
/// Ownership: `buf` is borrowed for the call.
///
/// # Safety
/// `reader` is NULL or a live reader used by no other thread; `buf` is NULL or points to `len`
/// writable bytes.
#[no_mangle]
pub unsafe extern "C" fn shp_blob_reader_read(reader: *mut shp_blob_reader, buf: *mut u8, len: usize) -> i64 {
    boundary::run(
        |s| -(s as i64),
        || {
            // SAFETY: the caller's contract above.
            let r = unsafe { borrow_mut(reader, "reader")? };
            if let Some(f) = &r.failed {
                return Err(f.clone());
            }
            if len == 0 {
                return Ok(0);
            }
            if buf.is_null() {
                return Err(Failure::invalid("buf is NULL"));
            }
            // The result must fit the i64 return value.
            let len = len.min(i64::MAX as usize);
            // SAFETY: non-NULL with len writable bytes, as the caller promises.
            let out = unsafe { std::slice::from_raw_parts_mut(buf, len) };
            loop {
                match r.inner.read(out) {
                    Ok(n) => return Ok(n as i64),
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let f = Failure::from(e);
                        r.failed = Some(f.clone());
                        return Err(f);
                    }
                }
            }
        },
    )
}

/// Releases a reader (whether or not it reached the end). NULL is fine.
///
/// # Safety
/// `reader` is NULL or a reader from `shp_blob_reader_open` not yet freed, used by no other
/// thread.
#[no_mangle]
pub unsafe extern "C" fn shp_blob_reader_free(reader: *mut shp_blob_reader) {
    boundary::void(|| {
        if !reader.is_null() {
            // SAFETY: a live reader from Box::into_raw, freed once, as the caller promises.
            drop(unsafe { Box::from_raw(reader) });
        }
    })
}
