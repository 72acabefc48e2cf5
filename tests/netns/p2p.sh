#!/usr/bin/env bash
# tests/netns/p2p.sh -- stations on separate hosts: network namespaces joined by a bridge, each seeder
# behind a rate-limited link (tc tbf). Checks, with real stations and no configuration:
#   1. mDNS: a station finds the three seeders on its LAN by itself (multicast stays inside the
#      namespaces this script made);
#   2. a pull from all three at once uses every one of them, and is bit-exact;
#   3. a seeder killed mid-pull: the pull completes from the others, bit-exact;
# and prints the time of one seeder vs three (a figure, not an assertion: BENCH=1 runs it 3 times,
# see benches/README.md). Needs root (ip netns), iproute2, umoci and a built shp (SHP=path; default
# target/debug/shp). Everything it starts it stops by PID; the namespaces go at exit.
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHP=${SHP:-$ROOT/target/debug/shp}
MB=${MB:-16}
RATE=${RATE:-40mbit}
RUNS=$([ "${BENCH:-0}" = 1 ] && echo 3 || echo 1)
P=shpt$$
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shp-netns.XXXXXX")
PIDS=()
say() { printf '== %s\n' "$*"; }
die() { echo "p2p.sh: $*" >&2; exit 1; }
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for n in sw h0 h1 h2 h3; do ip netns del "$P-$n" 2>/dev/null || true; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
# shellcheck source=tests/netns/lib.sh
. "$ROOT/tests/netns/lib.sh"
[ "$(id -u)" = 0 ] || die "needs root (ip netns)"
[ -x "$SHP" ] || die "$SHP not found (cargo build -p shp-cli)"

say "hosts: $P-h0 (puller), $P-h1..h3 (seeders, $RATE each), bridged in $P-sw"
ip netns add "$P-sw"
ip -n "$P-sw" link add br0 type bridge
ip -n "$P-sw" link set br0 up
for i in 0 1 2 3; do
  ns=$P-h$i
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "${P}v$i" type veth peer name "${P}b$i"
  ip link set "${P}v$i" netns "$ns"
  ip link set "${P}b$i" netns "$P-sw"
  ip -n "$ns" link set "${P}v$i" name eth0
  ip -n "$ns" addr add "10.77.0.$((i + 10))/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$P-sw" link set "${P}b$i" master br0
  ip -n "$P-sw" link set "${P}b$i" up
  if [ "$i" != 0 ]; then
    ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$RATE" burst 64kb latency 100ms
  fi
done

say "an image of $MB MiB of random bytes, held by three seeders"
random_image "$MB"
"$SHP" --home "$WORK/s1" init >/dev/null 2>&1
ROOTCID=$("$SHP" --home "$WORK/s1" push -q "oci:$WORK/lay:latest" --tag app:v1)
"$SHP" --home "$WORK/s1" car export "$ROOTCID" "$WORK/img.car" 2>/dev/null
for i in 2 3; do
  "$SHP" --home "$WORK/s$i" init >/dev/null 2>&1
  "$SHP" --home "$WORK/s$i" car import "$WORK/img.car" >/dev/null 2>&1
done

# start HOME NS EXTRA...: a station in a namespace; waits for its banner.
start() {
  local home=$1 ns=$2
  shift 2
  mkfifo "$home.banner"
  ip netns exec "$ns" "$SHP" --home "$home" start --listen 127.0.0.1:0 "$@" >"$home.banner" 2>"$home.log" &
  PIDS+=($!)
  local line
  read -r -t 30 line <"$home.banner" || { cat "$home.log" >&2; die "$home: shp start printed nothing"; }
  echo "$!"
}
for i in 1 2 3; do
  start "$WORK/s$i" "$P-h$i" --p2p-listen "/ip4/10.77.0.$((i + 10))/tcp/4001" >"$WORK/s$i.pid"
done

