//! The store handle, and the calls that need no stream: stat, list, whole-image import/export,
//! and images made of stored blobs (commit, top digest, resolve).

use crate::boundary::{self, borrow, out_handle, path, utf8};
use crate::status::{shp_status, Failure};
use crate::SHP_CID_BUF_LEN;
use shp_core::image::{ImageRoot, Progress};
use shp_core::reference::ImageRef;
use shp_core::{Cid, Home};
use std::collections::BTreeSet;
use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::Arc;

/// An open store (an shp home directory).
///
/// Thread safety: one handle may be used from any number of threads at once. Readers and writers
/// opened from it keep the store alive, so the handle may be freed while they are still in use.
pub struct shp_store {
    pub(crate) home: Arc<Home>,
}

// The handle is shared between threads: the engine's home must allow it (checked at compile time).
#[allow(dead_code)]
fn home_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Home>();
}

/// Opens the store in the directory `home`, creating the directory and an empty store if absent.
///
/// - `home`: a NUL-terminated path (any bytes the OS accepts); borrowed for the call.
/// - `out`: receives a new handle on success and NULL on failure. The caller owns the handle and
///   releases it with `shp_store_free`.
///
/// Returns `SHP_OK`, `SHP_INVALID_ARGUMENT` (NULL or empty argument), `SHP_IO` or `SHP_STORE`.
///
/// # Safety
/// `home` is NULL or a NUL-terminated string; `out` is NULL or points to writable storage for a
/// pointer.
#[no_mangle]
pub unsafe extern "C" fn shp_store_open(home: *const c_char, out: *mut *mut shp_store) -> c_int {
    boundary::status(|| {
        // SAFETY: the caller's contract above.
        let (out, dir) = unsafe { (out_handle(out, "out")?, path(home, "home")?) };
        let home = Home::init(dir)?;
        *out = Box::into_raw(Box::new(shp_store { home: Arc::new(home) }));
        Ok(())
    })
}

/// Releases a store handle. NULL is fine. Readers and writers opened from it stay usable.
///
/// # Safety
/// `store` is NULL or a handle from `shp_store_open` not yet freed; no other thread uses this
/// handle during or after the call.
#[no_mangle]
pub unsafe extern "C" fn shp_store_free(store: *mut shp_store) {
    boundary::void(|| {
        if !store.is_null() {
            // SAFETY: a live handle from Box::into_raw, freed once, as the caller promises.
            drop(unsafe { Box::from_raw(store) });
        }
    })
}

/// Compresses what the store wrote raw because its home defers compression at rest
/// (`shp init --compression zstd:LEVEL,deferred`): rewrites every loose pack compressed. Nothing is
/// removed or changed, so other handles, threads and processes may use the store meanwhile. For a
/// store that compresses as it writes there is nothing to do.
///
/// - `bytes_before`, `bytes_after`: NULL, or receive the bytes of the loose packs and of the pack
///   that replaced them (both 0 when there was nothing to compact).
///
/// Returns `SHP_OK`, `SHP_INVALID_ARGUMENT` (NULL store), `SHP_IO`, `SHP_CORRUPT` or `SHP_STORE`.
///
/// # Safety
/// `store` is NULL or a live handle; `bytes_before` and `bytes_after` are NULL or point to
/// writable `uint64_t`s.
#[no_mangle]
pub unsafe extern "C" fn shp_store_compact(
    store: *mut shp_store,
    bytes_before: *mut u64,
    bytes_after: *mut u64,
) -> c_int {
    boundary::status(|| {
        // SAFETY: the caller's contract above.
        let store = unsafe { borrow(store, "store")? };
        let s = store.home.compact()?;
        // SAFETY: as above: each is NULL or writable.
        unsafe {
            if let Some(b) = bytes_before.as_mut() {
                *b = s.bytes_before;
            }
            if let Some(a) = bytes_after.as_mut() {
                *a = s.bytes_after;
            }
        }
        Ok(())
    })
}

