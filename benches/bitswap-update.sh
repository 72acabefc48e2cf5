#!/usr/bin/env bash
# benches/bitswap-update.sh CORPUS -- an app update over bitswap: station B holds app-v1 and fetches
# app-v2 (one file changed) from station A over bitswap. Prints the bitswap bytes B received and
# the blocks they carried, against the dedup oracle's bound for the same pair (`dedup-oracle.py
# --pairs app-v1:app-v2`: the changed chunks, zstd-3, plus the tar headers) and the layer-level
# cost (the changed layers, gzip'd).
#
# CORPUS: what /work/shared/corpus/build-corpus.sh OUT made (OUT/oci, tags app-v1 and app-v2), or
# the layout itself. Knobs: SHP (default target/release/shp), ORACLE (default
# ../shared/corpus/dedup-oracle.py; needs pyfastcdc and zstandard), WORK (removed unless KEEP=1).
# Loopback only, mDNS off. Run by hand, not in CI.
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHP=${SHP:-$ROOT/target/release/shp}
ORACLE=${ORACLE:-$ROOT/../shared/corpus/dedup-oracle.py}
IN=${1:?usage: bitswap-update.sh CORPUS_DIR_OR_OCI_LAYOUT}
[ -f "$IN/index.json" ] || IN=$IN/oci
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/shp-bench-bitswap-update.XXXXXX")}
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
[ -x "$SHP" ] || (cd "$ROOT" && cargo build --release -p shp-cli >/dev/null)

# station NAME: a running station on home NAME (p2p on 127.0.0.1, no mDNS); sets ADDR (libp2p).
station() {
  local name=$1
  mkfifo "$WORK/$name.banner"
  "$SHP" --home "$WORK/$name" start --listen 127.0.0.1:0 --p2p-listen /ip4/127.0.0.1/tcp/0 --no-mdns --no-dht \
    --log-level "${LOG:-warn}" >"$WORK/$name.banner" 2>"$WORK/$name.log" &
  PIDS+=($!)
  read -r -t 30 _ <"$WORK/$name.banner"
  ADDR=$("$SHP" --home "$WORK/$name" addrs --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["addrs"][0])')
}
for h in a b; do "$SHP" --home "$WORK/$h" init >/dev/null 2>&1; done
"$SHP" --home "$WORK/a" push "oci:$IN:app-v1" --tag app:v1 -q >/dev/null
root=$("$SHP" --home "$WORK/a" push "oci:$IN:app-v2" --tag app:v2 -q | tail -1)
"$SHP" --home "$WORK/b" push "oci:$IN:app-v1" --tag app:v1 -q >/dev/null
station a
A=$ADDR
station b
"$SHP" --home "$WORK/b" connect "$A" >/dev/null
"$SHP" --home "$WORK/b" fetch "$root" --tag app:v2 --json | tail -1 >"$WORK/report.json"
out=$(mktemp -d "$WORK/out.XXXX")
"$SHP" --home "$WORK/b" pull app:v2 "oci:$out:x" -q >/dev/null 2>&1 || "$SHP" --home "$WORK/b" pull app:v2 "oci:$out:x" >/dev/null
python3 "$ORACLE" "$IN" --pairs app-v1:app-v2 >"$WORK/oracle.txt"
python3 - "$WORK/report.json" "$WORK/oracle.txt" <<'PY'
import json, re, sys
r = json.load(open(sys.argv[1]))
m = re.search(r"layer-level=(\d+) chunk-level\(zstd3\)=(\d+) \+headers\(zstd3\)=(\d+)", open(sys.argv[2]).read())
layer, chunk, meta = map(int, m.groups())
bound = chunk + meta
wire, blocks, payload = r["bytes_fetched"], r["blocks_fetched"], r["block_bytes"]
print(f"station B (holds app-v1) fetches app-v2 from A over bitswap: {blocks} blocks, {payload} block bytes, {wire} bytes of bitswap messages")
print(f"  oracle: changed chunks (zstd3) {chunk} + headers {meta} = {bound} bytes; layer-level {layer} bytes")
print(f"  shp / oracle = {wire / bound:.2f}x (block payload alone: {payload / bound:.2f}x); shp / layer-level = {wire / layer:.4f}")
PY
