"""The lab beside the user's own Docker: while the lab runs and mines, the host daemon's
container answers and its containers and networks are as they were. (After `lab down` the
session's `lab` fixture checks them again, with the host's iptables rules.)"""

from __future__ import annotations

from typing import Any

from dockercoins.lab.state import LabState

from tests.lab.conftest import BesideHost


def test_the_host_docker_is_untouched_while_the_lab_runs(
    lab: LabState, manager: Any, host_docker: BesideHost
) -> None:
    assert host_docker.host.answers()
    now = host_docker.host.snapshot()
    assert now.containers == host_docker.before.containers
    assert now.networks == host_docker.before.networks
    # the lab's own rule is the one iptables line it adds on the host
    added = set(now.iptables) - set(host_docker.before.iptables)
    assert added == {"-A FORWARD -i dcbr0 -o dcbr0 -j ACCEPT"}, added
    assert set(host_docker.before.iptables) <= set(now.iptables)
    # and the lab's nodes are not the host daemon: it sees no swarm
    assert host_docker.host.client.info()["Swarm"]["LocalNodeState"] == "inactive"
    assert manager.info()["Swarm"]["LocalNodeState"] == "active"
