#!/usr/bin/env bash
# tests/runtimes/mirror.sh -- Debian's containerd and podman pulling through stations as their mirror,
# wired the way `shp mirror-config containerd` prints (hosts.toml, capabilities pull + resolve):
#   1. three concurrent `ctr images pull` (three namespaces) through station A, whose upstream
#      for docker.io is Debian's docker-registry: the images have the upstream's digests, unpack
#      (containerd checks every blob's digest), and the upstream saw each blob requested once;
#      A then holds the image as a DAG;
#   2. the upstream stopped: a second containerd pulls through station B, whose only source is
#      its peer A (--mirror-peer), with the same digests;
#   3. podman pulls docker.io/library/app:v1 through B with the registries.conf entries
#      `shp mirror-config podman` prints: the same manifest digest.
# Needs root (containerd), containerd + ctr, docker-registry, skopeo, umoci, python3 and a built
# shp (SHP=path; default target/debug/shp). Everything listens on 127.0.0.1 or a unix socket in a
# temp dir; everything it starts it stops by PID.
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHP=${SHP:-$ROOT/target/debug/shp}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shp-containerd.XXXXXX")
PIDS=()
say() { printf '== %s\n' "$*"; }
die() {
  echo "runtimes/mirror.sh: $*" >&2
  for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }; done
  exit 1
}
# shellcheck source=tests/runtimes/lib.sh
. "$ROOT/tests/runtimes/lib.sh"
cleanup() {
  for p in "${PIDS[@]}"; do stop "$p"; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] || die "needs root (containerd)"
for t in containerd ctr podman docker-registry skopeo umoci python3 curl; do
  command -v "$t" >/dev/null || die "$t not found (scripts/ci-deps.sh installs it)"
done
[ -x "$SHP" ] || die "$SHP not found (cargo build -p shp-cli)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

say "upstream: docker-registry on 127.0.0.1, seeded with a 3-layer image as docker.io's library/app:v1"
UP=127.0.0.1:$(free_port)
cat >"$WORK/registry.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: $UP
EOF
docker-registry serve "$WORK/registry.yml" >"$WORK/upstream.log" 2>&1 &
UPID=$!
PIDS+=("$UPID")
for _ in $(seq 1 100); do curl -fs "http://$UP/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
umoci init --layout "$WORK/lay" >/dev/null
umoci new --image "$WORK/lay:v1" >/dev/null
for i in 1 2 3; do
  umoci unpack --rootless --image "$WORK/lay:v1" "$WORK/b" >/dev/null
  head -c $((1 << 20)) /dev/urandom >"$WORK/b/rootfs/file$i.bin"
  umoci repack --image "$WORK/lay:v1" "$WORK/b" >/dev/null
  rm -rf "$WORK/b"
done
skopeo copy -q --dest-tls-verify=false "oci:$WORK/lay:v1" "docker://$UP/library/app:v1"
WANT=$(skopeo inspect --raw --tls-verify=false "docker://$UP/library/app:v1" | sha256sum | cut -d' ' -f1)
WANT=sha256:$WANT
echo "   manifest $WANT"

# station NAME ARGS...: a station on 127.0.0.1 with its home in WORK/NAME; sets ADDR.
station() {
  local name=$1
  shift
  "$SHP" --home "$WORK/$name" init >/dev/null 2>&1
  mkfifo "$WORK/$name.banner"
  "$SHP" --home "$WORK/$name" start --listen 127.0.0.1:0 --no-p2p "$@" >"$WORK/$name.banner" 2>"$WORK/$name.log" &
  PIDS+=($!)
  local line
  read -r -t 30 line <"$WORK/$name.banner" || die "$name: shp start printed nothing"
  ADDR=$(echo "$line" | awk '{print $2}' | sed 's#http://##')
}

# containerd NAME: a containerd with its own root, state and socket; sets SOCK.
containerd_up() {
  local name=$1
  SOCK=$WORK/$name/containerd.sock
  containerd_config "$WORK/$name" "$SOCK"
  containerd --config "$WORK/$name/config.toml" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do ctr -a "$SOCK" version >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "$name did not start"
}

