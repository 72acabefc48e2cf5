#!/usr/bin/env bash
# benches/mount-read.sh CORPUS [TAG] -- throughput of reading every file of an image's root file
# system: through `shp mount` (each read fetching and verifying the chunks it touches from the
# home's store) against the same tree as `umoci unpack` wrote it on disk. Same machine, same run,
# RUNS (default 3) alternating, two conditions:
#   cold: page cache dropped before each read (the store's packs and umoci's files both on disk);
#   warm: the store's packs and umoci's tree read once beforehand (both in the page cache), each
#         mount fresh (the FUSE page cache empty, so every byte still goes through shp).
# The reader is one `cat` per file in path order (xargs), so the figure is single-stream. Prints MB/s
# for each and the ratio shp/umoci (>1: the mount reads faster). The trees are checked to hold the
# same bytes first (tests/rootfs/compare-trees.py).
#
# CORPUS: what /work/shared/corpus/build-corpus.sh OUT made (OUT/oci), or a layout. Knobs: SHP
# (default target/release/shp), WORK (removed unless KEEP=1), RUNS. Needs root (FUSE, drop_caches),
# umoci, python3. Run by hand, not in CI.
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHP=${SHP:-$ROOT/target/release/shp}
IN=${1:?usage: mount-read.sh CORPUS_DIR_OR_OCI_LAYOUT [TAG]}
TAG=${2:-py311}
RUNS=${RUNS:-3}
[ -f "$IN/index.json" ] || IN=$IN/oci
[ "$(id -u)" = 0 ] || { echo "mount-read.sh: needs root (FUSE mounts, drop_caches)" >&2; exit 2; }
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/shp-bench-mread.XXXXXX")}
MPID=
cleanup() {
  if [ -n "$MPID" ]; then "$SHP" --home "$H" umount "$WORK/m" 2>/dev/null || kill "$MPID" 2>/dev/null || true; wait "$MPID" 2>/dev/null || true; fi
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
[ -x "$SHP" ] || (cd "$ROOT" && cargo build --release -p shp-cli >/dev/null)
H=$WORK/home
"$SHP" --home "$H" init >/dev/null 2>&1
"$SHP" --home "$H" push "oci:$IN:$TAG" --tag "bench:$TAG" -q >/dev/null
umoci unpack --image "$IN:$TAG" "$WORK/u" >/dev/null 2>&1
mkdir -p "$WORK/m"
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
now() { python3 -c 'import time; print(time.monotonic())'; }
mount_it() {
  "$SHP" --home "$H" mount "bench:$TAG" "$WORK/m" >"$WORK/mount.out" 2>"$WORK/mount.err" &
  MPID=$!
  for _ in $(seq 1 600); do [ -s "$WORK/mount.out" ] && break; sleep 0.01; done
  [ -s "$WORK/mount.out" ] || { cat "$WORK/mount.err" >&2; exit 1; }
}
umount_it() { "$SHP" --home "$H" umount "$WORK/m"; wait "$MPID" || true; MPID=; }
# Every regular file, in path order, read once; prints the seconds it took.
read_all() {
  local t0 t1
  t0=$(now)
  (cd "$1" && find . -type f -print0 | sort -z | xargs -0 cat >/dev/null)
  t1=$(now)
  python3 -c "print(f'{$t1-$t0:.3f}')"
}
mount_it
python3 "$ROOT/tests/rootfs/compare-trees.py" "$WORK/u/rootfs" "$WORK/m" >/dev/null \
  || { echo "mount-read.sh: the mount and umoci's tree differ" >&2; exit 1; }
umount_it
BYTES=$(cd "$WORK/u/rootfs" && find . -type f -print0 | xargs -0 stat -c %s | awk '{s+=$1} END {print s}')
cold_m=(); cold_u=(); warm_m=(); warm_u=()
for i in $(seq 1 "$RUNS"); do
  drop; mount_it; cold_m+=("$(read_all "$WORK/m")"); umount_it
  drop; cold_u+=("$(read_all "$WORK/u/rootfs")")
  cat "$H"/store/packs/* >/dev/null 2>&1 || true
  read_all "$WORK/u/rootfs" >/dev/null
  mount_it; warm_m+=("$(read_all "$WORK/m")"); umount_it
  warm_u+=("$(read_all "$WORK/u/rootfs")")
  echo "run $i: cold: shp mount ${cold_m[-1]} s, umoci's tree ${cold_u[-1]} s; warm: shp mount ${warm_m[-1]} s, umoci's tree ${warm_u[-1]} s"
done
python3 - "$BYTES" "${cold_m[*]}" "${cold_u[*]}" "${warm_m[*]}" "${warm_u[*]}" "$TAG" <<'PY'
import statistics, sys
b = int(sys.argv[1])
cm, cu, wm, wu = (statistics.median(map(float, a.split())) for a in sys.argv[2:6])
mb = lambda t: b / t / 1e6
print(f"{sys.argv[6]}: {b} bytes in regular files (medians of the runs)")
print(f"  cold: shp mount {mb(cm):.0f} MB/s, umoci's tree on disk {mb(cu):.0f} MB/s: shp/umoci = {cu / cm:.2f}x")
print(f"  warm: shp mount {mb(wm):.0f} MB/s, umoci's tree on disk {mb(wu):.0f} MB/s: shp/umoci = {wu / wm:.2f}x")
PY
