"""What a running lab looks like, as `lab up` records it in <state>/lab/lab.json.

Other commands read it to find the manager (DOCKER_HOST) and the lab's registry.
"""

from __future__ import annotations

import json
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

    @property
    def manager(self) -> LabNode:
        return self.nodes[0]


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
    )


def forget() -> None:
    state_file().unlink(missing_ok=True)
