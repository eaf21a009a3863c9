#!/usr/bin/env bash
# A self-signed TLS certificate for local use of the nginx edge (never for production):
#   deploy/scripts/make-cert.sh [DIR]   (default deploy/nginx/certs) -> DIR/rag.crt, DIR/rag.key
set -euo pipefail
dir="${1:-$(dirname "$0")/../nginx/certs}"
mkdir -p "$dir"
openssl req -x509 -newkey rsa:2048 -sha256 -days 365 -nodes \
  -keyout "$dir/rag.key" -out "$dir/rag.crt" \
  -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
chmod 600 "$dir/rag.key"
echo "wrote $dir/rag.crt and $dir/rag.key (self-signed, for localhost, 365 days)"
