#!/usr/bin/env bash
# check-header.sh — regenerates include/shp.h from crates/shp-ffi with the pinned cbindgen and fails
# if it differs from the committed header. `--write` updates the committed header instead.
# Installs the pinned cbindgen (cargo install --locked) when it is absent or another version.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CBINDGEN_VERSION=0.29.4   # also named in crates/shp-ffi/cbindgen.toml

CBINDGEN=$(command -v cbindgen || true)
if [ -z "$CBINDGEN" ] || [ "$("$CBINDGEN" --version 2>/dev/null)" != "cbindgen $CBINDGEN_VERSION" ]; then
  CBINDGEN=${CARGO_HOME:-$HOME/.cargo}/bin/cbindgen
  if [ "$("$CBINDGEN" --version 2>/dev/null)" != "cbindgen $CBINDGEN_VERSION" ]; then
    echo "check-header: installing cbindgen $CBINDGEN_VERSION"
    cargo install cbindgen --version "=$CBINDGEN_VERSION" --locked --quiet --force
  fi
fi

gen() { "$CBINDGEN" --quiet --config crates/shp-ffi/cbindgen.toml --crate shp-ffi --output "$1"; }

if [ "${1:-}" = --write ]; then
  gen include/shp.h
  echo "check-header: wrote include/shp.h"
  exit 0
fi

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
gen "$tmp"
if ! diff -u include/shp.h "$tmp"; then
  echo "check-header: include/shp.h is stale; run scripts/check-header.sh --write and commit it" >&2
  exit 1
fi
echo "check-header: include/shp.h is up to date (cbindgen $CBINDGEN_VERSION)"
