"""A dockerd of the project's own on the host, for scripts and tests when none is reachable.

It gets its own --data-root, --exec-root, --pidfile and unix socket, no default bridge
(`--bridge=none`: no docker0 to fight over with another daemon; user-defined networks
work as usual), and is stopped by its own pid. A daemon that was already running is never
touched.

    python -m dockercoins.host.dockerd start   # prints `export DOCKER_HOST=...`
    python -m dockercoins.host.dockerd env     # the same line, if ours is running
    python -m dockercoins.host.dockerd stop
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from dockercoins.errors import UserError
from dockercoins.host import mounts, processes
from dockercoins.paths import state_dir


@dataclass(frozen=True)
class HostDockerd:
    """Where one of our dockerds keeps its things (everything under `root`, but the
    exec-root, whose unix socket paths must stay short)."""

    root: Path
    exec_root: Path

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.root / "dockerd.pid"

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"

    @property
    def data_root(self) -> Path:
        return self.root / "data"

    def pid(self) -> int | None:
        """The daemon's pid if it is alive and is this daemon (its command line names our
        pidfile), else None."""
        return processes.pidfile_process(self.pidfile, str(self.pidfile))

    def answers(self) -> bool:
        return answers(self.base_url)


def answers(base_url: str, timeout: float = 3.0) -> bool:
    """True when a Docker daemon answers /_ping at base_url."""
    import docker.errors
    from docker.client import DockerClient

    try:
        client = DockerClient(base_url=base_url, timeout=int(max(timeout, 1)))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (docker.errors.DockerException, OSError):
        return False


def default_daemon() -> HostDockerd:
    """The one `python -m dockercoins.host.dockerd start` manages (state_dir()/dockerd)."""
    root = state_dir() / "dockerd"
    return HostDockerd(root=root, exec_root=Path("/run/dockercoins-dockerd"))


def start(daemon: HostDockerd, timeout: float = 60.0, extra_args: tuple[str, ...] = ()) -> None:
    """Start `daemon` unless it already runs; waits until it answers. UserError on failure."""
    if daemon.pid() is not None and daemon.answers():
        return
    binary = shutil.which("dockerd")
    if binary is None:
        raise UserError("dockerd is not installed: apt-get install docker.io")
    daemon.root.mkdir(parents=True, exist_ok=True)
    daemon.exec_root.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        daemon.socket.unlink()
    command = [
        binary,
        f"--data-root={daemon.data_root}",
        f"--exec-root={daemon.exec_root}",
        f"--pidfile={daemon.pidfile}",
        f"--host={daemon.base_url}",
        "--bridge=none",
        *extra_args,
    ]
    proc = processes.spawn_detached(command, daemon.log, cwd=None)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserError(f"dockerd exited at start (status {proc.returncode}); see {daemon.log}")
        if daemon.socket.exists() and daemon.answers():
            return
        time.sleep(0.2)
    processes.stop([proc.pid], 10.0)
    raise UserError(f"dockerd did not answer within {timeout:.0f} s; see {daemon.log}")


def stop(daemon: HostDockerd, timeout: float = 30.0) -> bool:
    """Stop `daemon` by its own pid; True if it was running."""
    pid = daemon.pid()
    if pid is None:
        return False
    processes.stop([pid], timeout)
    with contextlib.suppress(FileNotFoundError):
        daemon.socket.unlink()
    return True


def temporary(prefix: str = "dcd-") -> HostDockerd:
    """A throw-away daemon layout (for a test session): remove it with `discard`."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=state_dir()))
    exec_root = Path(
        tempfile.mkdtemp(prefix=prefix, dir="/run" if os.access("/run", os.W_OK) else None)
    )
    return HostDockerd(root=root, exec_root=exec_root)


def discard(daemon: HostDockerd) -> None:
    """Stop `daemon` and delete its folders, after unmounting whatever a killed daemon may
    have left mounted under them."""
    stop(daemon)
    for folder in (daemon.exec_root, daemon.root):
        mounts.unmount_all_under(folder)
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    daemon = default_daemon()
    action = argv[0] if argv else ""
    try:
        if action == "start":
            start(daemon)
            print(f"export DOCKER_HOST={daemon.base_url}")
        elif action == "env":
            if daemon.pid() is None:
                raise UserError(
                    "our dockerd is not running: python -m dockercoins.host.dockerd start"
                )
            print(f"export DOCKER_HOST={daemon.base_url}")
        elif action == "stop":
            print("stopped" if stop(daemon) else "was not running", file=sys.stderr)
        else:
            print("usage: python -m dockercoins.host.dockerd start|env|stop", file=sys.stderr)
            return 2
    except UserError as error:
        print(f"hostdockerd: error: {error}", file=sys.stderr)
        return error.code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
