#!/usr/bin/env bash
# Installs what DockerCoins needs on a Debian/Ubuntu machine (as root), idempotently:
# Debian packages (redis-server, prometheus, chromium, docker.io, docker-registry, debootstrap,
# iptables)
# and a virtualenv in .venv with the project and the extras named in DOCKERCOINS_EXTRAS
# (default "dev,bench": the test tools and the benchmark's plot; scripts/lab.sh asks for none).
# Source it or run it; a second run only checks.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APT_PACKAGES=(
  redis-server prometheus chromium chromium-driver fonts-liberation
  docker.io docker-registry docker-compose iptables iproute2 procps
  debootstrap debian-archive-keyring   # the keyring: debootstrap of bookworm from Ubuntu too
  python3-venv
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # The tool starts the daemons it needs itself: apt must not start redis-server, dockerd
  # or prometheus on the host (policy-rc.d exit 101 = "not now"), unless a policy is there.
  policy=/usr/sbin/policy-rc.d
  own_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1
  fi
  apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
    || { [ -z "$own_policy" ] || rm -f "$policy"; exit 1; }
  [ -z "$own_policy" ] || rm -f "$policy"
fi

VENV="$REPO/.venv"
EXTRAS="${DOCKERCOINS_EXTRAS-dev,bench}"
stamp="$VENV/.installed-$( (cat "$REPO/pyproject.toml"; echo "$EXTRAS") | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "==> preparing the virtualenv in $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >&2
  "$VENV/bin/pip" install -q -e "$REPO${EXTRAS:+[$EXTRAS]}" >&2
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
