#!/usr/bin/env bash
# test.sh — everything shp's tests need, then every test. Works on a fresh Debian bookworm machine
# with the Rust toolchain (rustup) present; run as root or with sudo for the apt step.
#   1. scripts/ci-deps.sh: apt packages (skopeo, umoci, busybox-static, zstd, …) and npm tools
#   2. formatting and lints
#   3. cargo test for the whole workspace (unit, property, CLI integration over real images)
#   3b. tests/netns/p2p.sh: stations in network namespaces (needs root: ip netns, tc)
#   3c. tests/runtimes/mirror.sh: containerd and podman pulling through stations as their mirror (root)
#   3d. benches/kills.sh 20: SIGKILLs at random moments in push, compact, gc, fetch, a station mid-upload
#   4. scripts/test-ffi.sh: include/shp.h freshness, the C example under ASan, go test -race
#   5. npm-side self-test of the CAR verifier, and a short run of every fuzz target if cargo-fuzz works
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
say() { printf '\n== %s\n' "$*"; }

say "dependencies"
bash scripts/ci-deps.sh

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "cargo test"
# The recipe tests compare against the real producers (Go, pgzip, gzip, pigz, zstd): here their
# absence is a failure, not a skip.
export SHP_REQUIRE_PRODUCERS=1
# The p2p tests run against a real Kubo: here its absence is a failure too.
export SHP_REQUIRE_PEERS=1
# The full-disk tests mount a tmpfs: as root (CI), their skip would be a failure.
if [ "$(id -u)" = 0 ]; then export SHP_REQUIRE_ROOT=1; fi
cargo build --workspace --locked
cargo test --workspace --locked

say "p2p across network namespaces (mDNS, three rate-limited seeders, a seeder killed mid-pull)"
if [ "$(id -u)" = 0 ]; then
  bash tests/netns/p2p.sh
else
  sudo -E bash tests/netns/p2p.sh
fi

say "containerd and podman through stations as their registry mirror (pull-through, a peer, the upstream down)"
if [ "$(id -u)" = 0 ]; then
  bash tests/runtimes/mirror.sh
else
  sudo -E bash tests/runtimes/mirror.sh
fi

say "crash safety: SIGKILL at random moments, 20 per stage (benches/kills.sh runs 200)"
bash benches/kills.sh 20

say "FFI: header freshness, C example under ASan, Go bindings (go test -race)"
bash scripts/test-ffi.sh

say "CAR verifier self-test (npm @ipld/car)"
(cd tests/interop/node && node --test selftest.mjs)

if [ "${SHP_SKIP_FUZZ:-0}" != 1 ]; then
  say "fuzz smoke (every target, replaying past findings first)"
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
  # A fixed seed: the same inputs every run (deep runs with other seeds are what find new bugs).
  FUZZ_SEED=${FUZZ_SEED:-1} bash scripts/fuzz-smoke.sh "${SHP_FUZZ_SECONDS:-10}"
fi
say "all tests passed"
