#!/usr/bin/env bash
# recipes.sh [LAYOUT] [TAG...] -- which layers shp keeps as recipes, per producer, on a real corpus.
#
# Copies the OCI layout (default /tmp/corpus/oci, built by ../shared/corpus/build-corpus.sh), re-encodes
# every layer of each TAG (default: debian-bookworm py311 app-v1) with every producer through
# ../shared/corpus/recompress.py (Go compress/gzip, klauspost pgzip, GNU gzip, pigz, Python zlib, zstd),
# pushes every re-encoded image into one fresh home and prints, per producer, the share of layer bytes
# stored as a recipe, and every layer that fell back to opaque. Needs golang-go and Debian's klauspost
# sources (the Go producers are built from ../shared/corpus/gzgo/main.go). Measures; asserts nothing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
LAYOUT=${1:-/tmp/corpus/oci}
shift || true
TAGS=("$@")
[ ${#TAGS[@]} -gt 0 ] || TAGS=(debian-bookworm py311 app-v1)
KINDS=${KINDS:-"go-std--1 go-std-1 go-std-9 go-std-5 pgzip--1-1048576 pgzip-1-1048576 pgzip-9-1048576 pgzip--1-262144 gzip-6 gzip-9 gzip-1 pigz-6 pigz-9 zlib-6 zlib-9 zstd-3 zstd-9"}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shp-recipes.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

cargo build --release -q -p shp-cli --manifest-path "$ROOT/Cargo.toml"
SHP=$ROOT/target/release/shp
(cd "$SHARED/corpus/gzgo" && GO111MODULE=off GOPATH=/usr/share/gocode go build -o "$WORK/gzgo" main.go)
export GZGO=$WORK/gzgo
cp -a "$LAYOUT" "$WORK/oci"
export SHP_HOME=$WORK/home
"$SHP" init >/dev/null

printf '%-20s %8s %14s %14s %s\n' producer layers layer_bytes recipe_share profiles
for kind in $KINDS; do
  for tag in "${TAGS[@]}"; do
    python3 "$SHARED/corpus/recompress.py" "$WORK/oci" "$tag" "$tag@$kind" "$kind"
    "$SHP" push --json "oci:$WORK/oci:$tag@$kind" > "$WORK/$tag@$kind.json"
  done
  python3 - "$kind" "$WORK" "${TAGS[@]}" <<'PY'
import json, sys, collections
kind, work, tags = sys.argv[1], sys.argv[2], sys.argv[3:]
total = recipe = n = 0
profiles = collections.Counter()
fallback = []
for t in tags:
    rep = json.load(open(f"{work}/{t}@{kind}.json"))
    for b in rep["blobs"]:
        if "layer" not in b["media_type"] and "rootfs" not in b["media_type"]:
            continue
        n += 1
        total += b["size"]
        if b["storage"].startswith("recipe:"):
            recipe += b["size"]
            profiles[b["storage"][7:]] += 1
        else:
            fallback.append(f'{t} {b["digest"][:19]} {b["size"]} {b["storage"]}')
print(f"{kind:20s} {n:8d} {total:14d} {100.0 * recipe / max(total, 1):13.1f}% {dict(profiles)}")
for f in fallback:
    print(f"    fell back: {f}")
PY
done
