#!/usr/bin/env bash
# fuzz-smoke.sh [SECONDS] [TARGET...] -- builds every fuzz target in fuzz/ and runs each for
# SECONDS (default 20) from its seed corpus (fuzz/corpus/TARGET, read only; new inputs go to a
# scratch directory), after replaying the inputs of past bugs (fuzz/artifacts-found/TARGET/).
# Exits non-zero if any target crashes, fails a property, times out on one input or runs out of
# memory; the input is kept under fuzz/artifacts/TARGET/.
#
# Works on a stable toolchain: the default sanitizer is `none` (libFuzzer's coverage-guided
# search and the targets' own assertions, no AddressSanitizer -- shp-core has no unsafe code).
# FUZZ_SANITIZER=address adds ASan: on stable that needs RUSTC_BOOTSTRAP=1, which this script
# sets for it. Other knobs: FUZZ_TIMEOUT (seconds one input may take, default 20),
# FUZZ_RSS_MB (default 2048), FUZZ_SKIP="t1 t2" (targets to leave out), FUZZ_SEED (libFuzzer's
# -seed; 0, the default, is a random seed: scripts/test.sh fixes one so that CI runs the same inputs
# every time), FUZZ_RUNS (stop after this many executions instead of SECONDS: a deep run is
# `FUZZ_RUNS=10000000 scripts/fuzz-smoke.sh 0`), FUZZ_MERGE=1 (afterwards, merge into
# fuzz/corpus/TARGET the new inputs that add coverage: how the committed corpora grow).
# Needs cargo-fuzz: `cargo install cargo-fuzz --locked`.
set -euo pipefail
SECS=${1:-20}
shift || true
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FUZZ=$ROOT/fuzz
SAN=${FUZZ_SANITIZER:-none}
TIMEOUT=${FUZZ_TIMEOUT:-20}
RSS=${FUZZ_RSS_MB:-2048}
SKIP=" ${FUZZ_SKIP:-} "
SEED=${FUZZ_SEED:-0}
RUNS=${FUZZ_RUNS:-}
if [ -n "$RUNS" ]; then LIMIT=(-runs="$RUNS"); SECS=0; else LIMIT=(-max_total_time="$SECS"); fi

command -v cargo-fuzz >/dev/null || { echo "fuzz-smoke.sh: cargo-fuzz not found: cargo install cargo-fuzz --locked" >&2; exit 2; }
if [ "$SAN" != none ] && ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1   # -Zsanitizer on a stable compiler
fi
# ASan and plain builds differ in RUSTFLAGS: keep them apart so switching does not rebuild all.
TARGET_DIR=$FUZZ/target/san-$SAN

cd "$ROOT"
mkdir -p "$FUZZ/target"
echo "== building fuzz targets (sanitizer: $SAN)"
cargo fuzz build --fuzz-dir "$FUZZ" -s "$SAN" --target-dir "$TARGET_DIR" >"$FUZZ/target/.smoke-build.log" 2>&1 \
  || { tail -40 "$FUZZ/target/.smoke-build.log" >&2; echo "fuzz-smoke.sh: build failed" >&2; exit 1; }

if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list --fuzz-dir "$FUZZ"); fi
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/shp-fuzz-smoke.XXXXXX")
trap '[ "${FUZZ_KEEP:-0}" = 1 ] || rm -rf "$SCRATCH"' EXIT

run_one() {
  local t=$1
  mkdir -p "$SCRATCH/$t" "$FUZZ/artifacts/$t"
  cargo fuzz run --fuzz-dir "$FUZZ" -s "$SAN" --target-dir "$TARGET_DIR" "$t" "$SCRATCH/$t" "$FUZZ/corpus/$t" -- \
    "${LIMIT[@]}" -seed="$SEED" -timeout="$TIMEOUT" -rss_limit_mb="$RSS" -print_final_stats=1 \
    -artifact_prefix="$FUZZ/artifacts/$t/" >"$SCRATCH/$t.log" 2>&1
}

failed=()
for t in "${targets[@]}"; do
  case $SKIP in *" $t "*) echo "== $t: skipped (FUZZ_SKIP)"; continue ;; esac
  # Inputs that once showed a bug must keep passing: replay them first.
  found=("$FUZZ/artifacts-found/$t"/*)
  if [ -e "${found[0]}" ]; then
    echo "== $t: replaying ${#found[@]} input(s) from fuzz/artifacts-found/$t"
    if ! cargo fuzz run --fuzz-dir "$FUZZ" -s "$SAN" --target-dir "$TARGET_DIR" "$t" "${found[@]}" -- \
      -timeout="$TIMEOUT" -rss_limit_mb="$RSS" >"$SCRATCH/$t.replay.log" 2>&1; then
      failed+=("$t")
      echo "   FAILED: $(grep -a -m1 -E 'panicked at|ERROR: libFuzzer' "$SCRATCH/$t.replay.log" || echo 'see log')"
      echo "   (a known bug is still there: see fuzz/README.md, \"Bugs found\")"
      continue
    fi
  fi
  if [ -n "$RUNS" ]; then echo "== $t: $RUNS runs"; else echo "== $t: ${SECS}s"; fi
  t0=$SECONDS
  if run_one "$t"; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$SCRATCH/$t.log")
    echo "   ok: ${runs:-?} runs in $((SECONDS - t0)) s, $(find "$SCRATCH/$t" -type f | wc -l) new inputs"
    if [ "${FUZZ_MERGE:-0}" = 1 ]; then
      before=$(find "$FUZZ/corpus/$t" -type f | wc -l)
      cargo fuzz run --fuzz-dir "$FUZZ" -s "$SAN" --target-dir "$TARGET_DIR" "$t" "$FUZZ/corpus/$t" "$SCRATCH/$t" -- \
        -merge=1 -timeout="$TIMEOUT" -rss_limit_mb="$RSS" >"$SCRATCH/$t.merge.log" 2>&1 ||
        { echo "   merge failed:"; tail -5 "$SCRATCH/$t.merge.log" | sed "s/^/   /"; failed+=("$t"); }
      echo "   corpus: $before -> $(find "$FUZZ/corpus/$t" -type f | wc -l) inputs"
    fi
  else
    failed+=("$t")
    echo "   FAILED: $(grep -a -m1 -E 'panicked at|ERROR: libFuzzer' "$SCRATCH/$t.log" || echo 'see log')"
    grep -a -A3 'panicked at' "$SCRATCH/$t.log" | head -6 | sed 's/^/   /' || true
    grep -a -E '^\s+(fuzz/)?artifacts/|Test unit written to' "$SCRATCH/$t.log" | head -2 | sed 's/^/   /' || true
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz-smoke.sh: failing targets: ${failed[*]} (new inputs in fuzz/artifacts/; known ones in fuzz/artifacts-found/)" >&2
  exit 1
fi
echo "fuzz-smoke.sh: all targets ran ${RUNS:-${SECS}s} ${RUNS:+runs }without a failure"
