#!/usr/bin/env bash
# tests/netns/fanout.sh -- a fleet pulling one image at once. One seeder sits behind a rate-limited
# uplink (tc tbf on its namespace's side of the link); N stations on the other side all fetch the
# image at the same moment, connected to the seeder and to each other, and serve each other the
# blocks they already have (a fetch's blocks are served before it lands). Checks every pull
# bit-exact (manifest bytes, verify --rebuild) and that the stations served each other, and prints
# the time until all N hold the image and how much of it the seeder had to send.
#
# BENCH=1 also times N concurrent pulls (skopeo) of the same image from Debian's docker-registry
# behind the same link, and prints the ratio (benches/README.md). N (default 4), MB (16), RATE
# (40mbit). Needs root (ip netns), iproute2, umoci, bc, python3, a built shp (SHP=path; default
# target/debug/shp); BENCH=1 needs docker-registry and skopeo. Everything it starts it stops by
# PID; the namespaces go at exit. FANOUT_LOG sets the stations' log filter (RUST_LOG style).
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHP=${SHP:-$ROOT/target/debug/shp}
N=${N:-4}
MB=${MB:-16}
RATE=${RATE:-40mbit}
P=shpf$$
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shp-fanout.XXXXXX")
PIDS=()
say() { printf '== %s\n' "$*"; }
die() { echo "fanout.sh: $*" >&2; exit 1; }
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for n in fleet seed; do ip netns del "$P-$n" 2>/dev/null || true; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
# shellcheck source=tests/netns/lib.sh
. "$ROOT/tests/netns/lib.sh"
[ "$(id -u)" = 0 ] || die "needs root (ip netns)"
[ -x "$SHP" ] || die "$SHP not found (cargo build -p shp-cli)"
SEED_IP=10.78.0.11
FLEET_IP=10.78.0.10

say "hosts: $P-seed (the seeder, $RATE uplink) and $P-fleet ($N stations)"
ip netns add "$P-seed"
ip netns add "$P-fleet"
ip link add "${P}s" type veth peer name "${P}f"
ip link set "${P}s" netns "$P-seed"
ip link set "${P}f" netns "$P-fleet"
for side in seed:s:$SEED_IP fleet:f:$FLEET_IP; do
  IFS=: read -r ns dev ip <<<"$side"
  ip -n "$P-$ns" link set lo up
  ip -n "$P-$ns" link set "$P$dev" name eth0
  ip -n "$P-$ns" addr add "$ip/24" dev eth0
  ip -n "$P-$ns" link set eth0 up
done
ip netns exec "$P-seed" tc qdisc add dev eth0 root tbf rate "$RATE" burst 64kb latency 100ms

say "an image of $MB MiB of random bytes on the seeder"
random_image "$MB"
"$SHP" --home "$WORK/seed" init >/dev/null 2>&1
ROOTCID=$("$SHP" --home "$WORK/seed" push -q "oci:$WORK/lay:latest" --tag app:v1)
MANIFEST=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"].split(":")[1])' "$WORK/lay/index.json")

