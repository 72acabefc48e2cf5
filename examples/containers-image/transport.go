package main

// The shp transport for containers/image: "shp:HOME:NAME".
//
//   HOME  the shp home directory (an absolute path without ':'); created when absent.
//   NAME  the image's shp name (it may hold ':', e.g. "busybox:1"); when reading, a root CID
//         works too. A destination needs a name: the copied image is given it at Commit.
//
// Destination: PutBlob streams into an shp blob writer (the digest is checked by shp),
// TryReusingBlob asks the store whether it holds the digest, PutManifest keeps child manifests
// of an index as blobs under their instance digest and remembers the top manifest, and Commit
// calls CommitImage (blobs first, then the manifest), which names the image: nothing is named
// before Commit. Signatures are not stored: a copy that carries some fails, one without passes.
// Source: GetManifest reads the top manifest by name (TopDigest, then the blob) or a child by its
// instance digest; GetBlob streams the verified blob.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/containers/image/v5/docker/reference"
	"github.com/containers/image/v5/image"
	"github.com/containers/image/v5/manifest"
	"github.com/containers/image/v5/transports"
	"github.com/containers/image/v5/types"
	"github.com/opencontainers/go-digest"

	"shp"
)

func init() {
	transports.Register(Transport)
}

// Transport is the "shp" ImageTransport.
var Transport = shpTransport{}

type shpTransport struct{}

func (shpTransport) Name() string { return "shp" }

// ParseReference parses "HOME:NAME".
func (shpTransport) ParseReference(ref string) (types.ImageReference, error) {
	return ParseReference(ref)
}

// ValidatePolicyConfigurationScope accepts an absolute home, optionally with ":NAME".
func (shpTransport) ValidatePolicyConfigurationScope(scope string) error {
	home := scope
	if i := strings.IndexByte(scope, ':'); i >= 0 {
		home = scope[:i]
	}
	if !filepath.IsAbs(home) || filepath.Clean(home) != home {
		return fmt.Errorf("shp: policy scope %q: the home must be an absolute, clean path", scope)
	}
	return nil
}

// shpReference is "HOME:NAME".
type shpReference struct {
	home, name string
}

// ParseReference parses "HOME:NAME" (HOME made absolute).
func ParseReference(ref string) (types.ImageReference, error) {
	i := strings.IndexByte(ref, ':')
	if i <= 0 || i == len(ref)-1 {
		return nil, fmt.Errorf("shp: invalid reference %q: want HOME:NAME", ref)
	}
	home, err := filepath.Abs(ref[:i])
	if err != nil {
		return nil, fmt.Errorf("shp: invalid reference %q: %w", ref, err)
	}
	return shpReference{home: home, name: ref[i+1:]}, nil
}

func (r shpReference) Transport() types.ImageTransport  { return Transport }
func (r shpReference) StringWithinTransport() string    { return r.home + ":" + r.name }
func (r shpReference) DockerReference() reference.Named { return nil }
func (r shpReference) PolicyConfigurationIdentity() string {
	return r.home + ":" + r.name
}

func (r shpReference) PolicyConfigurationNamespaces() []string {
	var out []string
	for d := r.home; ; d = filepath.Dir(d) {
		out = append(out, d)
		if d == "/" {
			return out
		}
	}
}

func (r shpReference) NewImage(ctx context.Context, sys *types.SystemContext) (types.ImageCloser, error) {
	src, err := r.NewImageSource(ctx, sys)
	if err != nil {
		return nil, err
	}
	return image.FromSource(ctx, sys, src)
}

func (r shpReference) NewImageSource(ctx context.Context, sys *types.SystemContext) (types.ImageSource, error) {
	s, err := shp.Open(r.home)
	if err != nil {
		return nil, err
	}
	top, err := s.TopDigest(r.name)
	if err != nil {
		s.Close()
		return nil, err
	}
	return &shpSource{ref: r, store: s, top: top}, nil
}

func (r shpReference) NewImageDestination(ctx context.Context, sys *types.SystemContext) (types.ImageDestination, error) {
	s, err := shp.Open(r.home)
	if err != nil {
		return nil, err
	}
	return &shpDestination{ref: r, store: s}, nil
}

// DeleteImage is not offered: shp removes names with `shp rm` and blocks with `shp gc`.
func (r shpReference) DeleteImage(ctx context.Context, sys *types.SystemContext) error {
	return fmt.Errorf("shp: deleting %s: not supported by this transport (use `shp rm` and `shp gc`)",
		r.StringWithinTransport())
}

// shpSource reads an image from the store.
type shpSource struct {
	ref   shpReference
	store *shp.Store
	top   string // the top manifest's digest, fixed when the source was opened
}

func (s *shpSource) Reference() types.ImageReference { return s.ref }
func (s *shpSource) Close() error                    { return s.store.Close() }

