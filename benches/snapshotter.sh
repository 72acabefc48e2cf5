#!/usr/bin/env bash
# benches/snapshotter.sh CORPUS [TAG] -- time to the first output of a command in a container,
# containerd 1.6 + runc on a node whose only link to the station holding the image is rate-limited
# (RATE, default 100mbit, tc tbf on the station's side of a veth between two network namespaces):
#   normal:  containerd pulls the image from the station's registry and unpacks it (overlayfs
#            snapshotter), then `ctr run`;
#   lazy:    containerd pulls through `shp snapshotter --from STATION` on an empty home (only the
#            manifest and config are downloaded; each layer is mounted from the station), then
#            `ctr run` reads what the command touches; the rest is prefetched in the background;
#   lazy-np: the same with --no-prefetch (only what the command reads crosses the link).
# containerd, the snapshotter and the pull client enter only the node's network namespace (nsenter
# --net): they share the host's mounts, as FUSE layers and runc need. Each run starts from nothing (a new containerd root, a new snapshotter home); RUNS (default 3)
# alternating runs (the pull client runs in the node's namespace: containerd's Go client fetches);
# the median is quoted, with the bytes the node received before the first output.
#
# CORPUS: what /work/shared/corpus/build-corpus.sh OUT made (OUT/oci), or a layout. TAG defaults to
# py311; the command is CMD (default `python3 -c 'import json, sqlite3; print("ready")'`). Knobs:
# SHP (default target/release/shp), RATE, RUNS, KEEP=1. Needs root (ip netns, tc, containerd, FUSE),
# containerd + runc, go with Debian's containerd sources, python3. Run by hand, not in CI.
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHP=${SHP:-$ROOT/target/release/shp}
IN=${1:?usage: snapshotter.sh CORPUS_DIR_OR_OCI_LAYOUT [TAG]}
TAG=${2:-py311}
[ -f "$IN/index.json" ] || IN=$IN/oci
RATE=${RATE:-100mbit}
RUNS=${RUNS:-3}
DEFAULT_CMD="python3 -c 'import json, sqlite3; print(\"ready\")'"
CMD=${CMD:-$DEFAULT_CMD}
[ "$(id -u)" = 0 ] || { echo "snapshotter.sh: needs root" >&2; exit 2; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shp-bench-snap.XXXXXX")
P=shpsb$$
PIDS=()
# shellcheck source=tests/runtimes/lib.sh
. "$ROOT/tests/runtimes/lib.sh"
cleanup() {
  for p in "${PIDS[@]}"; do stop "$p"; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  awk -v w="$WORK" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  for n in seed node; do ip netns del "$P-$n" 2>/dev/null || true; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
[ -x "$SHP" ] || (cd "$ROOT" && cargo build --release -p shp-cli >/dev/null)
GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$WORK/gocache go build -o "$WORK/pull" "$ROOT/tests/snapshotter/pull.go"

ip netns add "$P-seed"
ip netns add "$P-node"
ip link add "${P}s" type veth peer name "${P}n"
ip link set "${P}s" netns "$P-seed"
ip link set "${P}n" netns "$P-node"
ip -n "$P-seed" link set "${P}s" name eth0
ip -n "$P-node" link set "${P}n" name eth0
ip -n "$P-seed" addr add 10.213.0.1/24 dev eth0
ip -n "$P-node" addr add 10.213.0.2/24 dev eth0
for n in seed node; do ip -n "$P-$n" link set eth0 up; ip -n "$P-$n" link set lo up; done
ip netns exec "$P-seed" tc qdisc add dev eth0 root tbf rate "$RATE" burst 64kb latency 100ms

"$SHP" --home "$WORK/s" init >/dev/null 2>&1
"$SHP" --home "$WORK/s" push "oci:$IN:$TAG" --tag "$TAG:bench" -q >/dev/null
SIZE=$(python3 - "$IN" "$TAG" <<'PY'
import json, sys, os
lay, tag = sys.argv[1], sys.argv[2]
idx = json.load(open(os.path.join(lay, "index.json")))
d = next(m for m in idx["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
blob = lambda dg: os.path.join(lay, "blobs", *dg.split(":"))
man = json.load(open(blob(d["digest"])))
print(sum(l["size"] for l in man["layers"]))
PY
)
ip netns exec "$P-seed" "$SHP" --home "$WORK/s" start --listen 10.213.0.1:5000 --insecure-public --no-p2p --log-level warn \
  >"$WORK/station.out" 2>"$WORK/station.log" &
PIDS+=($!)
for _ in $(seq 1 300); do [ -s "$WORK/station.out" ] && break; sleep 0.05; done
REF=10.213.0.1:5000/$TAG:bench
rx() { ip netns exec "$P-node" cat /sys/class/net/eth0/statistics/rx_bytes; }
echo "image $TAG: $SIZE bytes of compressed layers; link $RATE"

# one MODE RUN: prints "SECONDS BYTES" (to the first output line, bytes the node received by then)
one() {
  local mode=$1 d=$WORK/run-$1-$2
  mkdir -p "$d"
  local sn=overlayfs
  local snpid=
  if [ "$mode" != normal ]; then
    sn=shp
    local np=()
    [ "$mode" = lazy-np ] && np=(--no-prefetch)
    "$SHP" --home "$d/home" init >/dev/null 2>&1
    mkfifo "$d/snap.banner"
    nsenter --net=/run/netns/"$P-node" "$SHP" --home "$d/home" snapshotter --address "$d/shp.sock" \
      --from http://10.213.0.1:5000 "${np[@]}" --log-level warn >"$d/snap.banner" 2>"$d/snap.log" &
    snpid=$!
    PIDS+=("$snpid")
    read -r -t 30 _ <"$d/snap.banner"
  fi
  containerd_config "$d" "$d/c.sock" "shp=$d/shp.sock"
  nsenter --net=/run/netns/"$P-node" containerd --config "$d/config.toml" >"$d/containerd.log" 2>&1 &
  local cpid=$!
  PIDS+=("$cpid")
  for _ in $(seq 1 100); do ctr -a "$d/c.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
  sync
  echo 3 >/proc/sys/vm/drop_caches
  local rx0 t0 t1 rx1
  rx0=$(rx)
  t0=$(date +%s.%N)
  nsenter --net=/run/netns/"$P-node" "$WORK/pull" "$d/c.sock" b "$sn" "$REF" >"$d/pull.json" 2>"$d/pull.log" || { cat "$d/pull.log" >&2; exit 1; }
  ctr -a "$d/c.sock" -n b run --rm --snapshotter "$sn" "$REF" c /bin/sh -c "$CMD" 2>"$d/run.err" |
    { read -r first; date +%s.%N >"$d/t1"; rx >"$d/rx1"; echo "$first" >"$d/first"; cat >/dev/null; }
  t1=$(cat "$d/t1")
  rx1=$(cat "$d/rx1")
  [ -n "$(cat "$d/first")" ] || { echo "$mode: no output: $(cat "$d/run.err")" >&2; exit 1; }
  # The default command must say it is ready (an error would be no output, or another line).
  [ "$CMD" != "$DEFAULT_CMD" ] || [ "$(cat "$d/first")" = ready ] ||
    { echo "$mode: printed $(cat "$d/first"), not ready: $(cat "$d/run.err")" >&2; exit 1; }
  echo "$(echo "$t1 - $t0" | bc) $((rx1 - rx0))"
  stop "$cpid"
  [ -n "$snpid" ] && stop "$snpid"
  return 0
}
declare -A T B
for r in $(seq 1 "$RUNS"); do
  for m in normal lazy lazy-np; do
    read -r s b < <(one "$m" "$r")
    T[$m]+="$s "
    B[$m]+="$b "
    printf '  run %d %-8s %7.2f s  %12d bytes received before the first output\n' "$r" "$m" "$s" "$b"
  done
done
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
tn=$(echo "${T[normal]}" | median)
for m in normal lazy lazy-np; do
  t=$(echo "${T[$m]}" | median)
  b=$(echo "${B[$m]}" | median)
  printf '%-8s median %7.2f s (%.3fx normal), %d bytes before the first output (%.1f%% of the compressed layers)\n' \
    "$m" "$t" "$(echo "$t / $tn" | bc -l)" "$b" "$(echo "100 * $b / $SIZE" | bc -l)"
done
