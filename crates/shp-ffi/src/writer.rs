//! Streaming blob writes. Bytes are spooled to a temporary file under the home (the engine reads a
//! blob more than once when it has to fall back to opaque storage), and the commit hands the spool
//! to `Home::put_blob_file`, which imports it in place: it checks the digest, decides what the
//! blob is (`PutKind`) and decomposes layers like `shp push` does.

use crate::boundary::{self, borrow, borrow_mut, out_handle, utf8};
use crate::status::{shp_status, Failure};
use crate::store::shp_store;
use crate::SHP_DIGEST_BUF_LEN;
use shp_core::cid::{format_digest, parse_digest};
use shp_core::home::PutKind;
use shp_core::{Error, Home};
use std::ffi::{c_char, c_int};
use std::io::{BufWriter, Write};
use std::sync::Arc;
use tempfile::NamedTempFile;

/// What a writer decides a blob is, which decides how it is stored.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum shp_blob_kind {
    /// Decide by the first bytes: gzip or zstd magic, or a valid tar header, make a layer; anything
    /// else is kept verbatim. A blob that looks like a layer but is not one (a gzip file that holds
    /// no tar, a corrupt stream) is kept verbatim too, so any bytes can be stored. The default.
    SHP_BLOB_AUTO = 0,
    /// A layer (tar, tar+gzip, tar+zstd): decoded, chunked per file, rebuilt bit-exact. A blob
    /// that is not a valid layer is refused with `SHP_INVALID_INPUT`.
    SHP_BLOB_LAYER = 1,
    /// Anything else (manifest, config, index, artifact): chunked verbatim.
    SHP_BLOB_OTHER = 2,
}

/// A blob being written. Not thread-safe: use one writer from one thread at a time (different
/// writers may be used from different threads at once).
pub struct shp_blob_writer {
    home: Arc<Home>,
    expected: Option<String>,
    kind: shp_blob_kind,
    state: State,
}

enum State {
    Open(BufWriter<NamedTempFile>),
    /// A write failed: the spool's contents are unknown.
    Failed,
    /// Committed (successfully or not).
    Done,
}

/// Starts writing a blob, kind `SHP_BLOB_AUTO`. See `shp_blob_writer_new_kind`.
///
/// # Safety
/// As `shp_blob_writer_new_kind`.
#[no_mangle]
pub unsafe extern "C" fn shp_blob_writer_new(
    store: *mut shp_store,
    expected_digest: *const c_char,
    out: *mut *mut shp_blob_writer,
) -> c_int {
    // SAFETY: the same contract.
    unsafe { shp_blob_writer_new_kind(store, expected_digest, shp_blob_kind::SHP_BLOB_AUTO as c_int, out) }
}

/// Starts writing a blob.
///
/// - `expected_digest`: NULL, or the digest (`sha256:<64 lowercase hex>`) the content must have;
///   the commit fails with `SHP_DIGEST_MISMATCH` otherwise. Borrowed (copied) for the call.
/// - `kind`: one of `shp_blob_kind`.
/// - `out`: receives the new writer (NULL on failure). The caller owns it and releases it with
///   `shp_blob_writer_free`, committed or not; it holds a reference to the store, so the store
///   handle may be freed first.
///
/// Returns `SHP_OK`, `SHP_INVALID_ARGUMENT` (NULL store or out, malformed digest, unknown kind),
/// `SHP_IO`.
///
/// # Safety
/// `store` is NULL or a live handle; `expected_digest` is NULL or NUL-terminated; `out` is NULL
/// or points to writable storage for a pointer.
#[no_mangle]
pub unsafe extern "C" fn shp_blob_writer_new_kind(
    store: *mut shp_store,
    expected_digest: *const c_char,
    kind: c_int,
    out: *mut *mut shp_blob_writer,
) -> c_int {
    boundary::status(|| {
        // SAFETY: the caller's contract above.
        let (out, store) = unsafe { (out_handle(out, "out")?, borrow(store, "store")?) };
        let expected = if expected_digest.is_null() {
            None
        } else {
            // SAFETY: non-NULL and NUL-terminated.
            let d = unsafe { utf8(expected_digest, "expected_digest")? };
            parse_digest(d)?;
            Some(d.to_string())
        };
        let kind = match kind {
            0 => shp_blob_kind::SHP_BLOB_AUTO,
            1 => shp_blob_kind::SHP_BLOB_LAYER,
            2 => shp_blob_kind::SHP_BLOB_OTHER,
            k => return Err(Failure::invalid(format!("unknown blob kind {k}"))),
        };
        // The spool lives where the engine spools (swept by `shp gc` after a crash).
        let dir = store.home.dir().join("store").join("tmp");
        std::fs::create_dir_all(&dir).map_err(Error::Io)?;
        let spool = tempfile::Builder::new().prefix("ffi-spool-").tempfile_in(&dir)?;
        *out = Box::into_raw(Box::new(shp_blob_writer {
            home: store.home.clone(),
            expected,
            kind,
            state: State::Open(BufWriter::with_capacity(256 * 1024, spool)),
        }));
        Ok(())
    })
}

