#!/usr/bin/env bash
# benches/mirror.sh -- a fleet pulling through a station as its pull-through mirror: CLIENTS (8)
# concurrent `skopeo copy` of one image into OCI layouts, (1) straight from Debian's docker-registry
# (the upstream), (2) through a fresh station mirroring it (cold: every blob fetched once from the
# upstream, streamed to all clients as it arrives, imported as a DAG meanwhile), (3) through the same
# station again (warm: from its home). All on 127.0.0.1, same run. Prints the three wall-clock times,
# the ratios cold/direct and warm/direct, and the upstream's blob GETs in the cold round.
#
# Knobs: SHP (binary; default target/release/shp, built if missing), CLIENTS (8), LAYERS (3),
# LAYER_MB (32: random bytes per layer, so gzip cannot shrink them), RUNS (1; medians printed),
# WORK (scratch, removed unless KEEP=1). Needs docker-registry, skopeo, umoci, curl, python3. Run by
# hand, not in CI: quote the figures as ratios.
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHP=${SHP:-$ROOT/target/release/shp}
CLIENTS=${CLIENTS:-8}
LAYERS=${LAYERS:-3}
LAYER_MB=${LAYER_MB:-32}
RUNS=${RUNS:-1}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/shp-bench-mirror.XXXXXX")}
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
[ -x "$SHP" ] || (cd "$ROOT" && cargo build --release -p shp-cli >/dev/null)

start_upstream
umoci init --layout "$WORK/lay" >/dev/null
umoci new --image "$WORK/lay:v1" >/dev/null
for i in $(seq 1 "$LAYERS"); do
  umoci unpack --rootless --image "$WORK/lay:v1" "$WORK/b" >/dev/null
  head -c $((LAYER_MB << 20)) /dev/urandom >"$WORK/b/rootfs/layer$i.bin"
  umoci repack --image "$WORK/lay:v1" "$WORK/b" >/dev/null
  rm -rf "$WORK/b"
done
skopeo copy -q --dest-tls-verify=false "oci:$WORK/lay:v1" "docker://$UP/library/app:v1"
echo "image: $LAYERS layers of $LAYER_MB MiB (random), $CLIENTS concurrent skopeo clients"

# fleet URL: CLIENTS concurrent pulls of URL; prints the seconds.
fleet() {
  rm -rf "$WORK/out"
  mkdir -p "$WORK/out"
  local t0 t1 pids=()
  t0=$(date +%s.%N)
  for c in $(seq 1 "$CLIENTS"); do
    skopeo copy -q --src-tls-verify=false "$1" "oci:$WORK/out/$c:v1" >"$WORK/client$c.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || { cat "$WORK"/client*.log >&2; exit 1; }; done
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}

direct=() cold=() warm=() gets=()
for r in $(seq 1 "$RUNS"); do
  direct+=("$(fleet "docker://$UP/library/app:v1")")
  home=$WORK/station$r
  "$SHP" --home "$home" init >/dev/null 2>&1
  mkfifo "$home.banner"
  "$SHP" --home "$home" start --listen 127.0.0.1:0 --no-p2p --mirror "docker.io=http://$UP" \
    >"$home.banner" 2>"$home.log" &
  PIDS+=($!)
  read -r -t 30 line <"$home.banner"
  st=$(echo "$line" | awk '{print $2}' | sed 's#http://##')
  before=$(grep -c '"GET /v2/library/app/blobs/' "$WORK/upstream.log" || true)
  cold+=("$(fleet "docker://$st/docker.io/library/app:v1")")
  after=$(grep -c '"GET /v2/library/app/blobs/' "$WORK/upstream.log" || true)
  gets+=($((after - before)))
  # The import finishes in the background: wait for it before the warm round.
  for _ in $(seq 1 600); do "$SHP" --home "$home" ls | grep -q 'docker.io/library/app@' && break; sleep 0.1; done
  warm+=("$(fleet "docker://$st/docker.io/library/app:v1")")
  echo "run $r: direct ${direct[-1]} s, mirror cold ${cold[-1]} s (${gets[-1]} upstream blob GETs), warm ${warm[-1]} s"
done
python3 - "${direct[*]}" "${cold[*]}" "${warm[*]}" <<'PY'
import statistics, sys
d, c, w = (statistics.median(map(float, a.split())) for a in sys.argv[1:4])
print(f"median: direct {d:.2f} s, mirror cold {c:.2f} s ({c / d:.2f}x direct), warm {w:.2f} s ({w / d:.2f}x direct)")
PY
