"""The lab tier's shared fixture: one real 3-node lab for the whole session.

`lab` brings the lab up once (`dockercoins lab up --nodes 3`, the real CLI) and tears it
down in a finally (`dockercoins lab down`), even when tests fail (a developer may keep
it with DOCKERCOINS_LAB_KEEP=1, which also skips the disruptive tests). Tests marked
`lab_disruptive` (they kill daemons or tear the lab down) are moved to the end of the
session, in their file order, so they never pull the lab from under other tests.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dockercoins.dockerapi import connect
from dockercoins.lab import state as lab_state
from dockercoins.lab.state import LabState

from tests.support.lab import cli

LAB_NODES = 3
UP_TIMEOUT = 900  # a cold first run includes debootstrap and the image imports
DOWN_TIMEOUT = 300
DISRUPTIVE = "lab_disruptive"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{DISRUPTIVE}: kills lab daemons or tears the lab down; runs last"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.lab)
    items.sort(key=lambda item: item.get_closest_marker(DISRUPTIVE) is not None)
    if os.environ.get("DOCKERCOINS_LAB_KEEP") == "1":
        keep = pytest.mark.skip(reason="DOCKERCOINS_LAB_KEEP=1: the lab is kept as it is")
        for item in items:
            if item.get_closest_marker(DISRUPTIVE):
                item.add_marker(keep)


@pytest.fixture(scope="session")
def lab() -> Iterator[LabState]:
    """A running 3-node lab (lab_state.LabState), torn down at the end of the session."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    try:
        up = cli(None, "lab", "up", "--nodes", str(LAB_NODES), timeout=UP_TIMEOUT)
        if up.returncode != 0:
            pytest.fail(f"`dockercoins lab up` failed ({up.returncode}):\n{up.stderr[-3000:]}")
        state = lab_state.load()
        assert state is not None, "lab up did not record the lab"
        yield state
    finally:
        if os.environ.get("DOCKERCOINS_LAB_KEEP") != "1":  # a developer's choice, never CI's
            down = cli(None, "lab", "down", timeout=DOWN_TIMEOUT)
            if down.returncode != 0:
                print(f"`dockercoins lab down` failed:\n{down.stderr[-3000:]}", file=sys.stderr)


@pytest.fixture(scope="module")
def manager(lab: LabState) -> Iterator[Any]:
    """A Docker SDK client of the lab's manager, closed after the module."""
    client = connect(lab.manager.docker_host, timeout=60)
    try:
        yield client
    finally:
        client.close()
