#!/usr/bin/env bash
# tests/runtimes/snapshotter.sh -- `shp snapshotter` as containerd's remote snapshotter
# ([proxy_plugins] shp), with Debian's containerd 1.6 + runc:
#   1. an image pushed (skopeo) to station A is pulled by containerd's remote-snapshot client path
#      (tests/snapshotter/pull.go: the Go client with snapshotters.AppendInfoHandlerWrapper, as CRI
#      and nerdctl pull) with the snapshotter on A's home: every layer is mounted from the store,
#      the content store holds the manifest and config only, and `ctr run --snapshotter shp`
#      runs a command in it (a file of the top layer, a path removed by a whiteout, busybox
#      from the base layer);
#   2. the snapshotter restarted (SIGTERM, then SIGKILL): its layers are mounted again, a new
#      container runs;
#   3. v2 (v1 + one layer) pushed to station B only: its v1 layers come from A's store, the new
#      layer is downloaded and unpacked by containerd into an ordinary snapshot;
#   4. a snapshotter on an empty home with --from A: the same pull mounts layers lazily from A over
#      HTTP, a container runs, the whole image is then prefetched into the home and verified;
#   5. snapshot commands (info, label = Update, usage) and removal: the image
#      removed, containerd's gc removes the snapshots and the snapshotter unmounts its layers.
# Needs root, /dev/fuse, containerd + ctr + runc, skopeo, umoci, busybox-static, go with Debian's
# containerd sources, python3, jq, and a built shp (SHP=path; default target/debug/shp). Everything
# listens on 127.0.0.1 or a unix socket in a temp dir; everything it starts it stops by PID.
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHP=${SHP:-$ROOT/target/debug/shp}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shp-snap.XXXXXX")
PIDS=()
say() { printf '== %s\n' "$*"; }
die() {
  echo "runtimes/snapshotter.sh: $*" >&2
  for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 40 "$f" >&2; }; done
  exit 1
}
# shellcheck source=tests/runtimes/lib.sh
. "$ROOT/tests/runtimes/lib.sh"
cleanup() {
  # containers first (their shims), then the services, then any mount left under WORK
  if [ -n "${CSOCK:-}" ] && [ -S "$CSOCK" ]; then
    for t in $(ctr -a "$CSOCK" -n t tasks ls -q 2>/dev/null); do ctr -a "$CSOCK" -n t tasks kill -s KILL "$t" >/dev/null 2>&1 || true; done
  fi
  for p in "${PIDS[@]}"; do stop "$p"; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  awk -v w="$WORK" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] || die "needs root (containerd)"
[ -e /dev/fuse ] || die "needs /dev/fuse"
for t in containerd ctr runc skopeo umoci python3 jq go; do
  command -v "$t" >/dev/null || die "$t not found (scripts/ci-deps.sh installs it)"
done
[ -x "$SHP" ] || die "$SHP not found (cargo build -p shp-cli)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

say "the remote-snapshot pull client (Go, Debian's containerd sources)"
GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$WORK/gocache GOFLAGS=-mod=mod \
  go build -o "$WORK/pull" "$ROOT/tests/snapshotter/pull.go" >"$WORK/go.log" 2>&1 || die "go build: $(cat "$WORK/go.log")"