func (s *shpSource) readBlob(d string) ([]byte, error) {
	r, err := s.store.GetBlob(d)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// GetManifest returns the top manifest (instanceDigest nil) or the child manifest with that
// digest, with its MIME type.
func (s *shpSource) GetManifest(ctx context.Context, instanceDigest *digest.Digest) ([]byte, string, error) {
	d := s.top
	if instanceDigest != nil {
		d = instanceDigest.String()
	}
	b, err := s.readBlob(d)
	if err != nil {
		return nil, "", err
	}
	return b, manifest.GuessMIMEType(b), nil
}

// GetBlob streams a blob (verified by shp: a mismatch fails the last read).
func (s *shpSource) GetBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache) (io.ReadCloser, int64, error) {
	d := info.Digest.String()
	size, err := s.store.StatBlob(d)
	if err != nil {
		return nil, -1, err
	}
	r, err := s.store.GetBlob(d)
	if err != nil {
		return nil, -1, err
	}
	return r, size, nil
}

func (s *shpSource) HasThreadSafeGetBlob() bool { return true }

// GetSignatures: shp stores no signatures.
func (s *shpSource) GetSignatures(ctx context.Context, instanceDigest *digest.Digest) ([][]byte, error) {
	return nil, nil
}

// LayerInfosForCopy: the manifest's own layer list is right.
func (s *shpSource) LayerInfosForCopy(ctx context.Context, instanceDigest *digest.Digest) ([]types.BlobInfo, error) {
	return nil, nil
}

// shpDestination writes an image into the store.
type shpDestination struct {
	ref      shpReference
	store    *shp.Store
	manifest []byte // the top manifest, committed at Commit
}

func (d *shpDestination) Reference() types.ImageReference { return d.ref }
func (d *shpDestination) Close() error                    { return d.store.Close() }

// SupportedManifestMIMETypes: any (shp keeps manifests byte for byte).
func (d *shpDestination) SupportedManifestMIMETypes() []string { return nil }

func (d *shpDestination) SupportsSignatures(ctx context.Context) error {
	return errors.New("shp: the shp transport does not store signatures")
}

// DesiredLayerCompression: keep layers as they are (shp stores them bit-exact).
func (d *shpDestination) DesiredLayerCompression() types.LayerCompression {
	return types.PreserveOriginal
}
func (d *shpDestination) AcceptsForeignLayerURLs() bool        { return true }
func (d *shpDestination) MustMatchRuntimeOS() bool             { return false }
func (d *shpDestination) IgnoresEmbeddedDockerReference() bool { return true }
func (d *shpDestination) HasThreadSafePutBlob() bool           { return true }

// PutBlob streams the blob into an shp writer; a known digest is checked by shp, and a failed
// read or check stores nothing.
func (d *shpDestination) PutBlob(ctx context.Context, stream io.Reader, info types.BlobInfo, cache types.BlobInfoCache, isConfig bool) (types.BlobInfo, error) {
	dg, size, err := d.store.WriteBlob(stream, info.Digest.String())
	if err != nil {
		return types.BlobInfo{}, err
	}
	if info.Size >= 0 && info.Size != size {
		return types.BlobInfo{}, fmt.Errorf("shp: blob %s: %d bytes, the descriptor says %d", dg, size, info.Size)
	}
	return types.BlobInfo{Digest: digest.Digest(dg), Size: size, MediaType: info.MediaType}, nil
}

// TryReusingBlob reports whether the store already holds the blob.
func (d *shpDestination) TryReusingBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache, canSubstitute bool) (bool, types.BlobInfo, error) {
	if info.Digest == "" {
		return false, types.BlobInfo{}, nil
	}
	size, err := d.store.StatBlob(info.Digest.String())
	if errors.Is(err, shp.ErrNotFound) {
		return false, types.BlobInfo{}, nil
	}
	if err != nil {
		return false, types.BlobInfo{}, err
	}
	return true, types.BlobInfo{Digest: info.Digest, Size: size, MediaType: info.MediaType}, nil
}

// PutManifest keeps a child manifest (instanceDigest set) as a blob under that digest, checked
// by shp; the top manifest waits for Commit.
func (d *shpDestination) PutManifest(ctx context.Context, m []byte, instanceDigest *digest.Digest) error {
	if instanceDigest != nil {
		return d.store.PutBlob(instanceDigest.String(), strings.NewReader(string(m)))
	}
	d.manifest = append([]byte(nil), m...)
	return nil
}

// PutSignatures stores nothing; it fails only when there are signatures to store.
func (d *shpDestination) PutSignatures(ctx context.Context, signatures [][]byte, instanceDigest *digest.Digest) error {
	if len(signatures) > 0 {
		return errors.New("shp: the shp transport does not store signatures")
	}
	return nil
}

// Commit makes the image of the top manifest and its blobs, and names it.
func (d *shpDestination) Commit(ctx context.Context, unparsedToplevel types.UnparsedImage) error {
	if d.manifest == nil {
		return errors.New("shp: commit without a manifest")
	}
	_, err := d.store.CommitImage(d.manifest, manifest.GuessMIMEType(d.manifest), d.ref.name)
	return err
}
