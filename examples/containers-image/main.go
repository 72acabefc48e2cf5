// shp-copy copies container images between containers/image transports, with shp's own:
//
//	shp-copy [-all] SRC DST
//
// SRC and DST are TRANSPORT:REFERENCE, e.g. oci:/path/layout:tag or shp:/path/home:name (see
// transport.go). -all copies every image of an index (else the one for this platform, or the
// only one). Layers are copied as they are (uncompressed layers stay uncompressed, also into
// oci:), so every digest is kept. Prints the digest of the manifest written to DST.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/containers/image/v5/copy"
	_ "github.com/containers/image/v5/oci/layout"
	"github.com/containers/image/v5/signature"
	"github.com/containers/image/v5/transports"
	"github.com/containers/image/v5/types"
	"github.com/opencontainers/go-digest"
)

// parse parses TRANSPORT:REFERENCE with the registered transports (oci, shp).
func parse(s string) (types.ImageReference, error) {
	i := strings.IndexByte(s, ':')
	if i <= 0 {
		return nil, fmt.Errorf("%q: want TRANSPORT:REFERENCE", s)
	}
	t := transports.Get(s[:i])
	if t == nil {
		return nil, fmt.Errorf("%q: unknown transport %q (known: oci, shp)", s, s[:i])
	}
	return t.ParseReference(s[i+1:])
}

// copyImage copies src to dst and returns the digest of the manifest written.
func copyImage(ctx context.Context, src, dst types.ImageReference, all bool) (digest.Digest, error) {
	policy, err := signature.NewPolicyContext(&signature.Policy{
		Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()},
	})
	if err != nil {
		return "", err
	}
	defer policy.Destroy()
	// An oci: destination compresses uncompressed layers unless told otherwise, which would
	// change the manifest; a copy is meant to keep every digest.
	opts := &copy.Options{DestinationCtx: &types.SystemContext{OCIAcceptUncompressedLayers: true}}
	if all {
		opts.ImageListSelection = copy.CopyAllImages
	}
	m, err := copy.Image(ctx, policy, dst, src, opts)
	if err != nil {
		return "", err
	}
	return digest.FromBytes(m), nil
}

func main() {
	all := flag.Bool("all", false, "copy every image of an index")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: shp-copy [-all] SRC DST   (e.g. oci:DIR:TAG shp:HOME:NAME)")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	src, err := parse(flag.Arg(0))
	if err == nil {
		var dst types.ImageReference
		if dst, err = parse(flag.Arg(1)); err == nil {
			var d digest.Digest
			if d, err = copyImage(context.Background(), src, dst, *all); err == nil {
				fmt.Println(d)
				return
			}
		}
	}
	fmt.Fprintln(os.Stderr, "shp-copy:", err)
	os.Exit(1)
}
