#!/usr/bin/env bash
# make bench: Qri and, when installed, Nchan, driven by the same load generator (qri-bench)
# in one run, scenario by scenario, alternating the two servers; server pinned to core 0
# and qri-bench to core 1; then Qri again unpinned with all its threads.
#
# Sizes (environment, defaults from issue 5):
#   BENCH_SCENARIOS        idle targeted broadcast handshake ingest storm publish-http publish-batch cluster
#   BENCH_SERVERS          qri nchan            (nchan is skipped when it is not installed)
#   BENCH_UNPINNED         targeted broadcast handshake   (scenarios of the unpinned Qri run, of those
#                                                chosen; "" = none)
#   BENCH_IDLE_CHECKPOINTS 0,1000,10000,19000
#   BENCH_CONNS            10000                (targeted and broadcast streams)
#   BENCH_RATES            1000,5000,20000,0    (targeted messages/s; 0 = flat out)
#   BENCH_BROADCAST_RATES  10,50,100,0          (broadcasts/s; 0 = flat out)
#   BENCH_DURATION         10                   (seconds per rate)
#   BENCH_HANDSHAKES       5000                 (openings per mode, fresh and resumed)
#   BENCH_INGEST_CONNS     100
#   BENCH_RAMP             2000                 (stream openings/s while ramping up)
#   BENCH_OUT              .build/bench/<date>  (RESULT lines, logs, summary.md)
#   BENCH_STORM_CONNS      8000                 (storm: streams open before the storm)
#   BENCH_STORM            8000                 (storm: new streams per wave, opened at once by a
#                                                second qri-bench process; fresh, then resumed)
#   BENCH_STORM_RATE       1000                 (storm: targeted messages/s to the open streams)
#   BENCH_STORM_MAX_HANDSHAKES 8                (storm: after qri and nchan, Qri again with each of
#                                                these --max-handshakes, labelled qri-mhN; "" = none)
# Scenario of issue 13 (Qri only; not in the default list):
#   restart        two Qri nodes (core 0) over one redis-server (core 1); node A holds the
#                  streams and gets SIGTERM with --drain-seconds; they reconnect to node B
#                  with Last-Event-ID while targeted messages (into B's ingest) keep flowing
#   BENCH_RESTART_CONNS    10000
#   BENCH_RESTART_DRAIN    10                   (node A's --drain-seconds)
#   BENCH_QRI_FLAGS        ""                   (more flags for every Qri started, e.g. --max-handshakes 8)
#   BENCH_PRE_HANDSHAKE    5000                 (silent connections, then idle streams, one
#                                                Qri with one loop: memory before a handshake)
# Scenarios of issues 12 and 9, each repeated BENCH_REPEAT times, alternating what it
# compares within each repetition (about 10 minutes together with the defaults):
#   publish-http   Qri's POST /publish (single, form body) vs Nchan's /pub, targeted
#   publish-batch  Qri's BER ingest port vs POST /publish with NDJSON batches, targeted
#   cluster        Qri alone vs Qri over one redis-server (pinned to core 1, beside
#                  qri-bench), targeted over the ingest port; then idle memory per stream
#   BENCH_REPEAT           2
#   BENCH_PUBLISH_RATES    20000,0              (publish-http and publish-batch)
#   BENCH_PUBLISH_CONNS    16                   (HTTP publisher connections, single publishes)
#   BENCH_PUBLISH_DEPTH    16                   (requests in flight per connection)
#   BENCH_BATCH            100                  (messages per NDJSON request)
#   BENCH_BATCH_CONNS      4
#   BENCH_BATCH_DEPTH      8
#   BENCH_ADMIN_TLS        0                    (1: Qri's admin listener over TLS instead of plain)
#   BENCH_CLUSTER_RATES    5000,20000,0
#   BENCH_CLUSTER_IDLE     10000                (streams for the memory step of cluster; 0 = skip)
# Every qri-bench run is bounded by --max-seconds; every server is stopped after its run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

scenarios="${BENCH_SCENARIOS:-idle targeted broadcast handshake ingest storm publish-http publish-batch cluster}"
servers="${BENCH_SERVERS:-qri nchan}"
# By default, the unpinned run repeats those of targeted, broadcast and handshake that were chosen.
default_unpinned=""
for s in targeted broadcast handshake; do
    [[ " $scenarios " == *" $s "* ]] && default_unpinned+="$s "
