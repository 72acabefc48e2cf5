#!/usr/bin/env bash
# benches/throughput.sh -- how fast `shp push` stores uncompressed layer tars, against casync
# (`casync make`, the same 16/64/256 KiB content-defined chunking, zstd-compressed chunk store) on
# the same tars in the same run, and how much memory `shp push` needs for a big layer.
#
#   benches/throughput.sh                 busybox fixture layers (tests/interop/make-images.sh)
#   BIG_TAR=/path/root.tar benches/throughput.sh      ... plus one bigger real tar
#   BIG_ROOT=/path/rootfs  benches/throughput.sh      ... plus a tar made of that directory
#   TARS="a.tar b.tar" benches/throughput.sh          exactly these tars
#
# Knobs: SHP (binary; default target/release/shp, built if missing), RUNS (default 5),
# RSS_MB (size of the generated layer for the memory figure, default 250; 0 skips it),
# WORK (scratch directory, default a temp dir, removed at the end unless KEEP=1).
# Needs casync and python3; uses hyperfine when installed, else repeated /usr/bin/time.
# Run by hand, not in CI: figures depend on the machine; quote them as ratios.
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$ROOT/benches
SHP=${SHP:-$ROOT/target/release/shp}
RUNS=${RUNS:-5}
RSS_MB=${RSS_MB:-250}

command -v casync >/dev/null || { echo "throughput.sh: casync not found (apt-get install casync)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "throughput.sh: /usr/bin/time not found (apt-get install time)" >&2; exit 1; }
if [ ! -x "$SHP" ]; then
  echo "== building shp (cargo build --release)"
  (cd "$ROOT" && cargo build --release -q -p shp-cli)
fi
mkdir -p "${WORK:=$(mktemp -d "${TMPDIR:-/tmp}/shp-throughput.XXXXXX")}"
WORK=$(cd "$WORK" && pwd)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT

# --- the tars -------------------------------------------------------------------------------
if [ -n "${TARS:-}" ]; then
  read -r -a tars <<<"$TARS"
else
  echo "== building the busybox fixtures (tests/interop/make-images.sh)"
  "$ROOT/tests/interop/make-images.sh" "$WORK/fixtures" >/dev/null
  mapfile -t tars < <(python3 "$HERE/layout-from-tars.py" --extract "$WORK/fixtures/oci" "$WORK/tars")
  if [ -n "${BIG_ROOT:-}" ]; then
    echo "== tar of $BIG_ROOT"
    tar --sort=name --numeric-owner -C "$BIG_ROOT" -cf "$WORK/tars/big-root.tar" .
    tars+=("$WORK/tars/big-root.tar")
  fi
  [ -z "${BIG_TAR:-}" ] || tars+=("$BIG_TAR")
fi
bytes=0
for t in "${tars[@]}"; do
  [ -f "$t" ] || { echo "throughput.sh: $t: no such tar" >&2; exit 1; }
  bytes=$((bytes + $(stat -c %s "$t")))
  cat "$t" >/dev/null   # warm the page cache: measure the tools, not the disk
done
echo "== ${#tars[@]} tars, $bytes bytes:"
for t in "${tars[@]}"; do printf '   %12d  %s\n' "$(stat -c %s "$t")" "$t"; done

LAYOUT=$WORK/layout
rm -rf "$LAYOUT"
python3 "$HERE/layout-from-tars.py" "$LAYOUT" bench "${tars[@]}"

# One command per tool, each run from an empty store: shp pushes the one image holding every tar
# as an uncompressed layer; casync makes one blob index per tar into one chunk store.
cat >"$WORK/prepare.sh" <<EOS
rm -rf "$WORK/home" "$WORK/castr" "$WORK/caibx" && mkdir -p "$WORK/caibx"
"$SHP" --home "$WORK/home" init >/dev/null
EOS
cat >"$WORK/shp.sh" <<EOS
exec "$SHP" --home "$WORK/home" push -q "oci:$LAYOUT:bench" >/dev/null
EOS
{
  echo 'set -e'
  i=0
  for t in "${tars[@]}"; do
    echo "casync make --compression=zstd --store=\"$WORK/castr\" \"$WORK/caibx/$i.caibx\" \"$t\" >/dev/null"
    i=$((i + 1))
  done
} >"$WORK/casync.sh"

mean_of() { # NAME -> mean seconds over RUNS runs
  local name=$1 times=()
  for _ in $(seq "$RUNS"); do
    bash "$WORK/prepare.sh"
    /usr/bin/time -f %e -o "$WORK/t" bash "$WORK/$name.sh"
    times+=("$(cat "$WORK/t")")
  done
  printf '%s\n' "${times[@]}" | python3 -c 'import sys,statistics; print(statistics.mean(float(x) for x in sys.stdin))'
}

echo "== $("$SHP" --version 2>/dev/null || echo shp) ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')), casync $(casync --version | awk '{print $2; exit}'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== timing ($RUNS runs each, from an empty store every run)"
if command -v hyperfine >/dev/null; then
  hyperfine -N --style basic --warmup 1 --runs "$RUNS" --prepare "bash $WORK/prepare.sh" \
    --export-json "$WORK/hf.json" -n "shp push" "bash $WORK/shp.sh" -n "casync make" "bash $WORK/casync.sh" \
    | sed 's/^/   /'
  read -r t_shp t_casync < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print(r[0]["mean"], r[1]["mean"])' "$WORK/hf.json")
else
  t_shp=$(mean_of shp)
  t_casync=$(mean_of casync)
fi
# What each stores: one more (untimed) run of both, since every timed run starts by emptying both.
bash "$WORK/prepare.sh"
bash "$WORK/shp.sh"
bash "$WORK/casync.sh"
stored_shp=$("$SHP" --home "$WORK/home" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])')
stored_casync=$(du -scb --apparent-size "$WORK/castr" "$WORK/caibx" | tail -1 | cut -f1)   # chunks + indexes

