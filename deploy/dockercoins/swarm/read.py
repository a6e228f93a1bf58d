"""Reading the swarm: its nodes, our services and their tasks (Docker API answers)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dockercoins import ui
from dockercoins.errors import UserError
from dockercoins.names import SWARM_SERVICES
from dockercoins.swarm.specs import Spec


@dataclass(frozen=True)
class Node:
    id: str
    hostname: str
    state: str  # ready, down, unknown, disconnected
    availability: str  # active, pause, drain
    role: str
    addr: str
    labels: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def schedulable(self) -> bool:
        return self.state == "ready" and self.availability == "active"


def nodes(client: Any) -> list[Node]:
    """The swarm's nodes, by hostname."""
    result = [
        Node(
            id=raw["ID"],
            hostname=raw.get("Description", {}).get("Hostname", raw["ID"][:12]),
            state=raw.get("Status", {}).get("State", "unknown"),
            availability=raw.get("Spec", {}).get("Availability", "active"),
            role=raw.get("Spec", {}).get("Role", "worker"),
            addr=raw.get("Status", {}).get("Addr", ""),
            labels=dict(raw.get("Spec", {}).get("Labels") or {}),
        )
        for raw in client.api.nodes()
    ]
    return sorted(result, key=lambda node: node.hostname)


def warn_unready_nodes(all_nodes: list[Node]) -> None:
    """A warning per node that is not ready; UserError when none is."""
    down = [node for node in all_nodes if node.state != "ready"]
    for node in down:
        ui.info(
            f"warning: node {node.hostname} is {node.state}: no tasks will run there "
            "(global services count only ready nodes)"
        )
    if all_nodes and len(down) == len(all_nodes):
        raise UserError("no swarm node is ready: nothing can run")


def our_services(client: Any, names: Iterable[str] = SWARM_SERVICES) -> dict[str, Spec]:
    """name -> the service as the API returns it (ID, Version, Spec, UpdateStatus...)."""
    wanted = set(names)
    return {
        raw["Spec"]["Name"]: raw for raw in client.api.services() if raw["Spec"]["Name"] in wanted
    }


def require(services: dict[str, Spec], name: str) -> Spec:
    """The service `name`, or UserError saying to deploy first."""
    raw = services.get(name)
    if raw is None:
        raise UserError(f"service {name!r} is not deployed: run `dockercoins deploy` first")
    return raw


def tasks_of(client: Any, services: dict[str, Spec]) -> dict[str, list[Spec]]:
    """name -> that service's tasks (every state)."""
    by_id = {raw["ID"]: name for name, raw in services.items()}
    result: dict[str, list[Spec]] = {name: [] for name in services}
    for task in client.api.tasks():
        name = by_id.get(task.get("ServiceID", ""))
        if name:
            result[name].append(task)
    return result


def _container_key(template: Spec) -> tuple[str, list[str]]:
    container = template.get("ContainerSpec", {})
    return str(container.get("Image", "")), sorted(container.get("Env") or [])


def task_running(task: Spec, ready: set[str], service_spec: Spec | None = None) -> bool:
    """A task that runs, on a ready node, and (given the service's spec) runs its current
    image and settings: right after an update the old task is still running."""
    current = service_spec is None or _container_key(task.get("Spec", {})) == _container_key(
        service_spec.get("TaskTemplate", {})
    )
    return (
        task.get("DesiredState") == "running"
        and task.get("Status", {}).get("State") == "running"
        and task.get("NodeID") in ready
        and current
    )
