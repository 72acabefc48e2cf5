#!/usr/bin/env bash
# run.sh FIXTURES — builds shp-copy (containers/image v5 from Debian, GOPATH mode, offline) against
# the shp Go package and libshp_ffi.a, runs its tests (copy.Image oci: → shp: → oci: on the
# fixtures of tests/interop/make-images.sh, digests compared), and copies one image with the
# binary itself. Needs: golang-go, golang-github-containers-image-dev (scripts/ci-deps.sh), and
# target/release/libshp_ffi.a (cargo build --release -p shp-ffi).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FIX=$(cd "${1:?usage: run.sh FIXTURES}" && pwd)
GOCODE=/usr/share/gocode
[ -d "$GOCODE/src/github.com/containers/image/copy" ] \
  || { echo "run.sh: $GOCODE has no containers/image (apt-get install golang-github-containers-image-dev)" >&2; exit 1; }
[ -f "$ROOT/target/release/libshp_ffi.a" ] || { echo "run.sh: build libshp_ffi.a first" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# A GOPATH entry with what Debian's tree lacks: the /v5 import path of containers/image, and the
# shp package (its cgo flags name ${SRCDIR}/../../include and ../../target: both resolve here).
GP=$WORK/gopath
mkdir -p "$GP/src/github.com/containers/image"
ln -s "$GOCODE/src/github.com/containers/image" "$GP/src/github.com/containers/image/v5"
ln -s "$ROOT/examples/go" "$GP/src/shp"
ln -s "$ROOT/include" "$GP/include"
ln -s "$ROOT/target" "$GP/target"
mkdir -p "$GP/src/shp-copy"
cp "$HERE"/*.go "$GP/src/shp-copy/"

export GO111MODULE=off GOPATH="$GP:$GOCODE" GOFLAGS= GOPROXY=off
[ -n "${HOME:-}" ] || export GOCACHE="$ROOT/target/go-cache"
TAGS="containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper containers_image_storage_stub"
cd "$GP/src/shp-copy"
go vet -tags "$TAGS" .
go build -tags "$TAGS" -o "$WORK/shp-copy" .
SHP_FIXTURES=$FIX go test -tags "$TAGS" -count=1 -v . 2>&1 | grep -vE '^(=== RUN|=== PAUSE|=== CONT)'

# The binary, with transport strings as a user types them.
H=$WORK/home
top=$("$WORK/shp-copy" "oci:$FIX/oci:busybox-2layer" "shp:$H:busybox:2layer")
back=$("$WORK/shp-copy" "shp:$H:busybox:2layer" "oci:$WORK/out:busybox")
want=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]=="busybox-2layer") | .digest' \
  "$FIX/oci/index.json")
[ "$top" = "$want" ] && [ "$back" = "$want" ] || { echo "run.sh: digests $top $back, want $want" >&2; exit 1; }
for f in "$WORK/out/blobs/sha256"/*; do
  b=$(basename "$f")
  [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$b" ] || { echo "run.sh: blob $b does not hash to its name" >&2; exit 1; }
  cmp -s "$f" "$FIX/oci/blobs/sha256/$b" || { echo "run.sh: blob $b differs from the source" >&2; exit 1; }
done
echo "containers-image: oci → shp → oci kept $want and every blob"
