"""`lab status`: each node's daemon and its swarm state and role, the registry, the web UI
and Prometheus forwarders, as the manager and the host see them now."""

from __future__ import annotations

from dataclasses import dataclass

from dockercoins.errors import UserError
from dockercoins.lab import forward as labforward
from dockercoins.lab import network as labnet
from dockercoins.lab import nodes
from dockercoins.lab import state as lab_state
from dockercoins.lab.state import LabState


@dataclass(frozen=True)
class NodeStatus:
    name: str
    ip: str
    dockerd: bool
    hostname: str
    state: str  # swarm node state (ready, down, ...) or "-" when not in the swarm
    role: str  # manager, manager (leader), worker or "-"


@dataclass(frozen=True)
class LabStatus:
    state: LabState
    nodes: tuple[NodeStatus, ...]
    registry: bool
    forwarder: bool
    prometheus_forwarder: bool = False

    @property
    def healthy(self) -> bool:
        return self.registry and all(n.dockerd and n.state == "ready" for n in self.nodes)


def status() -> LabStatus:
    """The recorded lab, checked now; UserError when no lab is up."""
    from dockercoins.images import registry

    state = lab_state.load()
    if state is None:
        raise UserError("no lab is up: bring one up with `dockercoins lab up`")
    swarm = _swarm_view()
    found = []
    for node in state.nodes:
        alive = nodes.daemon(labnet.node_index(node.name)).healthy()
        node_state, role = swarm.get(node.name, ("-", "-"))
        found.append(NodeStatus(node.name, node.ip, alive, node.name, node_state, role))
    return LabStatus(
        state=state,
        nodes=tuple(found),
        registry=registry.answers(labnet.REGISTRY_ADDRESS),
        forwarder=labforward.running_pid(labforward.WEBUI) is not None,
        prometheus_forwarder=labforward.running_pid(labforward.PROMETHEUS) is not None,
    )


def _swarm_view() -> dict[str, tuple[str, str]]:
    """hostname -> (state, role) from node1's node list ({} when it cannot tell)."""
    import docker.errors

    if not nodes.daemon(1).answers():
        return {}
    client = nodes.client(1, timeout=10)
    try:
        view = {}
        for node in client.nodes.list():
            role = node.attrs["Spec"]["Role"]
            if node.attrs.get("ManagerStatus", {}).get("Leader"):
                role += " (leader)"
            view[node.attrs["Description"]["Hostname"]] = (node.attrs["Status"]["State"], role)
        return view
    except docker.errors.APIError:
        return {}
    finally:
        client.close()
