#!/usr/bin/env bash
# TEST STAND-INS: build, in the Docker engine DOCKER_HOST names (the private one engine.sh
# starts), local images under the names of the third-party images our compose files and
# Dockerfiles use, for machines that reach no container registry. See Dockerfile.standins.
# Grafana has no Debian package: it has no stand-in, and the test run leaves it out.
#
#   DOCKER_HOST=unix://... deploy/docker/offline/standins.sh
#
# Idempotent: an image already present is kept. Needs root (debootstrap).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
docker=${DOCKER:-/usr/bin/docker}
export DOCKER_BUILDKIT=1

UV_VERSION=0.13.9
UV_WHEEL=uv-$UV_VERSION-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
UV_WHEEL_SHA256=d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19
BASE=rag-standin/debian:trixie
uv=${UV:-$(command -v uv || echo "$HOME/.local/bin/uv")}

have() { "$docker" image inspect "$1" >/dev/null 2>&1; }

# The Debian mirror this machine's apt uses (never written into the repository).
mirror() {
  local found
  found=$(grep -hE '^\s*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '{print $2}' | grep -E '/debian/?$' | head -1 || true)
  if [ -z "$found" ]; then
    found=$(grep -hE '^\s*deb\s' /etc/apt/sources.list 2>/dev/null \
      | awk '{print $2}' | grep -E '/debian/?$' | head -1 || true)
  fi
  [ -n "$found" ] || { echo "standins.sh: no Debian mirror in /etc/apt" >&2; exit 1; }
  echo "$found"
}

build_base() {
  have "$BASE" && return
  command -v debootstrap >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  local rootfs
  rootfs=$(mktemp -d)
  echo "standins.sh: debootstrap trixie (minbase)" >&2
  debootstrap --variant=minbase --include=ca-certificates trixie "$rootfs" "$(mirror)" \
    > "$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; exit 1; }
  # The machine's own extra CAs (an HTTPS proxy's), so apt-get and uv work in builds.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | "$docker" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$BASE" >/dev/null
  rm -rf "$rootfs" "$rootfs.log"
}

fetch_uv() {
  local bin=$here/uv-bin
  [ -x "$bin/uv" ] && return
  local download
  download=$(mktemp -d)
  "$uv" tool run --from pip pip download --quiet --no-deps --only-binary :all: \
    --platform manylinux_2_17_x86_64 -d "$download" "uv==$UV_VERSION" 2>/dev/null
  echo "$UV_WHEEL_SHA256  $download/$UV_WHEEL" | sha256sum --check --quiet
  mkdir -p "$bin"
  (cd "$download" && python3 -m zipfile -e "$UV_WHEEL" unpacked)
  install -m 0755 "$download/unpacked/uv-$UV_VERSION.data/scripts/uv" \
    "$download/unpacked/uv-$UV_VERSION.data/scripts/uvx" "$bin/"
  rm -rf "$download"
}

# target in Dockerfile.standins -> the upstream name, as our files spell it.
image_names() {
  grep -hoE '^\s*image:\s*[^ ]+' "$root/compose.yml" "$root/compose.prod.yml" \
    | awk '{print $2}' | grep -v '^rag-engine' | sort -u
  grep -hoE '^(FROM|ARG PYTHON_IMAGE=)\S+' "$root"/deploy/docker/Dockerfile* \
    | sed -E 's/^(FROM |ARG PYTHON_IMAGE=)//' | grep -vE '^\$|^ghcr.io/astral-sh/uv:' | sort -u
  grep -hoE 'ghcr.io/astral-sh/uv:[^ ]+' "$root"/deploy/docker/Dockerfile* | sort -u
}

target_of() {
  case $1 in
    python:*) echo python ;;
    ghcr.io/astral-sh/uv:*) echo uv ;;
    redis:*) echo redis ;;
    nginx:*) echo nginx ;;
    prom/prometheus:*) echo prometheus ;;
    nginx/nginx-prometheus-exporter:*) echo nginx-exporter ;;
    oliver006/redis_exporter:*) echo redis-exporter ;;
    grafana/*) echo "" ;;
    *) echo "standins.sh: no stand-in for $1" >&2; exit 1 ;;
  esac
}

build_base
fetch_uv
for name in $(image_names); do
  target=$(target_of "$name")
  if [ -z "$target" ]; then
    echo "standins.sh: $name has no stand-in (left out of the test run)" >&2
    continue
  fi
  have "$name" && continue
  echo "standins.sh: $name <- stand-in target $target" >&2
  "$docker" build --quiet --target "$target" --build-arg "BASE=$BASE" \
    --label org.opencontainers.image.description="TEST STAND-IN for $name" \
    -t "$name" -f "$here/Dockerfile.standins" "$here" >/dev/null
done
