#!/usr/bin/env bash
# make-images.sh OUT — builds small, real OCI images from Debian's busybox-static with umoci, offline.
#
#   OUT/oci                 one OCI layout, tags:
#     busybox-gzip            1 layer (umoci's own gzip: klauspost pgzip): /bin/busybox + applet symlinks,
#                             /etc files, an empty file, a hard link, a long and a non-ASCII file name,
#                             /data/random.bin (3 MiB of deterministic pseudo-random bytes)
#     busybox-2layer          busybox-gzip + a layer with /app (incl. a copy of random.bin), a changed
#                             /etc/passwd and a whiteout (/etc/motd removed)
#     busybox-none            busybox-gzip's layer uncompressed      (relayer.py ... none)
#     busybox-zstd            busybox-gzip's layer through `zstd -3`  (relayer.py ... zstd)
#     busybox-gzip-python     busybox-gzip's layer through Python's gzip, level 6, mtime 0
#   OUT/multi               OCI layout; ref `multi` is an image index: linux/amd64 -> busybox-gzip's
#                           manifest, linux/arm64 -> busybox-none's manifest (both configs say the
#                           build machine's architecture: it is a fixture, not a real arm64 image)
#   OUT/busybox.docker.tar  docker-archive of busybox-2layer (skopeo), tagged shp/busybox:latest
#
# Needs: umoci, skopeo, busybox-static, python3, jq, zstd (scripts/ci-deps.sh installs them).
# Deterministic: file times, config and history dates are fixed, so a rerun on the same machine (same
# umoci, zstd and zlib) gives the same digests. Prints only what it made (tag and manifest digest).
set -euo pipefail
umask 022
export LC_ALL=C TZ=UTC

OUT=${1:?usage: make-images.sh OUT}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUSYBOX=${BUSYBOX:-/bin/busybox}
for tool in umoci skopeo python3 jq zstd sha256sum; do
  command -v "$tool" >/dev/null || { echo "make-images.sh: $tool not found (run scripts/ci-deps.sh)" >&2; exit 1; }
