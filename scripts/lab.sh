#!/usr/bin/env bash
# The README's first command: a fresh Debian machine (as root) -> a multi-node Swarm lab
# with DockerCoins deployed, then the URL of the page and the hash rate.
#   bash scripts/lab.sh            # NODES=3 by default
# Steps: install what is missing (scripts/install.sh), `dockercoins lab up`, `dockercoins
# ship` (build + push the four images), `dockercoins deploy`, `dockercoins status`.
# Every step is idempotent: a second run is fast and changes nothing that works. At the end
# it prints how long each step took.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

# where the time went: each step's milliseconds, printed at the end
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
started=$(now_ms)
step_started=$started
TIMES=()
done_step() {  # done_step NAME: record the time since the previous step ended
  local end; end=$(now_ms)
  TIMES+=("$1 $(( end - step_started ))")
  step_started=$end
}
seconds() { printf '%d.%d s' $(( $1 / 1000 )) $(( $1 % 1000 / 100 )); }

DOCKERCOINS_EXTRAS="${DOCKERCOINS_EXTRAS-}" bash scripts/install.sh   # the tool alone; the tests add dev,bench
done_step install
DC="$REPO/.venv/bin/dockercoins"

# `lab up` prints `export DOCKER_HOST=...` and `export REGISTRY=...` for the manager
unset DOCKER_HOST
exports="$("$DC" lab up --nodes "${NODES:-3}")"
eval "$exports"
if [ -z "${DOCKER_HOST:-}" ]; then
  echo "lab.sh: 'dockercoins lab up' printed no DOCKER_HOST: see its output above" >&2
  exit 1
fi
# the lab's registry wants a login (TLS, a user and password `lab up` made): the docker CLI
# stores it, and push and deploy use it
docker login "$REGISTRY" -u "$REGISTRY_USER" --password-stdin < "$REGISTRY_PASSWORD_FILE"
done_step "lab up"

"$DC" ship
done_step ship
"$DC" deploy
done_step deploy
"$DC" status --wait 60
done_step status

total=$(( $(now_ms) - started ))
echo
echo "Where the time went:"
for entry in "${TIMES[@]}"; do
  printf '  %-8s %9s\n' "${entry% *}" "$(seconds "${entry##* }")"
done
printf '  %-8s %9s\n' total "$(seconds "$total")"

cat <<EOF

DockerCoins runs on the lab ($(seconds "$total")).
  web UI:          http://localhost:8000
  Prometheus:      http://localhost:9090
  the docker CLI:  export DOCKER_HOST=$DOCKER_HOST
  tear down:       .venv/bin/dockercoins down; .venv/bin/dockercoins lab down
EOF
