"""The lab beside the user's own Docker: while the lab runs and mines, the host daemon's
container answers and its containers and networks are as they were. (After `lab down` the
session's `lab` fixture checks them again, with the host's iptables rules.)"""

from __future__ import annotations

from typing import Any

from dockercoins.lab.state import LabState

from tests.lab.conftest import BesideHost
from tests.support.host_docker import LAB_RULE, without_lab_rule


def test_the_host_docker_is_untouched_while_the_lab_runs(
    lab: LabState, manager: Any, host_docker: BesideHost
) -> None:
    assert host_docker.host.answers()
    now = host_docker.host.snapshot()
    assert now.containers == host_docker.before.containers
    assert now.networks == host_docker.before.networks
    # the lab's own rule is the one iptables line it adds on the host
    assert LAB_RULE in now.iptables
    assert without_lab_rule(now.iptables) == without_lab_rule(host_docker.before.iptables)
    # and the lab's nodes are not the host daemon: it sees no swarm
    assert host_docker.host.client.info()["Swarm"]["LocalNodeState"] == "inactive"
    assert manager.info()["Swarm"]["LocalNodeState"] == "active"