/// The size in bytes of the blob with this digest (`sha256:<64 lowercase hex>`), stored by a
/// writer or as part of any image in the store.
///
/// - `digest`: borrowed for the call.
/// - `size_out`: receives the size on success; untouched on failure.
///
/// Returns `SHP_OK`, `SHP_NOT_FOUND`, `SHP_INVALID_ARGUMENT` (NULL, malformed digest), `SHP_IO`,
/// `SHP_CORRUPT`.
///
/// # Safety
/// `store` is NULL or a live handle; `digest` is NULL or a NUL-terminated string; `size_out` is
/// NULL or points to a writable `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn shp_blob_stat(store: *mut shp_store, digest: *const c_char, size_out: *mut u64) -> c_int {
    boundary::status(|| {
        // SAFETY: the caller's contract above.
        let (store, digest) = unsafe { (borrow(store, "store")?, utf8(digest, "digest")?) };
        // SAFETY: as above.
        let size_out = unsafe { size_out.as_mut() }.ok_or_else(|| Failure::invalid("size_out is NULL"))?;
        *size_out = store.home.blob(digest)?.size;
        Ok(())
    })
}

/// Called by `shp_blob_list` once per digest. `digest` (`sha256:<hex>`, NUL-terminated) is
/// borrowed: valid only during the call; copy it to keep it. `ctx` is the caller's pointer,
/// passed through untouched. Return 0 to go on, anything else to stop. The callback may call
/// other `shp_*` functions (no lock is held), and must not unwind (C++ exceptions, longjmp).
pub type shp_digest_callback = Option<unsafe extern "C" fn(digest: *const c_char, ctx: *mut c_void) -> c_int>;

/// Calls `callback` once for each blob digest in the store, in ascending order: blobs stored by a
/// writer and the blobs (manifests, configs, layers) of every named or pinned image. The list is
/// a snapshot taken before the first call; blobs added meanwhile may be missed.
///
/// - `callback`: required; see `shp_digest_callback`.
/// - `ctx`: passed to every call; shp never dereferences it.
///
/// Returns `SHP_OK` after the last digest, `SHP_ABORTED` if the callback returned non-zero,
/// `SHP_INVALID_ARGUMENT`, `SHP_IO` or `SHP_CORRUPT`.
///
/// # Safety
/// `store` is NULL or a live handle; `callback` follows the contract of `shp_digest_callback`.
#[no_mangle]
pub unsafe extern "C" fn shp_blob_list(
    store: *mut shp_store,
    callback: shp_digest_callback,
    ctx: *mut c_void,
) -> c_int {
    boundary::status(|| {
        // SAFETY: the caller's contract above.
        let store = unsafe { borrow(store, "store")? };
        let callback = callback.ok_or_else(|| Failure::invalid("callback is NULL"))?;
        for d in blob_digests(&store.home)? {
            let c = CString::new(d)
                .map_err(|e| Failure::new(shp_status::SHP_CORRUPT, format!("refs hold a digest with a NUL: {e}")))?;
            // SAFETY: the callback's contract: a valid function taking a borrowed string and ctx.
            if unsafe { callback(c.as_ptr(), ctx) } != 0 {
                return Err(Failure::new(
                    shp_status::SHP_ABORTED,
                    "the callback stopped the listing",
                ));
            }
        }
        Ok(())
    })
}

/// Every digest `Home::blob` resolves: blob refs, then the blobs of every image a name or pin
/// keeps. (A listing of this kind belongs in shp-core; this walks its public API meanwhile.)
fn blob_digests(home: &Home) -> Result<BTreeSet<String>, Failure> {
    let refs = home.refs()?;
    let mut out: BTreeSet<String> = refs.blobs.keys().cloned().collect();
    let mut roots = BTreeSet::new();
    for s in refs.names.values().chain(refs.pins.iter()) {
        roots.insert(s.parse::<Cid>()?);
    }
    for root in roots {
        // Pins may hold DAGs that are not images (CAR imports): those hold no blobs by digest.
        let Ok(img) = ImageRoot::load(home.store(), &root) else {
            continue;
        };
        out.extend(img.blobs(home.store())?.iter().map(|b| b.node.digest_str()));
    }
    Ok(out)
}

fn no_progress(_: Progress) {}

