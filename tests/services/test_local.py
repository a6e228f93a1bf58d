"""`dockercoins local`: everything starts on the given ports, Redis behind a random password
in a file of the working directory, the counter rises through the web UI, SIGINT stops every
child and removes the temporary directory; bad ports and a missing redis-server are one-line
errors."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.servers import LOOPBACK, free_port, wait_for

STARTED = re.compile(r"started (\w+) \(pid (\d+)")


def alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def dockercoins(*args: str, **popen: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "dockercoins", *args], **popen)  # type: ignore[call-overload, no-any-return]


def distinct_free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


@pytest.fixture
def local_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path, list[int]]]:
    webui, rng, hasher, redis = distinct_free_ports(4)
    out, err = tmp_path / "local.out", tmp_path / "local.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = dockercoins(
            "local",
            "--webui-port",
            str(webui),
            "--rng-port",
            str(rng),
            "--hasher-port",
            str(hasher),
            "--redis-port",
            str(redis),
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, "RNG_DELAY": "0.01", "HASHER_DELAY": "0.01"},
        )
    try:
        yield proc, out, err, [webui, rng, hasher, redis]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Whatever happened, leave no child behind.
        for match in STARTED.finditer(err.read_text()):
            pid = int(match.group(2))
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_local_runs_the_pipeline_and_sigint_stops_everything(
    local_run: tuple[subprocess.Popen[bytes], Path, Path, list[int]],
) -> None:
    proc, out, err, (webui, _rng, _hasher, redis_port) = local_run
    url = f"http://{LOOPBACK}:{webui}/"
    wait_for(lambda: url in out.read_text(), timeout=60)
    started = {name: int(pid) for name, pid in STARTED.findall(err.read_text())}
    assert set(started) == {"redis", "rng", "hasher", "webui", "worker"}
    assert all(alive(pid) for pid in started.values())
    workdir = Path(re.findall(r"working directory (\S+)", err.read_text())[0])
    assert workdir.is_dir()

    password_file = workdir / "redis_password"
    assert f"redis password in {password_file}" in err.read_text()
    assert password_file.stat().st_mode & 0o777 == 0o600
    password = password_file.read_text().removesuffix("\n")
    assert len(password) >= 32
    with pytest.raises(redis.AuthenticationError):  # RESP2, as the original clients speak
        redis.Redis(host=LOOPBACK, port=redis_port, protocol=2, socket_timeout=5).get("hashes")
    for pid in started.values():  # in no child's command line or environment
        assert password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert password.encode() not in Path(f"/proc/{pid}/environ").read_bytes()

    def hashes() -> int:
        answer = httpx.get(f"{url}json", timeout=2)
        assert answer.status_code == 200
        return int(answer.json()["hashes"])

    wait_for(lambda: hashes() > 0, timeout=30)
    first = hashes()
    wait_for(lambda: hashes() > first, timeout=30)

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0, err.read_text()
    assert [name for name, pid in started.items() if alive(pid)] == []
    assert not workdir.exists()
    assert "stopped; nothing left running" in err.read_text()
    assert "Traceback" not in err.read_text()
    assert password not in out.read_text() + err.read_text()


def test_busy_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        port = busy.getsockname()[1]
        rng, hasher = distinct_free_ports(2)
        proc = dockercoins(
            "local",
            "--webui-port",
            str(port),
            "--rng-port",
            str(rng),
            "--hasher-port",
            str(hasher),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    lines = stderr.decode().strip().splitlines()
    assert lines == [
        f"dockercoins: error: port {port} (webui) is already in use on {LOOPBACK}; "
        "choose another with --webui-port"
    ]
    assert stdout == b""


def test_missing_redis_server_says_how_to_install_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    proc = dockercoins(
        "local",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PATH": str(empty)},
    )
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert stderr.decode().strip().splitlines() == [
        "dockercoins: error: redis-server is not installed: apt-get install redis-server"
    ]


def test_a_child_that_dies_stops_everything_with_a_one_line_error(
    local_run: tuple[subprocess.Popen[bytes], Path, Path, list[int]],
) -> None:
    proc, out, err, (webui, *_rest) = local_run
    wait_for(lambda: f"http://{LOOPBACK}:{webui}/" in out.read_text(), timeout=60)
    started = {name: int(pid) for name, pid in STARTED.findall(err.read_text())}
    os.kill(started["rng"], signal.SIGKILL)
    assert proc.wait(timeout=30) == 1
    assert [name for name, pid in started.items() if alive(pid)] == []
    errors = [line for line in err.read_text().splitlines() if line.startswith("dockercoins:")]
    assert errors == ["dockercoins: error: rng exited with code -9; stopping everything"]
    assert "Traceback" not in err.read_text()