done
unpinned="${BENCH_UNPINNED-$default_unpinned}"
idle_checkpoints="${BENCH_IDLE_CHECKPOINTS:-0,1000,10000,19000}"
conns="${BENCH_CONNS:-10000}"
rates="${BENCH_RATES:-1000,5000,20000,0}"
broadcast_rates="${BENCH_BROADCAST_RATES:-10,50,100,0}"
duration="${BENCH_DURATION:-10}"
handshakes="${BENCH_HANDSHAKES:-5000}"
ingest_conns="${BENCH_INGEST_CONNS:-100}"
ramp="${BENCH_RAMP:-2000}"
repeat="${BENCH_REPEAT:-2}"
publish_rates="${BENCH_PUBLISH_RATES:-20000,0}"
publish_conns="${BENCH_PUBLISH_CONNS:-16}"
publish_depth="${BENCH_PUBLISH_DEPTH:-16}"
batch="${BENCH_BATCH:-100}"
batch_conns="${BENCH_BATCH_CONNS:-4}"
batch_depth="${BENCH_BATCH_DEPTH:-8}"
admin_tls="${BENCH_ADMIN_TLS:-0}"
cluster_rates="${BENCH_CLUSTER_RATES:-5000,20000,0}"
cluster_idle="${BENCH_CLUSTER_IDLE:-10000}"
storm_conns="${BENCH_STORM_CONNS:-8000}"
storm="${BENCH_STORM:-8000}"
storm_rate="${BENCH_STORM_RATE:-1000}"
storm_max_handshakes="${BENCH_STORM_MAX_HANDSHAKES-8}"
restart_conns="${BENCH_RESTART_CONNS:-10000}"
restart_drain="${BENCH_RESTART_DRAIN:-10}"
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
qri_extra=()      # more flags for the next start_qri (--admin-plaintext, --redis …)
redis_pid=""      # redis-server of the cluster scenario
redis_url=""

# start_qri THREADS PIN(yes|no)
start_qri() {
    local threads=$1 pin=$2 dir="$out/qri-state" log="$out/qri-$RANDOM.log"
    mkdir -p "$dir"
    : > "$log"
    local cmd=("$qri" --cert "$cert" --key "$key" --admin-token-file "$token"
               --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --ingest-listen 127.0.0.1:0
               --state-file "$dir/backdoor.json")
    [[ -n $threads ]] && cmd+=(--threads "$threads")
    # shellcheck disable=SC2206 # BENCH_QRI_FLAGS is split on purpose: more flags for every Qri
    cmd+=(${BENCH_QRI_FLAGS:-} "${qri_extra[@]}")
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
    for flag in "${qri_extra[@]}"; do
        [[ $flag == --admin-plaintext ]] && server_args+=(--admin-plaintext)
    done
    return 0
}

# start_redis: one redis-server on its own port and folder, no persistence, pinned to core 1.
start_redis() {
    local dir="$out/redis-$RANDOM" port
    mkdir -p "$dir"
    port="$(free_port)"
    taskset -c 1 redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
        --logfile "$dir/redis.log" --protected-mode yes &
    redis_pid=$!
    wait_port "$port" || { echo "bench: redis-server did not start:" >&2; cat "$dir/redis.log" >&2; exit 1; }
    redis_url="redis://127.0.0.1:$port"
}

stop_redis() {
    [[ -n $redis_pid ]] || return 0
    stop_process "$redis_pid"
    redis_pid=""
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

# stop_process PID: TERM, up to 10 s, then KILL.
stop_process() {
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

stop_server() {
    [[ -n $stop_pid ]] || return 0
    stop_process "$stop_pid"
    stop_pid=""
    server_pid=""
}
trap 'stop_server; stop_redis' EXIT

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
        # The server holds both sets (storm_conns + storm streams) within its 20,000 descriptors.
        storm) args+=(storm --conns "$storm_conns" --storm "$storm" --rates "$storm_rate" --ramp "$ramp"
                      --publish "$via" --baseline 3 --settle 3 --wave-timeout 60 --modes fresh,resumed --max-seconds 400)
               [[ $server == nchan ]] && args+=(--publish-connections 4) ;;
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
    finish_run "$log" "$status" "$scenario" "$label"
}

# finish_run LOG STATUS WHAT LABEL: keeps the RESULT lines, shows the table, stops the server.
finish_run() {
    local log=$1 status=$2
    grep '^RESULT' "$log" >> "$results" || true
    sed -n '/^qri-bench .* against/,$p' "$log"
    grep -E '^qri-bench: (warning|holding)' "$log" || true
    stop_server
    [[ $status == 0 ]] || echo "bench: $3 against $4 failed (status $status), see $log"
}

# run_qri_bench NAME LABEL REP ARGS…: one qri-bench run (pinned to core 1) against the
# server started last; its RESULT lines carry NAME as scenario and REP; stops the server.
run_qri_bench() {
    local name=$1 label=$2 rep=$3
    shift 3
    local args=(--label "$label" --result-scenario "$name" --rep "$rep" --server-pid "$server_pid" "${server_args[@]}" "$@")
    echo
    echo "== $name: $label, repetition $rep (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    local log="$out/$name-$label-$rep.log" status=0
    taskset -c 1 "$bench" "${args[@]}" > "$log" 2>&1 || status=$?
    finish_run "$log" "$status" "$name" "$label"
}

