package shp

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func openStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "home"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func readAll(t testing.TB, s *Store, d string) []byte {
	t.Helper()
	r, err := s.GetBlob(d)
	if err != nil {
		t.Fatalf("GetBlob %s: %v", d, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading %s: %v", d, err)
	}
	return b
}

var (
	fixturesOnce sync.Once
	fixturesDir  string
	fixturesErr  error
)

// fixtures returns a directory made by tests/interop/make-images.sh: $SHP_FIXTURES if set, else
// built once into a temporary directory (needs umoci, skopeo, busybox-static: scripts/ci-deps.sh).
func fixtures(t testing.TB) string {
	t.Helper()
	fixturesOnce.Do(func() {
		if d := os.Getenv("SHP_FIXTURES"); d != "" {
			fixturesDir = d
			return
		}
		dir, err := os.MkdirTemp("", "shp-go-fixtures")
		if err != nil {
			fixturesErr = err
			return
		}
		out, err := exec.Command("bash", "../../tests/interop/make-images.sh", dir).CombinedOutput()
		if err != nil {
			fixturesErr = fmt.Errorf("make-images.sh: %v\n%s", err, out)
			return
		}
		fixturesDir = dir
	})
	if fixturesErr != nil {
		t.Fatal(fixturesErr)
	}
	return fixturesDir
}

// layoutBlobs returns every blob file of the fixtures' OCI layout: digest → path.
func layoutBlobs(t testing.TB) map[string]string {
	dir := filepath.Join(fixtures(t), "oci", "blobs", "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		out["sha256:"+e.Name()] = filepath.Join(dir, e.Name())
	}
	return out
}

func TestVersion(t *testing.T) {
	v := Version()
	if v != HeaderVersion {
		t.Fatalf("linked libshp_ffi %q, header SHP_VERSION %q", v, HeaderVersion)
	}
	var major, minor, patch int
	if n, err := fmt.Sscanf(v, "%d.%d.%d", &major, &minor, &patch); n != 3 || err != nil {
		t.Fatalf("version %q is not MAJOR.MINOR.PATCH: %v", v, err)
	}
}

func TestRoundTrip(t *testing.T) {
	s := openStore(t)
	data := []byte(`{"architecture":"amd64","os":"linux"}`)
	d := digest(data)
	if err := s.PutBlob(d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, d); !bytes.Equal(got, data) {
		t.Fatalf("got %q", got)
	}
	if n, err := s.StatBlob(d); err != nil || n != int64(len(data)) {
		t.Fatalf("StatBlob = %d, %v", n, err)
	}
	list, err := s.ListBlobs()
	if err != nil || len(list) != 1 || list[0] != d {
		t.Fatalf("ListBlobs = %v, %v", list, err)
	}
	// Storing the same blob again is fine; an empty blob too.
	if err := s.PutBlob(d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBlob(digest(nil), bytes.NewReader(nil)); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, digest(nil)); len(got) != 0 {
		t.Fatalf("empty blob read back %d bytes", len(got))
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(b []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("source broke")
	}
	f.n--
	return copy(b, "some bytes"), nil
}

func TestErrors(t *testing.T) {
	s := openStore(t)
	missing := digest([]byte("never stored"))
	if _, err := s.StatBlob(missing); !errors.Is(err, ErrNotFound) {
		t.Fatalf("StatBlob(missing) = %v", err)
	}
	if _, err := s.GetBlob(missing); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetBlob(missing) = %v", err)
	}
	var e *Error
	if _, err := s.GetBlob(missing); !errors.As(err, &e) || e.Status != StatusNotFound || !strings.Contains(e.Message, missing) {
		t.Fatalf("GetBlob(missing) error = %#v", err)
	}
	if err := s.ExportImage("no-such-image", "oci:"+t.TempDir()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ExportImage(missing) = %v", err)
	}

	// A wrong digest: refused, nothing stored under either digest.
	data := []byte("hello, shp\n")
	err := s.PutBlob(missing, bytes.NewReader(data))
	if !errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrNotFound) {
		t.Fatalf("PutBlob(wrong digest) = %v", err)
	}
	for _, d := range []string{missing, digest(data)} {
		if _, err := s.StatBlob(d); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after a refused put, StatBlob(%s) = %v", d, err)
		}
	}
	// Malformed digests and references.
	for _, d := range []string{"", "sha256:xyz", "md5:" + strings.Repeat("0", 32), strings.ToUpper(missing)} {
		if err := s.PutBlob(d, bytes.NewReader(data)); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("PutBlob(%q) = %v", d, err)
		}
		if _, err := s.StatBlob(d); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("StatBlob(%q) = %v", d, err)
		}
	}
	if _, err := s.ImportImage("tarball:/x"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("ImportImage(bad transport) = %v", err)
	}
	// A source that fails midway: its error comes back, nothing stored.
	if err := s.PutBlob(missing, &failingReader{n: 3}); err == nil || !strings.Contains(err.Error(), "source broke") {
		t.Fatalf("PutBlob(failing reader) = %v", err)
	}
	if list, _ := s.ListBlobs(); len(list) != 0 {
		t.Fatalf("store not empty: %v", list)
	}
	// The Kraken names.
	k := NewKrakenBackend(s)
	if _, err := k.Stat("ns", strings.TrimPrefix(missing, "sha256:")); !errors.Is(err, ErrBlobNotFound) {
		t.Fatalf("Stat(missing) = %v", err)
	}
	if err := k.Download("ns", strings.TrimPrefix(missing, "sha256:"), io.Discard); !errors.Is(err, ErrBlobNotFound) {
		t.Fatalf("Download(missing) = %v", err)
	}
	if _, err := k.Stat("ns", "../etc/passwd"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Stat(bad name) = %v", err)
	}
	// After Close.
	s.Close()
	if _, err := s.StatBlob(missing); !errors.Is(err, ErrClosed) {
		t.Fatalf("StatBlob after Close = %v", err)
	}
	s.Close()
}