/// Appends `len` bytes from `buf` (borrowed for the call; NULL is fine when `len` is 0).
///
/// Returns `SHP_OK`, `SHP_INVALID_ARGUMENT` (NULL writer, or a writer already committed),
/// `SHP_IO` (after which the writer only fails).
///
/// # Safety
/// `writer` is NULL or a live writer used by no other thread; `buf` is NULL or points to `len`
/// readable bytes.
#[no_mangle]
pub unsafe extern "C" fn shp_blob_writer_write(writer: *mut shp_blob_writer, buf: *const u8, len: usize) -> c_int {
    boundary::status(|| {
        // SAFETY: the caller's contract above.
        let w = unsafe { borrow_mut(writer, "writer")? };
        let data: &[u8] = match (buf.is_null(), len) {
            (_, 0) => &[],
            (true, _) => return Err(Failure::invalid("buf is NULL")),
            // SAFETY: non-NULL with len readable bytes, as the caller promises.
            (false, n) => unsafe { std::slice::from_raw_parts(buf, n) },
        };
        let State::Open(spool) = &mut w.state else {
            return Err(w.finished());
        };
        if let Err(e) = spool.write_all(data) {
            w.state = State::Failed;
            return Err(Error::Io(e).into());
        }
        Ok(())
    })
}

/// Stores what was written: checks the digest, decomposes a layer, and records the blob under its
/// digest. The writer is finished afterwards, whatever the result; free it.
///
/// - `digest_out`: NULL, or a buffer of `cap` ≥ `SHP_DIGEST_BUF_LEN` bytes that receives the
///   blob's digest, NUL-terminated. Checked first: a too-small buffer fails with
///   `SHP_BUFFER_TOO_SMALL` and leaves the writer open.
///
/// Returns `SHP_OK`, `SHP_DIGEST_MISMATCH` (nothing stored), `SHP_INVALID_INPUT` (a
/// `SHP_BLOB_LAYER` blob that is no valid layer), `SHP_INVALID_ARGUMENT`, `SHP_BUFFER_TOO_SMALL`,
/// `SHP_IO`.
///
/// # Safety
/// `writer` is NULL or a live writer used by no other thread; `digest_out` is NULL or points to
/// `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn shp_blob_writer_commit(
    writer: *mut shp_blob_writer,
    digest_out: *mut c_char,
    cap: usize,
) -> c_int {
    boundary::status(|| {
        // SAFETY: the caller's contract above.
        let w = unsafe { borrow_mut(writer, "writer")? };
        if !matches!(w.state, State::Open(_)) {
            return Err(w.finished());
        }
        boundary::check_buf(digest_out, cap, SHP_DIGEST_BUF_LEN, "digest_out")?;
        let State::Open(spool) = std::mem::replace(&mut w.state, State::Done) else {
            unreachable!("checked above");
        };
        let spool = spool.into_inner().map_err(|e| Error::Io(e.into_error()))?;
        let digest = w.commit(spool)?;
        // SAFETY: digest_out is NULL or holds cap ≥ SHP_DIGEST_BUF_LEN bytes.
        unsafe { boundary::write_str(digest_out, cap, &digest, "digest_out") }
    })
}

/// Releases a writer; an uncommitted blob is discarded. NULL is fine.
///
/// # Safety
/// `writer` is NULL or a writer from `shp_blob_writer_new*` not yet freed, used by no other
/// thread.
#[no_mangle]
pub unsafe extern "C" fn shp_blob_writer_free(writer: *mut shp_blob_writer) {
    boundary::void(|| {
        if !writer.is_null() {
            // SAFETY: a live writer from Box::into_raw, freed once, as the caller promises.
            drop(unsafe { Box::from_raw(writer) });
        }
    })
}

impl shp_blob_writer {
    fn finished(&self) -> Failure {
        match self.state {
            State::Failed => Failure::new(shp_status::SHP_IO, "an earlier write to this blob writer failed"),
            _ => Failure::invalid("this blob writer is already committed"),
        }
    }

    fn commit(&self, spool: NamedTempFile) -> Result<String, Failure> {
        let kind = match self.kind {
            shp_blob_kind::SHP_BLOB_AUTO => PutKind::Auto,
            shp_blob_kind::SHP_BLOB_LAYER => PutKind::Layer,
            shp_blob_kind::SHP_BLOB_OTHER => PutKind::Other,
        };
        // The engine imports the spool in place (it reads it twice when it must fall back).
        let imported = self.home.put_blob_file(spool.path(), self.expected.as_deref(), kind)?;
        Ok(format_digest(&imported.digest))
        // `spool` drops here and removes the temporary file.
    }
}
