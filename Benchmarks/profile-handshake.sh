#!/usr/bin/env bash
# Profiles the server during resumed (or fresh) TLS stream openings, as make bench's handshake
# step runs them (server on core 0, one loop or one nginx worker; qri-bench on core 1, 64
# openings in flight, each offering the latest ticket):
#
#   Benchmarks/profile-handshake.sh qri|nchan [resumed|fresh] [SECONDS]
#
# perf record -F 1999 -g (software clock) of the server for SECONDS (default 8) from 2 s into
# the step; prints the shares by library and the top symbols, self and inclusive; keeps
# perf.data under .build/profile/handshake-SERVER-<time>/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
server=${1:?"usage: $0 qri|nchan [resumed|fresh] [SECONDS]"}
mode=${2:-resumed}
seconds=${3:-8}
out=".build/profile/handshake-$server-$(date -u +%H%M%S)"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
if [[ $server == qri ]]; then
    taskset -c 0 .build/release/qri --cert certs/server.crt --key certs/server.key --admin-token-file certs/admin.token \
        --threads 1 --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --ingest-listen 127.0.0.1:0 \
        --state-file "$out/backdoor.json" 2> "$out/qri.log" &
    pid=$!
    pids+=("$pid")
    line=""
    for _ in $(seq 100); do
        line="$(grep -m1 -o 'listening public=[^ ]*' "$out/qri.log" || true)"
        [[ -n $line ]] && break
        sleep 0.1
    done
    [[ -n $line ]] || { echo "profile: qri did not start" >&2; cat "$out/qri.log" >&2; exit 1; }
    port="$(sed -E 's/.*:([0-9]+)$/\1/' <<< "$line")"
    path='/stream?p={p}&s={s}'
else
    port=$(free_port)
    sed -e "s|@DIR@|$out|g" -e "s|@PORT@|$port|g" -e "s|@PUBPORT@|$(free_port)|g" \
        -e "s|@CERT@|$root/certs/server.crt|g" -e "s|@KEY@|$root/certs/server.key|g" Benchmarks/nchan.conf.template > "$out/nginx.conf"
    taskset -c 0 nginx -p "$out" -c "$out/nginx.conf" -g 'daemon off;' 2> "$out/stderr.log" &
    pids+=("$!")
    sleep 1
    pid="$(pgrep -P "${pids[0]}" | head -1)"
    path='/sub?p={p}&s={s}'
fi
taskset -c 1 .build/release/qri-bench handshake --label "$server" --port "$port" --stream-path "$path" \
    --server-pid "$pid" --modes "$mode" --count $(( (seconds + 6) * 2500 )) --concurrency 64 --max-seconds 120 \
    > "$out/bench.log" 2>&1 &
bench=$!
sleep 2
perf record -F 1999 -g -o "$out/perf.data" -p "$pid" -- sleep "$seconds" > /dev/null 2>&1
wait "$bench" || true
grep '^RESULT' "$out/bench.log"
echo "== shares by library"
perf report -i "$out/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -12
echo "== top symbols (self)"
perf report -i "$out/perf.data" --no-children --sort dso,sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -30
echo "== top symbols (inclusive)"
perf report -i "$out/perf.data" --children --sort sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -40
echo "profile: $out"
