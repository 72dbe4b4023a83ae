#!/usr/bin/env bash
# make run-cluster: a local redis-server (port 6390, data under state/redis) and three Qri
# nodes (public 8443-8445, admin 9443-9445, ingest 5679-5681) in the foreground; Ctrl-C
# stops them all. A message published on any node reaches the streams on every node.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mkdir -p state/redis
pids=()
stop() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop INT TERM EXIT

redis-server --port 6390 --bind 127.0.0.1 --dir state/redis --appendonly yes --save '' \
    --maxmemory-policy noeviction --daemonize no --logfile redis.log &
pids+=($!)
for _ in $(seq 50); do redis-cli -p 6390 ping >/dev/null 2>&1 && break; sleep 0.1; done

for i in 0 1 2; do
    .build/release/qri --config config/cluster.yaml --node-name "node$i" \
        --listen "127.0.0.1:$((8443 + i))" --admin-listen "127.0.0.1:$((9443 + i))" \
        --ingest-listen "127.0.0.1:$((5679 + i))" 2>&1 | sed -u "s/^/node$i: /" &
    pids+=($!)
done
echo "cluster: redis on 6390; nodes on https://localhost:8443, :8444, :8445 (admin 9443-9445); Ctrl-C stops"
wait
