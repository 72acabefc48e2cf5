#!/usr/bin/env bash
# benches/kills.sh [N] -- crash safety under SIGKILL at random moments, N times per stage (default
# 200; CI runs 20): `shp push`; `shp compact` and `shp gc` on a deferred home; `shp fetch` from a
# peer; a skopeo push into a station that is killed mid-upload (and restarted). After each series:
# `shp verify` passes, every ref pulls back with its manifest digest and `verify --rebuild` (every blob
# rebuilt and its sha256 checked) is clean, and a fresh push or fetch works. Prints how many runs were
# killed and how many finished first. Needs umoci, skopeo, python3 and a built shp (SHP=path; default
# target/debug/shp). Everything it starts it stops by PID.
set -euo pipefail
export LC_ALL=C
N=${1:-200}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHP=${SHP:-$ROOT/target/debug/shp}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shp-kills.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
die() { echo "kills.sh: $*" >&2; exit 1; }
[ -x "$SHP" ] || die "$SHP not found (cargo build -p shp-cli)"
shp() { "$SHP" "$@"; }

# Two images of a few MiB (many files, some shared), so every stage has work to interrupt.
mk_image() {
  local lay=$1 seed=$2
  umoci init --layout "$lay" >/dev/null
  umoci new --image "$lay:latest" >/dev/null
  umoci unpack --rootless --image "$lay:latest" "$lay.b" >/dev/null
  python3 - "$lay.b/rootfs" "$seed" <<'PY'
import os, random, sys
root, seed = sys.argv[1], int(sys.argv[2])
r = random.Random(seed)
shared = random.Random(1)
for i in range(40):
    with open(os.path.join(root, f"shared{i}"), "wb") as f:
        f.write(shared.randbytes(64 << 10))
    with open(os.path.join(root, f"own{i}"), "wb") as f:
        f.write(r.randbytes(r.randrange(16 << 10, 160 << 10)))
PY
  umoci repack --image "$lay:latest" "$lay.b" >/dev/null
  rm -rf "$lay.b"
}
mk_image "$WORK/a" 2
mk_image "$WORK/b" 3

# Kill CMD... at a random moment within 1.2 × how long it takes uncut (measured once).
declare -A TOOK
killed=0 finished=0
kill_at_random() {
  local key=$1
  shift
  if [ -z "${TOOK[$key]:-}" ]; then
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1 || true
    t1=$(date +%s%N)
    TOOK[$key]=$(((t1 - t0) / 1000))
    return
  fi
  "$@" >/dev/null 2>&1 &
  local pid=$! rc=0
  local us=$((RANDOM * 32768 + RANDOM))
  us=$((us % (TOOK[$key] * 12 / 10 + 1)))
  sleep "$(printf '%d.%06d' $((us / 1000000)) $((us % 1000000)))"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || rc=$?
  # 137: SIGKILL arrived first; anything else: it had finished (successfully or not).
  if [ "$rc" = 137 ]; then killed=$((killed + 1)); else finished=$((finished + 1)); fi
}

# Every ref of HOME pulls back with its manifest digest; the store verifies, blobs rebuilt.
check_home() {
  local home=$1 what=$2
  shp --home "$home" verify --rebuild >/dev/null || die "$what: verify --rebuild failed after the kills"
  local n=0
  while read -r name; do
    [ -n "$name" ] || continue
    rm -rf "$WORK/out"
    shp --home "$home" pull "$name" "oci:$WORK/out:latest" >/dev/null || die "$what: $name does not pull back"
    n=$((n + 1))
  done < <(shp --home "$home" ls --json | python3 -c 'import json,sys; [print(e["name"] or e["root"]) for e in json.load(sys.stdin)]')
  echo "   $what: $killed killed, $finished finished first; verify --rebuild clean, $n refs pull back"
  killed=0 finished=0
}

echo "== shp push ($N)"
H=$WORK/push
shp --home "$H" init >/dev/null 2>&1
shp --home "$H" push "oci:$WORK/b:latest" --tag keep:v1 >/dev/null
for i in $(seq 0 "$N"); do
  # Image a is pushed anew each time (its name removed and its blocks collected first), so every
  # push has its layer to decode, chunk and write; b stays, sharing some of a's files.
  shp --home "$H" rm k:v1 >/dev/null 2>&1 || true
  shp --home "$H" gc >/dev/null
  kill_at_random push "$SHP" --home "$H" push "oci:$WORK/a:latest" --tag k:v1
done
shp --home "$H" push "oci:$WORK/a:latest" --tag fresh:v1 >/dev/null || die "push after the kills"
check_home "$H" push

