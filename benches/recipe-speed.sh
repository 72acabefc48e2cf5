#!/usr/bin/env bash
# recipe-speed.sh [TAR] -- rebuild and import time of recipe layers vs the producer's own compress time,
# same machine, same run. For each producer (Go compress/gzip -1/1/9, pgzip default and BestSpeed with
# 2 threads, GNU gzip -6, pigz -6 with 2 threads, zlib -6, zstd -3) it compresses TAR (default: a 200 MB tar
# of /usr) with the real producer (timed, output to a file), wraps the blob in a one-layer OCI image,
# times `shp push` (decode + chunk + store + recipe proof) and `shp pull` to a fresh layout (rebuild +
# sha256 check + write), and prints the ratios push/producer and pull/producer. It also times `shp push` into a
# home whose store defers compression at rest (`shp init --compression zstd:3,deferred`: blocks written raw) and
# the `shp gc` that then compresses them, with the ratio push-deferred/producer. Median of RUNS (3).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
RUNS=${RUNS:-3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shp-rspeed.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
TAR=${1:-}
if [ -z "$TAR" ]; then
  TAR=$WORK/usr.tar
  # Whole files only (a tar cut mid-file is not a layer any tool would write): regular files under
  # /usr/lib and /usr/share under 20 MB each, in name order, until 200 MB.
  find /usr/lib /usr/share -xdev -type f -printf '%s\t%p\n' 2>/dev/null | sort -t "$(printf '\t')" -k2 |
    awk -F'\t' '$1 < 20000000 && t + $1 <= 200000000 {t += $1; print substr($2, 2)}' > "$WORK/files"
  tar -C / --sort=name -cf "$TAR" -T "$WORK/files"
fi
cargo build --release -q -p shp-cli --manifest-path "$ROOT/Cargo.toml"
SHP=$ROOT/target/release/shp
(cd "$SHARED/corpus/gzgo" && GO111MODULE=off GOPATH=/usr/share/gocode go build -o "$WORK/gzgo" main.go)

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
produce() {
  case $1 in
    go-*) "$WORK/gzgo" -impl std -level "${1#go-}" ;;
    pgzip-*) "$WORK/gzgo" -impl pgzip -level "${1#pgzip-}" -block 1048576 ;;
    gzip-*) gzip -n "-${1#gzip-}" ;;
    pigz-*) pigz -n -p 2 "-${1#pigz-}" ;;
    zlib-*) python3 -c "import gzip,sys; sys.stdout.buffer.write(gzip.compress(sys.stdin.buffer.read(), compresslevel=${1#zlib-}, mtime=0))" ;;
    zstd-*) zstd -q "-${1#zstd-}" -c ;;
  esac
}
printf 'tar: %s (%d bytes), %d runs, median seconds\n' "$TAR" "$(stat -c %s "$TAR")" "$RUNS"
printf '%-10s %9s %9s %9s %9s %9s %11s %11s %11s %s\n' producer produce push pull push-def gc push/prod pull/prod pdef/prod storage
for p in ${PRODUCERS:-go-6 go-1 go-9 pgzip--1 pgzip-1 gzip-6 pigz-6 zlib-6 zstd-3}; do
  pt=(); it=(); rt=(); dt=(); gt=()
  for _ in $(seq "$RUNS"); do
    t0=$(now); produce "$p" < "$TAR" > "$WORK/layer"; t1=$(now)
    pt+=("$(echo "$t1 - $t0" | bc)")
    rm -rf "$WORK/oci" "$WORK/out" "$WORK/home"
    python3 - "$WORK/oci" "$WORK/layer" <<'PY'
import hashlib, json, os, sys
out, layer = sys.argv[1], sys.argv[2]
os.makedirs(f"{out}/blobs/sha256", exist_ok=True)
def put(b):
    d = hashlib.sha256(b).hexdigest(); open(f"{out}/blobs/sha256/{d}", "wb").write(b); return "sha256:" + d, len(b)
raw = open(layer, "rb").read()
zstd = raw[:4] == b"\x28\xb5\x2f\xfd"
ld, ls = put(raw)
cd, cs = put(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode())
m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+" + ("zstd" if zstd else "gzip"), "digest": ld, "size": ls}]}).encode()
md, ms = put(m)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
           "annotations": {"org.opencontainers.image.ref.name": "img"}}]}, open(f"{out}/index.json", "w"))
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
    export SHP_HOME=$WORK/home
    "$SHP" init >/dev/null 2>&1
    t0=$(now); "$SHP" push --json "oci:$WORK/oci:img" > "$WORK/push.json"; t1=$(now)
    it+=("$(echo "$t1 - $t0" | bc)")
    t0=$(now); "$SHP" pull img "oci:$WORK/out:img" >/dev/null; t1=$(now)
    rt+=("$(echo "$t1 - $t0" | bc)")
    rm -rf "$WORK/home"
    "$SHP" init --compression zstd:3,deferred >/dev/null 2>&1
    t0=$(now); "$SHP" push "oci:$WORK/oci:img" > /dev/null; t1=$(now)
    dt+=("$(echo "$t1 - $t0" | bc)")
    t0=$(now); "$SHP" gc > /dev/null; t1=$(now)
    gt+=("$(echo "$t1 - $t0" | bc)")
  done
  P=$(printf '%s\n' "${pt[@]}" | median); I=$(printf '%s\n' "${it[@]}" | median); R=$(printf '%s\n' "${rt[@]}" | median)
  D=$(printf '%s\n' "${dt[@]}" | median); G=$(printf '%s\n' "${gt[@]}" | median)
  S=$(python3 -c "import json; print([b['storage'] for b in json.load(open('$WORK/push.json'))['blobs'] if 'layer' in b['media_type']][0])")
  printf '%-10s %9.2f %9.2f %9.2f %9.2f %9.2f %10.2fx %10.2fx %10.2fx %s\n' "$p" "$P" "$I" "$R" "$D" "$G" \
    "$(echo "$I / $P" | bc -l)" "$(echo "$R / $P" | bc -l)" "$(echo "$D / $P" | bc -l)" "$S"
done
