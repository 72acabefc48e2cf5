// Package shp is the Go binding of shp's C API (include/shp.h, libshp_ffi.a): a content store of
// container image blobs keyed by their OCI digest, and whole-image import/export.
//
// Build the library first (cargo build --release -p shp-ffi at the repository root); this
// package links target/release/libshp_ffi.a statically and needs no other environment.
//
// Errors: every failure is an *Error carrying the C status code and message; match kinds with
// errors.Is(err, ErrNotFound), ErrDigestMismatch, ErrInvalidArgument, ErrInvalidInput, ErrCorrupt,
// ErrClosed.
// The C library keeps the last error message per OS thread, so each call locks its goroutine to
// the OS thread (runtime.LockOSThread) for the call and the read of the message.
//
// Concurrency: a *Store is safe for concurrent use by many goroutines. A reader returned by
// GetBlob is used by one goroutine at a time.
package shp

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: ${SRCDIR}/../../target/release/libshp_ffi.a -lz -lzstd -lgcc_s -lutil -lrt -lpthread -lm -ldl
#include <stdint.h>
#include <stdlib.h>
#include "shp.h"

// Defined in Go (list.go); receives each digest of shp_blob_list.
extern int shpGoDigest(char *digest, uintptr_t ctx);

static int shp_go_digest_cb(const char *digest, void *ctx) {
	return shpGoDigest((char *)digest, (uintptr_t)ctx);
}

// shp_blob_list with the Go callback; ctx is a cgo.Handle, passed as an integer.
static int shp_go_blob_list(shp_store *s, uintptr_t handle) {
	return shp_blob_list(s, shp_go_digest_cb, (void *)handle);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/cgo"
	"sync"
	"unsafe"
)

// Status is a status code of the C API (shp_status).
type Status int

// The C API's status codes.
const (
	StatusOK              Status = C.SHP_OK
	StatusNotFound        Status = C.SHP_NOT_FOUND
	StatusInvalidArgument Status = C.SHP_INVALID_ARGUMENT
	StatusDigestMismatch  Status = C.SHP_DIGEST_MISMATCH
	StatusIO              Status = C.SHP_IO
	StatusCorrupt         Status = C.SHP_CORRUPT
	StatusPanic           Status = C.SHP_PANIC
	StatusInvalidInput    Status = C.SHP_INVALID_INPUT
	StatusBufferTooSmall  Status = C.SHP_BUFFER_TOO_SMALL
	StatusStore           Status = C.SHP_STORE
	StatusAborted         Status = C.SHP_ABORTED
)

func (s Status) String() string { return C.GoString(C.shp_status_name(C.int(s))) }

// HeaderVersion is the version of the C header this package was compiled with (SHP_VERSION).
const HeaderVersion = C.SHP_VERSION

// Version is the version of the libshp_ffi linked (shp_version()). It equals HeaderVersion when
// the library and the header come from the same build.
func Version() string { return C.GoString(C.shp_version()) }

// Sentinel errors; an *Error matches the one of its status with errors.Is.
var (
	// ErrNotFound: the blob or image is not in the store.
	ErrNotFound = errors.New("shp: not found")
	// ErrDigestMismatch: content did not match the digest it was put under; nothing was stored.
	ErrDigestMismatch = errors.New("shp: digest mismatch")
	// ErrInvalidArgument: a malformed digest, name or image reference.
	ErrInvalidArgument = errors.New("shp: invalid argument")
	// ErrCorrupt: the store gave back bytes that do not match their digest.
	ErrCorrupt = errors.New("shp: store corrupt")
	// ErrInvalidInput: content shp refuses (not a manifest, a blob a manifest names is missing,
	// a corrupt layer put as a layer).
	ErrInvalidInput = errors.New("shp: invalid input")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("shp: store closed")
)

// Error is a failed call of the C API.
type Error struct {
	Op      string // what was being done, e.g. "stat sha256:…"
	Status  Status // the C status code
	Message string // the C library's message
}

func (e *Error) Error() string { return fmt.Sprintf("shp: %s: %s", e.Op, e.Message) }

// Is matches the sentinel error of the status.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == StatusNotFound
	case ErrDigestMismatch:
		return e.Status == StatusDigestMismatch
	case ErrInvalidArgument:
		return e.Status == StatusInvalidArgument
	case ErrCorrupt:
		return e.Status == StatusCorrupt
	case ErrInvalidInput:
		return e.Status == StatusInvalidInput
	}
	return false
}

// call runs one C call that returns a status, and reads its message on the same OS thread.
func call(op string, f func() C.int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return check(op, int64(f()))
}

// check turns a status (or a negated status from a read) into an error. The caller holds the OS
// thread the status came from.
func check(op string, rc int64) error {
	if rc == 0 {
		return nil
	}
	if rc < 0 {
		rc = -rc
	}
	msg := "(no message)"
	if m := C.shp_last_error_message(); m != nil {
		msg = C.GoString(m)
	}
	return &Error{Op: op, Status: Status(rc), Message: msg}
}

