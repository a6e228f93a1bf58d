"""Running the real `dockercoins` CLI, as a user does, for the lab-tier tests: the one
runner every lab test uses."""

from __future__ import annotations

import os
import subprocess
import sys

from dockercoins.lab.state import LabState

DEFAULT_TIMEOUT = 600.0


def lab_env(lab: LabState, host: str | None = None) -> dict[str, str]:
    """The environment a user has after `eval "$(dockercoins lab up)"`."""
    return {**os.environ, "DOCKER_HOST": host or lab.manager.docker_host, "REGISTRY": lab.registry}


def cli(
    lab: LabState | None, *args: str, timeout: float = DEFAULT_TIMEOUT, host: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`dockercoins ARGS` against the lab's manager (or `host`) and registry, or with the
    caller's environment when there is no lab yet (`cli(None, "lab", "up")`); output
    captured (and echoed, for pytest -s), bounded by `timeout`."""
    proc = subprocess.run(
        [sys.executable, "-m", "dockercoins", *args],
        env=lab_env(lab, host) if lab else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    sys.stderr.write(f"$ dockercoins {' '.join(args)} -> {proc.returncode}\n{proc.stderr}")
    sys.stdout.write(proc.stdout)
    return proc


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a command that must have succeeded."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout
