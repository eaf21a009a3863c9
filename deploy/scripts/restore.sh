#!/usr/bin/env bash
# Restore an archive made by backup.sh. The checksums are verified first: a corrupt or
# incomplete archive is refused and nothing is touched.
#
#   restore.sh ARCHIVE [--compose FILE]          the Docker stack (its running services are
#                                                 stopped, restored, and started again)
#   restore.sh ARCHIVE --native DATA_DIR          a stopped native stack's data directory
set -euo pipefail

archive="" mode=docker compose_file=compose.yml data_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --native) mode=native data_dir="$2"; shift 2 ;;
    --compose) compose_file="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) archive="$1"; shift ;;
  esac
done
die() { echo "restore: $*" >&2; exit 1; }
[ -f "$archive" ] || die "no archive at '$archive'"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xzf "$archive" 2>/dev/null || die "$archive is not a readable archive; nothing restored"
root=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'rag-backup-*' | head -n 1)
[ -n "$root" ] && [ -f "$root/manifest.json" ] && [ -f "$root/SHA256SUMS" ] \
  || die "$archive has no manifest or checksums; nothing restored"
listed=$(wc -l < "$root/SHA256SUMS")
present=$(cd "$root" && find . -type f ! -name SHA256SUMS ! -name manifest.json | wc -l)
[ "$listed" -eq "$present" ] || die "$archive holds $present files but lists $listed; nothing restored"
(cd "$root" && sha256sum --check --quiet --strict SHA256SUMS) >/dev/null 2>&1 \
  || die "checksums of $archive do not match (corrupted?); nothing restored"

# Redis keeps data in AOF files: load the snapshot with AOF off, then have Redis write the
# AOF from it, so the restored data survives the next start (with AOF on). A POSIX sh script
# (DIR PORT SNAPSHOT): run with the host's Redis natively, and in Docker in the stack's own
# Redis image (the host may have none, or one too old to read the snapshot).
# shellcheck disable=SC2016  # expanded by the sh that runs it
AOF_FROM_SNAPSHOT='
  set -e
  dir=$1 port=$2
  rm -rf "${dir:?}"/*
  cp "$3" "$dir/dump.rdb"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --dbfilename dump.rdb \
    --appendonly no --save "" > "$dir/restore.log" 2>&1 &
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$port" config set appendonly yes >/dev/null
  for _ in $(seq 300); do
    info=$(redis-cli -p "$port" info persistence)
    echo "$info" | grep -q "^aof_rewrite_in_progress:0" \
      && echo "$info" | grep -q "^aof_enabled:1" && break
    sleep 0.1
  done
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  wait || true
  rm -f "$dir/dump.rdb" "$dir/restore.log"'

if [ "$mode" = native ]; then
  [ -d "$data_dir" ] || die "no data directory at '$data_dir'"
  rm -rf "$data_dir/chroma" "$data_dir/redis"
  mkdir -p "$data_dir/chroma" "$data_dir/redis"
  cp -a "$root/chroma/." "$data_dir/chroma/"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  sh -c "$AOF_FROM_SNAPSHOT" sh "$data_dir/redis" "$port" "$root/redis/dump.rdb"
else
  dc=(docker compose -f "$compose_file")
  # What runs now is what runs again afterwards (not services the stack was started without).
  mapfile -t running < <("${dc[@]}" ps --services --status running)
  "${dc[@]}" stop
  "${dc[@]}" run --rm --no-deps -v "$root/redis:/restore:ro" --entrypoint sh redis \
    -c "$AOF_FROM_SNAPSHOT" sh /data 6390 /restore/dump.rdb
  "${dc[@]}" run --rm --no-deps -v "$root/chroma:/restore:ro" --entrypoint sh chroma \
    -c 'rm -rf /data/* && cp -a /restore/. /data/'
  "${dc[@]}" up -d "${running[@]}"
fi
echo "restore: $archive restored ($(grep -o '"created": "[^"]*"' "$root/manifest.json"))"
