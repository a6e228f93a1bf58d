"""The lab tier's shared fixture: one real 3-node lab for the whole session.

`lab` brings the lab up once (`dockercoins lab up --nodes 3`, the real CLI) and tears it
down in a finally (`dockercoins lab down`), even when tests fail. Tests marked
`lab_disruptive` (they kill daemons or tear the lab down) are moved to the end of the
session, in their file order, so they never pull the lab from under other tests; those
also marked `lab_teardown` (they leave it down) come after all of them.
A developer may keep the lab with DOCKERCOINS_LAB_KEEP=1; the disruptive tests then fail
(they would not keep it), so deselect them with `-m "not lab_disruptive"`. Without root
the tier fails: it never skips.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dockercoins.dockerapi import connect
from dockercoins.lab import state as lab_state
from dockercoins.lab.state import LabState

from tests.support import host_docker as host_docker_support
from tests.support.lab import cli

LAB_NODES = 3
UP_TIMEOUT = 900  # a cold first run includes debootstrap and the image imports
DOWN_TIMEOUT = 300
DISRUPTIVE = "lab_disruptive"
TEARDOWN = "lab_teardown"  # leaves the lab down (and its caches gone): the very last


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{DISRUPTIVE}: kills lab daemons or tears the lab down; runs last"
    )
    config.addinivalue_line(
        "markers", f"{TEARDOWN}: tears the lab down for good; runs after all the others"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.lab)
    items.sort(
        key=lambda item: (
            item.get_closest_marker(DISRUPTIVE) is not None,
            item.get_closest_marker(TEARDOWN) is not None,
        )
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if os.environ.get("DOCKERCOINS_LAB_KEEP") == "1" and item.get_closest_marker(DISRUPTIVE):
        pytest.fail(
            "DOCKERCOINS_LAB_KEEP=1 keeps the lab, and this test kills daemons or tears the "
            'lab down: deselect it with -m "not lab_disruptive"'
        )


@pytest.fixture(scope="session")
def host_docker() -> Iterator[BesideHost]:
    """The user's own Docker on the host (the default socket; started if none answers) with
    a container publishing a port, and what it and the host's iptables looked like before
    the lab came up. The lab runs beside it for the whole session."""
    if os.geteuid() != 0:
        pytest.fail("the lab tier needs root (network namespaces, bridges, dockerd): run as root")
    with host_docker_support.running() as host:
        yield BesideHost(host=host, before=host.snapshot())


@pytest.fixture(scope="session")
def lab(host_docker: BesideHost, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    """A running 3-node lab (lab_state.LabState), torn down at the end of the session;
    then the host's own Docker is checked: same containers, networks and iptables rules as
    before `lab up`, its container still answering."""
    config_before = os.environ.get("DOCKER_CONFIG")
    try:
        up = cli(None, "lab", "up", "--nodes", str(LAB_NODES), timeout=UP_TIMEOUT)
        if up.returncode != 0:
            pytest.fail(f"`dockercoins lab up` failed ({up.returncode}):\n{up.stderr[-3000:]}")
        state = lab_state.load()
        assert state is not None, "lab up did not record the lab"
        # the registry wants a login: the session logs in as `lab up` says, into a docker
        # CLI config of its own (the host's ~/.docker stays as it was)
        os.environ["DOCKER_CONFIG"] = str(tmp_path_factory.mktemp("docker-config"))
        login_to_registry(state, up.stdout)
        yield state
    finally:
        if config_before is None:
            os.environ.pop("DOCKER_CONFIG", None)
        else:
            os.environ["DOCKER_CONFIG"] = config_before
        if os.environ.get("DOCKERCOINS_LAB_KEEP") != "1":  # a developer's choice, never CI's
            down = cli(None, "lab", "down", timeout=DOWN_TIMEOUT)
            if down.returncode != 0:
                print(f"`dockercoins lab down` failed:\n{down.stderr[-3000:]}", file=sys.stderr)
            host_docker.check_untouched()


def login_to_registry(state: LabState, exports: str) -> None:
    """`docker login $REGISTRY -u $REGISTRY_USER --password-stdin < $REGISTRY_PASSWORD_FILE`
    with what `lab up` exported, against the lab's manager."""
    found = dict(
        re.findall(r"^export (REGISTRY_USER|REGISTRY_PASSWORD_FILE)=(\S+)$", exports, re.M)
    )
    assert set(found) == {"REGISTRY_USER", "REGISTRY_PASSWORD_FILE"}, exports
    with open(found["REGISTRY_PASSWORD_FILE"], encoding="utf-8") as password:
        done = subprocess.run(
            ["docker", "login", state.registry, "-u", found["REGISTRY_USER"], "--password-stdin"],
            stdin=password,
            env={**os.environ, "DOCKER_HOST": state.manager.docker_host},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, f"docker login {state.registry} failed: {done.stderr}"


@dataclass(frozen=True)
class BesideHost:
    host: host_docker_support.HostDocker
    before: host_docker_support.Snapshot

    def check_untouched(self) -> None:
        """The host's Docker as it was before the lab, its container answering."""
        assert self.host.answers(), f"the host's container stopped answering ({self.host.url})"
        after = self.host.snapshot()
        assert after.containers == self.before.containers
        assert after.networks == self.before.networks
        # the lab registry's CA trusted no more; everything else there as it was (a lab
        # may have been up already when the snapshot was taken)
        assert host_docker_support.without_lab_ca(after.certs_d) == after.certs_d
        assert after.certs_d == host_docker_support.without_lab_ca(self.before.certs_d)
        # every rule as it was, and the lab's own line gone with the lab
        assert host_docker_support.LAB_RULE not in after.iptables
        assert host_docker_support.without_lab_rule(
            after.iptables
        ) == host_docker_support.without_lab_rule(self.before.iptables)


@pytest.fixture(scope="module")
def manager(lab: LabState) -> Iterator[Any]:
    """A Docker SDK client of the lab's manager, closed after the module."""
    client = connect(lab.manager.docker_host, timeout=60)
    try:
        yield client
    finally:
        client.close()
