# tests/netns/lib.sh -- what the netns scripts share; source it after setting WORK.
#   random_image MB: an OCI layout at WORK/lay (tag latest) whose one layer holds MB MiB of random
#   bytes as /data.bin (incompressible: no dedup, no compression helps either side).
random_image() {
  head -c $(($1 << 20)) /dev/urandom >"$WORK/data.bin"
  umoci init --layout "$WORK/lay" >/dev/null
  umoci new --image "$WORK/lay:latest" >/dev/null
  umoci unpack --rootless --image "$WORK/lay:latest" "$WORK/bundle" >/dev/null
  cp "$WORK/data.bin" "$WORK/bundle/rootfs/data.bin"
  umoci repack --image "$WORK/lay:latest" "$WORK/bundle" >/dev/null
}
