"""scripts/install.sh decides what to install by what is there, not by package name.

Each case runs the real script with DOCKERCOINS_INSTALL_PLAN=1 (print the plan, install
nothing) on a PATH made from this machine's own commands, minus some of them, plus small
stand-ins for another Docker (Docker CE prints its own version string).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "scripts" / "install.sh"
DOCKER_TOOLS = ("dockerd", "docker", "containerd")

MakePath = Callable[..., str]


def _stand_in(folder: Path, name: str, version_line: str) -> None:
    """An executable `name` whose --version prints `version_line` (what a Docker CE binary
    prints; the plan only asks for versions)."""
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    path.chmod(0o755)


@pytest.fixture
def make_path(tmp_path: Path) -> MakePath:
    """A PATH folder with every command of this machine's PATH but `without`, plus
    stand-ins {name: version line}."""

    def make(without: Iterable[str] = (), stand_ins: dict[str, str] | None = None) -> str:
        folder = tmp_path / "bin"
        folder.mkdir()
        skip = set(without) | set(stand_ins or {})
        for directory in os.environ["PATH"].split(os.pathsep):
            if not directory or not Path(directory).is_dir():
                continue
            for entry in Path(directory).iterdir():
                target = folder / entry.name
                if entry.name in skip or target.exists() or target.is_symlink():
                    continue
                if entry.is_file() and os.access(entry, os.X_OK):
                    target.symlink_to(entry)
        for name, line in (stand_ins or {}).items():
            _stand_in(folder, name, line)
        return str(folder)

    return make


def _plan(path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path, "DOCKERCOINS_INSTALL_PLAN": "1"}
    return subprocess.run(
        ["bash", str(INSTALL)], env=env, check=False, capture_output=True, text=True, timeout=60
    )


def _missing(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("missing:")]
    assert len(lines) == 1, proc.stdout
    return lines[0].removeprefix("missing:").split()


def test_this_machine_lacks_nothing(make_path: MakePath) -> None:
    """After install.sh has run (the test command runs it first), the plan is empty."""
    assert _missing(_plan(make_path())) == []


def test_no_docker_at_all_asks_for_debian_docker(make_path: MakePath) -> None:
    assert "docker.io" in _missing(_plan(make_path(without=DOCKER_TOOLS)))


def test_a_docker_cli_alone_gets_the_debian_engine_beside_it(make_path: MakePath) -> None:
    """A client-only docker CLI (this machine kind ships one) is no engine."""
    client = {"docker": "Docker version 28.2.2, build e6534b4"}
    without = ("dockerd", "containerd")
    assert "docker.io" in _missing(_plan(make_path(without=without, stand_ins=client)))


def test_docker_ce_is_used_as_it_is(make_path: MakePath) -> None:
    """Docker CE from Docker's apt repository: no docker.io (it would conflict)."""
    ce = {
        "dockerd": "Docker version 27.3.1, build 41ca978",
        "docker": "Docker version 27.3.1, build ce12230",
        "containerd": "containerd containerd.io 1.7.22 7f7fdf5fed64eb6a7caf99b3e12efcf9d60e311c",
    }
    assert "docker.io" not in _missing(_plan(make_path(stand_ins=ce)))


def test_each_missing_tool_maps_to_its_package(make_path: MakePath) -> None:
    missing = _missing(_plan(make_path(without=("redis-server", "debootstrap", "promtool"))))
    assert {"redis-server", "debootstrap", "prometheus"} <= set(missing)
    assert "docker.io" not in missing


@pytest.mark.parametrize(
    ("stand_ins", "without", "expected"),
    [
        (
            {"dockerd": "Docker version 19.03.15, build 99e3ed8"},
            (),
            "dockerd 19.03.15 is too old: the lab needs Docker 20.10 or newer",
        ),
        ({}, ("docker", "containerd"), "the Docker engine is only partly installed"),
        ({}, ("docker",), "dockerd is installed but the docker CLI is not"),
        ({"dockerd": "dockerd: cannot run"}, (), "dockerd --version printed no version"),
        (
            {"docker": "Docker version 19.03.15, build 99e3ed8"},
            ("dockerd", "containerd"),
            "docker 19.03.15 is too old",
        ),
    ],
    ids=["too-old", "partly-installed", "no-cli", "not-a-dockerd", "old-client-only"],
)
def test_a_docker_the_lab_cannot_use_is_one_line(
    make_path: MakePath, stand_ins: dict[str, str], without: tuple[str, ...], expected: str
) -> None:
    proc = _plan(make_path(without=without, stand_ins=stand_ins))
    assert proc.returncode == 1
    assert expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