// Store is an open shp store. Safe for concurrent use.
type Store struct {
	mu sync.RWMutex
	p  *C.shp_store
}

// Open opens the store in the directory home, creating it if absent.
func Open(home string) (*Store, error) {
	ch := C.CString(home)
	defer C.free(unsafe.Pointer(ch))
	var p *C.shp_store
	if err := call("open "+home, func() C.int { return C.shp_store_open(ch, &p) }); err != nil {
		return nil, err
	}
	s := &Store{p: p}
	runtime.SetFinalizer(s, (*Store).Close)
	return s, nil
}

// Close releases the store, after the calls in progress return. Readers from GetBlob stay
// usable; later calls fail with ErrClosed. Closing twice is fine.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil {
		C.shp_store_free(s.p)
		s.p = nil
	}
	return nil
}

// use runs f with the C handle while holding the store open.
func (s *Store) use(f func(p *C.shp_store) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.p == nil {
		return ErrClosed
	}
	return f(s.p)
}

const bufSize = 1 << 20

var buffers = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// PutBlob stores the content of r under digest ("sha256:<hex>"). The content must have that
// digest (else ErrDigestMismatch, and nothing is stored). Layers (tar, tar+gzip, tar+zstd) are
// decomposed and deduplicated; anything else is kept verbatim.
func (s *Store) PutBlob(digest string, r io.Reader) error {
	if digest == "" {
		return &Error{Op: "put", Status: StatusInvalidArgument, Message: "no digest (WriteBlob takes none)"}
	}
	_, _, err := s.WriteBlob(r, digest)
	return err
}

// WriteBlob stores the content of r like PutBlob, and returns its digest and size. digest may be
// "" when it is not known in advance: the content's own digest is used.
func (s *Store) WriteBlob(r io.Reader, digest string) (string, int64, error) {
	op := "put " + digest
	var cd *C.char
	if digest != "" {
		cd = C.CString(digest)
		defer C.free(unsafe.Pointer(cd))
	} else {
		op = "put (digest unknown)"
	}
	var size int64
	var out [C.SHP_DIGEST_BUF_LEN]C.char
	err := s.use(func(p *C.shp_store) error {
		var w *C.shp_blob_writer
		if err := call(op, func() C.int { return C.shp_blob_writer_new(p, cd, &w) }); err != nil {
			return err
		}
		defer C.shp_blob_writer_free(w)
		bp := buffers.Get().(*[]byte)
		defer buffers.Put(bp)
		buf := *bp
		for {
			n, rerr := r.Read(buf)
			if n > 0 {
				err := call(op, func() C.int {
					return C.shp_blob_writer_write(w, (*C.uint8_t)(unsafe.Pointer(&buf[0])), C.size_t(n))
				})
				if err != nil {
					return err
				}
				size += int64(n)
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				return fmt.Errorf("shp: %s: reading the content: %w", op, rerr)
			}
		}
		return call(op, func() C.int { return C.shp_blob_writer_commit(w, &out[0], C.size_t(len(out))) })
	})
	if err != nil {
		return "", 0, err
	}
	return C.GoString(&out[0]), size, nil
}

// GetBlob opens the blob with this digest. The reader verifies the content: a read at the end
// fails (ErrCorrupt) rather than returning io.EOF if the bytes do not match the digest. Close it.
func (s *Store) GetBlob(digest string) (io.ReadCloser, error) {
	op := "get " + digest
	cd := C.CString(digest)
	defer C.free(unsafe.Pointer(cd))
	var r *C.shp_blob_reader
	err := s.use(func(p *C.shp_store) error {
		return call(op, func() C.int { return C.shp_blob_reader_open(p, cd, &r) })
	})
	if err != nil {
		return nil, err
	}
	br := &blobReader{p: r, op: op}
	runtime.SetFinalizer(br, (*blobReader).Close)
	return br, nil
}

// StatBlob returns the size of the blob with this digest.
func (s *Store) StatBlob(digest string) (int64, error) {
	cd := C.CString(digest)
	defer C.free(unsafe.Pointer(cd))
	var size C.uint64_t
	err := s.use(func(p *C.shp_store) error {
		return call("stat "+digest, func() C.int { return C.shp_blob_stat(p, cd, &size) })
	})
	return int64(size), err
}

// ListBlobs returns the digest of every blob in the store, sorted: blobs put by PutBlob and the
// blobs of every imported image.
func (s *Store) ListBlobs() ([]string, error) {
	var out []string
	h := cgo.NewHandle(func(d string) bool { out = append(out, d); return true })
	defer h.Delete()
	err := s.use(func(p *C.shp_store) error {
		return call("list", func() C.int { return C.shp_go_blob_list(p, C.uintptr_t(h)) })
	})
	return out, err
}

