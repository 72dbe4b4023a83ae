#!/usr/bin/env bash
# Profiles Qri during one flat-out targeted step of qri-bench, as make bench runs it (qri on
# core 0 with one loop thread, qri-bench on core 1; 10,000 TLS streams on 10,000 pairs):
#
#   Benchmarks/profile-step.sh MODE [SECONDS]
#     ingest    messages over the BER ingest port
#     publish   single POST /publish (16 connections × 16 in flight, plain admin listener)
#     batch     NDJSON POST /publish, 100 a request (4 connections × 8 in flight)
#     cluster   over the ingest port, the node over one redis-server pinned to core 1
#
# perf record -F 1999 -g (software clock) of qri for SECONDS (default 8) in the middle of
# the step (redis-server too in cluster mode); prints the shares by library and the top
# symbols, self and inclusive; keeps perf.data under .build/profile/MODE-<time>/.
# Sizes: PROFILE_CONNS (10000), PROFILE_RAMP (2000).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
mode=${1:?"usage: $0 ingest|publish|batch|cluster [SECONDS]"}
seconds=${2:-8}
conns=${PROFILE_CONNS:-10000}
ramp=${PROFILE_RAMP:-2000}
out=".build/profile/$mode-$(date -u +%H%M%S)"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
token=certs/admin.token
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

qri_args=(--cert certs/server.crt --key certs/server.key --admin-token-file "$token" --threads 1
          --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --ingest-listen 127.0.0.1:0
          --state-file "$out/backdoor.json" --admin-plaintext)
redis_pid=""
if [[ $mode == cluster ]]; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    taskset -c 1 redis-server --port "$port" --bind 127.0.0.1 --dir "$out" --save '' --appendonly no \
        --logfile "$out/redis.log" &
    redis_pid=$!
    pids+=("$redis_pid")
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    qri_args+=(--redis "redis://127.0.0.1:$port")
fi
taskset -c 0 .build/release/qri "${qri_args[@]}" 2> "$out/qri.log" &
qri_pid=$!
pids+=("$qri_pid")
line=""
for _ in $(seq 100); do
    line="$(grep -m1 -o 'listening public=[^ ]* admin=[^ ]* ingest=[^ ]*' "$out/qri.log" || true)"
    [[ -n $line ]] && break
    sleep 0.1
done
[[ -n $line ]] || { echo "profile: qri did not start" >&2; cat "$out/qri.log" >&2; exit 1; }
public="$(sed -E 's/.*public=[^ ]*:([0-9]+).*/\1/' <<< "$line")"
admin="$(sed -E 's/.*admin=[^ ]*:([0-9]+).*/\1/' <<< "$line")"
ingest="$(sed -E 's/.*ingest=[^ ]*:([0-9]+).*/\1/' <<< "$line")"
bench=(.build/release/qri-bench targeted --label "$mode" --port "$public" --ingest-port "$ingest"
       --admin-port "$admin" --admin-token-file "$token" --admin-plaintext --server-pid "$qri_pid"
       --conns "$conns" --ramp "$ramp" --rates 0 --duration $((seconds + 12)) --window 20000 --max-seconds 300)
case $mode in
    ingest|cluster) bench+=(--publish ingest) ;;
    publish) bench+=(--publish publish --publish-connections 16 --pipeline 16) ;;
    batch) bench+=(--publish publish-batch --batch 100 --publish-connections 4 --pipeline 8) ;;
    *) echo "profile: unknown mode $mode" >&2; exit 1 ;;
esac
[[ -n $redis_pid ]] && bench+=(--sample-pid "redis:$redis_pid")
taskset -c 1 "${bench[@]}" > "$out/bench.log" 2>&1 &
bench_pid=$!
pids+=("$bench_pid")
# The ramp, the publishers' connection and a second of quiet, then into the step.
sleep $(( conns / ramp + 6 ))
writes_before=$(awk '/^syscw/ {print $2}' "/proc/$qri_pid/io")
profile_start=$(date +%s.%N)
perf record -F 1999 -g -o "$out/qri.perf" -p "$qri_pid" -- sleep "$seconds" 2> "$out/perf.log" &
perf_qri=$!
if [[ -n $redis_pid ]]; then
    perf record -F 1999 -g -o "$out/redis.perf" -p "$redis_pid" -- sleep "$seconds" 2>> "$out/perf.log" &
    perf_redis=$!
    wait "$perf_redis" || true
fi
wait "$perf_qri" || true
writes_after=$(awk '/^syscw/ {print $2}' "/proc/$qri_pid/io")
elapsed=$(echo "$(date +%s.%N) - $profile_start" | bc)
wait "$bench_pid" || true
grep '^RESULT' "$out/bench.log" || { echo "profile: no result"; cat "$out/bench.log"; }
events=$(grep -o 'events_per_s=[0-9]*' "$out/bench.log" | cut -d= -f2)
if [[ -n $events ]]; then
    # write(2) calls of qri (SSE streams, and Redis commands in a cluster) during the profile.
    echo "write calls/s during the profile: $(echo "($writes_after - $writes_before) / $elapsed" | bc);" \
         "events per write call at the step's events/s: $(echo "scale=2; $events * $elapsed / ($writes_after - $writes_before)" | bc)"
fi
for p in qri ${redis_pid:+redis}; do
    echo
    echo "== $p: share by library"
    perf report -i "$out/$p.perf" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -12 || true
    echo "== $p: top symbols (self)"
    perf report -i "$out/$p.perf" --no-children --sort sym --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -25 || true
    echo "== $p: top symbols (inclusive)"
    perf report -i "$out/$p.perf" --children --sort sym --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -40 || true
done
echo "profile: $out"
