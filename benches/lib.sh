# benches/lib.sh -- what the bench scripts share; source it after setting WORK.
#   PIDS / cleanup: processes a script started (`PIDS+=($!)`) are killed and waited for on exit,
#     and WORK is removed unless KEEP=1.
#   free_port: a free TCP port on 127.0.0.1.
#   start_upstream: Debian's docker-registry serving WORK/registry on 127.0.0.1 (log in
#     WORK/upstream.log); sets UP=127.0.0.1:PORT once /v2/ answers.
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_upstream() {
  UP=127.0.0.1:$(free_port)
  printf 'version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' \
    "$WORK/registry" "$UP" >"$WORK/registry.yml"
  docker-registry serve "$WORK/registry.yml" >"$WORK/upstream.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do curl -fs "http://$UP/v2/" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "docker-registry did not answer on $UP" >&2
  exit 1
}
