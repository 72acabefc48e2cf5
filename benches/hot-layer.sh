#!/usr/bin/env bash
# benches/hot-layer.sh -- a fleet pulling a freshly pushed image: CLIENTS (16) concurrent clients fetch
# the manifest and every blob of a one-layer image whose layer is a ~90 MB pgzip stream (a recipe layer:
# the station rebuilds it from its tar DAG), from a shp station (`shp start`) right after the push
# (fresh: the station kept the uploaded bytes in its blob cache), then with that cache emptied (cold:
# every byte from one shared rebuild), then again (warm: served from the cache the rebuild filled),
# then from Debian's docker-registry (distribution) serving the same image. All on 127.0.0.1, same run. Prints the
# three wall-clock times and the ratios cold/warm and cold/registry.
#
#   benches/hot-layer.sh                 a tar of whole files under /usr/lib and /usr/share (TAR_BYTES)
#   benches/hot-layer.sh some.tar        another tar
#
# Knobs: SHP (binary; default target/release/shp, built if missing), CLIENTS (16), CLIENT (curl: GETs
# to /dev/null, the servers' cost alone; skopeo: a real pull into an OCI layout, each blob written and
# its sha256 checked), RUNS (1: rounds of
# cold, warm, registry; the cold round empties HOME/cache/blobs first, the medians are printed),
# TAR_BYTES (250000000: about 90 MB once pgzip'd), SHARED (../shared, for corpus/gzgo), WORK (scratch,
# removed unless KEEP=1). Needs go (with Debian's golang-github-klauspost-pgzip-dev), skopeo,
# docker-registry, curl, python3. Run by hand, not in CI: quote the figures as ratios.
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
SHP=${SHP:-$ROOT/target/release/shp}
CLIENTS=${CLIENTS:-16}
CLIENT=${CLIENT:-curl}
RUNS=${RUNS:-1}
TAR_BYTES=${TAR_BYTES:-250000000}
REGISTRY=${REGISTRY:-/usr/bin/docker-registry}

for t in go skopeo curl python3; do
  command -v "$t" >/dev/null || { echo "hot-layer.sh: $t not found" >&2; exit 1; }
done
[ -x "$REGISTRY" ] || { echo "hot-layer.sh: $REGISTRY not found (apt-get install docker-registry)" >&2; exit 1; }
if [ ! -x "$SHP" ]; then
  echo "== building shp (cargo build --release)"
  (cd "$ROOT" && cargo build --release -q -p shp-cli)
fi
mkdir -p "${WORK:=$(mktemp -d "${TMPDIR:-/tmp}/shp-hot-layer.XXXXXX")}"
WORK=$(cd "$WORK" && pwd)
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"

TAR=${1:-}
if [ -z "$TAR" ]; then
  TAR=$WORK/usr.tar
  # Whole files only, in name order, until TAR_BYTES.
  find /usr/lib /usr/share -xdev -type f -printf '%s\t%p\n' 2>/dev/null | sort -t "$(printf '\t')" -k2 |
    awk -F'\t' -v max="$TAR_BYTES" '$1 < 20000000 && t + $1 <= max {t += $1; print substr($2, 2)}' > "$WORK/files"
  tar -C / --sort=name -cf "$TAR" -T "$WORK/files" 2>/dev/null
fi
(cd "$SHARED/corpus/gzgo" && GO111MODULE=off GOPATH=/usr/share/gocode go build -o "$WORK/gzgo" main.go)
"$WORK/gzgo" -impl pgzip -level -1 -block 1048576 < "$TAR" > "$WORK/layer"
python3 - "$WORK/oci" "$WORK/layer" "$TAR" <<'PY'
import hashlib, json, os, sys
out, layer, tar = sys.argv[1:]
os.makedirs(f"{out}/blobs/sha256", exist_ok=True)
def put(b):
    d = hashlib.sha256(b).hexdigest(); open(f"{out}/blobs/sha256/{d}", "wb").write(b); return "sha256:" + d, len(b)
ld, ls = put(open(layer, "rb").read())
diff = hashlib.sha256(open(tar, "rb").read()).hexdigest()
cd, cs = put(json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff]}}).encode())
m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": ls}]}).encode()
md, ms = put(m)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
           "size": ms, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}, open(f"{out}/index.json", "w"))
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
print(f"{cd} {ld}", file=open(f"{out}/../blobs.txt", "w"))
PY
read -r CONFIG LAYER < "$WORK/blobs.txt"

wait_port() {
  for _ in $(seq 1 200); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),timeout=1)" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "hot-layer.sh: nothing listens on port $1" >&2; exit 1
}

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

