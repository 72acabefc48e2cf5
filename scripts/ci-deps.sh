#!/usr/bin/env bash
# ci-deps.sh — installs what shp's tests need beyond the Rust toolchain, on a fresh Debian bookworm
# machine (as root, or with sudo). Safe to run again: it only adds what is missing.
#   apt:  skopeo umoci busybox-static casync zstd pigz python3 jq apache2-utils (htpasswd) docker-registry   (+ nodejs npm if `node`/`npm` are absent)
#   npm:  tests/interop/node (pinned in its package-lock.json: @ipld/car, @ipld/dag-cbor, multiformats)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { echo "ci-deps: $*"; }

SUDO=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "ci-deps: run as root (or install sudo)" >&2; exit 1; }
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive

pkgs=(skopeo umoci busybox-static casync zstd pigz python3 jq zlib1g-dev pkg-config apache2-utils docker-registry)
if command -v node >/dev/null && command -v npm >/dev/null; then
  say "node $(node --version) and npm $(npm --version) already present: not installing Debian's nodejs/npm"
else
  pkgs+=(nodejs npm)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get update"
  "${SUDO[@]}" apt-get update -q
  say "apt-get install ${missing[*]}"
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  say "apt packages already installed: ${pkgs[*]}"
fi

# Debian's busybox (dynamic) and busybox-static both provide /bin/busybox; the images need the static one
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
  echo "ci-deps: busybox-static is not installed" >&2
  exit 1
fi

NODE_DIR=$ROOT/tests/interop/node
cd "$NODE_DIR"
if [ -f package-lock.json ]; then
  say "npm ci in tests/interop/node"
  npm ci --no-audit --no-fund
else
  say "npm install in tests/interop/node (no package-lock.json)"
  npm install --no-audit --no-fund
fi

say "versions:"
for t in skopeo umoci zstd pigz casync jq python3 node npm; do
  printf '  %-8s %s\n' "$t" "$("$t" --version 2>&1 | head -1 || true)"
done
printf '  %-8s %s\n' busybox "$(busybox 2>&1 | head -1 || true)"
say "done"