echo "== shp compact and shp gc on a deferred home ($N)"
H=$WORK/deferred
shp --home "$H" init --compression zstd:3,deferred >/dev/null 2>&1
for i in $(seq 0 "$N"); do
  img=$([ $((i % 2)) = 0 ] && echo a || echo b)
  shp --home "$H" push "oci:$WORK/$img:latest" --tag cur:v1 >/dev/null
  if [ $((i % 2)) = 0 ]; then
    kill_at_random compact "$SHP" --home "$H" compact
  else
    kill_at_random gc "$SHP" --home "$H" gc
  fi
done
shp --home "$H" gc >/dev/null || die "gc after the kills"
check_home "$H" "compact+gc"

echo "== shp fetch from a peer ($N)"
P=$WORK/peer
shp --home "$P" init >/dev/null 2>&1
ROOT_A=$(shp --home "$P" push -q "oci:$WORK/a:latest" --tag a:v1)
ROOT_B=$(shp --home "$P" push -q "oci:$WORK/b:latest" --tag b:v1)
"$SHP" --home "$P" gateway --listen 127.0.0.1:0 >"$WORK/gw.out" 2>/dev/null &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$WORK/gw.out" ] && break; sleep 0.1; done
URL=$(head -1 "$WORK/gw.out")
H=$WORK/fetch
shp --home "$H" init >/dev/null 2>&1
for i in $(seq 0 "$N"); do
  r=$([ $((i % 2)) = 0 ] && echo "$ROOT_A" || echo "$ROOT_B")
  kill_at_random fetch "$SHP" --home "$H" fetch "$r" --from "$URL"
  # Start over now and then, so there is always something left to fetch.
  if [ $((i % 2)) = 1 ]; then shp --home "$H" rm "$ROOT_A" >/dev/null 2>&1 || true; shp --home "$H" rm "$ROOT_B" >/dev/null 2>&1 || true; shp --home "$H" gc >/dev/null; fi
done
shp --home "$H" fetch "$ROOT_A" --from "$URL" --tag a:v1 >/dev/null || die "fetch after the kills"
check_home "$H" fetch

echo "== skopeo push into a station killed mid-upload ($N)"
H=$WORK/station
shp --home "$H" init >/dev/null 2>&1
station() {
  rm -f "$WORK/st.out"
  "$SHP" --home "$H" start --listen 127.0.0.1:0 --no-p2p --log-level error >"$WORK/st.out" 2>>"$WORK/st.log" &
  SPID=$!
  PIDS+=($SPID)
  for _ in $(seq 1 200); do [ -s "$WORK/st.out" ] && break; sleep 0.05; done
  ADDR=$(sed -n 's|^listening http://\([^ ]*\) .*|\1|p' "$WORK/st.out")
  [ -n "$ADDR" ] || die "the station did not start: $(tail -3 "$WORK/st.log")"
}
station
t0=$(date +%s%N)
skopeo copy -q --dest-tls-verify=false "oci:$WORK/a:latest" "docker://$ADDR/k:v0" >/dev/null
TOOK_SKOPEO=$((($(date +%s%N) - t0) / 1000))
shp --home "$H" rm k:v0 >/dev/null
for i in $(seq 1 "$N"); do
  img=$([ $((i % 2)) = 0 ] && echo a || echo b)
  skopeo copy -q --dest-tls-verify=false "oci:$WORK/$img:latest" "docker://$ADDR/k$((i % 5)):v1" >/dev/null 2>&1 &
  cp=$!
  us=$(((RANDOM * 32768 + RANDOM) % (TOOK_SKOPEO * 12 / 10 + 1)))
  sleep "$(printf '%d.%06d' $((us / 1000000)) $((us % 1000000)))"
  # Killed mid-upload when skopeo is still at work; else the push had finished.
  if kill -0 "$cp" 2>/dev/null; then killed=$((killed + 1)); else finished=$((finished + 1)); fi
  kill -9 "$SPID" 2>/dev/null || true
  wait "$SPID" 2>/dev/null || true
  wait "$cp" 2>/dev/null || true
  # What the killed station left must verify; then forget it all, so the next upload has blobs to
  # send (a registry that holds them answers skopeo's HEAD and nothing is uploaded).
  shp --home "$H" verify >/dev/null || die "verify after killing the station (run $i)"
  python3 - "$H/refs.json" <<'PY' | while read -r r; do shp --home "$H" rm "$r" >/dev/null; done
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except FileNotFoundError:
    sys.exit(0)
for k in list(r.get("names", {})) + list(r.get("pins", [])) + list(r.get("blobs", {})):
    print(k)
PY
  shp --home "$H" gc >/dev/null
  station
done
skopeo copy -q --dest-tls-verify=false "oci:$WORK/b:latest" "docker://$ADDR/fresh:v1" >/dev/null || die "skopeo push after the kills"
kill "$SPID"
wait "$SPID" 2>/dev/null || true
check_home "$H" "skopeo into a killed station"
echo "== kills: all passed"