// Every blob of real images (layers gzip'd by umoci's pgzip, by Python, zstd, uncompressed;
// configs; manifests) goes in under its digest and comes back byte-identical.
func TestRealBlobsByteIdentical(t *testing.T) {
	s := openStore(t)
	blobs := layoutBlobs(t)
	for d, path := range blobs {
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f, _ := os.Open(path)
		err = s.PutBlob(d, f)
		f.Close()
		if err != nil {
			t.Fatalf("PutBlob %s: %v", d, err)
		}
		if got := readAll(t, s, d); !bytes.Equal(got, want) {
			t.Fatalf("%s: read back %d bytes that differ from the %d put", d, len(got), len(want))
		}
		if n, err := s.StatBlob(d); err != nil || n != int64(len(want)) {
			t.Fatalf("StatBlob %s = %d, %v", d, n, err)
		}
	}
	list, err := s.ListBlobs()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(blobs) || !sort.StringsAreSorted(list) {
		t.Fatalf("ListBlobs: %d digests, want %d sorted", len(list), len(blobs))
	}
	// A corrupted layer under its true digest is refused.
	for d, path := range blobs {
		b, _ := os.ReadFile(path)
		if len(b) < 1<<20 {
			continue
		}
		b[len(b)/2] ^= 0x40
		err := s.PutBlob(d, bytes.NewReader(b))
		if !errors.Is(err, ErrDigestMismatch) && !(errors.As(err, new(*Error)) && err.(*Error).Status == StatusInvalidInput) {
			t.Fatalf("PutBlob(corrupted %s) = %v", d, err)
		}
		break
	}
}

