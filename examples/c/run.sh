#!/usr/bin/env bash
# run.sh — builds examples/c/shp_example.c against target/release/libshp_ffi.a under AddressSanitizer
# (LeakSanitizer on), the way a user would: `gcc prog.c $(pkg-config --cflags --libs shp)` with the
# shp.pc the build wrote beside the library; runs it on real OCI images, then checks the exported
# image's blobs are the very bytes of the source's.
#   examples/c/run.sh [FIXTURES]   FIXTURES: a tests/interop/make-images.sh output (built if absent)
# Needs gcc, pkg-config and the release build (cargo build --release -p shp-ffi); scripts/test-ffi.sh
# does all three. PKG_CONFIG_PATH defaults to target/release.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PKG_CONFIG_PATH=${PKG_CONFIG_PATH:-$ROOT/target/release}
pkg-config --exists shp || {
  echo "run.sh: pkg-config finds no shp.pc in PKG_CONFIG_PATH=$PKG_CONFIG_PATH: cargo build --release -p shp-ffi writes it" >&2
  exit 1
}
LIB=$(pkg-config --variable=libdir shp)/libshp_ffi.a
[ -f "$LIB" ] || { echo "run.sh: $LIB (the libdir of shp.pc) missing: cargo build --release -p shp-ffi" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
FIX=${1:-}
if [ -z "$FIX" ]; then
  FIX=$WORK/fixtures
  bash "$ROOT/tests/interop/make-images.sh" "$FIX" >/dev/null
fi
OCI=$FIX/oci
TAG=busybox-gzip

# shp.pc: -I include, the archive, the system zlib and libzstd, and what Rust's std needs in a static link.
# shellcheck disable=SC2046  # pkg-config's flags are meant to be split
gcc -std=c11 -Wall -Wextra -Werror -g -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
  "$ROOT/examples/c/shp_example.c" $(pkg-config --cflags --libs shp) -o "$WORK/shp_example"

MANIFEST=$(jq -r --arg t "$TAG" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' "$OCI/index.json")
LAYER=$(jq -r '.layers[0].digest' "$OCI/blobs/sha256/${MANIFEST#sha256:}")

# SHP_STORE=s3://BUCKET/PREFIX: the home is first made on that store (with the shp binary, SHP_BIN,
# default target/debug/shp; endpoint and credentials from the AWS_* environment), so the example
# runs unchanged on an S3 home.
if [ -n "${SHP_STORE:-}" ]; then
  SHP_BIN=${SHP_BIN:-$ROOT/target/debug/shp}
  [ -x "$SHP_BIN" ] || { echo "run.sh: SHP_STORE needs the shp binary ($SHP_BIN): cargo build -p shp-cli" >&2; exit 1; }
  "$SHP_BIN" --home "$WORK/home" init --store "$SHP_STORE" >/dev/null
fi

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
"$WORK/shp_example" "$WORK/home" "$OCI" "$TAG" "$LAYER" "$WORK/export"

# The export is bit-exact: every blob it wrote is the source's blob, byte for byte.
count=0
for b in "$WORK/export/blobs/sha256/"*; do
  cmp -s "$b" "$OCI/blobs/sha256/$(basename "$b")" || { echo "run.sh: exported blob $(basename "$b") differs" >&2; exit 1; }
  [ "sha256:$(sha256sum "$b" | cut -d' ' -f1)" = "sha256:$(basename "$b")" ] || { echo "run.sh: bad digest $b" >&2; exit 1; }
  count=$((count + 1))
done
jq -e --arg m "$MANIFEST" '[.manifests[] | select(.digest == $m)] | length == 2' "$WORK/export/index.json" >/dev/null \
  || { echo "run.sh: export index.json does not name $MANIFEST twice" >&2; exit 1; }
echo "run.sh: exported image: $count blobs identical to the source, manifest $MANIFEST${SHP_STORE:+ (home on $SHP_STORE)}"
