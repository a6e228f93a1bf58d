"""Every process under a cgroup, on cgroup v1 or v2: find them, freeze, kill, remove the
cgroups.

A cgroup is named by its path from the hierarchy's root, e.g. "/dockercoins-lab/node2"; it
has a folder in each mounted hierarchy that holds it (v1: one per controller, plus named
ones like name=systemd; v2: the unified one; a hybrid host has both). Its processes are
the union of `cgroup.procs` in those folders and all their subfolders. Nothing outside the
named cgroup is ever written to.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from dockercoins.host import mounts, processes

MOUNTINFO = Path("/proc/self/mountinfo")
FREEZE_TIMEOUT = 2.0  # how long to wait for a freezer to report frozen
KILL_TIMEOUT = 10.0


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy: where it is mounted, the cgroup mounted there (its
    root, "/" but inside a cgroup namespace or a bind mount), v1 or v2, its controllers."""

    mountpoint: Path
    root: str
    version: int
    controllers: frozenset[str]

    def folder(self, cgroup: str) -> Path | None:
        """The folder of `cgroup` in this hierarchy (None when it lies outside the mount)."""
        base = self.root.rstrip("/")
        if cgroup != base and not cgroup.startswith(base + "/"):
            return None
        relative = cgroup[len(base) :].strip("/")
        return self.mountpoint / relative if relative else self.mountpoint


def hierarchies(mountinfo: Path = MOUNTINFO) -> list[Hierarchy]:
    """The cgroup hierarchies mounted here, each once (from /proc/self/mountinfo)."""
    found: dict[tuple[int, frozenset[str]], Hierarchy] = {}
    for line in mountinfo.read_text().splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        version = 2 if tail[0] == "cgroup2" else 1
        options = {option for option in tail[2].split(",") if option not in ("rw", "ro")}
        controllers = frozenset(options) if version == 1 else frozenset()
        key = (version, controllers)
        if key not in found:
            point = Path(mounts._unescape(fields[4]))
            found[key] = Hierarchy(point, mounts._unescape(fields[3]), version, controllers)
    return list(found.values())


def _hierarchies(found: Sequence[Hierarchy] | None) -> Sequence[Hierarchy]:
    return hierarchies() if found is None else found


def folders(cgroup: str, found: Sequence[Hierarchy] | None = None) -> list[Path]:
    """The folders of `cgroup` that exist now, one per hierarchy that holds it."""
    result = []
    for hierarchy in _hierarchies(found):
        folder = hierarchy.folder(cgroup)
        if folder is not None and folder.is_dir():
            result.append(folder)
    return result


def _subfolders(folder: Path) -> list[Path]:
    """`folder` and every cgroup folder below it, deepest first."""
    below: list[Path] = []
    for current, dirs, _ in os.walk(folder, topdown=False):
        below.extend(Path(current) / name for name in dirs)
    return [*below, folder]


def _read_pids(folder: Path) -> set[int]:
    try:
        text = (folder / "cgroup.procs").read_text()
    except OSError:  # removed meanwhile, or not a cgroup folder
        return set()
    return {int(word) for word in text.split() if word.isdigit()}


def pids_under(cgroup: str, found: Sequence[Hierarchy] | None = None) -> list[int]:
    """Every process in `cgroup` or below it, in any hierarchy, sorted."""
    pids: set[int] = set()
    for folder in folders(cgroup, found):
        for sub in _subfolders(folder):
            pids |= _read_pids(sub)
    return sorted(pids)


def children(cgroup: str, found: Sequence[Hierarchy] | None = None) -> list[str]:
    """Names of the cgroups right below `cgroup`, in any hierarchy, sorted."""
    names: set[str] = set()
    for folder in folders(cgroup, found):
        names |= {entry.name for entry in folder.iterdir() if entry.is_dir()}
    return sorted(names)


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
    except OSError:
        return False
    return True


def _freezer(cgroup: str, found: Sequence[Hierarchy] | None) -> Path | None:
    """The control file that freezes `cgroup` and all below it: v1's freezer.state where
    the freezer controller is mounted, else v2's cgroup.freeze (one is enough: a hybrid
    host's v2 freezer would wait for tasks the v1 one holds). None for the root cgroup or
    when there is no freezer."""
    candidates = [
        folder / name
        for name in ("freezer.state", "cgroup.freeze")
        for folder in folders(cgroup, found)
        if (folder / name).is_file()
    ]
    return candidates[0] if candidates else None


def _is_frozen(control: Path) -> bool:
    try:
        if control.name == "freezer.state":
            return control.read_text().strip() == "FROZEN"
        events = (control.parent / "cgroup.events").read_text().splitlines()
    except OSError:
        return True  # gone: nothing left to wait for
    return "frozen 1" in (line.strip() for line in events)


@contextlib.contextmanager
def frozen(
    cgroup: str, found: Sequence[Hierarchy] | None = None, timeout: float = FREEZE_TIMEOUT
) -> Iterator[bool]:
    """Freeze `cgroup` and everything below it where a freezer exists, thaw on the way out.
    Yields whether a freezer took hold (False: no freezer; the caller kills repeatedly)."""
    control = _freezer(cgroup, found)
    v1 = control is not None and control.name == "freezer.state"
    if control is not None and not _write(control, "FROZEN" if v1 else "1"):
        control = None
    deadline = time.monotonic() + timeout
    while control is not None and not _is_frozen(control) and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield control is not None
    finally:
        if control is not None:
            _write(control, "THAWED" if v1 else "0")


def _alive(pids: Sequence[int]) -> list[int]:
    return [pid for pid in pids if processes.is_alive(pid)]


def kill_all(
    cgroup: str,
    *,
    also: Sequence[int] = (),
    found: Sequence[Hierarchy] | None = None,
    timeout: float = KILL_TIMEOUT,
) -> list[int]:
    """SIGKILL every process under `cgroup`, frozen first where a freezer exists so none
    forks or escapes, then thawed so the kill lands; again until none is left or `timeout`
    s pass. `also` (e.g. the daemons that own those processes) is killed in the same frozen
    moment. Returns the pids still there."""
    deadline = time.monotonic() + timeout
    extra = list(also)
    while True:
        with frozen(cgroup, found):
            targets = _alive(pids_under(cgroup, found)) + _alive(extra)
            processes.signal_all(targets, signal.SIGKILL)
        extra = []
        if not targets:
            return []
        processes.wait_gone(targets, max(0.0, min(1.0, deadline - time.monotonic())))
        if time.monotonic() >= deadline:
            return _alive(pids_under(cgroup, found))


def remove(cgroup: str, found: Sequence[Hierarchy] | None = None) -> list[Path]:
    """Remove `cgroup` and the cgroups below it (deepest first) in every hierarchy; returns
    the folders that are still there (a cgroup with processes cannot be removed)."""
    left = []
    for folder in folders(cgroup, found):
        for sub in _subfolders(folder):
            try:
                sub.rmdir()
            except FileNotFoundError:
                continue
            except OSError:
                left.append(sub)
    return left