# Issue 12: single POST /publish against Nchan's /pub, the same targeted streams.
scenario_publish_http() {
    local rep server tls=()
    [[ $admin_tls == 1 ]] || tls=(--admin-plaintext)
    for rep in $(seq "$repeat"); do
        for server in $servers; do
            if [[ $server == qri ]]; then
                qri_extra=("${tls[@]}")
                start_qri 1 yes
                qri_extra=()
                run_qri_bench publish-http qri "$rep" targeted --conns "$conns" --rates "$publish_rates" \
                    --duration "$duration" --ramp "$ramp" --window 20000 --max-seconds 240 \
                    --publish publish --publish-connections "$publish_conns" --pipeline "$publish_depth"
            else
                start_nchan
                run_qri_bench publish-http nchan "$rep" targeted --conns "$conns" --rates "$publish_rates" \
                    --duration "$duration" --ramp "$ramp" --window 20000 --max-seconds 240 \
                    --publish http --publish-connections "$publish_conns" --pipeline "$publish_depth"
            fi
        done
    done
}

# Issue 12: NDJSON batches of POST /publish against the BER ingest port, same streams.
scenario_publish_batch() {
    local rep tls=()
    [[ $admin_tls == 1 ]] || tls=(--admin-plaintext)
    for rep in $(seq "$repeat"); do
        start_qri 1 yes
        run_qri_bench publish-batch qri-ingest "$rep" targeted --conns "$conns" --rates "$publish_rates" \
            --duration "$duration" --ramp "$ramp" --window 20000 --max-seconds 240 --publish ingest
        qri_extra=("${tls[@]}")
        start_qri 1 yes
        qri_extra=()
        run_qri_bench publish-batch qri-batch "$rep" targeted --conns "$conns" --rates "$publish_rates" \
            --duration "$duration" --ramp "$ramp" --window 20000 --max-seconds 240 \
            --publish publish-batch --batch "$batch" --publish-connections "$batch_conns" --pipeline "$batch_depth"
    done
}

# Issue 9: one node alone, then one node over one redis-server (core 1, shared with
# qri-bench), targeted delivery over the ingest port; then memory per idle stream.
scenario_cluster() {
    command -v redis-server >/dev/null || { echo "bench: redis-server is not installed (make deps): no cluster step"; return 0; }
    local rep targeted=(targeted --conns "$conns" --rates "$cluster_rates" --duration "$duration" --ramp "$ramp"
                        --window 20000 --max-seconds 240 --publish ingest)
    for rep in $(seq "$repeat"); do
        start_qri 1 yes
        run_qri_bench cluster qri-single "$rep" "${targeted[@]}"
        start_redis
        qri_extra=(--redis "$redis_url")
        start_qri 1 yes
        qri_extra=()
        run_qri_bench cluster qri-cluster "$rep" "${targeted[@]}" --sample-pid "redis:$redis_pid"
        stop_redis
    done
    if [[ $cluster_idle != 0 ]]; then
        start_qri 1 yes
        run_qri_bench cluster-idle qri-single 1 idle --checkpoints "0,$cluster_idle" --ramp "$ramp" --max-seconds 150
        start_redis
        qri_extra=(--redis "$redis_url")
        start_qri 1 yes
        qri_extra=()
        run_qri_bench cluster-idle qri-cluster 1 idle --checkpoints "0,$cluster_idle" --ramp "$ramp" --max-seconds 150 \
            --sample-pid "redis:$redis_pid"
        stop_redis
    fi
}

# Issue 13: a drained restart of one node of two; its streams resume on the other.
scenario_restart() {
    command -v redis-server >/dev/null || { echo "bench: redis-server is not installed (make deps): no restart step"; return 0; }
    start_redis
    qri_extra=(--redis "$redis_url" --drain-seconds "$restart_drain" --shutdown-timeout $((restart_drain + 5)))
    start_qri 1 yes
    local b_pid=$stop_pid b_port=${server_args[1]} b_ingest=${server_args[5]}
    start_qri 1 yes
    qri_extra=()
    local a_pid=$stop_pid
    run_qri_bench restart qri-cluster 1 --sample-pid "redis:$redis_pid" --sample-pid "node-b:$b_pid" \
        restart --conns "$restart_conns" --reconnect-port "$b_port" --ingest-port "$b_ingest" --kill-pid "$a_pid" \
        --rates "$storm_rate" --baseline 3 --duration 3 --drain 5 --ramp "$ramp" --publish ingest \
        --wave-timeout 90 --max-seconds 300
    stop_process "$b_pid"
    stop_redis
}

started=$SECONDS
for scenario in $scenarios; do
    case $scenario in
        restart) scenario_restart; continue ;;
        storm)
            for server in $servers; do run_scenario "$server" storm "$server" yes; done
            if [[ " $servers " == *" qri "* ]]; then
                for mh in $storm_max_handshakes; do
                    qri_extra=(--max-handshakes "$mh")
                    run_scenario qri storm "qri-mh$mh" yes
                    qri_extra=()
                done
            fi
            continue ;;
        publish-http) scenario_publish_http; continue ;;
        publish-batch) scenario_publish_batch; continue ;;
        cluster) scenario_cluster; continue ;;
    esac
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
