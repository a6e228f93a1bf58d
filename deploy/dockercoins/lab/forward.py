"""Start, find and stop the lab's web UI forwarder (dockercoins.lab.forwarder, run detached)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from dockercoins import ui
from dockercoins.errors import UserError
from dockercoins.host import ports, processes
from dockercoins.lab.state import lab_dir

MARKER = "dockercoins.lab.forwarder"
LISTEN_HOST = ports.LOOPBACK


def pidfile() -> Path:
    return lab_dir() / "forwarder.pid"


def logfile() -> Path:
    return lab_dir() / "forwarder.log"


def _command(port: int, targets: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        MARKER,
        "--listen",
        f"{LISTEN_HOST}:{port}",
        "--pidfile",
        str(pidfile()),
        *targets,
    ]


def running_pid() -> int | None:
    return processes.pidfile_process(pidfile(), MARKER)


def _port_free_within(port: int, timeout: float) -> bool:
    """Free now, or within `timeout` s (the forwarder we just stopped lets go of it)."""
    deadline = time.monotonic() + timeout
    while not ports.port_free(LISTEN_HOST, port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def start(port: int, targets: list[str], timeout: float = 10.0) -> bool:
    """Make sure a forwarder listens on 127.0.0.1:`port` for `targets`. A port taken by
    another program is one warning line, not an error: returns False then."""
    wanted = _command(port, targets)
    pid = running_pid()
    if pid is not None:
        if processes.cmdline(pid)[1:] == wanted[1:]:
            return True
        stop()
    if not _port_free_within(port, 3.0 if pid is not None else 0.0):
        ui.info(
            f"warning: {LISTEN_HOST}:{port} is already taken by another program: the web UI "
            f"forwarder is not started (choose another port with --forward-port)"
        )
        return False
    pidfile().unlink(missing_ok=True)
    proc = processes.spawn_detached(wanted, logfile())
    try:
        processes.wait_ready(
            proc,
            lambda: pidfile().exists() and ports.accepts(LISTEN_HOST, port, 0.5),
            timeout=timeout,
            what="the web UI forwarder",
            stop_timeout=2.0,
        )
    except UserError:
        tail = processes.log_tail(logfile())
        ui.info(
            f"warning: the web UI forwarder did not start on {LISTEN_HOST}:{port}"
            + (f": {tail}" if tail else "")
        )
        return False
    return True


def stop() -> None:
    pid = running_pid()
    if pid is not None:
        processes.stop([pid], 5.0)
    pidfile().unlink(missing_ok=True)
