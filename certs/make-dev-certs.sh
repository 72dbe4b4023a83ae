#!/usr/bin/env bash
# Makes the development TLS certificate, key and admin token, each only if it is missing:
#   certs/server.crt   self-signed ECDSA P-256, subjectAltName DNS:localhost, IP:127.0.0.1
#   certs/server.key   its private key (mode 600)
#   certs/admin.token  a random admin bearer token, hex (mode 600)
# None of these is committed (see .gitignore). Needs the openssl CLI.
set -euo pipefail

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
crt="$dir/server.crt"
key="$dir/server.key"
token="$dir/admin.token"
days="${QRI_DEV_CERT_DAYS:-365}"

umask 077

if [[ ! -s "$crt" || ! -s "$key" ]]; then
    # A certificate without its key (or the reverse) is useless: make both again.
    rm -f "$crt" "$key"
    conf="$(mktemp)"
    trap 'rm -f "$conf"' EXIT
    # Our own config rather than the system's, so that its v3_ca defaults (CA:TRUE)
    # do not apply: this is a leaf certificate for a TLS server.
    cat > "$conf" <<'CONF'
[req]
distinguished_name = dn
x509_extensions    = leaf
prompt             = no
[dn]
CN = localhost
O  = Qri development
[leaf]
basicConstraints     = critical, CA:FALSE
keyUsage             = critical, digitalSignature
extendedKeyUsage     = serverAuth
subjectAltName       = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
CONF
    # openssl prints progress on stderr: show it only when it fails.
    if ! out="$(openssl req -x509 -new -config "$conf" \
            -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout "$key" -out "$crt" -days "$days" -sha256 2>&1)"; then
        echo "$out" >&2
        rm -f "$crt" "$key"
        exit 1
    fi
    chmod 600 "$key"
    chmod 644 "$crt"
    echo "certs: made $crt (expires $(openssl x509 -in "$crt" -noout -enddate | cut -d= -f2))"
fi

if [[ ! -s "$token" ]]; then
    openssl rand -hex 32 > "$token"
    chmod 600 "$token"
    echo "certs: made $token"
fi
