#!/usr/bin/env bash
# make bench: Qri and, when installed, Nchan, driven by the same load generator (qri-bench)
# in one run, scenario by scenario, alternating the two servers; server pinned to core 0
# and qri-bench to core 1; then Qri again unpinned with all its threads.
#
# Sizes (environment, defaults from issue 5):
#   BENCH_SCENARIOS        idle targeted broadcast handshake ingest
#   BENCH_SERVERS          qri nchan            (nchan is skipped when it is not installed)
#   BENCH_UNPINNED         targeted broadcast handshake   (scenarios of the unpinned Qri run; "" = none)
#   BENCH_IDLE_CHECKPOINTS 0,1000,10000,19000
#   BENCH_CONNS            10000                (targeted and broadcast streams)
#   BENCH_RATES            1000,5000,20000,0    (targeted messages/s; 0 = flat out)
#   BENCH_BROADCAST_RATES  10,50,100,0          (broadcasts/s; 0 = flat out)
#   BENCH_DURATION         10                   (seconds per rate)
#   BENCH_HANDSHAKES       5000                 (openings per mode, fresh and resumed)
#   BENCH_INGEST_CONNS     100
#   BENCH_RAMP             2000                 (stream openings/s while ramping up)
#   BENCH_OUT              .build/bench/<date>  (RESULT lines, logs, summary.md)
#   BENCH_PRE_HANDSHAKE    5000                 (silent connections, then idle streams, one
#                                                Qri with one loop: memory before a handshake)
# Every qri-bench run is bounded by --max-seconds; every server is stopped after its run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

scenarios="${BENCH_SCENARIOS:-idle targeted broadcast handshake ingest}"
servers="${BENCH_SERVERS:-qri nchan}"
unpinned="${BENCH_UNPINNED-targeted broadcast handshake}"
idle_checkpoints="${BENCH_IDLE_CHECKPOINTS:-0,1000,10000,19000}"
conns="${BENCH_CONNS:-10000}"
rates="${BENCH_RATES:-1000,5000,20000,0}"
broadcast_rates="${BENCH_BROADCAST_RATES:-10,50,100,0}"
duration="${BENCH_DURATION:-10}"
handshakes="${BENCH_HANDSHAKES:-5000}"
ingest_conns="${BENCH_INGEST_CONNS:-100}"
ramp="${BENCH_RAMP:-2000}"
out="${BENCH_OUT:-.build/bench/$(date -u +%Y%m%d-%H%M%S)}"

qri=.build/release/qri
bench=.build/release/qri-bench
cert=certs/server.crt
key=certs/server.key
token=certs/admin.token
nchan_module=/usr/lib/nginx/modules/ngx_nchan_module.so

mkdir -p "$out"
out="$(cd "$out" && pwd)"
results="$out/results.txt"
: > "$results"

[[ -x $qri && -x $bench ]] || { echo "bench: build first: swift build -c release --product qri --product qri-bench" >&2; exit 1; }
[[ -s $cert && -s $key && -s $token ]] || bash certs/make-dev-certs.sh

if ! command -v nginx >/dev/null || [[ ! -f $nchan_module ]]; then
    echo "bench: nginx with libnginx-mod-nchan is not installed (make bench-deps): Qri only"
    servers="${servers//nchan/}"
fi

# The machine, for the report.
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
    echo "kernel: $(uname -r); $(openssl version); $(swift --version 2>/dev/null | head -1)"
    command -v nginx >/dev/null && echo "nginx: $(nginx -v 2>&1 | cut -d/ -f2); nchan: $(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo '?')"
    echo "open files limit: $(ulimit -Hn)"
} > "$out/machine.txt"
cat "$out/machine.txt"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
    local port=$1
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

server_pid=""     # the process to sample (Qri, or nginx's one worker)
stop_pid=""       # the process to stop (Qri, or nginx's master)
server_args=()    # how qri-bench reaches it

# start_qri THREADS PIN(yes|no)
start_qri() {
    local threads=$1 pin=$2 dir="$out/qri-state" log="$out/qri-$RANDOM.log"
    mkdir -p "$dir"
    : > "$log"
    local cmd=("$qri" --cert "$cert" --key "$key" --admin-token-file "$token"
               --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --ingest-listen 127.0.0.1:0
               --state-file "$dir/backdoor.json")
    [[ -n $threads ]] && cmd+=(--threads "$threads")
    if [[ $pin == yes ]]; then taskset -c 0 "${cmd[@]}" 2> "$log" & else "${cmd[@]}" 2> "$log" & fi
    stop_pid=$!
    server_pid=$stop_pid
    local line=""
    for _ in $(seq 100); do
        line="$(grep -m1 -o 'listening public=[^ ]* admin=[^ ]* ingest=[^ ]*' "$log" || true)"
        [[ -n $line ]] && break
        sleep 0.1
    done
    [[ -n $line ]] || { echo "bench: qri did not start:" >&2; cat "$log" >&2; exit 1; }
    local public admin ingest
    public="$(sed -E 's/.*public=[^ ]*:([0-9]+).*/\1/' <<< "$line")"
    admin="$(sed -E 's/.*admin=[^ ]*:([0-9]+).*/\1/' <<< "$line")"
    ingest="$(sed -E 's/.*ingest=[^ ]*:([0-9]+).*/\1/' <<< "$line")"
    server_args=(--port "$public" --stream-path '/stream?p={p}&s={s}' --ingest-port "$ingest"
                 --admin-port "$admin" --admin-token-file "$token")
}

