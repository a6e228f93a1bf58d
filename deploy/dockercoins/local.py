"""Run redis-server and the four services as local processes on loopback.

Used by `dockercoins local` (run until Ctrl-C) and `dockercoins bench pipeline` (short
runs). Every child gets its own session, so a Ctrl-C in the terminal reaches only this
process, which then stops the children in order (the worker first, so it can write what
it owes to Redis, Redis last), and each child is also told by the kernel to stop if this
process dies without cleaning up (Linux parent-death signal).

`dockercoins local` puts Redis behind a random password, like `deploy` does: a file
`redis_password` (mode 0600) in its working directory, given to redis-server through the
redis image's own start script (the password on its standard input, never on a command line)
and to the worker and webui as REDIS_PASSWORD_FILE. The file goes with the directory on exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from dockercoins.errors import UserError
from dockercoins.host.ports import LOOPBACK, accepts, free_port, port_free
from dockercoins.host.processes import wait_ready
from dockercoins.images.kinds import REDIS_FILES_DIR, REDIS_START
from dockercoins.names import METRICS_PATH, WEBUI_PUBLISHED_PORT
from dockercoins.paths import SERVICES_DIR

START_TIMEOUT = 20.0
PASSWORD_FILE = "redis_password"  # in the working directory
PASSWORD_BYTES = 32  # of randomness: 43 URL-safe characters
STOP_TIMEOUT = 5.0
_PR_SET_PDEATHSIG = 1


def redis_server_binary() -> str:
    """The redis-server executable, or a one-line UserError saying how to install it."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise UserError("redis-server is not installed: apt-get install redis-server")
    return binary


def redis_server_command(binary: str, port: int, workdir: Path) -> list[str]:
    """redis-server on LOOPBACK:`port`, files in `workdir`, nothing persisted."""
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        LOOPBACK,
        "--dir",
        str(workdir),
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        "--loglevel",
        "warning",
    ]


def write_password_file(path: Path) -> Path:
    """A new random Redis password (secrets.token_urlsafe: letters, digits, - and _, which
    the start script takes) in a file only its owner reads; the file must not exist yet."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_urlsafe(PASSWORD_BYTES) + "\n")
    return path


class PortInUse(UserError):
    """A port given to `name` is taken on LOOPBACK by another program."""

    def __init__(self, name: str, port: int) -> None:
        super().__init__(f"port {port} ({name}) is already in use on {LOOPBACK}")
        self.name = name
        self.port = port


def check_ports(ports: dict[str, int]) -> None:
    """One-line UserError when a port is out of range or used twice; PortInUse when one is
    already in use."""
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if not 1 <= port <= 65535:
            raise UserError(f"port {port} for {name} is not between 1 and 65535")
        if port in seen:
            raise UserError(f"port {port} is given to both {seen[port]} and {name}")
        seen[port] = name
        if not port_free(LOOPBACK, port):
            raise PortInUse(name, port)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@dataclass
class Child:
    """One process this module started."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def logs(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")


@dataclass
class Stack:
    """Processes started in order and stopped in reverse order, all of them, always."""

    workdir: Path
    log_to_files: bool = False
    children: list[Child] = field(default_factory=list)

    def _spawn(
        self, name: str, argv: list[str], port: int, cwd: Path, env: dict[str, str]
    ) -> Child:
        log_path = self.workdir / f"{name}.log" if self.log_to_files else None
        out: IO[bytes] | None = open(log_path, "ab") if log_path else None  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads here
            )
        finally:
            if out is not None:
                out.close()
        child = Child(name=name, proc=proc, port=port, log_path=log_path)
        self.children.append(child)
        return child

    def start_redis(self, port: int, password_file: Path | None = None) -> Child:
        """redis-server on LOOPBACK:`port`; with `password_file`, started by the redis
        image's start script, which makes it require that password."""
        argv = redis_server_command(redis_server_binary(), port, self.workdir)
        env = {k: v for k, v in os.environ.items() if k != "REDIS_PASSWORD_FILE"}
        if password_file is not None:
            argv = [str(REDIS_FILES_DIR / REDIS_START), *argv]
            env["REDIS_PASSWORD_FILE"] = str(password_file)
        child = self._spawn("redis", argv, port, self.workdir, env)
        self._wait(child, lambda: accepts(LOOPBACK, port, 0.2))
        return child

    def start_service(
        self, name: str, port: int, env: dict[str, str], label: str | None = None
    ) -> Child:
        """services/<name>/<name>.py with HOST=127.0.0.1, PORT=port and `env`; waits for
        `GET /` to answer 200 (not for the worker, whose only server is its /metrics, on
        `port` when given WORKER_METRICS_PORT). `label` names the child and its log file
        (default: `name`)."""
        full_env = {**os.environ, "HOST": LOOPBACK, "PORT": str(port), **env}
        argv = [sys.executable, f"{name}.py"]
        child = self._spawn(label or name, argv, port, SERVICES_DIR / name, full_env)
        if name != "worker":
            self._wait(child, lambda: _http_ok(f"http://{LOOPBACK}:{port}/"))
        return child

    def _wait(self, child: Child, ready: Callable[[], bool]) -> None:
        wait_ready(
            child.proc,
            ready,
            timeout=START_TIMEOUT,
            what=child.name,
            log=child.log_path,
            interval=0.05,
            stop_timeout=STOP_TIMEOUT,
        )

    def dead(self) -> Child | None:
        """The first child that has exited, if any."""
        for child in self.children:
            if child.proc.poll() is not None:
                return child
        return None

    def stop_child(self, child: Child, signum: int = signal.SIGTERM) -> int:
        """Signal one child, wait (bounded), kill it if it hangs; its exit code."""
        if child.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signum)
            try:
                child.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        return child.proc.returncode

    def stop(self) -> None:
        """Stop every child, last started first."""
        for child in reversed(self.children):
            self.stop_child(child)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            status: int = response.status
            return status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass(frozen=True)
