#!/bin/bash
# Server CPU per POST /publish on a plain admin listener: qri pinned to core 0 with one loop
# thread, Benchmarks/publish_load.py on core 1 (pipelined requests on one connection).
#
#   Benchmarks/profile-publish.sh [BINARY] [publish_load.py options…]
#   PERF=1 Benchmarks/profile-publish.sh .build/release/qri --json     # also perf record -g
#
# Prints the load generator's line and the server's CPU time (utime + stime, in ticks of
# 10 ms) for the whole run; CPU per request = ticks × 10 ms / requests.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-.build/release/qri}
shift || true
OUT=$(mktemp -d)
taskset -c 0 "$BIN" --admin-plaintext --admin-listen 127.0.0.1:0 --listen 127.0.0.1:0 --ingest-listen off \
  --threads 1 --state-file "$OUT/state.json" --admin-token-file certs/admin.token --history 0 >"$OUT/qri.log" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "listening" "$OUT/qri.log" && break; sleep 0.1; done
PORT=$(grep -o "admin=[0-9.:]*" "$OUT/qri.log" | sed 's/.*://')
if [ -n "${PERF:-}" ]; then
  perf record -F 1999 -g -o "$OUT/perf.data" -p $PID 2>/dev/null & PERF_PID=$!
  sleep 0.5
fi
taskset -c 1 python3 Benchmarks/publish_load.py "$PORT" "$(cat certs/admin.token)" "$@"
awk '{print "server cpu ticks", $14 + $15}' /proc/$PID/stat
if [ -n "${PERF:-}" ]; then
  kill -INT $PERF_PID; wait $PERF_PID || true
  echo "profile: perf report -i $OUT/perf.data --children -g none"
fi
