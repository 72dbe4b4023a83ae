#!/usr/bin/env bash
# make bench-smoke: a few hundred TLS streams for a few seconds against a freshly started
# qri (port 0 everywhere), messages over the ingest port and a backdoor broadcast; fails
# unless events were delivered. Part of the tests, not of the benchmark.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
dir="$(mktemp -d)"
log="$dir/qri.log"
pid=""
cleanup() {
    if [[ -n $pid ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

.build/release/qri --cert certs/server.crt --key certs/server.key --admin-token-file certs/admin.token \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --ingest-listen 127.0.0.1:0 \
    --state-file "$dir/backdoor.json" --threads 1 2> "$log" &
pid=$!
line=""
for _ in $(seq 100); do
    line="$(grep -m1 -o 'listening public=[^ ]* admin=[^ ]* ingest=[^ ]*' "$log" || true)"
    [[ -n $line ]] && break
    sleep 0.1
done
[[ -n $line ]] || { echo "bench-smoke: qri did not start" >&2; cat "$log" >&2; exit 1; }
public="$(sed -E 's/.*public=[^ ]*:([0-9]+).*/\1/' <<< "$line")"
admin="$(sed -E 's/.*admin=[^ ]*:([0-9]+).*/\1/' <<< "$line")"
ingest="$(sed -E 's/.*ingest=[^ ]*:([0-9]+).*/\1/' <<< "$line")"
common=(--port "$public" --ca-file certs/server.crt --server-pid "$pid" --label qri-smoke)

# qri-bench exits non-zero when a step delivers no event.
.build/release/qri-bench smoke "${common[@]}" --ingest-port "$ingest" \
    --conns 300 --rates 500 --duration 3 --drain 2 --max-seconds 60
.build/release/qri-bench broadcast "${common[@]}" --admin-port "$admin" --admin-token-file certs/admin.token \
    --publish backdoor --conns 300 --rates 5 --duration 2 --drain 2 --max-seconds 60
echo "bench-smoke: ok"