# start HOME NS EXTRA...: a station in a namespace; waits for its banner; prints its PID.
start() {
  local home=$1 ns=$2
  shift 2
  mkfifo "$home.banner"
  ip netns exec "$ns" env RUST_LOG=${FANOUT_LOG:-info} "$SHP" --home "$home" start --listen 127.0.0.1:0 --no-mdns --no-dht "$@" \
    >"$home.banner" 2>"$home.log" &
  PIDS+=($!)
  local line
  read -r -t 30 line <"$home.banner" || { cat "$home.log" >&2; die "$home: shp start printed nothing"; }
  echo "$!"
}
start "$WORK/seed" "$P-seed" --p2p-listen "/ip4/$SEED_IP/tcp/4001" >/dev/null
SEEDER=$("$SHP" --home "$WORK/seed" addrs | grep "$SEED_IP" | head -1)
SEEDER_ID=${SEEDER##*/p2p/}

say "$N stations, each connected to the seeder and to the others"
ADDRS=()
for i in $(seq 1 "$N"); do
  h=$WORK/p$i
  "$SHP" --home "$h" init >/dev/null 2>&1
  start "$h" "$P-fleet" --p2p-listen "/ip4/$FLEET_IP/tcp/0" >"$h.pid"
  "$SHP" --home "$h" connect "$SEEDER" >/dev/null
  for a in "${ADDRS[@]}"; do "$SHP" --home "$h" connect "$a" >/dev/null; done
  ADDRS+=("$("$SHP" --home "$h" addrs | grep "$FLEET_IP" | head -1)")
done

say "all $N fetch the image at once"
t0=$(date +%s.%N)
FETCHES=()
for i in $(seq 1 "$N"); do
  "$SHP" --home "$WORK/p$i" fetch "$ROOTCID" --tag app:v1 --json >"$WORK/p$i.report" 2>"$WORK/p$i.err" &
  FETCHES+=($!)
done
for i in $(seq 1 "$N"); do
  wait "${FETCHES[$((i - 1))]}" || { cat "$WORK/p$i.err" >&2; die "p$i: the fetch failed"; }
done
t1=$(date +%s.%N)
P2P=$(echo "$t1 - $t0" | bc)
for i in $(seq 1 "$N"); do
  h=$WORK/p$i
  "$SHP" --home "$h" pull app:v1 "oci:$h.out:latest" >/dev/null
  got=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"].split(":")[1])' "$h.out/index.json")
  [ "$got" = "$MANIFEST" ] && cmp -s "$h.out/blobs/sha256/$got" "$WORK/lay/blobs/sha256/$MANIFEST" \
    || die "p$i: the manifest pulled is not the source's"
  "$SHP" --home "$h" verify --rebuild >/dev/null || die "p$i: verify --rebuild failed"
done
python3 - "$SEEDER_ID" "$P2P" "$WORK"/p*.report <<'PY' || die "the stations did not serve each other"
import json, sys
seeder, secs, reports = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
from_seeder = from_fellows = 0
for f in reports:
    r = json.load(open(f))
    rows = [p for p in r["peers"] if p["transport"] == "bitswap"]
    assert sum(p["blocks"] for p in rows) == r["blocks_fetched"], r
    from_seeder += sum(p["blocks"] for p in rows if p["peer"] == seeder)
    from_fellows += sum(p["blocks"] for p in rows if p["peer"] != seeder)
total = from_seeder + from_fellows
blocks = total / len(reports)
print(f"   all {len(reports)} hold it after {secs:.2f} s; blocks from the seeder: {from_seeder} "
      f"({from_seeder / blocks:.2f}x the image), from each other: {from_fellows}")
assert from_fellows > 0, "no station served another"
PY

if [ "${BENCH:-0}" = 1 ]; then
  say "the same $N pulls from Debian's docker-registry behind the same link"
  printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s:5000\n' \
    "$WORK/registry" "$SEED_IP" >"$WORK/registry.yml"
  ip netns exec "$P-seed" docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    ip netns exec "$P-fleet" curl -fs "http://$SEED_IP:5000/v2/" >/dev/null 2>&1 && break
    sleep 0.1
  done
  ip netns exec "$P-fleet" skopeo copy -q --dest-tls-verify=false "oci:$WORK/lay:latest" \
    "docker://$SEED_IP:5000/app:v1"
  t0=$(date +%s.%N)
  PULLS=()
  for i in $(seq 1 "$N"); do
    ip netns exec "$P-fleet" skopeo copy -q --src-tls-verify=false "docker://$SEED_IP:5000/app:v1" \
      "dir:$WORK/reg$i" &
    PULLS+=($!)
  done
  for p in "${PULLS[@]}"; do wait "$p" || die "a registry pull failed"; done
  t1=$(date +%s.%N)
  REG=$(echo "$t1 - $t0" | bc)
  python3 -c "import sys; p, r = float(sys.argv[1]), float(sys.argv[2]); print(f'   docker-registry: {r:.2f} s; shp fleet / registry = {p / r:.2f}x the time')" "$P2P" "$REG"
fi
say "netns fan-out: all passed"
