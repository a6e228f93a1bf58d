"""What a running lab looks like, as `lab up` records it in <state>/lab/lab.json.

Other commands read it to find a live manager (DOCKER_HOST) and the lab's registry: the
recorded managers are tried in order (then the other nodes, in case one was promoted by
hand) and the first whose dockerd answers as a reachable manager of a swarm with a leader
is used, so the lab stays usable while node1 is down.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from dockercoins.names import PROMETHEUS_PORT, WEBUI_PUBLISHED_PORT
from dockercoins.paths import state_dir


@dataclass(frozen=True)
class LabNode:
    name: str  # network namespace and hostname, e.g. "node1"
    ip: str  # address on the lab bridge
    socket: str  # path of the node's dockerd unix socket

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"


@dataclass(frozen=True)
class LabState:
    nodes: tuple[LabNode, ...]
    bridge: str  # host bridge name
    host_ip: str  # the bridge's address on the host side
    registry: str  # host:port of the registry every node can reach
    # the host's 127.0.0.1 port forwarded to the nodes' web UI port
    forward_port: int = WEBUI_PUBLISHED_PORT
    # the host's 127.0.0.1 port forwarded to the nodes' Prometheus port
    prometheus_port: int = PROMETHEUS_PORT
    # names of the nodes `lab up` made managers, in the order they are tried
    managers: tuple[str, ...] = ()

    @property
    def manager_nodes(self) -> tuple[LabNode, ...]:
        """The recorded managers (node1 alone for a record from before there were more)."""
        named = tuple(node for node in self.nodes if node.name in self.managers)
        return named or self.nodes[:1]

    @property
    def manager(self) -> LabNode:
        """The first recorded manager, then any other node, that answers now as a reachable
        manager (asked each time); the first recorded manager when none does."""
        managers = self.manager_nodes
        others = tuple(node for node in self.nodes if node not in managers)
        for node in managers + others:
            if reachable_manager(node):
                return node
        return managers[0]


PROBE_TIMEOUT = 3  # seconds a node's dockerd has to answer the probe


def reachable_manager(node: LabNode) -> bool:
    """The node's dockerd answers, is an active swarm manager and its swarm counts it as a
    reachable manager (which only a swarm with a leader answers)."""
    if not os.path.exists(node.socket):
        return False
    import docker
    import docker.errors
    import requests

    try:
        client = docker.DockerClient(base_url=node.docker_host, timeout=PROBE_TIMEOUT)
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return False
    try:
        swarm = client.info().get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            return False
        status = client.api.inspect_node(swarm["NodeID"]).get("ManagerStatus") or {}
        return bool(status.get("Reachability") == "reachable")
    except (docker.errors.DockerException, requests.exceptions.RequestException, KeyError):
        return False
    finally:
        client.close()


def lab_dir() -> Path:
    path = state_dir() / "lab"
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_file() -> Path:
    return lab_dir() / "lab.json"


def save(state: LabState) -> None:
    data = asdict(state)
    tmp = state_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(state_file())


def load() -> LabState | None:
    """The recorded lab, or None when no lab was brought up (or it was torn down)."""
    try:
        data = json.loads(state_file().read_text())
    except (OSError, ValueError):
        return None
    nodes = tuple(LabNode(**node) for node in data["nodes"])
    return LabState(
        nodes=nodes,
        bridge=data["bridge"],
        host_ip=data["host_ip"],
        registry=data["registry"],
        forward_port=int(data.get("forward_port", WEBUI_PUBLISHED_PORT)),
        prometheus_port=int(data.get("prometheus_port", PROMETHEUS_PORT)),
        managers=tuple(str(name) for name in data.get("managers", ())),
    )


def forget() -> None:
    state_file().unlink(missing_ok=True)
