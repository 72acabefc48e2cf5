package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/containers/image/v5/oci/layout"
	"github.com/containers/image/v5/types"

	"shp"
)

// fixtures is the directory tests/interop/make-images.sh made ($SHP_FIXTURES; run.sh sets it).
func fixtures(t *testing.T) string {
	d := os.Getenv("SHP_FIXTURES")
	if d == "" {
		t.Fatal("SHP_FIXTURES is not set (run examples/containers-image/run.sh)")
	}
	return d
}

func ociRef(t *testing.T, dir, tag string) types.ImageReference {
	r, err := layout.NewReference(dir, tag)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func shpRef(t *testing.T, home, name string) types.ImageReference {
	r, err := Transport.ParseReference(home + ":" + name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// topOf returns the digest index.json names for tag.
func topOf(t *testing.T, dir, tag string) string {
	var ix struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err == nil {
		err = json.Unmarshal(b, &ix)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ix.Manifests {
		if m.Annotations["org.opencontainers.image.ref.name"] == tag {
			return m.Digest
		}
	}
	t.Fatalf("no %s in %s", tag, dir)
	return ""
}

// reachable lists the blobs an OCI layout's manifest (or index) reaches, each checked to hash to
// its name, with their bytes' sha256.
func reachable(t *testing.T, dir, top string) map[string]string {
	out := map[string]string{}
	var walk func(d string)
	walk = func(d string) {
		b, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(d, "sha256:")))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		got := "sha256:" + hex.EncodeToString(sum[:])
		if got != d {
			t.Fatalf("%s: blob %s hashes to %s", dir, d, got)
		}
		out[d] = got
		var doc struct {
			SchemaVersion int
			Manifests     []struct{ Digest string } `json:"manifests"`
			Config        *struct{ Digest string }  `json:"config"`
			Layers        []struct{ Digest string } `json:"layers"`
		}
		if json.Unmarshal(b, &doc) != nil || doc.SchemaVersion != 2 {
			return // a layer or config
		}
		for _, m := range doc.Manifests {
			walk(m.Digest)
		}
		if doc.Config != nil {
			walk(doc.Config.Digest)
		}
		for _, l := range doc.Layers {
			walk(l.Digest)
		}
	}
	walk(top)
	return out
}

func keys(m map[string]string) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}

// TestCopyThroughShp copies each fixture oci: → shp: → oci: with copy.Image and compares the
// manifests and every blob by sha256.
func TestCopyThroughShp(t *testing.T) {
	fx := fixtures(t)
	cases := []struct {
		layout, tag string
		all         bool
	}{
		{"oci", "busybox-gzip", false},
		{"oci", "busybox-2layer", false},
		{"oci", "busybox-zstd", false},
		{"oci", "busybox-none", false},
		{"multi", "multi", true},
	}
	home := filepath.Join(t.TempDir(), "home")
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.tag, func(t *testing.T) {
			src := filepath.Join(fx, c.layout)
			name := "copied/" + c.tag + ":1"
			top, err := copyImage(ctx, ociRef(t, src, c.tag), shpRef(t, home, name), c.all)
			if err != nil {
				t.Fatal(err)
			}
			want := topOf(t, src, c.tag)
			if top.String() != want {
				t.Fatalf("manifest into shp: %s, want %s", top, want)
			}
			s, err := shp.Open(home)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := s.TopDigest(name); err != nil || got != want {
				t.Fatalf("shp names %s with top %q (%v), want %s", name, got, err, want)
			}
			s.Close()

			out := filepath.Join(t.TempDir(), "out")
			back, err := copyImage(ctx, shpRef(t, home, name), ociRef(t, out, "back"), c.all)
			if err != nil {
				t.Fatal(err)
			}
			if back.String() != want || topOf(t, out, "back") != want {
				t.Fatalf("manifest out of shp: %s, want %s", back, want)
			}
			a, b := reachable(t, src, want), reachable(t, out, want)
			if strings.Join(keys(a), ",") != strings.Join(keys(b), ",") {
				t.Fatalf("blobs differ:\n in  %v\n out %v", keys(a), keys(b))
			}
			if c.all && len(a) < 5 {
				t.Fatalf("the index copy reached only %d blobs", len(a))
			}
			// Copying again reuses every blob (TryReusingBlob) and changes nothing.
			if again, err := copyImage(ctx, ociRef(t, src, c.tag), shpRef(t, home, name), c.all); err != nil || again != top {
				t.Fatalf("second copy: %s, %v", again, err)
			}
		})
	}
}

func TestBadReferencesAndMissingImages(t *testing.T) {
	for _, bad := range []string{"", "nohome", ":name", "/home:"} {
		if _, err := Transport.ParseReference(bad); err == nil {
			t.Errorf("ParseReference(%q) succeeded", bad)
		}
	}
	home := filepath.Join(t.TempDir(), "home")
	_, err := copyImage(context.Background(), shpRef(t, home, "absent"), ociRef(t, t.TempDir(), "x"), false)
	if !errors.Is(err, shp.ErrNotFound) {
		t.Fatalf("copy from an absent name: %v", err)
	}
	// A destination that never commits names nothing.
	ref := shpRef(t, home, "never")
	dst, err := ref.NewImageDestination(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.Commit(context.Background(), nil); err == nil {
		t.Fatal("commit without a manifest succeeded")
	}
	dst.Close()
	s, err := shp.Open(home)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.TopDigest("never"); !errors.Is(err, shp.ErrNotFound) {
		t.Fatalf("an uncommitted destination left a name: %v", err)
	}
}