say "an image: busybox base, a file layer, a layer with a whiteout"
umoci init --layout "$WORK/lay" >/dev/null
umoci new --image "$WORK/lay:v1" >/dev/null
layer() { # SCRIPT: run in the unpacked rootfs, then repack as a new layer
  umoci unpack --rootless --image "$WORK/lay:v1" "$WORK/b" >/dev/null
  (cd "$WORK/b/rootfs" && eval "$1")
  umoci repack --image "$WORK/lay:v1" "$WORK/b" >/dev/null
  rm -rf "$WORK/b"
}
layer 'mkdir -p bin etc && cp /bin/busybox bin/busybox && for a in sh cat ls echo test; do ln -s busybox bin/$a; done && echo doomed >etc/doomed'
layer 'echo "hello from the store" >etc/motd && head -c 300000 /dev/urandom >etc/blob'
layer 'rm etc/doomed && echo third >etc/third'
umoci config --image "$WORK/lay:v1" --config.cmd /bin/sh >/dev/null
BLOB_SUM=$(umoci unpack --rootless --image "$WORK/lay:v1" "$WORK/ref" >/dev/null && sha256sum "$WORK/ref/rootfs/etc/blob" | cut -d' ' -f1)
rm -rf "$WORK/ref"
skopeo copy -q "oci:$WORK/lay:v1" "oci:$WORK/lay2:v2"
umoci unpack --rootless --image "$WORK/lay2:v2" "$WORK/b" >/dev/null
echo "only in v2" >"$WORK/b/rootfs/etc/v2"
umoci repack --image "$WORK/lay2:v2" "$WORK/b" >/dev/null
rm -rf "$WORK/b"

# station NAME: a station on 127.0.0.1 with its home in WORK/NAME; sets ADDR.
station() {
  local name=$1
  "$SHP" --home "$WORK/$name" init >/dev/null 2>&1
  mkfifo "$WORK/$name.banner"
  "$SHP" --home "$WORK/$name" start --listen 127.0.0.1:0 --no-p2p >"$WORK/$name.banner" 2>"$WORK/$name.log" &
  PIDS+=($!)
  local line
  read -r -t 30 line <"$WORK/$name.banner" || die "$name: shp start printed nothing"
  ADDR=$(echo "$line" | awk '{print $2}' | sed 's#http://##')
}
station a
A=$ADDR
station b
B=$ADDR
skopeo copy -q --dest-tls-verify=false "oci:$WORK/lay:v1" "docker://$A/app:v1"
skopeo copy -q --dest-tls-verify=false "oci:$WORK/lay2:v2" "docker://$B/app:v2"
LAYERS1=$(skopeo inspect --raw --tls-verify=false "docker://$A/app:v1" | jq -r '.layers[].digest')
LAYERS2=$(skopeo inspect --raw --tls-verify=false "docker://$B/app:v2" | jq -r '.layers[].digest')
NEW=$(echo "$LAYERS2" | tail -n 1)

SNSOCK=$WORK/shp.sock
snap_up() {
  rm -f "$WORK/snap.banner"
  mkfifo "$WORK/snap.banner"
  "$SHP" --home "$WORK/a" snapshotter --address "$SNSOCK" >"$WORK/snap.banner" 2>>"$WORK/snapshotter.log" &
  SNPID=$!
  PIDS+=("$SNPID")
  read -r -t 30 SNBANNER <"$WORK/snap.banner" || die "shp snapshotter printed nothing"
  echo "   $SNBANNER"
}
# redialed PLUGIN: waits (10 s at most) until containerd, which redials a proxy plugin with a
# backoff of at most 3 s, answers through it again
redialed() {
  for _ in $(seq 1 100); do
    ctr -a "$CSOCK" -n t snapshots --snapshotter "$1" ls >/dev/null 2>&1 && return 0
    sleep 0.1
  done
}
snap_up
if err=$("$SHP" --home "$WORK/a" snapshotter --address "$SNSOCK" 2>&1 </dev/null); then
  die "a second snapshotter on the same socket started"
fi
grep -q "another process is listening" <<<"$err" || die "a second snapshotter on the same socket: $err"
# and one on an empty home that reads what it lacks from station A (step 4)
"$SHP" --home "$WORK/l" init >/dev/null 2>&1
mkfifo "$WORK/lazy.banner"
"$SHP" --home "$WORK/l" snapshotter --address "$WORK/lazy.sock" --from "http://$A" >"$WORK/lazy.banner" 2>"$WORK/lazy.log" &
LZPID=$!
PIDS+=("$LZPID")
read -r -t 30 line <"$WORK/lazy.banner" || die "the lazy snapshotter printed nothing"
CSOCK=$WORK/c/containerd.sock
containerd_config "$WORK/c" "$CSOCK" "shp=$SNSOCK" "shplazy=$WORK/lazy.sock"
containerd --config "$WORK/c/config.toml" >"$WORK/containerd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do ctr -a "$CSOCK" version >/dev/null 2>&1 && break; sleep 0.1; done
ctr -a "$CSOCK" version >/dev/null 2>&1 || die "containerd did not start"
plugins=$(ctr -a "$CSOCK" plugins ls)
grep -q 'io.containerd.snapshotter.v1 *shp .*ok' <<<"$plugins" || die "containerd has no shp snapshotter: $(grep snapshotter <<<"$plugins")"