class LocalPorts:
    webui: int = WEBUI_PUBLISHED_PORT
    rng: int = 8001
    hasher: int = 8002
    redis: int = 0  # 0: a free port

    def as_dict(self) -> dict[str, int]:
        ports = {"webui": self.webui, "rng": self.rng, "hasher": self.hasher}
        if self.redis:
            ports["redis"] = self.redis
        return ports


class _Stop(Exception):
    """SIGINT or SIGTERM received."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


def run_local(ports: LocalPorts, info: Callable[[str], None], result: Callable[[str], None]) -> int:
    """Start everything, print the page URL, run until Ctrl-C / SIGTERM or until a child
    dies, then stop everything and remove the temporary directory."""
    redis_server_binary()
    check_ports(ports.as_dict())
    workdir = Path(tempfile.mkdtemp(prefix="dockercoins-local-"))
    stack = Stack(workdir)
    # Handle SIGINT explicitly too: a shell starting us in the background ignores it.
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    previous_int = signal.signal(signal.SIGINT, _raise_stop)
    try:
        redis_port = ports.redis or free_port()
        redis_url = f"redis://{LOOPBACK}:{redis_port}/0"
        worker_metrics_port = free_port()
        info(f"working directory {workdir}")
        password_file = write_password_file(workdir / PASSWORD_FILE)
        info(
            f"redis password in {password_file} (for redis-cli: "
            f"REDISCLI_AUTH=$(cat {password_file}) redis-cli -p {redis_port})"
        )
        redis_env = {"REDIS_URL": redis_url, "REDIS_PASSWORD_FILE": str(password_file)}
        worker_env = {
            "RNG_URL": f"http://{LOOPBACK}:{ports.rng}/32",
            "HASHER_URL": f"http://{LOOPBACK}:{ports.hasher}/",
            **redis_env,
            "WORKER_HEARTBEAT": str(workdir / "worker-heartbeat"),
            "WORKER_METRICS_PORT": str(worker_metrics_port),
        }
        started = [
            stack.start_redis(redis_port, password_file),
            stack.start_service("hasher", ports.hasher, {}),
            stack.start_service("rng", ports.rng, {}),
            stack.start_service("webui", ports.webui, redis_env),
            stack.start_service("worker", worker_metrics_port, worker_env),
        ]
        for child in started:
            where = f"{LOOPBACK}:{child.port}" if child.port else "no port"
            info(f"started {child.name} (pid {child.pid}, {where})")
        info(f"worker metrics: http://{LOOPBACK}:{worker_metrics_port}{METRICS_PATH}")
        result(f"DockerCoins is running: http://{LOOPBACK}:{ports.webui}/  (Ctrl-C stops it)")
        while True:
            dead = stack.dead()
            if dead is not None:
                raise UserError(
                    f"{dead.name} exited with code {dead.proc.returncode}; stopping everything"
                )
            time.sleep(0.2)
    except (KeyboardInterrupt, _Stop):
        info("stopping ...")
    finally:
        # A second Ctrl-C or SIGTERM must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            stack.stop()
            shutil.rmtree(workdir, ignore_errors=True)
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
    info("stopped; nothing left running")
    return 0
