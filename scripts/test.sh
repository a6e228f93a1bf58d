#!/usr/bin/env bash
# The test command: installs what the tests need, then runs linters and the three tiers
# (fast: pure functions and services on loopback with a real Redis; Docker: a real dockerd
# and registry; lab: a real multi-node swarm). Safe to run twice. Extra arguments go to
# every pytest run (for example -x or -k NAME).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash scripts/install.sh
export PATH="$REPO/.venv/bin:$PATH"
mkdir -p "$REPO/test-artifacts"

echo "==> ruff" >&2
ruff check .
ruff format --check . || { echo "ruff format: run 'ruff format .'" >&2; exit 1; }
echo "==> mypy (strict)" >&2
mypy

echo "==> tier 1: fast tests (pure functions, services on loopback, real Redis, Chromium)" >&2
pytest tests/unit tests/services --durations=10 "$@"

echo "==> tier 2: Docker tests (real dockerd and registry)" >&2
pytest tests/docker --durations=10 "$@"

echo "==> tier 3: lab tests (real multi-node swarm)" >&2
rm -f "$REPO/test-artifacts/lab-results.txt"
pytest tests/lab --durations=0 "$@"
if [ -f "$REPO/test-artifacts/lab-results.txt" ]; then
  echo "==> measured on the lab (printed, not asserted): test-artifacts/lab-results.txt" >&2
  cat "$REPO/test-artifacts/lab-results.txt" >&2
fi
