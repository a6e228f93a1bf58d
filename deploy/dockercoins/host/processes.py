"""Processes the tool starts on the host: start one detached, wait until it is ready, is a
pid alive, what runs it, stop it (TERM, then KILL), and the telling line of its log.

Every helper checks a pid against what we expect it to be (its command line, its network
namespace, its root directory) before signalling it, so a recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from dockercoins.errors import UserError

LOG_TAIL_LINES = 30  # how far back log_tail looks for an error line
LOG_LINE_MAX = 300


def is_alive(pid: int) -> bool:
    """True when `pid` runs (a zombie counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    if state in ("Z", "X"):
        _reap(pid)
        return False
    return True


def _reap(pid: int) -> None:
    """Collect a zombie child of ours (no-op for other processes)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def cmdline(pid: int) -> list[str]:
    """The command line of `pid`, [] when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def read_pidfile(path: Path) -> int | None:
    """The pid written in `path`, or None when there is no (valid) pidfile."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def pidfile_process(path: Path, marker: str) -> int | None:
    """The live pid of `path` whose command line contains `marker`, else None."""
    pid = read_pidfile(path)
    if pid is None or not is_alive(pid):
        return None
    return pid if any(marker in part for part in cmdline(pid)) else None


def processes_rooted_under(directory: Path) -> list[int]:
    """Pids whose root directory (a chroot) is inside `directory`. A container that
    pivot_root'ed in its own mount namespace shows "/" here: find those by cgroup."""
    prefix = str(directory.resolve()) + "/"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            root = os.readlink(entry / "root")
        except OSError:
            continue
        if (root + "/").startswith(prefix):
            found.append(int(entry.name))
    return found


def signal_all(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until none of `pids` runs; returns those still alive after `timeout` s."""
    remaining = list(pids)
    deadline = time.monotonic() + timeout
    while remaining and time.monotonic() < deadline:
        remaining = [pid for pid in remaining if is_alive(pid)]
        if remaining:
            time.sleep(0.1)
    return [pid for pid in remaining if is_alive(pid)]


def stop(pids: Iterable[int], timeout: float) -> None:
    """SIGTERM, wait up to `timeout` s, then SIGKILL what is left (and wait for it, bounded)."""
    targets = [pid for pid in pids if is_alive(pid)]
    if not targets:
        return
    signal_all(targets, signal.SIGTERM)
    left = wait_gone(targets, timeout)
    if left:
        signal_all(left, signal.SIGKILL)
        wait_gone(left, 10.0)


def spawn_detached(command: list[str], log: Path, cwd: str | None = "/") -> subprocess.Popen[bytes]:
    """Start `command` in its own session (it outlives us), output appended to `log`, in
    directory `cwd` (None: ours, for commands given paths relative to it)."""
    with log.open("ab") as output:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
        )


def log_tail(log: Path) -> str:
    """The telling line of a log: the last error line (logrus `level=fatal|error`) among
    its last lines, else its last line; "" when there is no log or it is empty."""
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    recent = lines[-LOG_TAIL_LINES:]
    errors = [line for line in recent if "level=fatal" in line or "level=error" in line]
    return (errors or recent or [""])[-1][:LOG_LINE_MAX]


def wait_ready(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    log: Path | None = None,
    interval: float = 0.1,
    stop_timeout: float = 5.0,
) -> None:
    """Poll `ready` until it is true. UserError, with the telling line of `log`, when the
    process exits first or `timeout` s pass (then the process is stopped first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserError(
                f"{what} exited with code {proc.returncode} while starting{_log_detail(log)}"
            )
        if ready():
            return
        time.sleep(interval)
    _stop_child(proc, stop_timeout)
    raise UserError(f"{what} did not answer within {timeout:g} s{_log_detail(log)}")


def _log_detail(log: Path | None) -> str:
    if log is None:
        return ""
    tail = log_tail(log)
    return f": {tail} (log: {log})" if tail else f" (log: {log})"


def _stop_child(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """TERM our child, KILL it after `timeout` s, and reap it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
