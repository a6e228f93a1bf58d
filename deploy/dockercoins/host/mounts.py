"""Mounts left under a directory (dockerd's overlay, shm and netns mounts): list, unmount."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda match: chr(int(match.group(1), 8)), field)


def mounts_under(directory: Path) -> list[str]:
    """Mount points at or below `directory`, deepest first (from /proc/self/mountinfo)."""
    base = str(directory.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = _unescape(fields[4])
        if point == base or point.startswith(base + "/"):
            found.append(point)
    return sorted(set(found), key=lambda point: (point.count("/"), point), reverse=True)


def unmount_all_under(directory: Path, rounds: int = 5) -> list[str]:
    """Unmount everything below `directory`, deepest first; a mount that refuses is lazily
    unmounted. Stacked mounts need several rounds (bounded). Returns what is left."""
    if not directory.exists():
        return []
    for _ in range(rounds):
        points = mounts_under(directory)
        if not points:
            return []
        for point in points:
            done = subprocess.run(["umount", point], capture_output=True, check=False)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    return mounts_under(directory)