done
[ -x "$BUSYBOX" ] || { echo "make-images.sh: $BUSYBOX not found (apt-get install busybox-static)" >&2; exit 1; }
if command -v file >/dev/null && ! file -L "$BUSYBOX" | grep -q 'statically linked'; then
  echo "make-images.sh: warning: $BUSYBOX is not statically linked (install busybox-static)" >&2
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
L=$OUT/oci
M=$OUT/multi
rm -rf "$L" "$M" "$OUT/busybox.docker.tar"
WORK=$(mktemp -d "$OUT/.make-images.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
LOG=$WORK/log

# run CMD quietly; on failure show its output and stop
q() {
  if ! "$@" >"$LOG" 2>&1; then
    echo "make-images.sh: failed: $*" >&2
    cat "$LOG" >&2
    exit 1
  fi
}

ROOTLESS=()
[ "$(id -u)" = 0 ] || ROOTLESS=(--rootless)
T1=2024-01-01T00:00:00Z   # layer 1 file times, config and history dates
T2=2024-02-01T00:00:00Z   # layer 2
# every path in a rootfs whose time we set: -h so symlinks get theirs, not their target's
stamp() { find "$1" -exec touch -h -d "$2" {} +; }

# --- busybox-gzip: one layer --------------------------------------------------------------
q umoci init --layout "$L"
q umoci new --image "$L:busybox-gzip"
q umoci unpack "${ROOTLESS[@]}" --image "$L:busybox-gzip" "$WORK/b1"
R=$WORK/b1/rootfs
mkdir -p "$R"/{bin,etc,root,tmp,data,var/empty,usr/share/doc/shp-fixture}
chmod 1777 "$R/tmp"
chmod 0700 "$R/root"
cp "$BUSYBOX" "$R/bin/busybox"
chmod 0755 "$R/bin/busybox"
for applet in sh ash ls cat echo cp mv rm mkdir rmdir ln pwd grep sed awk head tail wc sort uniq \
              env true false sleep id uname date touch chmod find xargs sha256sum tar gzip vi; do
  ln -s busybox "$R/bin/$applet"
done
cat >"$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$R/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
nogroup:x:65534:
EOF
echo shp-busybox >"$R/etc/hostname"
printf 'Welcome to the shp busybox test image.\n' >"$R/etc/motd"
cat >"$R/etc/os-release" <<'EOF'
NAME="shp busybox fixture"
ID=shp-busybox
VERSION_ID=1
EOF
: >"$R/etc/empty"
ln "$R/etc/os-release" "$R/usr/share/doc/shp-fixture/os-release.hardlink"
# a base name over 100 bytes (no ustar prefix split fits: PAX path record) and a non-ASCII one (PAX path record)
long=$R/usr/share/doc/shp-fixture/a-file-name-that-is-far-longer-than-the-one-hundred-bytes-that-the-name-field-of-a-plain-ustar-header-can-hold.txt
echo 'long name' >"$long"
echo 'grüße' >"$R/usr/share/doc/shp-fixture/grüße-ünïcødé.txt"
# 3 MiB of pseudo-random bytes: sha256 in counter mode over a fixed seed (same bytes everywhere)
python3 - "$R/data/random.bin" <<'EOF'
import hashlib, sys
with open(sys.argv[1], "wb") as f:
    f.write(b"".join(hashlib.sha256(b"shp-fixture-seed-1:%d" % i).digest() for i in range(3 * 1024 * 1024 // 32)))
EOF
stamp "$R" "$T1"
q umoci repack --image "$L:busybox-gzip" --history.created "$T1" \
  --history.created_by "make-images.sh: busybox rootfs" "$WORK/b1"
q umoci config --image "$L:busybox-gzip" --created "$T1" --author shp-make-images \
  --config.cmd /bin/sh --config.env PATH=/bin --config.workingdir / \
  --history.created "$T1" --history.created_by "make-images.sh: config"

# --- busybox-2layer: FROM busybox-gzip + /app, changed /etc/passwd, a whiteout ------------
q umoci unpack "${ROOTLESS[@]}" --image "$L:busybox-gzip" "$WORK/b2"
R=$WORK/b2/rootfs
touch "$WORK/mark"
sleep 0.01
mkdir -p "$R/app/bin"
echo 'app:x:1000:1000:app:/app:/bin/sh' >>"$R/etc/passwd"
rm "$R/etc/motd"
printf '#!/bin/sh\necho "hello from shp"\n' >"$R/app/bin/hello"
chmod 0755 "$R/app/bin/hello"
echo 1.0.0 >"$R/app/VERSION"
printf '{"name":"shp-fixture","layers":2}\n' >"$R/app/config.json"
cp "$R/data/random.bin" "$R/app/random-copy.bin"
find "$R" -newer "$WORK/mark" -exec touch -h -d "$T2" {} +
q umoci repack --image "$L:busybox-2layer" --history.created "$T2" \
  --history.created_by "make-images.sh: /app" "$WORK/b2"
q umoci config --image "$L:busybox-2layer" --created "$T2" --config.cmd /app/bin/hello \
  --history.created "$T2" --history.created_by "make-images.sh: config"

# --- other encodings of busybox-gzip's layer ---------------------------------------------
q python3 "$HERE/relayer.py" "$L" busybox-gzip busybox-none none
q python3 "$HERE/relayer.py" "$L" busybox-gzip busybox-zstd zstd
q python3 "$HERE/relayer.py" "$L" busybox-gzip busybox-gzip-python gzip-python
q umoci gc --layout "$L"

# --- multi: a nested image index ----------------------------------------------------------
manifest_of() { jq -c --arg t "$1" '.manifests[] | select(.annotations."org.opencontainers.image.ref.name" == $t)' "$L/index.json"; }
blob() { echo "$1/blobs/sha256/${2#sha256:}"; }
mkdir -p "$M/blobs/sha256"
cp "$L/oci-layout" "$M/oci-layout"
platforms=()
for pair in busybox-gzip:amd64 busybox-none:arm64; do
  tag=${pair%%:*} arch=${pair##*:}
  desc=$(manifest_of "$tag")
  mdigest=$(jq -r .digest <<<"$desc")
  for d in "$mdigest" $(jq -r '.config.digest, .layers[].digest' "$(blob "$L" "$mdigest")"); do
    cp "$(blob "$L" "$d")" "$(blob "$M" "$d")"
  done
  platforms+=("$(jq -c --arg a "$arch" '{mediaType, digest, size, platform: {architecture: $a, os: "linux"}}' <<<"$desc")")
done
printf '%s\n' "${platforms[@]}" | jq -sc '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: .}' \
  | tr -d '\n' >"$WORK/index-blob"
idigest=sha256:$(sha256sum "$WORK/index-blob" | cut -d' ' -f1)
isize=$(stat -c %s "$WORK/index-blob")
mv "$WORK/index-blob" "$(blob "$M" "$idigest")"
jq -nc --arg d "$idigest" --argjson s "$isize" \
  '{schemaVersion: 2, manifests: [{mediaType: "application/vnd.oci.image.index.v1+json", digest: $d, size: $s,
    annotations: {"org.opencontainers.image.ref.name": "multi"}}]}' | tr -d '\n' >"$M/index.json"
chmod -R go+rX "$L" "$M"   # umoci writes blobs 0600; let other users' tools read the fixtures

# --- docker-archive -----------------------------------------------------------------------
q skopeo --insecure-policy copy -q "oci:$L:busybox-2layer" "docker-archive:$OUT/busybox.docker.tar:shp/busybox:latest"

# --- what was made ------------------------------------------------------------------------
jq -r '.manifests[] | "oci/\(.annotations."org.opencontainers.image.ref.name")\t\(.digest)"' "$L/index.json" | sort
echo -e "multi/multi\t$idigest"
echo -e "busybox.docker.tar\tsha256:$(sha256sum "$OUT/busybox.docker.tar" | cut -d' ' -f1)"