/// Imports a whole image, as `shp push` does, and names it by the source's reference when it has
/// one (`oci:DIR:REF` → `REF`), else pins it.
///
/// - `source`: `"oci:DIR[:REF]"` or `"docker-archive:FILE[:NAME:TAG|:@INDEX]"`; borrowed.
/// - `cid_out`: NULL, or a buffer of `cap` ≥ `SHP_CID_BUF_LEN` bytes that receives the image's
///   root CID, NUL-terminated. Checked before anything is imported.
///
/// Returns `SHP_OK`, `SHP_INVALID_ARGUMENT` (bad reference), `SHP_BUFFER_TOO_SMALL`, `SHP_IO`,
/// `SHP_INVALID_INPUT`, `SHP_DIGEST_MISMATCH` (a blob does not match its descriptor). Nothing is
/// stored on failure.
///
/// # Safety
/// `store` is NULL or a live handle; `source` is NULL or NUL-terminated; `cid_out` is NULL or
/// points to `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn shp_image_import(
    store: *mut shp_store,
    source: *const c_char,
    cid_out: *mut c_char,
    cap: usize,
) -> c_int {
    boundary::status(|| {
        // SAFETY: the caller's contract above.
        let (store, source) = unsafe { (borrow(store, "store")?, utf8(source, "source")?) };
        boundary::check_buf(cid_out, cap, SHP_CID_BUF_LEN, "cid_out")?;
        let src: ImageRef = source.parse()?;
        let report = store.home.push(&src, None, &no_progress)?;
        // SAFETY: cid_out is NULL or holds cap bytes.
        unsafe { boundary::write_str(cid_out, cap, &report.import.root.to_string(), "cid_out") }
    })
}

/// Writes an image back out, bit-exact (the same blobs and digests it was imported with).
///
/// - `cid_or_name`: the image's root CID or a name it was given; borrowed.
/// - `dest`: `"oci:DIR[:REF]"` (created or added to) or `"docker-archive:FILE[:NAME:TAG]"`;
///   borrowed.
///
/// Returns `SHP_OK`, `SHP_NOT_FOUND`, `SHP_INVALID_ARGUMENT`, `SHP_IO`, `SHP_CORRUPT`.
///
/// # Safety
/// `store` is NULL or a live handle; `cid_or_name` and `dest` are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn shp_image_export(
    store: *mut shp_store,
    cid_or_name: *const c_char,
    dest: *const c_char,
) -> c_int {
    boundary::status(|| {
        // SAFETY: the caller's contract above.
        let (store, id, dest) = unsafe {
            (
                borrow(store, "store")?,
                utf8(cid_or_name, "cid_or_name")?,
                utf8(dest, "dest")?,
            )
        };
        let dest: ImageRef = dest.parse()?;
        store.home.pull(id, &dest, &no_progress)?;
        Ok(())
    })
}

/// Makes an image of a manifest or index whose blobs the store already holds (put with a blob
/// writer, or part of any image), and names it `name` (or pins it when `name` is NULL). This is
/// how a registry push or a containers/image destination ends: blobs first, then the manifest.
/// For an index, commit each child manifest's blobs first (the child manifests themselves may be
/// put as blobs or committed as images of their own).
///
/// - `manifest`, `len`: the manifest or index bytes, kept exactly as given (its digest is their
///   sha256); borrowed for the call.
/// - `media_type`: NULL or empty, or the type the client declared; without one the document's
///   own `mediaType` is used. Borrowed.
/// - `name`: NULL, or the name to give the image (replacing what the name pointed to). Borrowed.
/// - `cid_out`: NULL, or a buffer of `cap` ≥ `SHP_CID_BUF_LEN` bytes that receives the image's
///   root CID, NUL-terminated. Checked before anything is stored.
///
/// Returns `SHP_OK`, `SHP_INVALID_ARGUMENT` (NULL store or manifest, bad name, not UTF-8),
/// `SHP_INVALID_INPUT` (not a manifest or index, no media type, a blob it names is missing:
/// the message names the digest), `SHP_DIGEST_MISMATCH` (a stored blob's size differs from its
/// descriptor), `SHP_BUFFER_TOO_SMALL`, `SHP_IO`, `SHP_CORRUPT`. Nothing changes on failure.
///
/// # Safety
/// `store` is NULL or a live handle; `manifest` is NULL or points to `len` readable bytes;
/// `media_type` and `name` are NULL or NUL-terminated; `cid_out` is NULL or points to `cap`
/// writable bytes.
#[no_mangle]
pub unsafe extern "C" fn shp_image_commit(
    store: *mut shp_store,
    manifest: *const u8,
    len: usize,
    media_type: *const c_char,
    name: *const c_char,
    cid_out: *mut c_char,
    cap: usize,
) -> c_int {
    boundary::status(|| {
        // SAFETY: the caller's contract above.
        let store = unsafe { borrow(store, "store")? };
        if manifest.is_null() {
            return Err(Failure::invalid("manifest is NULL"));
        }
        // SAFETY: non-NULL with len readable bytes, as the caller promises.
        let manifest = unsafe { std::slice::from_raw_parts(manifest, len) };
        // SAFETY: NULL or NUL-terminated, as the caller promises.
        let media_type = unsafe { opt_utf8(media_type, "media_type")? };
        // SAFETY: as above.
        let name = unsafe { opt_utf8(name, "name")? };
        boundary::check_buf(cid_out, cap, SHP_CID_BUF_LEN, "cid_out")?;
        let report = store.home.commit_image(manifest, media_type, name)?;
        // SAFETY: cid_out is NULL or holds cap bytes.
        unsafe { boundary::write_str(cid_out, cap, &report.import.root.to_string(), "cid_out") }
    })
}

