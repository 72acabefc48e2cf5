#!/usr/bin/env bash
# benches/dedup.sh CORPUS -- how much shp stores for a set of related images, against an
# independent oracle of what chunk-level dedup can reach on the same images.
#
# CORPUS is an OCI layout, or a directory holding one at CORPUS/oci (what
# /work/shared/corpus/build-corpus.sh OUT makes: 9 Debian-based images; needs root, network and
# about 3 minutes). Smoke test on the busybox fixtures: tests/interop/make-images.sh /tmp/fx &&
# benches/dedup.sh /tmp/fx/oci
#
# Every tag, in index.json order, is pushed into a fresh home; then it prints
#   - `shp stats --json` stored_bytes (the home's store on disk: chunks + DAG nodes, zstd at rest);
#   - the oracle's figures (dedup-oracle.py: layer-, file-, chunk-level dedup; chunks zstd -3 each)
#     and stored_bytes / the oracle's chunk-dedup(zstd3) figure (<1: shp beats the bound);
#   - `shp dedup --json` of the tags in order: what each image adds given those before it.
#
# Knobs: RELAYER=none re-encodes every layer uncompressed first (tests/interop/relayer.py), so
# the layers are stored as chunks even while a compressed layer's recipe is unknown (opaque);
# PAIRS="have:want,..." passes --pairs to the oracle (incremental-pull estimates);
# ORACLE (default /work/shared/corpus/dedup-oracle.py; needs `pip install pyfastcdc zstandard`);
# SHP (default target/release/shp, built if missing); WORK (scratch dir; removed unless KEEP=1).
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHP=${SHP:-$ROOT/target/release/shp}
ORACLE=${ORACLE:-/work/shared/corpus/dedup-oracle.py}
IN=${1:?usage: dedup.sh CORPUS_DIR_OR_OCI_LAYOUT}
if [ -f "$IN/oci/index.json" ]; then IN=$IN/oci; fi
[ -f "$IN/index.json" ] || { echo "dedup.sh: $IN is not an OCI layout (no index.json)" >&2; exit 1; }
python3 -c 'import pyfastcdc, zstandard' 2>/dev/null \
  || { echo "dedup.sh: the oracle needs: pip install pyfastcdc zstandard" >&2; exit 1; }
[ -f "$ORACLE" ] || { echo "dedup.sh: oracle $ORACLE not found (set ORACLE=)" >&2; exit 1; }
if [ ! -x "$SHP" ]; then
  echo "== building shp (cargo build --release)"
  (cd "$ROOT" && cargo build --release -q -p shp-cli)
fi
mkdir -p "${WORK:=$(mktemp -d "${TMPDIR:-/tmp}/shp-dedup.XXXXXX")}"
WORK=$(cd "$WORK" && pwd)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT

# Tags in index.json order; entries without a ref name are skipped (they cannot be named).
mapfile -t tags < <(python3 -c '
import json, sys
for m in json.load(open(sys.argv[1]))["manifests"]:
    t = m.get("annotations", {}).get("org.opencontainers.image.ref.name")
    if t: print(t)' "$IN/index.json")
[ ${#tags[@]} -gt 0 ] || { echo "dedup.sh: no named images in $IN" >&2; exit 1; }

LAYOUT=$IN
if [ -n "${RELAYER:-}" ]; then
  echo "== re-encoding every layer of ${#tags[@]} images as $RELAYER (relayer.py)"
  LAYOUT=$WORK/layout
  cp -al "$IN" "$LAYOUT" 2>/dev/null || cp -a "$IN" "$LAYOUT"   # relayer.py replaces files, never edits them
  for t in "${tags[@]}"; do
    python3 "$ROOT/tests/interop/relayer.py" "$LAYOUT" "$t" "$t" "$RELAYER"
  done
fi

HOME_DIR=$WORK/home
"$SHP" --home "$HOME_DIR" init >/dev/null
echo "== pushing ${#tags[@]} images into a fresh home"
for t in "${tags[@]}"; do
  "$SHP" --home "$HOME_DIR" push --json --tag "$t" "oci:$LAYOUT:$t" >"$WORK/push-$t.json"
  python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
st = {}
for b in r["blobs"]:
    st[b["storage"]] = st.get(b["storage"], 0) + 1
new, total = r["new_bytes"], r["bytes"]
kinds = ", ".join(f"{k} {v}" for k, v in sorted(st.items()))
print(f"   {sys.argv[2]:<24} new {new:>12} B of {total:>12} B  blobs: {kinds}")
' "$WORK/push-$t.json" "$t"
done
"$SHP" --home "$HOME_DIR" stats --json >"$WORK/stats.json"

echo "== oracle: $ORACLE $LAYOUT${PAIRS:+ --pairs $PAIRS}"
python3 "$ORACLE" "$LAYOUT" ${PAIRS:+--pairs "$PAIRS"} | tee "$WORK/oracle.txt" | sed 's/^/   /'

echo "== shp dedup (each image given those before it)"
"$SHP" --home "$HOME_DIR" dedup --json "${tags[@]}" >"$WORK/dedup.json"

python3 - "$WORK/stats.json" "$WORK/oracle.txt" "$WORK/dedup.json" "$IN" <<'PY'
import json, os, re, sys
stats = json.load(open(sys.argv[1]))
# Layer-level dedup of the layout as given (before any RELAYER): what a registry stores.
src = sys.argv[4]
blob = lambda d: os.path.join(src, "blobs", *d.split(":", 1))
layers = {}
for m in json.load(open(os.path.join(src, "index.json")))["manifests"]:
    for l in json.load(open(blob(m["digest"]))).get("layers", []):
        layers[l["digest"]] = l["size"]
registry = sum(layers.values())
oracle = {}
for line in open(sys.argv[2]):
    if line.startswith("stored bytes:"):
        oracle = {k: int(v) for k, v in re.findall(r"(\S+)=(\d+)", line)}
rows = json.load(open(sys.argv[3]))
cols = ["total_bytes", "layer_bytes", "file_bytes", "chunk_bytes", "block_bytes"]
print(f"   {'image':<24}" + "".join(f"{c:>14}" for c in cols))
for r in rows:
    print(f"   {r['image']:<24}" + "".join(f"{r[c]:>14}" for c in cols))
print(f"   {'sum':<24}" + "".join(f"{sum(r[c] for r in rows):>14}" for c in cols))
s = stats["stored_bytes"]
print("== results")
print(f"   shp stored_bytes:                   {s:>14}  ({stats['blocks']} blocks, {stats['images']} images)")
need = ["chunk-dedup(zstd3)", "layer-dedup(gz)", "chunk-dedup(raw)"]
missing = [k for k in need if k not in oracle]
if missing:
    sys.exit(f"dedup.sh: the oracle's output has no {missing} (format changed?)")
print(f"   oracle chunk-dedup(zstd3):          {oracle['chunk-dedup(zstd3)']:>14}")
print(f"   layer-dedup of the source layout:   {registry:>14}  (distinct layer blobs, as a registry stores them)")
print(f"   shp / oracle chunk-dedup(zstd3):    {s / oracle['chunk-dedup(zstd3)']:>14.3f}   (<1 beats the oracle's bound)")
print(f"   shp / oracle chunk-dedup(raw):      {s / oracle['chunk-dedup(raw)']:>14.3f}")
print(f"   shp / layer-dedup of the source:    {s / registry:>14.3f}")
PY