say "1. mDNS: a station on h0 finds the three seeders with no configuration"
"$SHP" --home "$WORK/m" init >/dev/null 2>&1
start "$WORK/m" "$P-h0" --p2p-listen /ip4/10.77.0.10/tcp/4001 >/dev/null
n=0
for _ in $(seq 1 150); do
  n=$("$SHP" --home "$WORK/m" peers --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  [ "$n" -ge 3 ] && break
  sleep 0.2
done
[ "$n" -ge 3 ] || { tail -n 40 "$WORK/m.log" >&2; die "mDNS found $n of 3 seeders in 30 s"; }
echo "   found $n peers"

# pull HOME [ADDR...]: a fresh station on h0 without mDNS, connected to the given seeders; prints
# the seconds its fetch took and checks the result bit-exact.
SEEDERS=()
for i in 1 2 3; do
  SEEDERS+=("$("$SHP" --home "$WORK/s$i" addrs | grep 10.77.0 | head -1)")
done
pull() {
  local home=$1
  shift
  "$SHP" --home "$home" init >/dev/null 2>&1
  # No DHT: the pull uses exactly the seeders it is given (the DHT would find the others).
  start "$home" "$P-h0" --no-mdns --no-dht --p2p-listen /ip4/10.77.0.10/tcp/0 >"$home.pid"
  for a in "$@"; do "$SHP" --home "$home" connect "$a" >/dev/null; done
  local t0 t1
  t0=$(date +%s.%N)
  "$SHP" --home "$home" fetch "$ROOTCID" --tag app:v1 --json >"$home.report"
  t1=$(date +%s.%N)
  "$SHP" --home "$home" pull app:v1 "oci:$home.out:latest" >/dev/null
  cmp -s "$home.out/blobs/sha256/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"].split(":")[1])' "$home.out/index.json")" \
    "$WORK/lay/blobs/sha256/$(python3 -c 'import json,sys; print([m for m in json.load(open(sys.argv[1]))["manifests"]][0]["digest"].split(":")[1])' "$WORK/lay/index.json")" \
    || die "$home: the manifest pulled is not the source's"
  "$SHP" --home "$home" verify --rebuild >/dev/null || die "$home: verify --rebuild failed"
  kill "$(cat "$home.pid")"
  echo "$t1 - $t0" | bc
}

say "2. one seeder vs three ($RUNS run(s))"
one=() three=()
for r in $(seq 1 "$RUNS"); do
  one+=("$(pull "$WORK/one$r" "${SEEDERS[0]}")")
  three+=("$(pull "$WORK/three$r" "${SEEDERS[@]}")")
  python3 - "$WORK/three$r.report" "${SEEDERS[@]}" <<'PY' || die "the pull from three seeders did not use all three"
import json, sys
r = json.load(open(sys.argv[1]))
ids = [a.rsplit("/p2p/", 1)[1] for a in sys.argv[2:]]
rows = {p["peer"]: p for p in r["peers"] if p["transport"] == "bitswap"}
assert len(rows) == 3 and all(rows.get(i, {}).get("blocks", 0) > 0 for i in ids), list(rows.values())
assert sum(p["blocks"] for p in rows.values()) == r["blocks_fetched"], r
print("   blocks per seeder:", [rows[i]["blocks"] for i in ids])
PY
  echo "   run $r: one seeder ${one[-1]} s, three ${three[-1]} s"
done
python3 - "${one[*]}" "${three[*]}" <<'PY'
import statistics, sys
o = statistics.median(map(float, sys.argv[1].split()))
t = statistics.median(map(float, sys.argv[2].split()))
print(f"   median: one seeder {o:.2f} s, three {t:.2f} s: {o / t:.2f}x faster")
PY

say "3. a seeder killed mid-pull: the pull completes from the others"
home=$WORK/killed
"$SHP" --home "$home" init >/dev/null 2>&1
start "$home" "$P-h0" --no-mdns --p2p-listen /ip4/10.77.0.10/tcp/0 >/dev/null
for a in "${SEEDERS[@]}"; do "$SHP" --home "$home" connect "$a" >/dev/null; done
"$SHP" --home "$home" fetch "$ROOTCID" --tag app:v1 --json >"$home.report" 2>"$home.err" &
FETCH=$!
sleep 0.7
kill -9 "$(cat "$WORK/s2.pid")"
wait "$FETCH" || { cat "$home.err" >&2; die "the pull failed when a seeder died"; }
"$SHP" --home "$home" verify --rebuild >/dev/null || die "verify after a seeder died"
python3 - "$home.report" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("   blocks per seeder:", [(p["peer"][-6:], p["blocks"], p["dropped"]) for p in r["peers"]])
PY
say "netns p2p: all passed"
