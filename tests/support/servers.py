"""Real servers for tests: redis-server and the services as subprocesses on free loopback ports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from dockercoins.host import ports as netcheck
from dockercoins.local import redis_server_command

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES_DIR = REPO_ROOT / "services"
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port that is free on loopback right now."""
    return netcheck.free_port(LOOPBACK)


def wait_for(predicate: object, timeout: float = 15.0, interval: float = 0.05) -> None:
    """Poll `predicate()` until it is truthy; AssertionError after `timeout` seconds, naming
    the last exception the predicate raised (an assertion in it, a refused connection)."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
            last = None
        except Exception as error:
            last = error
        time.sleep(interval)
    because = f"; last failure: {type(last).__name__}: {last}" if last else ""
    raise AssertionError(f"condition not met within {timeout} s: {predicate!r}{because}")


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# Every acknowledged write on disk before its reply (restart tests: SIGTERM or SIGKILL).
DURABLE = ("--appendonly", "yes", "--appendfsync", "always")


@dataclass
class RedisServer:
    """A real redis-server on a free loopback port, data in `workdir`; can be stopped and
    started again on the same port (outage tests). `extra`: more redis-server options,
    given after the usual ones (e.g. DURABLE)."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    extra: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (scripts/test.sh installs it)"
        self.proc = subprocess.Popen(
            [*redis_server_command(binary, self.port, self.workdir), *self.extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: netcheck.accepts(LOOPBACK, self.port, 0.2))

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None


@dataclass
class ServiceProcess:
    """One of services/<name>/<name>.py run with `python <name>.py`, as its image runs it."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, wait: bool = True) -> None:
        env = {**os.environ, "HOST": LOOPBACK, "PORT": str(self.port), **self.env}
        directory = SERVICES_DIR / self.name
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, f"{self.name}.py"],
            cwd=directory,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if wait and self.name != "worker":
            # 200 from rng and hasher; webui's / redirects to /index.html
            wait_for(lambda: httpx.get(self.url + "/", timeout=1).status_code in (200, 302))

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""
