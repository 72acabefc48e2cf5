#!/usr/bin/env bash
# s3.sh [LAYOUT] — an S3 home (SeaweedFS on 127.0.0.1, tests/s3/seaweed.sh) against the embedded
# store, same machine, same run:
#   1. import of a ~250 MB uncompressed layer (benches/gen-tar.py, random files): seconds for
#      `shp push` into each (median of RUNS, a fresh home each time), and the PUT requests the S3
#      push made (`stats` → bucket.requests.put, this home's own count); the engine's own time for
#      the same bytes (16 MiB objects through the filer, 2 in flight); and a real image (REAL_TAG,
#      default node18) pushed into each
#   2. a warm pull through a station (`shp start`): skopeo copy docker://… → oci: from a station on
#      each home, after one pull that warms both (median of RUNS); plus one cold pull from a second
#      station on the same bucket (empty cache), for information
#   3. stored bytes for the corpus: the embedded store's `stored_bytes` against the bytes of the
#      S3 home's objects (`bucket.object_bytes`)
# LAYOUT defaults to /tmp/corpus/oci (/work/shared/corpus/build-corpus.sh); the pull uses its
# PULL_TAG (default py311). Env: SHP (binary; default target/release/shp, built if missing), RUNS (3),
# MB (250), KEEP=1 keeps the work directory.
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAYOUT=${1:-/tmp/corpus/oci}
RUNS=${RUNS:-3}
MB=${MB:-250}
PULL_TAG=${PULL_TAG:-py311}
[ -f "$LAYOUT/index.json" ] || { echo "s3.sh: no OCI layout at $LAYOUT (run /work/shared/corpus/build-corpus.sh /tmp/corpus)" >&2; exit 1; }
if [ -z "${SHP:-}" ]; then
  SHP=$HERE/target/release/shp
  cargo build --release --locked -p shp-cli --manifest-path "$HERE/Cargo.toml" >&2
fi
WORK=$(mktemp -d /tmp/s3-bench.XXXXXX)
. "$HERE/benches/lib.sh"
S3=$WORK/cluster
SEAWEED_PARENT=$$ bash "$HERE/tests/s3/seaweed.sh" start "$S3" >/dev/null
stop_cluster() { bash "$HERE/tests/s3/seaweed.sh" stop "$S3"; cleanup; }
trap stop_cluster EXIT
set -a
. "$S3/env"
set +a

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null || { echo "s3.sh: failed: $*" >&2; exit 1; }; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }
jq_stats() { "$SHP" --home "$1" stats --json | jq -r "$2"; }
# (called in $(…): a fresh directory each, no counter to lose in the subshell)
s3_home() { local h; h=$(mktemp -d "$WORK/s3-XXXX"); "$SHP" --home "$h" init --store "s3://bench/$1" >/dev/null 2>"$h.log" || { cat "$h.log" >&2; exit 1; }; echo "$h"; }
disk_home() { local h; h=$(mktemp -d "$WORK/disk-XXXX"); "$SHP" --home "$h" init >/dev/null 2>"$h.log" || { cat "$h.log" >&2; exit 1; }; echo "$h"; }

echo "== 1. import of a ${MB} MB layer"
python3 "$HERE/benches/gen-tar.py" "$WORK/big.tar" "$MB" 7
python3 "$HERE/benches/layout-from-tars.py" "$WORK/big" big "$WORK/big.tar"
size=$(stat -c %s "$WORK/big.tar")
: >"$WORK/t-disk"; : >"$WORK/t-s3"; : >"$WORK/puts"
for r in $(seq 1 "$RUNS"); do
  h=$(disk_home)
  secs "$SHP" --home "$h" push -q "oci:$WORK/big:big" >>"$WORK/t-disk"
  rm -rf "$h"
  h=$(s3_home "import-$r")
  p0=$(jq_stats "$h" .bucket.requests.put)
  secs "$SHP" --home "$h" push -q "oci:$WORK/big:big" >>"$WORK/t-s3"
  p1=$(jq_stats "$h" .bucket.requests.put)
  echo $((p1 - p0)) >>"$WORK/puts"
done
td=$(median <"$WORK/t-disk"); ts=$(median <"$WORK/t-s3"); puts=$(median <"$WORK/puts")
printf 'layer %d bytes: embedded %.2f s, S3 %.2f s: ratio %.2fx (goal <= 2); PUT requests %d (goal <= 64)\n' \
  "$size" "$td" "$ts" "$(echo "$ts / $td" | bc -l)" "$puts"
