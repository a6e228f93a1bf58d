"""Start and stop a dockerd of the project's own: the lab's nodes and a daemon on the host
for scripts and tests when none is reachable (`dockercoins dockerd start|env|stop`).

Each daemon keeps its data root, pidfile, unix socket and log under its own folder and its
exec root where unix socket paths stay short; it is stopped by its own pid (checked against
its command line). A daemon that was already running is never touched. The one on the host
runs without a default bridge (`--bridge=none`: no docker0 to fight over with another
daemon; user-defined networks work as usual) and sets no_new_privs on every container
(`--no-new-privileges`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockercoins.errors import UserError
from dockercoins.host import mounts, processes
from dockercoins.paths import state_dir

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# A second daemon on the host: no docker0 of its own; every container (builds included) with
# no_new_privs, like the lab's nodes.
HOST_ARGS = ("--bridge=none", "--no-new-privileges")


@dataclass(frozen=True)
class Dockerd:
    """Where one of our dockerds keeps its things (everything under `root`, but the
    exec root, whose unix socket paths must stay short)."""

    root: Path
    exec_root: Path

    @property
    def data_root(self) -> Path:
        return self.root / "data"

    @property
    def pidfile(self) -> Path:
        return self.root / "dockerd.pid"

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"

    @property
    def docker_host(self) -> str:
        """Its DOCKER_HOST: unix://<socket>."""
        return f"unix://{self.socket}"

    def pid(self) -> int | None:
        """The daemon's pid if it is alive and is this daemon (its command line names our
        pidfile), else None."""
        return processes.pidfile_process(self.pidfile, str(self.pidfile))

    def answers(self, timeout: float = 5.0) -> bool:
        """True when a daemon answers /_ping on the socket."""
        return self.socket.exists() and ping(self.docker_host, timeout)

    def healthy(self) -> bool:
        """Ours runs and answers."""
        return self.pid() is not None and self.answers()


def ping(docker_host: str, timeout: float = 5.0) -> bool:
    """True when a Docker daemon answers /_ping at `docker_host`."""
    import docker.errors
    from docker.client import DockerClient

    try:
        client = DockerClient(base_url=docker_host, timeout=int(max(timeout, 1)))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (docker.errors.DockerException, OSError):
        return False


def connect(daemon: Dockerd, timeout: int = 60) -> Any:
    """A Docker SDK client for `daemon` (UserError when it does not answer)."""
    from dockercoins import dockerapi

    return dockerapi.connect(daemon.docker_host, timeout=timeout)


def dockerd_binary() -> str:
    """The dockerd executable, or a one-line UserError saying how to install it."""
    binary = shutil.which("dockerd")
    if not binary:
        raise UserError(
            "dockerd is not installed: bash scripts/install.sh (or install Docker 20.10+)"
        )
    return binary


def command(
    daemon: Dockerd, extra_args: Sequence[str] = (), prefix: Sequence[str] = ()
) -> list[str]:
    """`prefix` (e.g. entering namespaces), then dockerd with `daemon`'s folders."""
    return [
        *prefix,
        dockerd_binary(),
        "--data-root",
        str(daemon.data_root.absolute()),
        "--exec-root",
        str(daemon.exec_root.absolute()),
        "--pidfile",
        str(daemon.pidfile.absolute()),
        "-H",
        f"unix://{daemon.socket.absolute()}",
        *extra_args,
    ]


def start(
    daemon: Dockerd,
    *,
    extra_args: Sequence[str] = HOST_ARGS,
    prefix: Sequence[str] = (),
    what: str = "dockerd",
    timeout: float = START_TIMEOUT,
) -> None:
    """Start `daemon` unless it already runs and answers; returns once it answers.
    UserError, with the telling line of its log, when it exits or does not answer."""
    if daemon.healthy():
        return
    argv = command(daemon, extra_args, prefix)
    for folder in (daemon.root, daemon.data_root, daemon.exec_root):
        folder.mkdir(parents=True, exist_ok=True)
    daemon.socket.unlink(missing_ok=True)
    if daemon.pid() is None:
        daemon.pidfile.unlink(missing_ok=True)  # stale: its daemon is gone
    proc = processes.spawn_detached(argv, daemon.log)
    processes.wait_ready(
        proc, daemon.answers, timeout=timeout, what=what, log=daemon.log, interval=0.2
    )


def stop(daemon: Dockerd, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop `daemon` by its own pid (TERM, KILL after `timeout` s); True if it was running."""
    pid = daemon.pid()
    if pid is not None:
        processes.stop([pid], timeout)
    daemon.socket.unlink(missing_ok=True)
    return pid is not None


def on_host() -> Dockerd:
    """The one `dockercoins dockerd start` manages (state_dir()/dockerd)."""
    return Dockerd(root=state_dir() / "dockerd", exec_root=Path("/run/dockercoins-dockerd"))


def temporary(prefix: str = "dcd-") -> Dockerd:
    """A throw-away daemon layout (for a test session): remove it with `discard`."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=state_dir()))
    exec_root = Path(
        tempfile.mkdtemp(prefix=prefix, dir="/run" if os.access("/run", os.W_OK) else None)
    )
    return Dockerd(root=root, exec_root=exec_root)


def discard(daemon: Dockerd) -> None:
    """Stop `daemon` and delete its folders, after unmounting whatever a killed daemon may
    have left mounted under them."""
    stop(daemon)
    for folder in (daemon.exec_root, daemon.root):
        mounts.unmount_all_under(folder)
        shutil.rmtree(folder, ignore_errors=True)
