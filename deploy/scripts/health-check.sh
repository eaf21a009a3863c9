#!/usr/bin/env bash
# Is the stack healthy? One line per service; the exit code is 0 only if every one is.
#
#   health-check.sh [--compose FILE]           the Docker stack: each container's health
#   health-check.sh --native NAME=URL ...      GET URL/ready for each (health ports)
set -euo pipefail

mode=docker compose_file=compose.yml targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --native) mode=native; shift ;;
    --compose) compose_file="$2"; shift 2 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done

failed=0
if [ "$mode" = native ]; then
  [ ${#targets[@]} -gt 0 ] || { echo "health-check: give NAME=URL for each service" >&2; exit 2; }
  for target in "${targets[@]}"; do
    name=${target%%=*} url=${target#*=}
    if body=$(curl -fsS -m 5 "$url/ready" 2>/dev/null); then
      echo "$name: healthy"
    else
      echo "$name: NOT healthy (${body:-no answer from $url/ready})"
      failed=1
    fi
  done
else
  while read -r name state health; do
    if [ "$state" = running ] && { [ "$health" = healthy ] || [ "$health" = "" ]; }; then
      echo "$name: healthy"
    else
      echo "$name: NOT healthy ($state ${health:-})"
      failed=1
    fi
  done < <(docker compose -f "$compose_file" ps --all --format '{{.Service}} {{.State}} {{.Health}}')
fi
exit "$failed"
