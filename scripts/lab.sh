#!/usr/bin/env bash
# The README's first command: a fresh Debian machine (as root) -> a multi-node Swarm lab
# with DockerCoins deployed, then the URL of the page and the hash rate.
#   bash scripts/lab.sh            # NODES=3 by default
# Steps: install what is missing (scripts/install.sh), `dockercoins lab up`, `dockercoins
# ship` (build + push the four images), `dockercoins deploy`, `dockercoins status`.
# Every step is idempotent: a second run is fast and changes nothing that works.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
started=$(date +%s)

DOCKERCOINS_EXTRAS="${DOCKERCOINS_EXTRAS-}" bash scripts/install.sh   # the tool alone; the tests add dev,bench
DC="$REPO/.venv/bin/dockercoins"

# `lab up` prints `export DOCKER_HOST=...` and `export REGISTRY=...` for the manager
unset DOCKER_HOST
exports="$("$DC" lab up --nodes "${NODES:-3}")"
eval "$exports"
if [ -z "${DOCKER_HOST:-}" ]; then
  echo "lab.sh: 'dockercoins lab up' printed no DOCKER_HOST: see its output above" >&2
  exit 1
fi

"$DC" ship
"$DC" deploy
"$DC" status --wait 60

cat <<EOF

DockerCoins runs on the lab ($(( $(date +%s) - started )) s).
  web UI:          http://localhost:8000
  Prometheus:      http://localhost:9090
  the docker CLI:  export DOCKER_HOST=$DOCKER_HOST
  tear down:       .venv/bin/dockercoins down; .venv/bin/dockercoins lab down
EOF
