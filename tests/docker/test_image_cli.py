"""The real CLI on bad input and without a daemon: one line, non-zero exit, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dockercoins", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("dockercoins: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("build", "rng", "miner"), "unknown service 'miner'"),
        (("push", "nope"), "unknown service 'nope'"),
        (("build", "--registry", "http://127.0.0.1:5000"), "malformed registry"),
        (("push", "--registry", "127.0.0.1:99999"), "malformed registry"),
        (("ship", "--tag=.bad"), "malformed tag"),
        (("push", "--tag", "a b"), "malformed tag"),
        (("build", "--namespace", "Upper"), "malformed namespace"),
    ],
)
def test_bad_input_gives_one_line(args: tuple[str, ...], expected: str) -> None:
    assert expected in _one_error_line(_cli(*args, DOCKER_HOST="unix:///nonexistent.sock"))


@pytest.mark.parametrize("command", ["build", "push", "ship"])
def test_no_daemon_gives_one_line(command: str) -> None:
    line = _one_error_line(_cli(command, DOCKER_HOST="unix:///nonexistent.sock"))
    assert "no Docker daemon answers at unix:///nonexistent.sock" in line


def test_registry_on_a_busy_port_gives_one_line(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _cli(
            "registry", "up", "--addr", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "r")
        )
    assert "the port is in use by another program" in _one_error_line(done)
    assert not (tmp_path / "r" / "registry.pid").exists()