say "1. containerd pulls A/app:v1 through the snapshotter: no layer downloaded or unpacked"
"$WORK/pull" "$CSOCK" t shp "$A/app:v1" >"$WORK/pull1.json" 2>"$WORK/pull1.log" || die "pull v1: $(cat "$WORK/pull1.log")"
for l in $LAYERS1; do
  jq -e --arg l "$l" '.content | index($l) | not' "$WORK/pull1.json" >/dev/null || die "containerd downloaded layer $l: $(cat "$WORK/pull1.json")"
done
[ "$(jq '.content | length' "$WORK/pull1.json")" = 2 ] || die "content store should hold the manifest and config only: $(cat "$WORK/pull1.json")"
n=$(awk -v w="$WORK/a/snapshotter/layers/" 'index($2, w) == 1 && index($1, "shp:") == 1' /proc/mounts | wc -l)
[ "$n" = 3 ] || die "$n layers mounted from the store, want 3"
echo "   content store: $(jq -r '.content | join(" ")' "$WORK/pull1.json") (manifest and config); 3 layers mounted from the store"
run() { # NAME IMAGE SCRIPT
  ctr -a "$CSOCK" -n t run --rm --snapshotter shp "$2" "$1" /bin/sh -c "$3" 2>"$WORK/run-$1.log" || die "ctr run $1: $(cat "$WORK/run-$1.log")"
}
out=$(run c1 "$A/app:v1" 'cat /etc/motd; test -e /etc/doomed && echo doomed-is-back; cat /etc/third; echo x >/etc/written; cat /etc/written')
want=$'hello from the store\nthird\nx'
[ "$out" = "$want" ] || die "container c1 printed: $out"
sum=$(run c2 "$A/app:v1" 'cat /etc/blob' | sha256sum | cut -d' ' -f1)
[ "$sum" = "$BLOB_SUM" ] || die "etc/blob through the container: $sum, the image has $BLOB_SUM"
echo "   ctr run: the top layer's files, the whiteout applied, writes in the upper dir, a 300 kB file bit-exact"

say "2. the snapshotter restarted: layers mounted again"
stop "$SNPID"
wait "$SNPID" 2>/dev/null || true
n=$(awk -v w="$WORK/a/snapshotter/layers/" 'index($2, w) == 1' /proc/mounts | wc -l)
[ "$n" = 0 ] || die "a stopped snapshotter left $n mounts"
snap_up
grep -q "3 layer(s) mounted" <<<"$SNBANNER" || die "after a restart: $SNBANNER"
redialed shp
out=$(run c3 "$A/app:v1" 'cat /etc/motd')
[ "$out" = "hello from the store" ] || die "after a restart the container printed: $out"
echo "   a new container after the restart: ok"
# SIGKILL: no chance to unmount; the next start unmounts the dead mounts and mounts them again
kill -9 "$SNPID"
wait "$SNPID" 2>/dev/null || true
snap_up
grep -q "3 layer(s) mounted" <<<"$SNBANNER" || die "after a SIGKILL: $SNBANNER"
redialed shp
out=$(run c5 "$A/app:v1" 'cat /etc/third')
[ "$out" = "third" ] || die "after a SIGKILL the container printed: $out"
echo "   killed (SIGKILL) and started again: dead mounts replaced, a new container ran"

