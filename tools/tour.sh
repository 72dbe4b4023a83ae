#!/usr/bin/env bash
# The README's 60-second tour as one command (`make tour`), against the gateway `make run`
# started: a stream with curl, a message from qri-py over the ingest port, one over the admin
# API, and what the stream received.
set -euo pipefail
cd "$(dirname "$0")/.."
PUBLIC=${PUBLIC:-localhost:8443}
ADMIN=${ADMIN:-localhost:9443}
CA=certs/server.crt
PY=${PY:-.venv/bin/python}

if ! curl -sf --cacert "$CA" "https://$ADMIN/healthz" >/dev/null 2>&1; then
    echo "tour: no gateway answers on https://$ADMIN; start one with 'make run' in another terminal" >&2
    exit 1
fi
out=$(mktemp)
trap 'kill "$stream" 2>/dev/null || true; rm -f "$out"' EXIT

echo "1. a stream: curl -N --cacert $CA \"https://$PUBLIC/stream?p=1&s=x\""
curl -sN --cacert "$CA" "https://$PUBLIC/stream?p=1&s=x" >"$out" &
stream=$!
sleep 1

echo "2. a backend sends over the ingest port with qri-py (make send PEER=1 CHECKSUM=x MESSAGE=...)"
SEND_PEER=1 SEND_CHECKSUM=x SEND_MESSAGE="hello from qri-py" SEND_INGEST=${INGEST:-127.0.0.1:5679} "$PY" tools/send.py

echo "3. or over HTTP, through the admin port:"
echo "   curl --cacert $CA -H \"Authorization: Bearer \$(cat certs/admin.token)\" -d peer=1 -d checksum=x -d message=hello https://$ADMIN/publish"
curl -s --cacert "$CA" -H "Authorization: Bearer $(cat certs/admin.token)" \
     -d peer=1 -d checksum=x -d message=hello "https://$ADMIN/publish"
echo
sleep 1

echo "4. what the stream received:"
sed 's/^/   /' "$out"
