"""What makes the lab impossible on a host is one line saying what and what to do: no
root, a dockerd too old, cgroups it cannot write. Real conditions where they can be made
without touching the host (an effective uid, a private mount namespace)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dockercoins.errors import UserError
from dockercoins.lab import host_checks

REPO = Path(__file__).resolve().parents[2]
TOOL = [sys.executable, "-c", "from dockercoins.cli import main; raise SystemExit(main())"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Docker version 20.10.24+dfsg1, build 5d6db84", (20, 10)),
        ("Docker version 27.3.1, build 41ca978", (27, 3)),
        ("dockerd: cannot run", None),
    ],
)
def test_docker_version_is_read_from_its_version_line(
    text: str, expected: tuple[int, int] | None
) -> None:
    assert host_checks.docker_version(text) == expected


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("Docker version 19.03.15, build 99e3ed8", "dockerd 19.3 is too old"),
        ("not a dockerd", "printed no version"),
    ],
)
def test_a_dockerd_the_lab_cannot_drive_is_refused(tmp_path: Path, line: str, error: str) -> None:
    binary = tmp_path / "dockerd"
    binary.write_text(f"#!/bin/sh\necho '{line}'\n")
    binary.chmod(0o755)
    with pytest.raises(UserError, match=error):
        host_checks.check_dockerd(str(binary))


def test_this_host_can_run_the_lab() -> None:
    """The CI machine is root, has namespaces and writable cgroups: nothing is refused."""
    host_checks.require_host()


def test_not_root_is_one_line() -> None:
    """`lab up` under another effective uid: one line, exit 1, nothing made."""
    code = (
        "import os, sys\n"
        "from dockercoins.cli import build_parser, main\n"
        "from dockercoins.lab import lifecycle\n"
        "build_parser()  # every module imported while the interpreter's files are readable\n"
        "os.seteuid(65534)\n"
        "sys.argv = ['dockercoins', 'lab', 'up']\n"
        "raise SystemExit(main())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "dockercoins: error: the lab needs root (network namespaces, bridges, dockerd): run as root"
    ]


def test_read_only_cgroups_are_one_line() -> None:
    """In a private mount namespace whose cgroup hierarchies are remounted read-only (the
    host's stay as they are), `lab up` stops at once with one line naming the mount."""
    script = (
        "set -e; mount --make-rprivate /; "
        "for m in $(findmnt -rn -t cgroup,cgroup2 -o TARGET); do "
        'mount -o remount,bind,ro "$m"; done; '
        'exec "$@"'
    )
    proc = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, "sh", *TOOL, "lab", "up"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "deploy")},
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "is read-only: the lab's dockerds cannot make cgroups there" in lines[0]