// Many goroutines on one Store: each uploads blobs of its own (through the Store and the Kraken
// API) and one real layer that others upload at the same time, then reads every layer back while
// the others are still writing.
func TestConcurrentUploadsAndDownloads(t *testing.T) {
	s := openStore(t)
	k := NewKrakenBackend(s)
	var layers [][]byte
	for _, path := range layoutBlobs(t) {
		if b, _ := os.ReadFile(path); len(b) > 1<<20 {
			layers = append(layers, b)
		}
	}
	if len(layers) < 3 {
		t.Fatalf("want at least 3 real layers in the fixtures, have %d", len(layers))
	}
	const workers = 16
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	put := make(chan struct{}, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			fail := func(format string, a ...any) { errs <- fmt.Errorf("worker %d: "+format, append([]any{w}, a...)...) }
			rng := rand.New(rand.NewSource(int64(w)))
			for i := 0; i < 4; i++ {
				b := make([]byte, rng.Intn(300<<10))
				rng.Read(b)
				d := digest(b)
				name := strings.TrimPrefix(d, "sha256:")
				var err error
				if i%2 == 0 {
					err = s.PutBlob(d, bytes.NewReader(b))
				} else {
					err = k.Upload("ns", name, bytes.NewReader(b))
				}
				if err != nil {
					fail("put: %v", err)
					return
				}
				var got bytes.Buffer
				if err := k.Download("ns", name, &got); err != nil || !bytes.Equal(got.Bytes(), b) {
					fail("blob %s came back different (%v)", d, err)
					return
				}
			}
			lb := layers[w%len(layers)]
			if err := s.PutBlob(digest(lb), bytes.NewReader(lb)); err != nil {
				fail("put layer: %v", err)
				return
			}
			put <- struct{}{}
			for _, lb := range layers {
				d := digest(lb)
				r, err := s.GetBlob(d)
				if errors.Is(err, ErrNotFound) {
					continue // another worker has not stored it yet
				}
				if err != nil {
					fail("get layer %s: %v", d, err)
					return
				}
				var buf bytes.Buffer
				_, err = io.Copy(&buf, r)
				r.Close()
				if err != nil || !bytes.Equal(buf.Bytes(), lb) {
					fail("layer %s came back different (%v)", d, err)
					return
				}
			}
			if _, err := s.ListBlobs(); err != nil {
				fail("list: %v", err)
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(put) != workers {
		t.Fatalf("%d of %d workers stored their layer", len(put), workers)
	}
	list, err := s.ListBlobs()
	if err != nil || len(list) != workers*4+len(layers) {
		t.Fatalf("ListBlobs: %d digests (%v), want %d", len(list), err, workers*4+len(layers))
	}
	for _, lb := range layers {
		if got := readAll(t, s, digest(lb)); !bytes.Equal(got, lb) {
			t.Fatalf("layer %s differs", digest(lb))
		}
	}
}

func TestImportExport(t *testing.T) {
	s := openStore(t)
	fx := fixtures(t)
	oci := filepath.Join(fx, "oci")
	cid, err := s.ImportImage("oci:" + oci + ":busybox-2layer")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cid, "b") || len(cid) != 59 {
		t.Fatalf("root CID %q", cid)
	}
	again, err := s.ImportImage("oci:" + oci + ":busybox-2layer")
	if err != nil || again != cid {
		t.Fatalf("re-import gave %q, %v; want %q", again, err, cid)
	}
	// The image's blobs (manifest, config, two layers) are blobs of the store.
	list, err := s.ListBlobs()
	if err != nil || len(list) != 4 {
		t.Fatalf("ListBlobs after import: %v, %v", list, err)
	}
	for _, d := range list {
		want, err := os.ReadFile(filepath.Join(oci, "blobs", "sha256", strings.TrimPrefix(d, "sha256:")))
		if err != nil {
			t.Fatalf("listed %s, not in the source: %v", d, err)
		}
		if got := readAll(t, s, d); !bytes.Equal(got, want) {
			t.Fatalf("%s differs from the source", d)
		}
	}
	// Export by CID and by name: the same blobs and the same manifest digest.
	for _, ref := range []string{cid, "busybox-2layer"} {
		out := t.TempDir()
		if err := s.ExportImage(ref, "oci:"+out+":copy"); err != nil {
			t.Fatal(err)
		}
		ents, _ := os.ReadDir(filepath.Join(out, "blobs", "sha256"))
		if len(ents) != len(list) {
			t.Fatalf("export has %d blobs, want %d", len(ents), len(list))
		}
		for _, e := range ents {
			got, _ := os.ReadFile(filepath.Join(out, "blobs", "sha256", e.Name()))
			want, _ := os.ReadFile(filepath.Join(oci, "blobs", "sha256", e.Name()))
			if digest(got) != "sha256:"+e.Name() || !bytes.Equal(got, want) {
				t.Fatalf("exported blob %s differs", e.Name())
			}
		}
		if topDigest(t, out) != topDigestOf(t, oci, "busybox-2layer") {
			t.Fatalf("manifest digest changed")
		}
	}
}

type index struct {
	Manifests []struct {
		Digest      string            `json:"digest"`
		Annotations map[string]string `json:"annotations"`
	} `json:"manifests"`
}

func readIndex(t *testing.T, dir string) index {
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ix index
	if err := json.Unmarshal(b, &ix); err != nil {
		t.Fatal(err)
	}
	return ix
}

func topDigest(t *testing.T, dir string) string {
	ix := readIndex(t, dir)
	if len(ix.Manifests) != 1 {
		t.Fatalf("%s: %d manifests", dir, len(ix.Manifests))
	}
	return ix.Manifests[0].Digest
}

func topDigestOf(t *testing.T, dir, tag string) string {
	for _, m := range readIndex(t, dir).Manifests {
		if m.Annotations["org.opencontainers.image.ref.name"] == tag {
			return m.Digest
		}
	}
	t.Fatalf("no tag %s in %s", tag, dir)
	return ""
}

func TestKrakenBackend(t *testing.T) {
	s := openStore(t)
	k := NewKrakenBackend(s)
	var names []string
	for i := 0; i < 7; i++ {
		b := []byte(fmt.Sprintf("kraken blob %d", i))
		n := strings.TrimPrefix(digest(b), "sha256:")
		if err := k.Upload("library/busybox", n, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		info, err := k.Stat("any/namespace", n)
		if err != nil || info.Size != int64(len(b)) {
			t.Fatalf("Stat = %+v, %v", info, err)
		}
		var out bytes.Buffer
		if err := k.Download("library/busybox", n, &out); err != nil || !bytes.Equal(out.Bytes(), b) {
			t.Fatalf("Download = %q, %v", out.Bytes(), err)
		}
		names = append(names, n)
	}
	sort.Strings(names)
	if err := k.Upload("ns", names[0], strings.NewReader("not the content")); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("Upload(wrong content) = %v", err)
	}
	all, err := k.List("")
	if err != nil || strings.Join(all.Names, ",") != strings.Join(names, ",") || all.ContinuationToken != "" {
		t.Fatalf("List = %+v, %v", all, err)
	}
	pre, _ := k.List(names[3][:6])
	if len(pre.Names) < 1 || pre.Names[0] != names[3] {
		t.Fatalf("List(prefix) = %+v", pre)
	}
	// Pages of 3: 3 + 3 + 1.
	var paged []string
	token := ""
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("pagination does not end")
		}
		res, err := k.List("", ListWithPagination(), ListWithMaxKeys(3), ListWithContinuationToken(token))
		if err != nil || len(res.Names) > 3 {
			t.Fatalf("page: %+v, %v", res, err)
		}
		paged = append(paged, res.Names...)
		if token = res.ContinuationToken; token == "" {
			break
		}
	}
	if strings.Join(paged, ",") != strings.Join(names, ",") {
		t.Fatalf("paged %v, want %v", paged, names)
	}
}