say "3. B/app:v2: v1's layers from A's store, the new one unpacked by containerd"
"$WORK/pull" "$CSOCK" t shp "$B/app:v2" >"$WORK/pull2.json" 2>"$WORK/pull2.log" || die "pull v2: $(cat "$WORK/pull2.log")"
jq -e --arg l "$NEW" '.content | index($l)' "$WORK/pull2.json" >/dev/null || die "the new layer $NEW was not downloaded: $(cat "$WORK/pull2.json")"
[ "$(jq '.content | length' "$WORK/pull2.json")" = 5 ] || die "content: v1's manifest+config, v2's manifest+config and the new layer: $(cat "$WORK/pull2.json")"
out=$(run c4 "$B/app:v2" 'cat /etc/v2 /etc/motd')
[ "$out" = $'only in v2\nhello from the store' ] || die "v2 container printed: $out"
echo "   v2: one layer downloaded and unpacked, three from the store"

say "4. a lazy snapshotter on an empty home, reading A's store over HTTP (--from)"
"$WORK/pull" "$CSOCK" t2 shplazy "$A/app:v1" >"$WORK/pull3.json" 2>"$WORK/pull3.log" || die "lazy pull: $(cat "$WORK/pull3.log")"
[ "$(jq '.content | length' "$WORK/pull3.json")" = 2 ] || die "lazy: content store should hold the manifest and config only: $(cat "$WORK/pull3.json")"
n=$(awk -v w="$WORK/l/snapshotter/layers/" 'index($2, w) == 1 && index($1, "shp:") == 1' /proc/mounts | wc -l)
[ "$n" = 3 ] || die "lazy: $n layers mounted, want 3"
sum=$(ctr -a "$CSOCK" -n t2 run --rm --snapshotter shplazy "$A/app:v1" l1 /bin/sh -c 'cat /etc/motd >&2; cat /etc/blob' 2>"$WORK/run-l1.err" | sha256sum | cut -d' ' -f1)
[ "$sum" = "$BLOB_SUM" ] || die "lazy: etc/blob $sum, want $BLOB_SUM ($(cat "$WORK/run-l1.err"))"
[ "$(cat "$WORK/run-l1.err")" = "hello from the store" ] || die "lazy: motd: $(cat "$WORK/run-l1.err")"
# the whole image lands in the home in the background (pinned), verified
for _ in $(seq 1 300); do grep -q "prefetched" "$WORK/lazy.log" && break; sleep 0.1; done
grep -q "prefetched" "$WORK/lazy.log" || die "the lazy snapshotter never prefetched the image"
"$SHP" --home "$WORK/l" verify >/dev/null || die "lazy home: verify failed"
echo "   an empty home: layers mounted from A over HTTP, a container ran, the image then prefetched and verified"
stop "$LZPID"

say "5. snapshot commands and removal"
S=(ctr -a "$CSOCK" -n t snapshots --snapshotter shp)
top=$("${S[@]}" ls | awk '$3 == "Committed" {print $1}' | head -n 1)
[ -n "$top" ] || die "no committed snapshots listed: $("${S[@]}" ls)"
"${S[@]}" label "$top" shp.test=yes >/dev/null || die "label (Update) failed"
"${S[@]}" info "$top" | jq -e '.Labels["shp.test"] == "yes"' >/dev/null || die "info after label: $("${S[@]}" info "$top")"
"${S[@]}" usage >/dev/null || die "usage failed"
ctr -a "$CSOCK" -n t images rm --sync "$A/app:v1" "$B/app:v2" >/dev/null || die "images rm"
snaps() { "${S[@]}" ls | tail -n +2; }
for _ in $(seq 1 100); do
  [ -z "$(snaps 2>/dev/null)" ] && break
  sleep 0.1
done
[ -z "$(snaps)" ] || die "snapshots left after the images were removed: $("${S[@]}" ls)"
n=$(awk -v w="$WORK/a/snapshotter/layers/" 'index($2, w) == 1' /proc/mounts | wc -l)
[ "$n" = 0 ] || die "$n layer mounts left after gc removed their snapshots"
"$SHP" --home "$WORK/a" verify >/dev/null || die "A: verify failed"
echo "   label, info, usage; images removed: every snapshot gone, every layer unmounted"
say "snapshotter tests passed"
