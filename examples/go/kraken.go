package shp

// A storage backend with the shape of Uber Kraken's backend.Client (lib/backend): Kraken cannot
// be built here, so its types are mirrored in this package. A Kraken build wraps KrakenBackend in
// a backend.ClientFactory; names are sha256 hex digests, as Kraken's blob namespaces use them.

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// ErrBlobNotFound is what Kraken's backenderrors.ErrBlobNotFound stands for: ErrNotFound.
var ErrBlobNotFound = ErrNotFound

// BlobInfo mirrors Kraken's core.BlobInfo.
type BlobInfo struct {
	Size int64
}

// ListResult mirrors Kraken's backend.ListResult.
type ListResult struct {
	Names             []string
	ContinuationToken string
}

// ListOptions mirrors Kraken's backend.ListOptions.
type ListOptions struct {
	Paginated         bool
	MaxKeys           int64
	ContinuationToken string
}

// DefaultListMaxKeys mirrors Kraken's backend.DefaultListMaxKeys.
const DefaultListMaxKeys = 250

// ListOption mirrors Kraken's backend.ListOption.
type ListOption func(*ListOptions)

// ListWithPagination turns pagination on.
func ListWithPagination() ListOption { return func(o *ListOptions) { o.Paginated = true } }

// ListWithMaxKeys sets the page size (with pagination).
func ListWithMaxKeys(max int64) ListOption { return func(o *ListOptions) { o.MaxKeys = max } }

// ListWithContinuationToken continues a paginated listing.
func ListWithContinuationToken(token string) ListOption {
	return func(o *ListOptions) { o.ContinuationToken = token }
}

// BackendClient is the method set of Kraken's backend.Client.
type BackendClient interface {
	Stat(namespace, name string) (*BlobInfo, error)
	Upload(namespace, name string, src io.Reader) error
	Download(namespace, name string, dst io.Writer) error
	List(prefix string, opts ...ListOption) (*ListResult, error)
}

var _ BackendClient = (*KrakenBackend)(nil)

// KrakenBackend stores Kraken blobs in a Store. Safe for concurrent use.
type KrakenBackend struct {
	store *Store
}

// NewKrakenBackend serves Kraken's backend calls from s. Namespaces share one store: content is
// addressed by digest, so a blob uploaded under one namespace is found under every other.
func NewKrakenBackend(s *Store) *KrakenBackend { return &KrakenBackend{store: s} }

func digestOf(name string) (string, error) {
	if len(name) != 64 || strings.Trim(name, "0123456789abcdef") != "" {
		return "", &Error{Op: "kraken", Status: StatusInvalidArgument,
			Message: fmt.Sprintf("name %q is not a sha256 hex digest", name)}
	}
	return "sha256:" + name, nil
}

// Stat returns the blob's size, or ErrBlobNotFound.
func (k *KrakenBackend) Stat(namespace, name string) (*BlobInfo, error) {
	d, err := digestOf(name)
	if err != nil {
		return nil, err
	}
	size, err := k.store.StatBlob(d)
	if err != nil {
		return nil, err
	}
	return &BlobInfo{Size: size}, nil
}

// Upload stores src under name; the content must hash to name.
func (k *KrakenBackend) Upload(namespace, name string, src io.Reader) error {
	d, err := digestOf(name)
	if err != nil {
		return err
	}
	return k.store.PutBlob(d, src)
}

// Download writes the blob to dst, or returns ErrBlobNotFound.
func (k *KrakenBackend) Download(namespace, name string, dst io.Writer) error {
	d, err := digestOf(name)
	if err != nil {
		return err
	}
	r, err := k.store.GetBlob(d)
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(dst, r)
	return err
}

// List returns the names (sha256 hex) that start with prefix, sorted. With ListWithPagination,
// at most MaxKeys names per call, and a ContinuationToken to pass back for the next page (empty
// on the last page).
func (k *KrakenBackend) List(prefix string, opts ...ListOption) (*ListResult, error) {
	o := ListOptions{MaxKeys: DefaultListMaxKeys}
	for _, opt := range opts {
		opt(&o)
	}
	digests, err := k.store.ListBlobs()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, d := range digests {
		if n := strings.TrimPrefix(d, "sha256:"); n != d && strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if !o.Paginated {
		return &ListResult{Names: names}, nil
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = DefaultListMaxKeys
	}
	// The token is the last name of the previous page.
	start := sort.SearchStrings(names, o.ContinuationToken)
	if o.ContinuationToken != "" && start < len(names) && names[start] == o.ContinuationToken {
		start++
	}
	end := start + int(o.MaxKeys)
	if end >= len(names) {
		return &ListResult{Names: names[start:]}, nil
	}
	return &ListResult{Names: names[start:end], ContinuationToken: names[end-1]}, nil
}