/// The digest of the manifest or index at the top of an image: what a registry serves for the
/// image's tag. Read the manifest itself with `shp_blob_reader_open` on that digest.
///
/// - `cid_or_name`: the image's root CID or a name it was given; borrowed.
/// - `digest_out`: NULL, or a buffer of `cap` ≥ `SHP_DIGEST_BUF_LEN` bytes that receives the
///   digest (`sha256:<hex>`), NUL-terminated.
///
/// Returns `SHP_OK`, `SHP_NOT_FOUND` (no such name or root), `SHP_INVALID_ARGUMENT`,
/// `SHP_BUFFER_TOO_SMALL`, `SHP_IO`, `SHP_CORRUPT` (the root is no image).
///
/// # Safety
/// `store` is NULL or a live handle; `cid_or_name` is NULL or NUL-terminated; `digest_out` is
/// NULL or points to `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn shp_image_top_digest(
    store: *mut shp_store,
    cid_or_name: *const c_char,
    digest_out: *mut c_char,
    cap: usize,
) -> c_int {
    boundary::status(|| {
        // SAFETY: the caller's contract above.
        let (store, id) = unsafe { (borrow(store, "store")?, utf8(cid_or_name, "cid_or_name")?) };
        boundary::check_buf(digest_out, cap, crate::SHP_DIGEST_BUF_LEN, "digest_out")?;
        let digest = store.home.top_digest(id)?;
        // SAFETY: digest_out is NULL or holds cap bytes.
        unsafe { boundary::write_str(digest_out, cap, &digest, "digest_out") }
    })
}

/// The root CID a name points to (or the CID itself, when the store holds that block).
///
/// - `cid_or_name`: borrowed.
/// - `cid_out`: NULL, or a buffer of `cap` ≥ `SHP_CID_BUF_LEN` bytes that receives the root CID,
///   NUL-terminated.
///
/// Returns `SHP_OK`, `SHP_NOT_FOUND`, `SHP_INVALID_ARGUMENT`, `SHP_BUFFER_TOO_SMALL`, `SHP_IO`.
///
/// # Safety
/// `store` is NULL or a live handle; `cid_or_name` is NULL or NUL-terminated; `cid_out` is NULL
/// or points to `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn shp_image_resolve(
    store: *mut shp_store,
    cid_or_name: *const c_char,
    cid_out: *mut c_char,
    cap: usize,
) -> c_int {
    boundary::status(|| {
        // SAFETY: the caller's contract above.
        let (store, id) = unsafe { (borrow(store, "store")?, utf8(cid_or_name, "cid_or_name")?) };
        boundary::check_buf(cid_out, cap, SHP_CID_BUF_LEN, "cid_out")?;
        let cid = store.home.resolve(id)?;
        // SAFETY: cid_out is NULL or holds cap bytes.
        unsafe { boundary::write_str(cid_out, cap, &cid.to_string(), "cid_out") }
    })
}

/// An optional string argument: NULL is `None`.
///
/// # Safety
/// As [`utf8`].
unsafe fn opt_utf8<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Failure> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated, as the caller promises.
    unsafe { utf8(p, what) }.map(Some)
}
