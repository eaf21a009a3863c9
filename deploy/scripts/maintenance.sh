#!/usr/bin/env bash
# Routine maintenance.
#
#   maintenance.sh [--compose FILE | --native REDIS_PORT] TASK
#     rewrite-aof          have Redis compact its append-only file now
#     dead-jobs            count the dead-lettered ingest jobs of every tenant (retry them with
#                          POST /v1/jobs/{id}/retry)
#   maintenance.sh prune-backups DIR DAYS   delete backup archives older than DAYS
set -euo pipefail

mode=docker compose_file=compose.yml redis_port="" prefix=${REDIS_PREFIX:-rag}
while [ $# -gt 0 ]; do
  case "$1" in
    --native) mode=native redis_port="$2"; shift 2 ;;
    --compose) compose_file="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
task=${1:-}
redis() {
  if [ "$mode" = native ]; then
    redis-cli -p "$redis_port" "$@"
  else
    docker compose -f "$compose_file" exec -T redis redis-cli "$@"
  fi
}

case "$task" in
  rewrite-aof)
    redis bgrewriteaof >/dev/null
    for _ in $(seq 600); do
      redis info persistence | grep -q '^aof_rewrite_in_progress:0' && break
      sleep 0.1
    done
    echo "maintenance: the append-only file was rewritten"
    ;;
  dead-jobs)
    total=0
    while read -r key; do
      [ -n "$key" ] || continue
      count=$(redis zcard "$key")
      tenant=${key#"$prefix":jobs:}
      echo "${tenant%%:*}: $count dead-lettered jobs"
      total=$((total + count))
    done < <(redis --scan --pattern "$prefix:jobs:*:state:dead" | grep -v ':col:' || true)
    echo "maintenance: $total dead-lettered jobs in all"
    ;;
  prune-backups)
    dir=${2:?maintenance: prune-backups DIR DAYS} days=${3:?maintenance: prune-backups DIR DAYS}
    find "$dir" -maxdepth 1 -name 'rag-backup-*.tar.gz' -mtime "+$days" -print -delete
    ;;
  *)
    sed -n '2,9p' "$0" >&2
    exit 2
    ;;
esac
