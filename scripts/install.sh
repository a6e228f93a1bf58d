#!/usr/bin/env bash
# Installs what DockerCoins needs on a Debian/Ubuntu machine (as root), idempotently.
# It decides by what is there, not by package name: a tool that works (dockerd, docker,
# containerd, redis-server, prometheus, chromium, docker-registry, debootstrap, ...) is used
# as it is, whoever installed it (Docker CE from Docker's own apt repository included), and
# only what is missing is asked of apt. The lab needs dockerd and the docker CLI 20.10 or
# newer (Engine API 1.41). Then a virtualenv in .venv with the project and the extras named
# in DOCKERCOINS_EXTRAS (default "dev,bench": the test tools and the benchmark's plot;
# scripts/lab.sh asks for none). DOCKERCOINS_INSTALL_PLAN=1 prints what it would install
# and stops. Source it or run it; a second run only checks.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MIN_DOCKER="20.10"  # Engine API 1.41: swarm, overlay networks, `docker service` as the lab uses them

# what must be there -> the Debian package that provides it (a command, or a file when it
# starts with /)
NEEDS=(
  "redis-server redis-server"
  "prometheus prometheus" "promtool prometheus"
  "chromium chromium" "chromedriver chromium-driver"
  "/usr/share/fonts/truetype/liberation fonts-liberation"
  "docker-registry docker-registry"
  "iptables iptables" "ip iproute2" "pkill procps" "nsenter util-linux" "unshare util-linux"
  "debootstrap debootstrap"
  "/usr/share/keyrings/debian-archive-keyring.gpg debian-archive-keyring"  # bookworm from Ubuntu too
)

die() { echo "install.sh: $*" >&2; exit 1; }

there() {  # a command on the PATH, or a file or folder
  case "$1" in
    /*) [ -e "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

version_of() {  # "Docker version 27.3.1, build ..." -> 27.3.1 (empty when it prints none)
  "$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n1 || true
}

recent_enough() {  # $1 >= MIN_DOCKER, both MAJOR.MINOR[.PATCH]
  [ "$(printf '%s\n%s\n' "$MIN_DOCKER" "$1" | sort -V | head -n1)" = "$MIN_DOCKER" ]
}

missing=()
want() { case " ${missing[*]-} " in *" $1 "*) ;; *) missing+=("$1") ;; esac; }

for need in "${NEEDS[@]}"; do
  read -r what package <<<"$need"
  there "$what" || want "$package"
done

# Docker: the engine (dockerd and containerd) as it is when both are there (Docker CE,
# docker.io, a static build); Debian's docker.io when neither is. A docker CLI alone (a
# client for remote daemons) is no engine: docker.io goes beside it, and the CLI first on
# the PATH stays the one in use.
engine_parts=0
for tool in dockerd containerd; do there "$tool" && engine_parts=$((engine_parts + 1)); done
if [ "$engine_parts" -eq 0 ]; then
  want docker.io
elif [ "$engine_parts" -lt 2 ]; then
  die "the Docker engine is only partly installed (dockerd, containerd: $(for t in dockerd containerd; do there "$t" && printf '%s ' "$t"; done)found): install the missing part from the same source as the rest"
elif ! there docker; then
  die "dockerd is installed but the docker CLI is not: install the CLI from the same source as dockerd"
fi
for tool in dockerd docker; do
  [ "$engine_parts" -eq 2 ] || [ "$tool" = docker ] || continue  # dockerd comes from apt
  there "$tool" || continue  # docker.io brings it
  v="$(version_of "$tool")"
  [ -n "$v" ] || die "$tool --version printed no version: is $(command -v "$tool") a working $tool?"
  recent_enough "$v" || die "$tool $v is too old: the lab needs Docker $MIN_DOCKER or newer (Engine API 1.41)"
done
# compose.yml: Debian's docker-compose or the `docker compose` plugin
if ! there docker-compose && ! { there docker && docker compose version >/dev/null 2>&1; }; then
  want docker-compose
fi
if [ "${DOCKERCOINS_INSTALL_PLAN:-}" = 1 ]; then
  echo "missing: ${missing[*]-}"
  exit 0
fi

apt_install() {  # Debian packages, with no daemon started by apt
  [ "$(id -u)" -eq 0 ] || die "these Debian packages are missing: $*; run as root to install them"
  command -v apt-get >/dev/null || die "these Debian packages are missing and there is no apt-get: $*"
  echo "==> installing Debian packages: $*" >&2
  export DEBIAN_FRONTEND=noninteractive
  # The tool starts the daemons it needs itself: apt must not start redis-server, dockerd
  # or prometheus on the host (policy-rc.d exit 101 = "not now"), unless a policy is there.
  local policy=/usr/sbin/policy-rc.d own_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1
  fi
  apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "$@" >&2 \
    || { [ -z "$own_policy" ] || rm -f "$policy"; exit 1; }
  [ -z "$own_policy" ] || rm -f "$policy"
}

[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

VENV="$REPO/.venv"
EXTRAS="${DOCKERCOINS_EXTRAS-dev,bench}"
stamp="$VENV/.installed-$( (cat "$REPO/pyproject.toml"; echo "$EXTRAS") | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "==> preparing the virtualenv in $VENV" >&2
  # Debian's python3 makes a venv with pip only with python3-venv: try, and install it if not
  python3 -m venv "$VENV" 2>/dev/null || { rm -rf "$VENV"; apt_install python3-venv; python3 -m venv "$VENV"; }
  "$VENV/bin/pip" install -q --upgrade pip >&2
  "$VENV/bin/pip" install -q -e "$REPO${EXTRAS:+[$EXTRAS]}" >&2
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
