"""Running the real `dockercoins` CLI against the lab, for the lab-tier tests."""

from __future__ import annotations

import os
import subprocess
import sys

from dockercoins.lab.state import LabState


def lab_env(lab: LabState, host: str | None = None) -> dict[str, str]:
    """The environment a user has after `eval "$(dockercoins lab up)"`."""
    return {**os.environ, "DOCKER_HOST": host or lab.manager.docker_host, "REGISTRY": lab.registry}


def cli(
    lab: LabState, *args: str, timeout: float = 600, host: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`dockercoins ARGS` against the lab's manager (or `host`) and registry, output captured
    (and echoed, for pytest -s), bounded by `timeout`."""
    proc = subprocess.run(
        [sys.executable, "-m", "dockercoins", *args],
        env=lab_env(lab, host),
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