# hosts DIR STATION_HOME STATION_ADDR: the hosts.toml `shp mirror-config containerd` prints.
hosts() {
  mkdir -p "$1/docker.io"
  "$SHP" --home "$2" mirror-config containerd --station "http://$3" >"$1/docker.io/hosts.toml"
  grep -q "\[host.\"http://$3\"\]" "$1/docker.io/hosts.toml" || die "mirror-config: $(cat "$1/docker.io/hosts.toml")"
}

# pulled SOCK NS: the digest of docker.io/library/app:v1 in that namespace.
pulled() { ctr -a "$1" -n "$2" images ls | awk '$1 == "docker.io/library/app:v1" {print $3}'; }

say "1. station A mirrors docker.io; three concurrent pulls from one containerd"
mkdir -p "$WORK/a"
station a --mirror "docker.io=http://$UP"
A=$ADDR
echo "{\"mirrors\": [\"docker.io=http://$UP\"]}" >"$WORK/a/station.json"
hosts "$WORK/hosts-a" "$WORK/a" "$A"
containerd_up c1
C1=$SOCK
pids=()
for ns in one two three; do
  ctr -a "$C1" -n "$ns" images pull --hosts-dir "$WORK/hosts-a" --snapshotter native docker.io/library/app:v1 \
    >"$WORK/pull-$ns.out" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || die "a pull through A failed: $(cat "$WORK"/pull-*.out)"; done
for ns in one two three; do
  got=$(pulled "$C1" "$ns")
  [ "$got" = "$WANT" ] || die "namespace $ns has $got, the upstream $WANT"
done
python3 - "$WORK/upstream.log" <<'PY' || die "the upstream saw a blob requested more than once"
import collections, re, sys
gets = collections.Counter(re.findall(r'"GET /v2/library/app/blobs/(sha256:[0-9a-f]{64})', open(sys.argv[1]).read()))
assert gets and all(n == 1 for n in gets.values()), gets
print(f"   3 pulls, {len(gets)} blobs, each fetched from the upstream once")
PY
for _ in $(seq 1 300); do
  "$SHP" --home "$WORK/a" ls | grep -q "docker.io/library/app@$WANT" && break
  sleep 0.2
done
"$SHP" --home "$WORK/a" ls | grep -q "docker.io/library/app@$WANT" || die "A did not keep the image"
"$SHP" --home "$WORK/a" verify >/dev/null || die "A: verify failed"
echo "   A holds docker.io/library/app@$WANT as a DAG"

say "2. the upstream stopped: a second containerd pulls through B, whose peer is A"
stop "$UPID"
station b --mirror "docker.io=http://$UP" --mirror-peer "http://$A"
B=$ADDR
echo "{\"mirrors\": [\"docker.io=http://$UP\"]}" >"$WORK/b/station.json"
hosts "$WORK/hosts-b" "$WORK/b" "$B"
containerd_up c2
C2=$SOCK
ctr -a "$C2" -n default images pull --hosts-dir "$WORK/hosts-b" --snapshotter native docker.io/library/app:v1 \
  >"$WORK/pull-b.out" 2>&1 || die "the pull through B failed: $(cat "$WORK/pull-b.out")"
got=$(pulled "$C2" default)
[ "$got" = "$WANT" ] || die "through B: $got, the upstream had $WANT"
echo "   through B with the upstream down: $got"
say "3. podman through B, wired by \`shp mirror-config podman\`"
"$SHP" --home "$WORK/b" mirror-config podman --station "http://$B" >"$WORK/registries.conf"
grep -q "location = \"$B/docker.io\"" "$WORK/registries.conf" || die "mirror-config podman: $(cat "$WORK/registries.conf")"
podman() {
  CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf command podman --root "$WORK/podman/root" \
    --runroot "$WORK/podman/run" --storage-driver vfs --cgroup-manager cgroupfs --events-backend none "$@"
}
podman pull -q docker.io/library/app:v1 >"$WORK/podman-pull.out" 2>&1 || die "podman pull: $(cat "$WORK/podman-pull.out")"
got=$(podman image inspect --format '{{.Digest}}' docker.io/library/app:v1)
[ "$got" = "$WANT" ] || die "podman has $got, the upstream had $WANT"
echo "   podman: $got"
say "containerd and podman mirror tests passed"