"$SHP" --home "$WORK/home" init >/dev/null 2>&1
mkfifo "$WORK/station.out"
"$SHP" --home "$WORK/home" start --listen 127.0.0.1:0 --log-level warn >"$WORK/station.out" 2>"$WORK/station.log" &
PIDS+=($!)
SPID=$!
exec 3<"$WORK/station.out"
read -r -t 60 banner <&3 || { echo "hot-layer.sh: shp start printed nothing" >&2; cat "$WORK/station.log" >&2; exit 1; }
SADDR=${banner#listening http://}
SADDR=${SADDR%% *}
echo "== station $SADDR, registry 127.0.0.1:$RPORT; layer $LAYER ($(stat -c %s "$WORK/layer") bytes), $CLIENTS clients"

skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$WORK/oci:v1" "docker://127.0.0.1:$RPORT/bench/image:v1"
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$WORK/oci:v1" "docker://$SADDR/bench/image:v1"
# (The listing is read whole first: `grep -q` stopping early would fail the pipe under pipefail.)
INSPECT=$("$SHP" --home "$WORK/home" inspect bench/image:v1 2>/dev/null)
grep -q recipe <<<"$INSPECT" ||
  { echo "hot-layer.sh: the station did not keep the layer as a recipe" >&2; echo "$INSPECT" >&2; exit 1; }

client() { # client HOST:PORT N: one client's pull of the image
  case $CLIENT in
    curl)
      curl -sf -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$1/v2/bench/image/manifests/v1"
      for b in "$CONFIG" "$LAYER"; do curl -sf -o /dev/null "http://$1/v2/bench/image/blobs/$b"; done ;;
    skopeo)
      rm -rf "$WORK/pull-$2"
      skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$1/bench/image:v1" "oci:$WORK/pull-$2:v1" ;;
  esac
}
fleet() { # fleet HOST:PORT -> seconds for CLIENTS clients at once, each fetching the manifest and every blob
  local t0 t1 pids=()
  t0=$(date +%s.%N)
  for i in $(seq 1 "$CLIENTS"); do
    client "$1" "$i" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || { echo "hot-layer.sh: a client failed against $1" >&2; exit 1; }; done
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1-$t0:.3f}')"
}

TICK=$(getconf CLK_TCK)
cpu() { awk -v t="$TICK" '{printf "%.2f\n", ($14 + $15) / t}' "/proc/$SPID/stat"; } # station's CPU seconds so far
# Right after the push: the station kept the uploaded layer's bytes in its cache as it stored the
# layer (a recipe), so the fleet that pulls a freshly pushed image is served without a rebuild.
[ -f "$WORK/home/cache/blobs/${LAYER#sha256:}" ] ||
  { echo "hot-layer.sh: the push left no copy of the layer in the station's cache" >&2; exit 1; }
client "127.0.0.1:$RPORT" 0 # one pull first, so the first fleet does not pay for the clients' start-up
u0=$(cpu); F=$(fleet "$SADDR"); u1=$(cpu)
echo "fresh (right after the push): ${F}s, station CPU $(python3 -c "print(f'{$u1-$u0:.2f}s')")"
# One client alone, cold: the time of one rebuild (plus one transfer).
rm -rf "$WORK/home/cache/blobs"
u0=$(cpu); t0=$(date +%s.%N); curl -sf -o /dev/null "http://$SADDR/v2/bench/image/blobs/$LAYER"; t1=$(date +%s.%N); u1=$(cpu)
echo "one cold GET of the layer: $(python3 -c "print(f'{$t1-$t0:.3f}s, station CPU {$u1-$u0:.2f}s')")"
C=(); W=(); R=()
for i in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/home/cache/blobs"
  u0=$(cpu); c=$(fleet "$SADDR"); u1=$(cpu); w=$(fleet "$SADDR"); u2=$(cpu); r=$(fleet "127.0.0.1:$RPORT")
  C+=("$c"); W+=("$w"); R+=("$r")
  echo "run $i: station cold ${c}s  station warm ${w}s  registry ${r}s" \
    "(station CPU: cold $(python3 -c "print(f'{$u1-$u0:.2f}s, warm {$u2-$u1:.2f}s')"))"
done
# Both servers sent the layer's bytes.
for s in "$SADDR" "127.0.0.1:$RPORT"; do
  got=$(curl -sf "http://$s/v2/bench/image/blobs/$LAYER" | sha256sum | cut -d' ' -f1)
  [ "sha256:$got" = "$LAYER" ] || { echo "hot-layer.sh: $s sent other bytes ($got)" >&2; exit 1; }
done
python3 - "${C[*]}" "${W[*]}" "${R[*]}" "$F" <<'PY'
import statistics, sys
c, w, r, f = (statistics.median(float(x) for x in a.split()) for a in sys.argv[1:])
print(f"median: station cold {c:.3f}s  station warm {w:.3f}s  registry {r:.3f}s")
print(f"ratio cold/warm: {c / w:.2f}  cold/registry: {c / r:.2f}  fresh/warm: {f / w:.2f}  fresh/registry: {f / r:.2f}")
PY
