#!/usr/bin/env bash
# quickstart.sh — the main job on the embedded default store, from a fresh Debian machine:
# installs the tools, builds shp, builds real images from Debian's busybox-static with umoci,
# pushes them into a home, pulls them back bit-exact, verifies, and shows what dedup saved.
# Usage: scripts/quickstart.sh [WORKDIR]   (default: ./quickstart; the home is WORKDIR/home)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(realpath -m "${1:-quickstart}")
bash "$ROOT/scripts/ci-deps.sh" >/dev/null
cargo build --release --manifest-path "$ROOT/Cargo.toml" -p shp-cli
SHP=$ROOT/target/release/shp
export SHP_HOME=$WORK/home
rm -rf "$WORK/images" "$WORK/out"
mkdir -p "$WORK"
echo "== building real images (busybox-static + umoci) in $WORK/images"
bash "$ROOT/tests/interop/make-images.sh" "$WORK/images"
$SHP init >/dev/null
tags="busybox-gzip busybox-2layer busybox-none busybox-zstd busybox-gzip-python"
for t in $tags; do
  printf '== push oci:%s → ' "$t"
  $SHP push --quiet "oci:$WORK/images/oci:$t"
done
printf '== push docker-archive → '
$SHP push --quiet "docker-archive:$WORK/images/busybox.docker.tar"
echo "== pull back and compare every blob"
for t in $tags; do
  $SHP pull "$t" "oci:$WORK/out:$t" >/dev/null
done
( cd "$WORK/out/blobs/sha256" && for f in *; do
    [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$f" ] || { echo "MISMATCH $f"; exit 1; }
    cmp -s "$f" "$WORK/images/oci/blobs/sha256/$f" || { echo "DIFFERS $f"; exit 1; }
  done )
echo "   every blob identical (sha256 checked)"
$SHP verify
echo "== images"
$SHP ls
echo "== store"
$SHP stats
echo "== dedup (each image given the ones before it)"
$SHP dedup $tags