// BenchmarkGetBlob reads the largest layer of the fixtures through the C API (SHP_BENCH_HOME:
// read from an existing store instead, digest SHP_BENCH_DIGEST).
func BenchmarkGetBlob(b *testing.B) {
	var s *Store
	var d string
	if home := os.Getenv("SHP_BENCH_HOME"); home != "" {
		var err error
		if s, err = Open(home); err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		d = os.Getenv("SHP_BENCH_DIGEST")
	} else {
		s = openStore(b)
		var size int64
		for dd, path := range layoutBlobs(b) {
			st, _ := os.Stat(path)
			if st.Size() > size {
				d, size = dd, st.Size()
			}
		}
		f, _ := os.Open(layoutBlobs(b)[d])
		if err := s.PutBlob(d, f); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	size, err := s.StatBlob(d)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := s.GetBlob(d)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, r); err != nil || n != size {
			b.Fatal(n, err)
		}
		r.Close()
	}
}

// putLayoutBlobs puts every blob of an OCI layout except skip, and returns how many it put.
func putLayoutBlobs(t *testing.T, s *Store, dir, skip string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		d := "sha256:" + e.Name()
		if d == skip {
			continue
		}
		f, err := os.Open(filepath.Join(dir, "blobs", "sha256", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		err = s.PutBlob(d, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

func TestCommitImage(t *testing.T) {
	fx := fixtures(t)
	const (
		ociManifest = "application/vnd.oci.image.manifest.v1+json"
		ociIndex    = "application/vnd.oci.image.index.v1+json"
	)
	for _, c := range []struct{ layout, tag, mediaType string }{
		{"oci", "busybox-gzip", ociManifest},
		{"multi", "multi", ociIndex},
	} {
		s := openStore(t)
		dir := filepath.Join(fx, c.layout)
		top := topDigestOf(t, dir, c.tag)
		manifest, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(top, "sha256:")))
		if err != nil {
			t.Fatal(err)
		}
		// Before its blobs are there, the commit fails, names nothing and changes nothing.
		_, err = s.CommitImage(manifest, c.mediaType, "copy:1")
		var e *Error
		if !errors.As(err, &e) || e.Status != StatusInvalidInput || !strings.Contains(e.Message, "missing") {
			t.Fatalf("%s: commit without blobs: %v", c.tag, err)
		}
		if _, err := s.TopDigest("copy:1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: a failed commit left a name: %v", c.tag, err)
		}
		// Blobs first (the layout holds other images' blobs too: harmless), then the manifest.
		putLayoutBlobs(t, s, dir, top)
		// umoci writes no mediaType into its manifests: then the type must be declared, as
		// clients do.
		var doc struct{ MediaType string }
		if err := json.Unmarshal(manifest, &doc); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CommitImage(manifest, "", "copy:1"); doc.MediaType == "" && !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("%s: commit without a media type: %v", c.tag, err)
		}
		cid, err := s.CommitImage(manifest, c.mediaType, "copy:1")
		if err != nil {
			t.Fatalf("%s: %v", c.tag, err)
		}
		if got, err := s.Resolve("copy:1"); err != nil || got != cid {
			t.Fatalf("%s: Resolve gave %q, %v; want %q", c.tag, got, err, cid)
		}
		for _, ref := range []string{cid, "copy:1"} {
			if got, err := s.TopDigest(ref); err != nil || got != top {
				t.Fatalf("%s: TopDigest(%s) gave %q, %v; want %q", c.tag, ref, got, err, top)
			}
		}
		if got := readAll(t, s, top); !bytes.Equal(got, manifest) {
			t.Fatalf("%s: the manifest read back differs", c.tag)
		}
		// Committed images export like imported ones: the same top digest.
		out := t.TempDir()
		if err := s.ExportImage("copy:1", "oci:"+out+":copy"); err != nil {
			t.Fatal(err)
		}
		if topDigest(t, out) != top {
			t.Fatalf("%s: exported top digest differs", c.tag)
		}
	}
	s := openStore(t)
	if _, err := s.CommitImage(nil, "", ""); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("empty manifest: %v", err)
	}
	if _, err := s.TopDigest("no-such-image"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("TopDigest of nothing: %v", err)
	}
	if _, err := s.CommitImage([]byte(`{"schemaVersion":2}`), "application/json", ""); err == nil {
		t.Fatal("a non-manifest was committed")
	}
}
