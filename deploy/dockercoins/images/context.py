"""A service's build context as a tar made in memory: its folder (minus what .dockerignore
and common junk exclude) with the host-made wheelhouse added as wheels/, without writing
anything into the source tree."""

from __future__ import annotations

import fnmatch
import io
import tarfile
from pathlib import Path

ALWAYS_SKIPPED = ("__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".git")


def ignore_patterns(folder: Path) -> list[str]:
    """The folder's .dockerignore patterns (simple globs; `!` exceptions are not supported)."""
    path = folder / ".dockerignore"
    if not path.is_file():
        return []
    patterns = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "!")):
            patterns.append(line.removeprefix("/").removeprefix("**/").rstrip("/"))
    return patterns


def _skipped(relative: str, patterns: list[str]) -> bool:
    parts = relative.split("/")
    for pattern in (*ALWAYS_SKIPPED, *patterns):
        if fnmatch.fnmatch(relative, pattern) or any(fnmatch.fnmatch(p, pattern) for p in parts):
            return True
    return False


def make(folder: Path, wheels: Path | None) -> io.BytesIO:
    """The context tar for `folder`; its wheels/ holds the files of `wheels` when given
    (replacing whatever wheels/ has in the tree), else the tree's own wheels/."""
    patterns = ignore_patterns(folder)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder).as_posix()
            if _skipped(relative, patterns):
                continue
            if wheels is not None and (relative == "wheels" or relative.startswith("wheels/")):
                continue
            tar.add(path, arcname=relative, recursive=False, filter=_normalise)
        if wheels is not None:
            tar.add(wheels, arcname="wheels", recursive=False, filter=_normalise)
            for wheel in sorted(wheels.glob("*.whl")):
                tar.add(wheel, arcname=f"wheels/{wheel.name}", filter=_normalise)
        elif not (folder / "wheels").is_dir():
            info = tarfile.TarInfo("wheels")
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
    buffer.seek(0)
    return buffer


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Root-owned entries with a fixed time, so the build cache does not depend on who
    checked the tree out or when."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
    return info
