#!/usr/bin/env bash
# benches/mirror-update.sh CORPUS -- an app update through the mirror: a node whose station holds
# app-v1 pulls app-v2 (one file changed) through its mirror, whose peer station holds app-v2. Prints
# what moved from the peer (the DAG's missing blocks) and from the upstream, against the dedup
# oracle's bound for the same pair (`dedup-oracle.py --pairs app-v1:app-v2`: the changed chunks,
# zstd-3, plus the tar headers) and against the layer-level cost (the changed layers, gzip'd: what a
# pull with no peer moves).
#
# CORPUS: what /work/shared/corpus/build-corpus.sh OUT made (OUT/oci, tags app-v1 and app-v2), or the
# layout itself. VIA=http (default): the node names its peer with --mirror-peer and fetches the DAG
# from its gateway; VIA=p2p: the two stations are libp2p peers (loopback, no mDNS) and the node's
# mirror finds the image among them (oci-roots, bitswap). Knobs: SHP (default target/release/shp), ORACLE (default
# ../shared/corpus/dedup-oracle.py; needs pyfastcdc and zstandard), WORK (removed unless KEEP=1).
# Needs docker-registry, skopeo, curl, python3. Run by hand, not in CI.
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHP=${SHP:-$ROOT/target/release/shp}
ORACLE=${ORACLE:-$ROOT/../shared/corpus/dedup-oracle.py}
IN=${1:?usage: mirror-update.sh CORPUS_DIR_OR_OCI_LAYOUT}
[ -f "$IN/index.json" ] || IN=$IN/oci
VIA=${VIA:-http}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/shp-bench-mirror-update.XXXXXX")}
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
[ -x "$SHP" ] || (cd "$ROOT" && cargo build --release -p shp-cli >/dev/null)

start_upstream
for v in v1 v2; do
  skopeo copy -q --dest-tls-verify=false "oci:$IN:app-$v" "docker://$UP/library/app:$v"
done

# station NAME ARGS...: sets ADDR.
station() {
  local name=$1
  shift
  "$SHP" --home "$WORK/$name" init >/dev/null 2>&1
  mkfifo "$WORK/$name.banner"
  local net=(--no-p2p)
  [ "$VIA" = p2p ] && net=(--p2p-listen /ip4/127.0.0.1/tcp/0 --no-mdns)
  "$SHP" --home "$WORK/$name" start --listen 127.0.0.1:0 "${net[@]}" --mirror "docker.io=http://$UP" "$@" \
    >"$WORK/$name.banner" 2>"$WORK/$name.log" &
  PIDS+=($!)
  read -r -t 30 line <"$WORK/$name.banner"
  ADDR=$(echo "$line" | awk '{print $2}' | sed 's#http://##')
}
pull() { skopeo copy -q --src-tls-verify=false "docker://$1/docker.io/library/app:$2" "oci:$WORK/out-$1-$2:x"; }
held() { for _ in $(seq 1 600); do "$SHP" --home "$WORK/$1" ls | grep -q "docker.io/library/app@$2" && return; sleep 0.1; done; exit 1; }
digest() { skopeo inspect --raw --tls-verify=false "docker://$UP/library/app:$1" | sha256sum | awk '{print "sha256:" $1}'; }
blob_gets() { grep -c '"GET /v2/library/app/blobs/' "$WORK/upstream.log" || true; }

station peer
PEER=$ADDR
pull "$PEER" v2
held peer "$(digest v2)"
if [ "$VIA" = p2p ]; then
  station node --bootstrap "$("$SHP" --home "$WORK/peer" addrs --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["addrs"][0])')"
else
  station node --mirror-peer "http://$PEER"
fi
NODE=$ADDR
pull "$NODE" v1
held node "$(digest v1)"
before=$(blob_gets)
pull "$NODE" v2
held node "$(digest v2)"
after=$(blob_gets)
line=$(grep -E "DAG fetched from (a peer|libp2p peers)" "$WORK/node.log" | tail -1)
fetched=$(echo "$line" | sed -n 's/.*bytes_fetched=\([0-9]*\).*/\1/p')
[ -n "$fetched" ] || { echo "the node did not fetch the DAG from its peer:" >&2; cat "$WORK/node.log" >&2; exit 1; }
echo "node holding app-v1 pulls app-v2 through its mirror (peer holds app-v2; via $VIA):"
echo "  from the peer: $fetched bytes of blocks; upstream blob GETs: $((after - before))"
python3 "$ORACLE" "$IN" --pairs app-v1:app-v2 >"$WORK/oracle.txt"
python3 - "$fetched" "$WORK/oracle.txt" <<'PY'
import re, sys
fetched = int(sys.argv[1])
m = re.search(r"layer-level=(\d+) chunk-level\(zstd3\)=(\d+) \+headers\(zstd3\)=(\d+)", open(sys.argv[2]).read())
layer, chunk, meta = map(int, m.groups())
bound = chunk + meta
print(f"  oracle: changed chunks (zstd3) {chunk} + headers {meta} = {bound} bytes; layer-level {layer} bytes")
print(f"  shp / oracle = {fetched / bound:.2f}x; shp / layer-level = {fetched / layer:.3f}")
PY
