#!/usr/bin/env bash
# `make up|down|logs|ps`: docker compose, with a clear word when no Docker engine is reachable.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v docker >/dev/null 2>&1; then
  echo "make: Docker is not installed. Install Docker Engine with the compose plugin, or run the" >&2
  echo "      same stack natively with:  make dev" >&2
  exit 1
fi
if ! docker info >/dev/null 2>&1; then
  echo "make: no Docker engine is reachable (docker info failed). Start Docker, or run the" >&2
  echo "      same stack natively with:  make dev" >&2
  exit 1
fi
exec docker compose "$@"
