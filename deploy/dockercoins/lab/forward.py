"""Start, find and stop the lab's forwarders (dockercoins.lab.forwarder, run detached): one
process per forwarded port, the web UI's and Prometheus's, each with its pidfile and log."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dockercoins import ui
from dockercoins.errors import UserError
from dockercoins.host import ports, processes
from dockercoins.lab.state import lab_dir
from dockercoins.names import PROMETHEUS_PORT, WEBUI_PUBLISHED_PORT

MARKER = "dockercoins.lab.forwarder"
LISTEN_HOST = ports.LOOPBACK


@dataclass(frozen=True)
class Forward:
    """One forwarded port: what it reaches, where the nodes publish it, the `lab up` option
    that moves it on the host, and the suffix of its pidfile and log."""

    what: str
    node_port: int
    option: str
    suffix: str

    @property
    def pidfile(self) -> Path:
        return lab_dir() / f"forwarder{self.suffix}.pid"

    @property
    def logfile(self) -> Path:
        return lab_dir() / f"forwarder{self.suffix}.log"


WEBUI = Forward("web UI", WEBUI_PUBLISHED_PORT, "--forward-port", "")
PROMETHEUS = Forward("Prometheus", PROMETHEUS_PORT, "--prometheus-port", "-prometheus")
FORWARDS = (WEBUI, PROMETHEUS)


def pidfile(forward: Forward = WEBUI) -> Path:
    return forward.pidfile


def logfile(forward: Forward = WEBUI) -> Path:
    return forward.logfile


def _command(port: int, targets: list[str], forward: Forward) -> list[str]:
    return [
        sys.executable,
        "-m",
        MARKER,
        "--listen",
        f"{LISTEN_HOST}:{port}",
        "--pidfile",
        str(forward.pidfile),
        *targets,
    ]


def running_pid(forward: Forward = WEBUI) -> int | None:
    return processes.pidfile_process(forward.pidfile, MARKER)


def _port_free_within(port: int, timeout: float) -> bool:
    """Free now, or within `timeout` s (the forwarder we just stopped lets go of it)."""
    deadline = time.monotonic() + timeout
    while not ports.port_free(LISTEN_HOST, port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def start(port: int, targets: list[str], timeout: float = 10.0, forward: Forward = WEBUI) -> bool:
    """Make sure `forward`'s forwarder listens on 127.0.0.1:`port` for `targets`. A port
    taken by another program is one warning line, not an error: returns False then."""
    wanted = _command(port, targets, forward)
    pid = running_pid(forward)
    if pid is not None:
        if processes.cmdline(pid)[1:] == wanted[1:]:
            return True
        stop(forward)
    if not _port_free_within(port, 3.0 if pid is not None else 0.0):
        ui.info(
            f"warning: {LISTEN_HOST}:{port} is already taken by another program: the "
            f"{forward.what} forwarder is not started (choose another port with "
            f"{forward.option})"
        )
        return False
    forward.pidfile.unlink(missing_ok=True)
    proc = processes.spawn_detached(wanted, forward.logfile)
    try:
        processes.wait_ready(
            proc,
            lambda: forward.pidfile.exists() and ports.accepts(LISTEN_HOST, port, 0.5),
            timeout=timeout,
            what=f"the {forward.what} forwarder",
            stop_timeout=2.0,
        )
    except UserError:
        tail = processes.log_tail(forward.logfile)
        ui.info(
            f"warning: the {forward.what} forwarder did not start on {LISTEN_HOST}:{port}"
            + (f": {tail}" if tail else "")
        )
        return False
    return True


def stop(forward: Forward = WEBUI) -> None:
    pid = running_pid(forward)
    if pid is not None:
        processes.stop([pid], 5.0)
    forward.pidfile.unlink(missing_ok=True)


def stop_all() -> None:
    """Stop every forwarder of the lab."""
    for forward in FORWARDS:
        stop(forward)
