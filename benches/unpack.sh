#!/usr/bin/env bash
# benches/unpack.sh CORPUS [TAG] -- `shp unpack` of an image from the store against `umoci unpack`
# of the same image from an OCI layout, same machine, same run: RUNS (default 3) alternating runs
# of each into a fresh directory on the same file system, page cache dropped before each when root;
# prints each time, the medians and their ratio, and checks the two trees are the same
# (tests/rootfs/compare-trees.py).
#
# CORPUS: what /work/shared/corpus/build-corpus.sh OUT made (OUT/oci), or a layout. TAG defaults to
# py311 (the corpus's Python image, ~280 MB unpacked). Knobs: SHP (default target/release/shp),
# WORK (removed unless KEEP=1), RUNS. Needs umoci, python3. Run by hand, not in CI.
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHP=${SHP:-$ROOT/target/release/shp}
IN=${1:?usage: unpack.sh CORPUS_DIR_OR_OCI_LAYOUT [TAG]}
TAG=${2:-py311}
RUNS=${RUNS:-3}
[ -f "$IN/index.json" ] || IN=$IN/oci
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/shp-bench-unpack.XXXXXX")}
cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"; }
trap cleanup EXIT
[ -x "$SHP" ] || (cd "$ROOT" && cargo build --release -p shp-cli >/dev/null)
"$SHP" --home "$WORK/home" init >/dev/null 2>&1
"$SHP" --home "$WORK/home" push "oci:$IN:$TAG" --tag "bench:$TAG" -q >/dev/null
drop() { if [ "$(id -u)" = 0 ]; then sync; echo 3 >/proc/sys/vm/drop_caches; fi; }
secs() { python3 -c 'import sys,time; t=time.monotonic(); import subprocess; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(f"{time.monotonic()-t:.3f}")' "$@"; }
shp_t=(); umoci_t=()
for i in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/s" "$WORK/u"
  drop; shp_t+=("$(secs "$SHP" --home "$WORK/home" unpack "bench:$TAG" "$WORK/s")")
  drop; umoci_t+=("$(secs umoci unpack --image "$IN:$TAG" "$WORK/u")")
  echo "run $i: shp ${shp_t[-1]} s, umoci ${umoci_t[-1]} s"
done
python3 "$ROOT/tests/rootfs/compare-trees.py" "$WORK/u/rootfs" "$WORK/s"
python3 - "${shp_t[*]}" "${umoci_t[*]}" "$TAG" <<'PY'
import statistics, sys
s = statistics.median(map(float, sys.argv[1].split())); u = statistics.median(map(float, sys.argv[2].split()))
print(f"{sys.argv[3]}: shp unpack {s:.2f} s, umoci unpack {u:.2f} s (medians): shp / umoci = {s / u:.2f}x")
PY