start_nchan() {
    local dir="$out/nchan-$RANDOM" port pubport
    mkdir -p "$dir"
    port="$(free_port)"
    pubport="$(free_port)"
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@PUBPORT@|$pubport|g" \
        -e "s|@CERT@|$root/$cert|g" -e "s|@KEY@|$root/$key|g" Benchmarks/nchan.conf.template > "$dir/nginx.conf"
    taskset -c 0 nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' 2> "$dir/stderr.log" &
    stop_pid=$!
    wait_port "$port" && wait_port "$pubport" || { echo "bench: nginx did not start:" >&2; cat "$dir/stderr.log" "$dir/error.log" >&2; exit 1; }
    server_pid="$(pgrep -P "$stop_pid" | head -1)"
    [[ -n $server_pid ]] || { echo "bench: no nginx worker" >&2; exit 1; }
    server_args=(--port "$port" --stream-path '/sub?p={p}&s={s}' --publish-port "$pubport"
                 --publish-path '/pub?p={p}&s={s}')
}

stop_server() {
    [[ -n $stop_pid ]] || return 0
    kill -TERM "$stop_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$stop_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$stop_pid" 2>/dev/null || true
    wait "$stop_pid" 2>/dev/null || true
    stop_pid=""
    server_pid=""
}
trap stop_server EXIT

# run_scenario SERVER SCENARIO LABEL PIN(yes|no)
run_scenario() {
    local server=$1 scenario=$2 label=$3 pin=$4
    if [[ $server == qri ]]; then
        if [[ $pin == yes ]]; then start_qri 1 yes; else start_qri "" no; fi
    else
        start_nchan
    fi
    local args=(--label "$label" --server-pid "$server_pid" "${server_args[@]}")
    [[ $pin == no ]] && args+=(--server-cores "$(nproc)")
    local via=ingest bvia=backdoor
    if [[ $server == nchan ]]; then via=http; bvia=http; fi
    case $scenario in
        idle) args+=(idle --checkpoints "$idle_checkpoints" --ramp "$ramp" --max-seconds 150) ;;
        targeted) args+=(targeted --conns "$conns" --rates "$rates" --duration "$duration" --ramp "$ramp"
                         --publish "$via" --window 20000 --max-seconds 240)
                  [[ $server == nchan ]] && args+=(--publish-connections 4) ;;
        broadcast) args+=(broadcast --conns "$conns" --rates "$broadcast_rates" --duration "$duration" --ramp "$ramp"
                          --publish "$bvia" --window $((conns * 20)) --drain 10 --max-seconds 300)
                   [[ $server == nchan ]] && args+=(--broadcast-pair) ;;
        handshake) args+=(handshake --count "$handshakes" --concurrency 64 --max-seconds 120) ;;
        ingest) args+=(ingest --conns "$ingest_conns" --duration "$duration" --publish "$via" --pipeline 256 --max-seconds 90) ;;
        *) echo "bench: unknown scenario $scenario" >&2; exit 1 ;;
    esac
    echo
    echo "== $scenario: $label (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    local log="$out/$scenario-$label.log" status=0
    if [[ $pin == yes ]]; then
        taskset -c 1 "$bench" "${args[@]}" > "$log" 2>&1 || status=$?
    else
        "$bench" "${args[@]}" > "$log" 2>&1 || status=$?
    fi
    grep '^RESULT' "$log" >> "$results" || true
    sed -n '/^qri-bench .* against/,$p' "$log"
    grep -E '^qri-bench: (warning|holding)' "$log" || true
    stop_server
    [[ $status == 0 ]] || echo "bench: $scenario against $label failed (status $status), see $log"
}

started=$SECONDS
for scenario in $scenarios; do
    for server in $servers; do
        run_scenario "$server" "$scenario" "$server" yes
    done
done
for scenario in $unpinned; do
    run_scenario qri "$scenario" qri-unpinned no
done

# Memory of a connection that has not sent its ClientHello, next to an idle stream's.
pre_handshake="${BENCH_PRE_HANDSHAKE:-5000}"
if [[ $pre_handshake != 0 ]]; then
    echo "== pre-handshake memory: $pre_handshake silent connections, then as many idle streams"
    python=python3
    [[ -x .venv/bin/python ]] && python=.venv/bin/python
    $python Benchmarks/pre_handshake.py "$pre_handshake" | tee -a "$out/pre_handshake.txt"
fi

python3 Benchmarks/report.py "$results" "$out/machine.txt" > "$out/summary.md"
echo
cat "$out/summary.md"
echo
echo "bench: done in $((SECONDS - started)) s; results in $out"
