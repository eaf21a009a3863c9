#!/usr/bin/env bash
# Deploy the Docker stack: deploy.sh [development|production] [--check]
#   development  compose.yml: build the dev image, start everything (same as `make up`)
#   production   compose.prod.yml: check the required secrets, build the image, start, wait
#                until every container is healthy, then reload nginx so it balances every
#                query replica
#   --check      only check the environment (secrets, files); start nothing
set -euo pipefail
cd "$(dirname "$0")/../.."

target=${1:-development} check=false
[ "${2:-}" = --check ] || [ "${1:-}" = --check ] && check=true
[ "$target" = --check ] && target=development
die() { echo "deploy: $*" >&2; exit 1; }

case "$target" in
  development) file=compose.yml ;;
  production) file=compose.prod.yml ;;
  *) die "unknown target '$target' (development or production)" ;;
esac
[ -f "$file" ] || die "$file is missing"

if [ "$target" = production ]; then
  # Values from .env (or RAG_ENV_FILE) count as set, as docker compose reads them too.
  env_file=${RAG_ENV_FILE:-.env}
  # shellcheck source=/dev/null
  if [ -f "$env_file" ]; then set -a; . "$env_file"; set +a; fi
  problems=()
  for name in INTERNAL_TOKEN JWT_SECRET; do
    value=${!name:-}
    [ ${#value} -ge 32 ] || problems+=("$name must be set to at least 32 characters")
  done
  [ -n "${GRAFANA_PASSWORD:-}" ] || problems+=("GRAFANA_PASSWORD must be set")
  if [ ${#problems[@]} -gt 0 ]; then
    printf 'deploy: %s\n' "${problems[@]}" >&2
    exit 1
  fi
fi
if [ "$check" = true ]; then
  echo "deploy: $target is ready to deploy ($file)"
  exit 0
fi

command -v docker >/dev/null 2>&1 || die "Docker is not installed (or run natively: make dev)"
export RAG_VERSION=${RAG_VERSION:-$(git rev-parse --short HEAD 2>/dev/null || echo latest)}
docker compose -f "$file" build
docker compose -f "$file" up -d --remove-orphans
if [ "$target" = production ]; then
  for _ in $(seq 60); do
    deploy/scripts/health-check.sh --compose "$file" >/dev/null && break
    sleep 5
  done
  deploy/scripts/health-check.sh --compose "$file"
  # nginx resolves the replicas of rag-query when it (re)loads its configuration.
  docker compose -f "$file" exec -T nginx nginx -s reload
fi
echo "deploy: $target is up"
