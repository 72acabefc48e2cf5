# tests/runtimes/lib.sh -- what the containerd scripts share (tests/runtimes/*.sh, benches/snapshotter.sh).
#   stop PID: SIGTERM, then SIGKILL after 10 s (only processes the script started).
#   containerd_config DIR SOCK [NAME=ADDRESS ...]: writes DIR/config.toml for a containerd whose root,
#     state and sockets are under DIR (gRPC on SOCK), without CRI and the snapshotters this machine
#     lacks, with one snapshot proxy plugin per NAME=ADDRESS.
stop() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}
containerd_config() {
  local dir=$1 sock=$2
  shift 2
  mkdir -p "$dir"
  {
    echo 'version = 2'
    echo "root = \"$dir/root\""
    echo "state = \"$dir/state\""
    echo 'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]'
    printf '[grpc]\n  address = "%s"\n[ttrpc]\n  address = "%s.ttrpc"\n' "$sock" "$sock"
    printf '[debug]\n  address = ""\n[metrics]\n  address = ""\n'
    if [ $# -gt 0 ]; then
      echo '[proxy_plugins]'
      for p in "$@"; do
        printf '  [proxy_plugins.%s]\n    type = "snapshot"\n    address = "%s"\n' "${p%%=*}" "${p#*=}"
      done
    fi
  } >"$dir/config.toml"
}
