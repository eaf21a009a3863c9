#!/usr/bin/env bash
# Idempotent set-up for development and tests on Debian: uv, the Debian packages the stack and
# its tests run (redis-server, nginx, prometheus, wrk, chromium, curl, openssl, Node.js), the
# project's Python environment (.venv) and the JavaScript clients the tests run.
# Installs with apt-get only when running as root; otherwise prints the exact command to run.
#
#   setup.sh                everything, bytecode included
#   setup.sh --no-bytecode  everything but compiling bytecode (make test does that beside lint)
#   setup.sh --bytecode     only compile bytecode, into a synced .venv
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf 'setup: %s\n' "$*"; }

mode=${1:-all}
case "$mode" in
  all | --no-bytecode | --bytecode) ;;
  *) say "unknown option $mode (--no-bytecode, --bytecode)"; exit 2 ;;
esac

find_uv() {
  command -v uv 2>/dev/null && return 0
  for candidate in "$HOME/.local/bin/uv" "$HOME/.cargo/bin/uv"; do
    [ -x "$candidate" ] && { echo "$candidate"; return 0; }
  done
  return 1
}

# Bytecode compiled now, once: a machine with PYTHONDONTWRITEBYTECODE set (CI images often
# have it) never caches it, and each process would compile every module it imports again,
# most of a service's start-up CPU (measured: a full native stack's start took 26 CPU-s,
# 10 with bytecode). uv compiles the whole environment (about a minute of CPU on a fresh
# clone, seconds when it is up to date); compileall skips what is up to date.
compile_bytecode() {
  "$1" sync --all-packages --frozen --quiet --compile-bytecode
  .venv/bin/python -m compileall -q -j 0 libs services
}

if [ "$mode" = --bytecode ]; then
  uv_bin=$(find_uv) || { say "uv is missing: run deploy/scripts/setup.sh"; exit 1; }
  UV_PYTHON_DOWNLOADS=never compile_bytecode "$uv_bin"
  exit 0
fi

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || missing+=(prometheus)
# The ops scripts (health checks, backups, TLS certificates) use these.
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v sha256sum >/dev/null 2>&1 || missing+=(coreutils)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)  # the load generator of make bench
# OCR of scanned pages and images (the ingest worker), in English.
command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr)
{ tesseract --list-langs 2>/dev/null | grep -qx eng; } || missing+=(tesseract-ocr-eng)
# The playground's browser test (tests/e2e/gateway/test_playground.py) drives Debian's Chromium.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# The JavaScript chat clients (tests/e2e/gateway/test_chat_clients.py) run on Node.js 18+.
if ! command -v node >/dev/null 2>&1; then
  missing+=(nodejs npm)
elif ! command -v npm >/dev/null 2>&1; then
  missing+=(npm)
fi

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "missing Debian packages: ${missing[*]}"
    say "run:  sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
fi

if ! uv_bin=$(find_uv); then
  say "installing uv (from the Python package index, with pip --user)"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
    else
      say "python3 has no pip; run:  sudo apt-get install -y python3-pip"
      exit 1
    fi
  fi
  python3 -m pip install --user --quiet uv 2>/dev/null \
    || python3 -m pip install --user --quiet --break-system-packages uv
  uv_bin=$(find_uv) || { say "uv was installed but is not on PATH; add ~/.local/bin to PATH"; exit 1; }
fi

# A Python new enough is on every supported machine; never let uv download one.
export UV_PYTHON_DOWNLOADS=never
if [ "$mode" = --no-bytecode ]; then
  "$uv_bin" sync --all-packages --frozen --quiet
else
  compile_bytecode "$uv_bin"
fi
# The JavaScript clients, from the npm registry, once per change of their lock file.
clients=tests/clients/node
if ! cmp -s "$clients/package-lock.json" "$clients/node_modules/.installed-lock"; then
  say "installing the JavaScript clients of the tests (npm ci in $clients)"
  (cd "$clients" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$clients/package-lock.json" "$clients/node_modules/.installed-lock"
fi

say "ready ($("$uv_bin" --version), $(.venv/bin/python --version), Node.js $(node --version))"
