#!/usr/bin/env bash
# station-pull.sh [LAYOUT] — bytes a station-to-station pull moves for an "app update", against
# (a) the dedup oracle's new bytes (/work/shared/corpus/dedup-oracle.py: new chunks + tar headers,
#     zstd-3 each) and (b) a layer-level pull (the compressed layers the puller lacks).
#
# LAYOUT defaults to /tmp/corpus/oci (made by /work/shared/corpus/build-corpus.sh: tags app-v1,
# app-v2, py311, py311-rebuild); when it is absent, an app-v1/app-v2 pair is generated (48 text
# files in a gzip'd layer, one file changed) and the py311 pair is skipped.
# Home A gets the images and is served by `shp gateway` on 127.0.0.1 (port picked by the OS); home B
# fetches HAVE, then WANT, and reports `bytes_fetched` (HTTP body bytes on the wire).
# Env: SHP (binary; default: target/release/shp, built if missing), ORACLE (path of dedup-oracle.py).
# Needs python3 with pyfastcdc and zstandard for the oracle (pip install pyfastcdc zstandard).
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ORACLE=${ORACLE:-/work/shared/corpus/dedup-oracle.py}
if [ -z "${SHP:-}" ]; then
  SHP=$HERE/target/release/shp
  [ -x "$SHP" ] || cargo build --release --locked -p shp-cli --manifest-path "$HERE/Cargo.toml" >&2
fi
WORK=$(mktemp -d /tmp/station-pull.XXXXXX)
GW_PID=
cleanup() { [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

LAYOUT=${1:-/tmp/corpus/oci}
PAIRS="app-v1:app-v2 py311:py311-rebuild"
if [ ! -f "$LAYOUT/index.json" ]; then
  LAYOUT=$WORK/oci
  PAIRS="app-v1:app-v2"
  python3 - "$LAYOUT" <<'EOF'
import gzip, hashlib, io, json, os, random, sys, tarfile
out = sys.argv[1]; os.makedirs(f"{out}/blobs/sha256")
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
def put(b):
    d = hashlib.sha256(b).hexdigest(); open(f"{out}/blobs/sha256/{d}", "wb").write(b); return "sha256:" + d
words = "import def return self value lambda config station layer chunk block while for class None print".split()
def text(seed, n):
    r = random.Random(seed); s = []
    while sum(map(len, s)) < n: s.append(r.choice(words) + r.choice([" ", " ", "\n", "(", ") "]))
    return "".join(s).encode()[:n]
def layer(changed):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for i in range(48):
            d = bytearray(text(i, 120_000))
            if i == changed: d[60_000:60_012] = b"VERSION 2.0!"
            ti = tarfile.TarInfo(f"app/module{i:03}.py"); ti.size = len(d); ti.mtime = 0
            t.addfile(ti, io.BytesIO(bytes(d)))
    return buf.getvalue()
manifests = []
for tag, changed in (("app-v1", None), ("app-v2", 17)):
    tar = layer(changed); gz = gzip.compress(tar, 6, mtime=0)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]}}).encode()
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(cfg), "size": len(cfg)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(gz), "size": len(gz)}]}).encode()
    manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(m), "size": len(m),
        "annotations": {"org.opencontainers.image.ref.name": tag}})
json.dump({"schemaVersion": 2, "manifests": manifests}, open(f"{out}/index.json", "w"))
EOF
fi

A=$WORK/a; B=$WORK/b
"$SHP" --home "$A" init >/dev/null
"$SHP" --home "$B" init >/dev/null
declare -A ROOT
for pair in $PAIRS; do
  for tag in ${pair%%:*} ${pair##*:}; do
    [ -n "${ROOT[$tag]:-}" ] || ROOT[$tag]=$("$SHP" --home "$A" push -q "oci:$LAYOUT:$tag")
  done
done
"$SHP" --home "$A" gateway --listen 127.0.0.1:0 >"$WORK/gw.url" &
GW_PID=$!
for _ in $(seq 100); do [ -s "$WORK/gw.url" ] && break; sleep 0.1; done
URL=$(head -1 "$WORK/gw.url")
[ -n "$URL" ] || { echo "station-pull.sh: the gateway did not start" >&2; exit 1; }

python3 "$ORACLE" "$LAYOUT" --pairs "$(echo $PAIRS | tr ' ' ',')" >"$WORK/oracle.txt"

printf '%-28s %12s %12s %12s %12s %9s %9s\n' pair shp_wire block_bytes oracle_new layer_pull shp/oracle layer/shp
for pair in $PAIRS; do
  have=${pair%%:*}; want=${pair##*:}
  "$SHP" --home "$B" fetch "${ROOT[$have]}" --from "$URL" --json >/dev/null
  json=$("$SHP" --home "$B" fetch "${ROOT[$want]}" --from "$URL" --json | tail -1)
  wire=$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_fetched"])')
  blk=$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["block_bytes"])')
  line=$(grep "^pull $want having $have:" "$WORK/oracle.txt")
  layer=$(echo "$line" | sed -E 's/.*layer-level=([0-9]+).*/\1/')
  chunks=$(echo "$line" | sed -E 's/.*chunk-level\(zstd3\)=([0-9]+).*/\1/')
  heads=$(echo "$line" | sed -E 's/.*\+headers\(zstd3\)=([0-9]+).*/\1/')
  oracle=$((chunks + heads))
  python3 -c "import sys; w,b,o,l=map(int,sys.argv[2:]); print('%-28s %12d %12d %12d %12d %9.2f %9.1f' % (sys.argv[1], w, b, o, l, w/max(o,1), l/max(w,1)))" \
    "$have->$want" "$wire" "$blk" "$oracle" "$layer"
done
