#!/usr/bin/env bash
# A consistent backup of RAG Engine: Redis (an RDB snapshot taken by Redis itself), Chroma's
# data directory (copied while Chroma is stopped, so it is consistent) and the app data, in
# one timestamped archive with a manifest and SHA-256 checksums.
#
#   backup.sh [--compose FILE] [OUT_DIR]                      the Docker stack (default)
#   backup.sh --native DATA_DIR --redis-port PORT --chroma-port PORT [OUT_DIR]
#
# Docker: the writers (ingest API and workers) stop first, then Redis is snapshotted and
# Chroma, stopped too, copied: both hold the same moment. Then all start again, also when a
# step fails (ingest requests and searches fail for those seconds; queued jobs wait, nothing
# is lost). Native: stop the worker and Chroma first (the script checks Chroma).
set -euo pipefail

mode=docker compose_file=compose.yml data_dir="" redis_port="" chroma_port="" out=backups
while [ $# -gt 0 ]; do
  case "$1" in
    --native) mode=native data_dir="$2"; shift 2 ;;
    --redis-port) redis_port="$2"; shift 2 ;;
    --chroma-port) chroma_port="$2"; shift 2 ;;
    --compose) compose_file="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) out="$1"; shift ;;
  esac
done
die() { echo "backup: $*" >&2; exit 1; }

stamp=$(date -u +%Y%m%dT%H%M%SZ)
name="rag-backup-$stamp"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/$name"
mkdir -p "$root/redis" "$root/chroma" "$root/app" "$out"

if [ "$mode" = native ]; then
  [ -n "$redis_port" ] && [ -n "$chroma_port" ] || die "--native needs --redis-port and --chroma-port"
  [ -d "$data_dir/chroma" ] || die "no Chroma data in $data_dir/chroma"
  if curl -fsS -m 2 "http://127.0.0.1:$chroma_port/api/v2/heartbeat" >/dev/null 2>&1; then
    die "Chroma answers on port $chroma_port: stop it first (a copy of a live Chroma is not consistent)"
  fi
  redis-cli -p "$redis_port" --rdb "$root/redis/dump.rdb" >/dev/null
  cp -a "$data_dir/chroma/." "$root/chroma/"
else
  dc=(docker compose -f "$compose_file")
  writers=(rag-ingest rag-ingest-worker)  # everything that writes Redis's documents and Chroma
  restart() { "${dc[@]}" start chroma "${writers[@]}" >/dev/null; }
  trap 'restart; rm -rf "$work"' EXIT  # whatever happens from here, they start again
  trap 'exit 130' INT TERM
  "${dc[@]}" stop "${writers[@]}"
  "${dc[@]}" exec -T redis redis-cli --rdb /data/backup.rdb >/dev/null
  "${dc[@]}" cp redis:/data/backup.rdb "$root/redis/dump.rdb"
  "${dc[@]}" exec -T redis rm -f /data/backup.rdb
  "${dc[@]}" stop chroma  # its files are consistent only once it has stopped
  "${dc[@]}" cp chroma:/data/. "$root/chroma/"
  "${dc[@]}" cp rag-ingest:/data/. "$root/app/" || true
  rm -rf "$root/app/models"  # rebuilt from the packaged weights
  restart  # the copies are taken: no need to wait for the archive
  trap 'rm -rf "$work"' EXIT
fi

(
  cd "$root"
  find . -type f -print0 | sort -z | xargs -0 sha256sum > "$work/SHA256SUMS"
  mv "$work/SHA256SUMS" SHA256SUMS
  files=$(wc -l < SHA256SUMS)
  printf '{"format": 1, "created": "%s", "mode": "%s", "files": %s, "checksums": "SHA256SUMS"}\n' \
    "$stamp" "$mode" "$files" > manifest.json
)
tar -C "$work" -czf "$out/$name.tar.gz" "$name"
echo "$out/$name.tar.gz"