// ImportImage imports a whole image from source ("oci:DIR[:REF]" or
// "docker-archive:FILE[:NAME:TAG]") and returns its root CID. The image is named by REF when the
// source has one.
func (s *Store) ImportImage(source string) (string, error) {
	cs := C.CString(source)
	defer C.free(unsafe.Pointer(cs))
	var cid [C.SHP_CID_BUF_LEN]C.char
	err := s.use(func(p *C.shp_store) error {
		return call("import "+source, func() C.int {
			return C.shp_image_import(p, cs, &cid[0], C.size_t(len(cid)))
		})
	})
	if err != nil {
		return "", err
	}
	return C.GoString(&cid[0]), nil
}

// ExportImage writes the image ref (a root CID or a name) to dest ("oci:DIR[:REF]" or
// "docker-archive:FILE[:NAME:TAG]"), bit-exact.
func (s *Store) ExportImage(ref, dest string) error {
	cr, cd := C.CString(ref), C.CString(dest)
	defer C.free(unsafe.Pointer(cr))
	defer C.free(unsafe.Pointer(cd))
	return s.use(func(p *C.shp_store) error {
		return call("export "+ref+" to "+dest, func() C.int { return C.shp_image_export(p, cr, cd) })
	})
}

// blobReader streams a blob from the C reader.
type blobReader struct {
	mu sync.Mutex
	p  *C.shp_blob_reader
	op string
}

func (r *blobReader) Read(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p == nil {
		return 0, fmt.Errorf("shp: %s: read after Close", r.op)
	}
	if len(b) == 0 {
		return 0, nil
	}
	return r.read(b)
}

// read does one C read; the caller holds r.mu.
func (r *blobReader) read(b []byte) (int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n := int64(C.shp_blob_reader_read(r.p, (*C.uint8_t)(unsafe.Pointer(&b[0])), C.size_t(len(b))))
	switch {
	case n > 0:
		return int(n), nil
	case n == 0:
		return 0, io.EOF
	default:
		return 0, check(r.op, n)
	}
}

// WriteTo copies the rest of the blob to w in large pieces (io.Copy uses it).
func (r *blobReader) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p == nil {
		return 0, fmt.Errorf("shp: %s: read after Close", r.op)
	}
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := r.read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Close releases the reader. Closing twice is fine.
func (r *blobReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p != nil {
		C.shp_blob_reader_free(r.p)
		r.p = nil
	}
	return nil
}

// CommitImage makes an image of a manifest or index whose blobs the store already holds (put
// with PutBlob, or part of any image) and names it name ("" pins it instead). This is how a push
// ends: blobs first, then the manifest. The manifest bytes are kept exactly as given; mediaType
// is the declared type ("" uses the document's own mediaType). A missing blob fails the call
// (its digest is in the message) and changes nothing. Returns the image's root CID.
func (s *Store) CommitImage(manifest []byte, mediaType, name string) (string, error) {
	if len(manifest) == 0 {
		return "", &Error{Op: "commit", Status: StatusInvalidArgument, Message: "the manifest is empty"}
	}
	var cmt, cname *C.char
	if mediaType != "" {
		cmt = C.CString(mediaType)
		defer C.free(unsafe.Pointer(cmt))
	}
	if name != "" {
		cname = C.CString(name)
		defer C.free(unsafe.Pointer(cname))
	}
	// Borrowed by C for the call only (cgo allows a Go pointer to memory without Go pointers).
	cm := (*C.uint8_t)(unsafe.Pointer(&manifest[0]))
	var cid [C.SHP_CID_BUF_LEN]C.char
	err := s.use(func(p *C.shp_store) error {
		return call("commit "+name, func() C.int {
			return C.shp_image_commit(p, cm, C.size_t(len(manifest)), cmt, cname, &cid[0],
				C.size_t(len(cid)))
		})
	})
	if err != nil {
		return "", err
	}
	return C.GoString(&cid[0]), nil
}

// TopDigest returns the digest of the manifest or index at the top of the image ref (a root CID
// or a name): what a registry serves for the tag. GetBlob on it reads the manifest.
func (s *Store) TopDigest(ref string) (string, error) {
	cr := C.CString(ref)
	defer C.free(unsafe.Pointer(cr))
	var d [C.SHP_DIGEST_BUF_LEN]C.char
	err := s.use(func(p *C.shp_store) error {
		return call("top digest of "+ref, func() C.int {
			return C.shp_image_top_digest(p, cr, &d[0], C.size_t(len(d)))
		})
	})
	if err != nil {
		return "", err
	}
	return C.GoString(&d[0]), nil
}

// Resolve returns the root CID the name ref points to (or ref itself, when it is a CID the
// store holds).
func (s *Store) Resolve(ref string) (string, error) {
	cr := C.CString(ref)
	defer C.free(unsafe.Pointer(cr))
	var cid [C.SHP_CID_BUF_LEN]C.char
	err := s.use(func(p *C.shp_store) error {
		return call("resolve "+ref, func() C.int { return C.shp_image_resolve(p, cr, &cid[0], C.size_t(len(cid))) })
	})
	if err != nil {
		return "", err
	}
	return C.GoString(&cid[0]), nil
}
