//! The panic boundary every entry point runs in, and the checks that turn C pointers into Rust
//! values. All raw-pointer reads of arguments happen through these helpers.

use crate::status::{clear_last_error, set_last_error, shp_status, Failure};
use std::any::Any;
use std::ffi::{c_char, c_int, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Runs one entry point's body: clears this thread's last error, catches panics (so nothing
/// unwinds into C and the host process is never aborted), records the message of a failure and
/// turns it into the entry point's return value with `fail`.
pub fn run<T>(fail: impl FnOnce(shp_status) -> T, body: impl FnOnce() -> Result<T, Failure>) -> T {
    clear_last_error();
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(v)) => v,
        Ok(Err(f)) => {
            set_last_error(&f.message);
            fail(f.status)
        }
        Err(payload) => {
            set_last_error(&format!(
                "shp panicked (a bug; please report it): {}",
                panic_text(&*payload)
            ));
            // A payload whose destructor panics again must not escape either.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            fail(shp_status::SHP_PANIC)
        }
    }
}

/// [`run`] for entry points that return a status code.
pub fn status(body: impl FnOnce() -> Result<(), Failure>) -> c_int {
    run(|s| s as c_int, || body().map(|()| shp_status::SHP_OK as c_int))
}

/// The boundary for entry points that return nothing (the `*_free` functions). Unlike [`run`]
/// it leaves this thread's last error alone, so C can free a handle between a failed call and
/// reading its message.
pub fn void(body: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(body)) {
        set_last_error(&format!(
            "shp panicked (a bug; please report it): {}",
            panic_text(&*payload)
        ));
        let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
    }
}

fn panic_text(p: &(dyn Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Borrows the object behind a handle.
///
/// # Safety
/// `p` is NULL or a pointer shp handed out for a `T` that has not been freed, and no other
/// thread uses it mutably for the lifetime `'a`.
pub unsafe fn borrow<'a, T>(p: *const T, what: &str) -> Result<&'a T, Failure> {
    // SAFETY: the caller promises a valid, live pointer when non-NULL.
    unsafe { p.as_ref() }.ok_or_else(|| Failure::invalid(format!("{what} is NULL")))
}

/// Borrows the object behind a handle mutably.
///
/// # Safety
/// As [`borrow`], and no other reference to it is live for `'a` (one thread at a time).
pub unsafe fn borrow_mut<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: the caller promises a valid, live, unaliased pointer when non-NULL.
    unsafe { p.as_mut() }.ok_or_else(|| Failure::invalid(format!("{what} is NULL")))
}

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives `'a`.
pub unsafe fn utf8<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated, as the caller promises.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map_err(|_| Failure::invalid(format!("{what} is not valid UTF-8")))
}

/// A NUL-terminated path argument (any bytes but NUL, as the OS allows).
///
/// # Safety
/// As [`utf8`].
pub unsafe fn path<'a>(p: *const c_char, what: &str) -> Result<&'a Path, Failure> {
    if p.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated, as the caller promises.
    let b = unsafe { CStr::from_ptr(p) }.to_bytes();
    if b.is_empty() {
        return Err(Failure::invalid(format!("{what} is empty")));
    }
    Ok(Path::new(OsStr::from_bytes(b)))
}

/// An out-parameter for a handle: checked for NULL and set to NULL until the call succeeds.
///
/// # Safety
/// `out` is NULL or points to writable storage for one pointer.
pub unsafe fn out_handle<'a, T>(out: *mut *mut T, what: &str) -> Result<&'a mut *mut T, Failure> {
    // SAFETY: the caller promises writable storage when non-NULL.
    let slot = unsafe { out.as_mut() }.ok_or_else(|| Failure::invalid(format!("{what} is NULL")))?;
    *slot = std::ptr::null_mut();
    Ok(slot)
}

/// An optional string output buffer: NULL means "not wanted"; otherwise it must hold `need`
/// bytes. Checked before the work is done, so a too-small buffer changes nothing.
pub fn check_buf(buf: *mut c_char, cap: usize, need: usize, what: &str) -> Result<(), Failure> {
    if !buf.is_null() && cap < need {
        return Err(Failure::new(
            shp_status::SHP_BUFFER_TOO_SMALL,
            format!("{what} holds {cap} bytes; it needs {need}"),
        ));
    }
    Ok(())
}

/// Copies `s` and a NUL into `buf` (a no-op when `buf` is NULL).
///
/// # Safety
/// `buf` is NULL or points to `cap` writable bytes.
pub unsafe fn write_str(buf: *mut c_char, cap: usize, s: &str, what: &str) -> Result<(), Failure> {
    if buf.is_null() {
        return Ok(());
    }
    check_buf(buf, cap, s.len() + 1, what)?;
    // SAFETY: `buf` has `cap` ≥ len + 1 writable bytes, and `s` cannot overlap a C buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), s.len());
        *buf.add(s.len()) = 0;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_a_status_and_a_message() {
        let rc = status(|| panic!("boom {}", 42));
        assert_eq!(rc, shp_status::SHP_PANIC as c_int);
        let msg = unsafe { CStr::from_ptr(crate::shp_last_error_message()) };
        assert!(msg.to_str().unwrap().contains("boom 42"), "{msg:?}");
        // The next successful call clears it.
        assert_eq!(status(|| Ok(())), 0);
        assert!(crate::shp_last_error_message().is_null());
    }

    #[test]
    fn buffers_are_checked_before_writing() {
        let mut b = [0x55 as c_char; 4];
        let e = unsafe { write_str(b.as_mut_ptr(), b.len(), "abcd", "out") }.unwrap_err();
        assert_eq!(e.status, shp_status::SHP_BUFFER_TOO_SMALL);
        assert_eq!(b, [0x55; 4]);
        unsafe { write_str(b.as_mut_ptr(), b.len(), "abc", "out") }.unwrap();
        assert_eq!(&b, b"abc\0".map(|c| c as c_char).as_slice());
        unsafe { write_str(std::ptr::null_mut(), 0, "abc", "out") }.unwrap();
    }
}
