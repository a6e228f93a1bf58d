"""The lab's swarm: init on node1, join of the others, a bounded wait until every node is
ready. Each step checks what is there first, so a swarm that works is kept as it is."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from dockercoins.errors import UserError
from dockercoins.lab import network as labnet
from dockercoins.lab import nodes

SWARM_PORT = 2377
READY_TIMEOUT = 90.0


def swarm_info(client: Any) -> dict[str, Any]:
    """The `Swarm` part of the daemon's info ({} when it has none)."""
    info: dict[str, Any] = client.info().get("Swarm", {})
    return info


def _manager_address() -> str:
    return f"{labnet.node_ip(1)}:{SWARM_PORT}"


def _manager_ok(info: dict[str, Any]) -> bool:
    return bool(
        info.get("LocalNodeState") == "active"
        and info.get("ControlAvailable")
        and info.get("NodeAddr") == labnet.node_ip(1)
    )


def _worker_ok(info: dict[str, Any], index: int, cluster_nodes: dict[str, Any]) -> bool:
    return bool(
        info.get("LocalNodeState") == "active"
        and not info.get("ControlAvailable")
        and info.get("NodeAddr") == labnet.node_ip(index)
        and info.get("NodeID") in cluster_nodes
        and any(peer.get("Addr") == _manager_address() for peer in info.get("RemoteManagers") or [])
    )


def leave(client: Any) -> None:
    """Make the daemon leave whatever swarm it is in (forced; no-op when it is in none)."""
    import docker.errors

    if swarm_info(client).get("LocalNodeState", "inactive") != "inactive":
        with contextlib.suppress(docker.errors.APIError):
            client.swarm.leave(force=True)


def ensure_swarm(count: int) -> None:
    """node1 the manager, nodes 2..count its workers, all ready; stale entries removed."""
    clients = {i: nodes.client(i, timeout=60) for i in range(1, count + 1)}
    try:
        manager = clients[1]
        if not _manager_ok(swarm_info(manager)):
            for client in clients.values():
                leave(client)
            manager.swarm.init(advertise_addr=labnet.node_ip(1), listen_addr=_manager_address())
        manager.swarm.reload()
        token = manager.swarm.attrs["JoinTokens"]["Worker"]
        cluster_nodes = {node.id: node for node in manager.nodes.list()}
        for index in range(2, count + 1):
            client = clients[index]
            if _worker_ok(swarm_info(client), index, cluster_nodes):
                continue
            leave(client)
            client.swarm.join(
                remote_addrs=[_manager_address()],
                join_token=token,
                advertise_addr=labnet.node_ip(index),
                listen_addr=f"{labnet.node_ip(index)}:{SWARM_PORT}",
            )
        wanted = {swarm_info(clients[i]).get("NodeID") for i in range(1, count + 1)}
        _wait_ready(manager, wanted)
        _forget_stale_nodes(manager, wanted)
    finally:
        for client in clients.values():
            client.close()


def _wait_ready(manager: Any, wanted: set[Any]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = {
            node.attrs["Description"]["Hostname"]: node.attrs["Status"]["State"]
            for node in manager.nodes.list()
            if node.id in wanted
        }
        if len(states) == len(wanted) and all(state == "ready" for state in states.values()):
            return
        time.sleep(0.5)
    not_ready = ", ".join(f"{name}={state}" for name, state in sorted(states.items()))
    raise UserError(f"swarm nodes not ready within {READY_TIMEOUT:.0f} s: {not_ready or 'none'}")


def _forget_stale_nodes(manager: Any, wanted: set[Any]) -> None:
    """Nodes from earlier joins (a worker that left and joined again) show up as `down`."""
    import docker.errors

    for node in manager.nodes.list():
        if node.id not in wanted and node.attrs["Status"]["State"] == "down":
            with contextlib.suppress(docker.errors.APIError):
                node.remove(force=True)
