#!/usr/bin/env bash
# benches/registry.sh -- how fast skopeo pulls an image from a shp station (`shp start`) compared
# with Debian's docker-registry (distribution), both on 127.0.0.1, same image, same run.
#
#   benches/registry.sh                      busybox-2layer fixture (tests/interop/make-images.sh)
#   IMAGE=oci:/path/layout:ref benches/registry.sh     another image
#
# Knobs: SHP (binary; default target/release/shp, built if missing), RUNS (pulls per server,
# default 5, interleaved), WORK (scratch directory, default a temp dir, removed at the end unless
# KEEP=1). Needs skopeo, docker-registry (/usr/bin/docker-registry), python3.
# The station rebuilds every blob from its DAG and verifies its sha256 while serving; the
# registry sends files. Prints each run's time and the ratio station/registry of the medians.
# Run by hand, not in CI: figures depend on the machine; quote them as ratios.
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHP=${SHP:-$ROOT/target/release/shp}
RUNS=${RUNS:-5}
REGISTRY=${REGISTRY:-/usr/bin/docker-registry}

for t in skopeo python3; do
  command -v "$t" >/dev/null || { echo "registry.sh: $t not found" >&2; exit 1; }
done
[ -x "$REGISTRY" ] || { echo "registry.sh: $REGISTRY not found (apt-get install docker-registry)" >&2; exit 1; }
if [ ! -x "$SHP" ]; then
  echo "== building shp (cargo build --release)"
  (cd "$ROOT" && cargo build --release -q -p shp-cli)
fi
mkdir -p "${WORK:=$(mktemp -d "${TMPDIR:-/tmp}/shp-registry-bench.XXXXXX")}"
WORK=$(cd "$WORK" && pwd)
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"

if [ -z "${IMAGE:-}" ]; then
  echo "== fixtures (make-images.sh)"
  bash "$ROOT/tests/interop/make-images.sh" "$WORK/fixtures" >/dev/null
  IMAGE="oci:$WORK/fixtures/oci:busybox-2layer"
fi

wait_port() {
  for _ in $(seq 1 200); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),timeout=1)" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "registry.sh: nothing listens on port $1" >&2; exit 1
}

# docker-registry: filesystem storage in WORK, loopback only.
RPORT=$(free_port)
cat > "$WORK/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $WORK/registry-data
http:
  addr: 127.0.0.1:$RPORT
YML
"$REGISTRY" serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
PIDS+=($!)
wait_port "$RPORT"

# shp station on a free port; the first stdout line says which.
"$SHP" --home "$WORK/home" init >/dev/null 2>&1
mkfifo "$WORK/station.out"
"$SHP" --home "$WORK/home" start --listen 127.0.0.1:0 --p2p-listen /ip4/127.0.0.1/tcp/0 --no-mdns --log-level warn >"$WORK/station.out" 2>"$WORK/station.log" &
PIDS+=($!)
exec 3<"$WORK/station.out"
read -r -t 60 banner <&3 || { echo "registry.sh: shp start printed nothing" >&2; cat "$WORK/station.log" >&2; exit 1; }
SADDR=${banner#listening http://}
SADDR=${SADDR%% *}
echo "== station $SADDR, registry 127.0.0.1:$RPORT; image $IMAGE"

skopeo --insecure-policy copy -q --dest-tls-verify=false "$IMAGE" "docker://127.0.0.1:$RPORT/bench/image:v1"
skopeo --insecure-policy copy -q --dest-tls-verify=false "$IMAGE" "docker://$SADDR/bench/image:v1"

pull() { # pull SERVER OUT -> seconds
  local t0 t1
  rm -rf "$2"
  t0=$(date +%s.%N)
  skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$1/bench/image:v1" "oci:$2:v1"
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1-$t0:.3f}')"
}

S=(); R=()
for i in $(seq 1 "$RUNS"); do
  # Alternate the order so neither server always runs on a warm cache first.
  if [ $((i % 2)) = 1 ]; then
    s=$(pull "$SADDR" "$WORK/out-s"); r=$(pull "127.0.0.1:$RPORT" "$WORK/out-r")
  else
    r=$(pull "127.0.0.1:$RPORT" "$WORK/out-r"); s=$(pull "$SADDR" "$WORK/out-s")
  fi
  S+=("$s"); R+=("$r")
  echo "run $i: station ${s}s  registry ${r}s"
done
# Both pulls gave the same image.
cmp "$WORK/out-s/index.json" "$WORK/out-r/index.json" >/dev/null 2>&1 || \
  diff <(python3 -c "import json;print(json.load(open('$WORK/out-s/index.json'))['manifests'][0]['digest'])") \
       <(python3 -c "import json;print(json.load(open('$WORK/out-r/index.json'))['manifests'][0]['digest'])")
diff <(cd "$WORK/out-s/blobs/sha256" && ls) <(cd "$WORK/out-r/blobs/sha256" && ls)
python3 - "${S[*]}" "${R[*]}" <<'PY'
import statistics, sys
s = [float(x) for x in sys.argv[1].split()]
r = [float(x) for x in sys.argv[2].split()]
ms, mr = statistics.median(s), statistics.median(r)
print(f"median: station {ms:.3f}s  registry {mr:.3f}s")
print(f"ratio station/registry: {ms / mr:.2f}")
PY
