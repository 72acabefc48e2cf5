#!/usr/bin/env bash
# benches/mount.sh CORPUS [TAG] [CMD...] -- time to start a program in an image's root file system:
# `shp mount` (the tree from the tar headers, file data read as the program touches it), `shp mount
# --from` a station on 127.0.0.1 into an empty home (lazy: every block fetched as it is needed,
# `--no-prefetch`), against `shp unpack` (every file written first) and `umoci unpack`, then CMD run
# in the tree with chroot. Same machine, same run: RUNS (default 3) alternating runs, page cache dropped before each
# when root. Also prints what the mounted run read (the mount's own count at unmount).
#
# CORPUS: what /work/shared/corpus/build-corpus.sh OUT made (OUT/oci), or a layout. TAG defaults to
# py311; CMD to `/usr/bin/python3 -c 'import json, sqlite3; print(1)'`. Knobs: SHP (default
# target/release/shp), WORK (removed unless KEEP=1), RUNS. Needs root (FUSE, chroot), umoci,
# python3. Run by hand, not in CI.
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHP=${SHP:-$ROOT/target/release/shp}
IN=${1:?usage: mount.sh CORPUS_DIR_OR_OCI_LAYOUT [TAG] [CMD...]}
TAG=${2:-py311}
shift $(( $# >= 2 ? 2 : 1 ))
if [ $# -gt 0 ]; then CMD=("$@"); else CMD=(/usr/bin/python3 -c 'import json, sqlite3; print(1)'); fi
RUNS=${RUNS:-3}
[ -f "$IN/index.json" ] || IN=$IN/oci
[ "$(id -u)" = 0 ] || { echo "mount.sh: needs root (FUSE mounts, chroot)" >&2; exit 2; }
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/shp-bench-mount.XXXXXX")}
MPID=
SPID=
cleanup() {
  if [ -n "$MPID" ]; then kill "$MPID" 2>/dev/null || true; wait "$MPID" 2>/dev/null || true; fi
  if [ -n "$SPID" ]; then kill "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; fi
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
[ -x "$SHP" ] || (cd "$ROOT" && cargo build --release -p shp-cli >/dev/null)
H=$WORK/home
"$SHP" --home "$H" init >/dev/null 2>&1
"$SHP" --home "$H" push "oci:$IN:$TAG" --tag "bench:$TAG" -q >/dev/null
ROOTCID=$("$SHP" --home "$H" inspect "bench:$TAG" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["root"])')
"$SHP" --home "$H" start --listen 127.0.0.1:0 --no-p2p --log-level warn >"$WORK/station.out" 2>"$WORK/station.err" &
SPID=$!
for _ in $(seq 1 300); do [ -s "$WORK/station.out" ] && break; sleep 0.05; done
URL=$(awk '{print $2; exit}' "$WORK/station.out")
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
now() { python3 -c 'import time; print(time.monotonic())'; }
mount_t=(); lazy_t=(); unpack_t=(); umoci_t=()
for i in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/s" "$WORK/u"; mkdir -p "$WORK/m"
  drop
  t0=$(now)
  "$SHP" --home "$H" mount "bench:$TAG" "$WORK/m" >"$WORK/mount.out" 2>"$WORK/mount.err" &
  MPID=$!
  for _ in $(seq 1 600); do [ -s "$WORK/mount.out" ] && break; sleep 0.01; done
  [ -s "$WORK/mount.out" ] || { cat "$WORK/mount.err" "$WORK/lazy.err" >&2; exit 1; }
  chroot "$WORK/m" "${CMD[@]}" >/dev/null
  t1=$(now)
  "$SHP" --home "$H" umount "$WORK/m"; wait "$MPID" || true; MPID=
  mount_t+=("$(python3 -c "print(f'{$t1-$t0:.3f}')")")

  rm -rf "$WORK/empty"; "$SHP" --home "$WORK/empty" init >/dev/null 2>&1
  drop
  t0=$(now)
  "$SHP" --home "$WORK/empty" mount "$ROOTCID" "$WORK/m" --from "$URL" --no-prefetch >"$WORK/lazy.out" 2>"$WORK/lazy.err" &
  MPID=$!
  for _ in $(seq 1 3000); do [ -s "$WORK/lazy.out" ] && break; sleep 0.01; done
  [ -s "$WORK/lazy.out" ] || { cat "$WORK/lazy.err" >&2; exit 1; }
  chroot "$WORK/m" "${CMD[@]}" >/dev/null
  t1=$(now)
  "$SHP" --home "$WORK/empty" umount "$WORK/m"; wait "$MPID" || true; MPID=
  lazy_t+=("$(python3 -c "print(f'{$t1-$t0:.3f}')")")

  drop
  t0=$(now)
  "$SHP" --home "$H" unpack "bench:$TAG" "$WORK/s" >/dev/null 2>&1
  chroot "$WORK/s" "${CMD[@]}" >/dev/null
  t1=$(now); unpack_t+=("$(python3 -c "print(f'{$t1-$t0:.3f}')")")

  drop
  t0=$(now)
  umoci unpack --image "$IN:$TAG" "$WORK/u" >/dev/null 2>&1
  chroot "$WORK/u/rootfs" "${CMD[@]}" >/dev/null
  t1=$(now); umoci_t+=("$(python3 -c "print(f'{$t1-$t0:.3f}')")")
  echo "run $i: shp mount ${mount_t[-1]} s, lazy from a station ${lazy_t[-1]} s, shp unpack ${unpack_t[-1]} s, umoci unpack ${umoci_t[-1]} s (each: to the program's exit)"
done
cat "$WORK/mount.err" "$WORK/lazy.err"
"$SHP" --home "$H" inspect "bench:$TAG" --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print("image:", {k: d[k] for k in ("size", "layers") if k in d})' || true
python3 - "${mount_t[*]}" "${lazy_t[*]}" "${unpack_t[*]}" "${umoci_t[*]}" "$TAG" <<'PY'
import statistics, sys
m, l, s, u = (statistics.median(map(float, a.split())) for a in sys.argv[1:5])
print(f"{sys.argv[5]}: shp mount {m:.2f} s, lazy mount from a station {l:.2f} s, shp unpack {s:.2f} s, umoci unpack {u:.2f} s (medians, to the program's exit)")
print(f"  shp mount / umoci unpack = {m / u:.2f}x; lazy / umoci unpack = {l / u:.2f}x; shp mount / shp unpack = {m / s:.2f}x")
PY