# --- peak memory on one big layer -------------------------------------------------------------
if [ "$RSS_MB" -gt 0 ]; then
  echo "== peak RSS: one generated ${RSS_MB} MB layer of pseudo-random files"
  python3 "$HERE/gen-tar.py" "$WORK/rss.tar" "$RSS_MB"
  python3 "$HERE/layout-from-tars.py" "$WORK/rss-layout" big "$WORK/rss.tar"
  cat "$WORK/rss.tar" >/dev/null
  rss_bytes=$(stat -c %s "$WORK/rss.tar")
  rm -rf "$WORK/rss-home" "$WORK/rss-castr"
  "$SHP" --home "$WORK/rss-home" init >/dev/null
  /usr/bin/time -v -o "$WORK/rss-shp.txt" "$SHP" --home "$WORK/rss-home" push -q "oci:$WORK/rss-layout:big" >/dev/null
  /usr/bin/time -v -o "$WORK/rss-casync.txt" casync make --compression=zstd --store="$WORK/rss-castr" "$WORK/rss.caibx" "$WORK/rss.tar" >/dev/null
  kb() { sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$1"; }
  secs() { sed -n 's/^\s*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$1" | awk -F: '{s=0; for(i=1;i<=NF;i++) s=s*60+$i; print s}'; }
  rss_shp=$(kb "$WORK/rss-shp.txt") rss_casync=$(kb "$WORK/rss-casync.txt")
  big_shp=$(secs "$WORK/rss-shp.txt") big_casync=$(secs "$WORK/rss-casync.txt")
fi

# --- report ---------------------------------------------------------------------------------
python3 - "$bytes" "$t_shp" "$t_casync" "$stored_shp" "$stored_casync" "${rss_bytes:-0}" "${rss_shp:-0}" \
  "${rss_casync:-0}" "${big_shp:-0}" "${big_casync:-0}" <<'EOF'
import sys
b, ts, tc, ss, sc, rb, rs, rc, bs, bc = (float(x) for x in sys.argv[1:])
mbs = lambda n, t: n / 1e6 / t if t else float("nan")
print("== results")
print(f"   tars: {b / 1e6:.1f} MB")
print(f"   shp push:    {ts:8.3f} s  {mbs(b, ts):8.1f} MB/s   store {ss / 1e6:8.1f} MB")
print(f"   casync make: {tc:8.3f} s  {mbs(b, tc):8.1f} MB/s   store {sc / 1e6:8.1f} MB")
print(f"   throughput ratio shp/casync: {tc / ts:.2f}x   store size ratio shp/casync: {ss / sc:.3f}")
if rb:
    print(f"   {rb / 1e6:.0f} MB layer: shp push {mbs(rb, bs):.1f} MB/s, peak RSS {rs / 1024:.1f} MiB;"
          f" casync make {mbs(rb, bc):.1f} MB/s, peak RSS {rc / 1024:.1f} MiB (ratio shp/casync {rs / rc:.2f})")
EOF