# The engine's own speed for the same bytes: 16 MiB objects, two at a time, straight to the filer.
split -b 16M -d "$WORK/big.tar" "$WORK/part."
up() { local f; for f in "$WORK"/part.*; do echo "$f"; done | xargs -P 2 -I{} curl -fsS -o /dev/null -X PUT -T {} "http://$SEAWEED_FILER/buckets/bench/raw/$(basename {})"; }
traw=$(secs up)
rm -f "$WORK"/part.*
printf 'the same bytes as 16 MiB objects straight to the filer (2 in flight): %.2f s; S3 import / that: %.2fx\n' \
  "$traw" "$(echo "$ts / $traw" | bc -l)"
# A real image: compressible layers, shared chunks.
REAL_TAG=${REAL_TAG:-node18}
: >"$WORK/r-disk"; : >"$WORK/r-s3"
for r in $(seq 1 "$RUNS"); do
  h=$(disk_home); secs "$SHP" --home "$h" push -q "oci:$LAYOUT:$REAL_TAG" >>"$WORK/r-disk"; rm -rf "$h"
  h=$(s3_home "real-$r"); secs "$SHP" --home "$h" push -q "oci:$LAYOUT:$REAL_TAG" >>"$WORK/r-s3"
done
rd=$(median <"$WORK/r-disk"); rs=$(median <"$WORK/r-s3")
printf 'image %s: embedded %.2f s, S3 %.2f s: ratio %.2fx\n' "$REAL_TAG" "$rd" "$rs" "$(echo "$rs / $rd" | bc -l)"

echo "== 2. warm pull of $PULL_TAG through a station"
D=$(disk_home); S=$(s3_home pull); C=$(s3_home pull)
"$SHP" --home "$D" push -q "oci:$LAYOUT:$PULL_TAG" --tag "bench/img:v1" >/dev/null
"$SHP" --home "$S" push -q "oci:$LAYOUT:$PULL_TAG" --tag "bench/img:v1" >/dev/null
station() {
  "$SHP" --home "$1" start --listen 127.0.0.1:0 --no-p2p >"$WORK/$2.line" 2>"$WORK/$2.log" &
  PIDS+=($!)
  for _ in $(seq 1 400); do [ -s "$WORK/$2.line" ] && break; sleep 0.05; done
  [ -s "$WORK/$2.line" ] || { echo "s3.sh: the station on $1 did not start:" >&2; cat "$WORK/$2.log" >&2; exit 1; }
  cut -d' ' -f2 <"$WORK/$2.line" | sed 's|http://||'
}
AD=$(station "$D" disk); AS=$(station "$S" s3); AC=$(station "$C" cold)
pull() { rm -rf "$WORK/out"; skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$1/bench/img:v1" "oci:$WORK/out:v1"; }
cold=$(secs pull "$AC")
pull "$AD"; pull "$AS"
: >"$WORK/p-disk"; : >"$WORK/p-s3"
for _ in $(seq 1 "$RUNS"); do
  secs pull "$AD" >>"$WORK/p-disk"
  secs pull "$AS" >>"$WORK/p-s3"
done
pd=$(median <"$WORK/p-disk"); ps=$(median <"$WORK/p-s3")
printf 'warm pull: embedded %.2f s, S3 %.2f s: ratio %.2fx (goal <= 1.2); cold from a second station on the bucket %.2f s\n' \
  "$pd" "$ps" "$(echo "$ps / $pd" | bc -l)" "$cold"

echo "== 3. stored bytes for the corpus ($LAYOUT)"
D=$(disk_home); S=$(s3_home corpus)
for tag in $(jq -r '.manifests[].annotations["org.opencontainers.image.ref.name"]' "$LAYOUT/index.json"); do
  "$SHP" --home "$D" push -q "oci:$LAYOUT:$tag" --tag "$tag" >/dev/null
  "$SHP" --home "$S" push -q "oci:$LAYOUT:$tag" --tag "$tag" >/dev/null
done
sd=$(jq_stats "$D" .stored_bytes); so=$(jq_stats "$S" .bucket.object_bytes); ss=$(jq_stats "$S" .stored_bytes)
printf 'corpus: embedded stored_bytes %d, S3 objects %d bytes (stored_bytes %d, %s objects): ratio %.3fx (goal <= 1.05)\n' \
  "$sd" "$so" "$ss" "$(jq_stats "$S" .bucket.objects)" "$(echo "$so / $sd" | bc -l)"
