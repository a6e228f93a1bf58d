"""The multi-node Swarm lab on one host: bring it up, report on it, tear it down.

`up` makes (or repairs) in order: the bridge and its FORWARD rule, one namespace and one
dockerd per node, the registry on the bridge address, the base images on every node, the
swarm (init on node1, join of the others), the web UI forwarder; then records the lab
(lab_state). Each step checks what is there first and keeps what works, so a second `up`
is fast and a crashed run is cleaned and restarted. `down` removes all of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockercoins import ui
from dockercoins.errors import UserError
from dockercoins.host import mounts
from dockercoins.lab import forward as labforward
from dockercoins.lab import network as labnet
from dockercoins.lab import nodes as labdaemon
from dockercoins.lab import state as lab_state
from dockercoins.lab.nodes import NodeDirs
from dockercoins.lab.state import LabNode, LabState, lab_dir

DEFAULT_NODES = 3
DEFAULT_FORWARD_PORT = 8000
WEBUI_PORT = 8000
SWARM_PORT = 2377
READY_TIMEOUT = 90.0
LOCK_FILE = Path("/run/lock/dockercoins-lab.lock")


def registry_address() -> str:
    return f"{labnet.HOST_IP}:{labnet.REGISTRY_PORT}"


def require_root() -> None:
    import os

    if os.geteuid() != 0:
        raise UserError("the lab needs root (network namespaces, bridges, dockerd): run as root")
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables"), ("nsenter", "util-linux")):
        if not shutil.which(tool):
            raise UserError(f"{tool} is missing: apt-get install {package}")
    labdaemon.dockerd_binary()


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One `lab up`/`lab down` at a time on this host (bounded wait): the namespaces and
    the bridge are host-wide, so the lock is too."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("w") as handle:
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise UserError(
                        "another `dockercoins lab` command holds the lab lock"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _state(count: int, forward_port: int) -> LabState:
    nodes = tuple(
        LabNode(name=labnet.node_name(i), ip=labnet.node_ip(i), socket=str(NodeDirs(i).socket))
        for i in range(1, count + 1)
    )
    return LabState(
        nodes=nodes,
        bridge=labnet.BRIDGE,
        host_ip=labnet.HOST_IP,
        registry=registry_address(),
        forward_port=forward_port,
    )


def _existing_node_indexes() -> list[int]:
    """Nodes that have something on the host: a namespace or a folder."""
    found = {labnet.node_index(name) for name in labnet.namespaces()}
    if lab_dir().exists():
        found |= {
            labnet.node_index(path.name)
            for path in lab_dir().iterdir()
            if path.is_dir() and labnet.NODE_NAME.match(path.name)
        }
    return sorted(found)


# --- up ----------------------------------------------------------------------------


def up(count: int = DEFAULT_NODES, forward_port: int = DEFAULT_FORWARD_PORT) -> LabState:
    if not 1 <= count <= labnet.MAX_NODES:
        raise UserError(f"--nodes must be between 1 and {labnet.MAX_NODES}, got {count}")
    if not 0 < forward_port < 65536:
        raise UserError(f"--forward-port must be a TCP port (1-65535), got {forward_port}")
    require_root()
    with _locked():
        state = _state(count, forward_port)
        extra = [i for i in _existing_node_indexes() if i > count]
        if extra:
            with ui.step(f"remove nodes beyond {count}: {', '.join(map(labnet.node_name, extra))}"):
                for index in extra:
                    _remove_node(index, purge=False)
        with ui.step(f"bridge {labnet.BRIDGE} ({labnet.HOST_IP}/{labnet.PREFIX_LEN})"):
            labnet.ensure_bridge()
            labnet.ensure_forward_rule()
        for index in range(1, count + 1):
            node = NodeDirs(index)
            with ui.step(f"{node.name}: namespace and dockerd ({labnet.node_ip(index)})"):
                _ensure_node(index)
        with ui.step(f"registry on {registry_address()}"):
            _ensure_registry()
        with ui.step("base images on every node"):
            _ensure_images(count)
        with ui.step(f"swarm: init on node1, join of {count - 1} workers"):
            _ensure_swarm(count)
        lab_state.save(state)
        with ui.step(f"web UI forwarder 127.0.0.1:{forward_port} -> nodes:{WEBUI_PORT}"):
            labforward.start(forward_port, [f"{node.ip}:{WEBUI_PORT}" for node in state.nodes])
        return state


def _ensure_node(index: int) -> None:
    node = NodeDirs(index)
    if labnet.node_net_ok(index) and labdaemon.healthy(node):
        return
    labdaemon.stop(node)  # whatever a crashed run left: processes, mounts, exec root
    labnet.delete_node_net(index)
    labnet.create_node_net(index)
    labdaemon.start(node, registry_address())


def _ensure_registry() -> None:
    from dockercoins.images import registry

    registry.up(registry_address(), lab_dir() / "registry")


def registry_answers() -> bool:
    from dockercoins.images import registry

    return registry.answers(registry_address())


def _ensure_images(count: int) -> None:
    from dockercoins.images import base as baseimage

    for index in range(1, count + 1):
        client = labdaemon.client(NodeDirs(index), timeout=600)
        try:
            baseimage.import_base_images(client)
        finally:
            client.close()


# --- the swarm ---------------------------------------------------------------------


def _swarm_info(client: Any) -> dict[str, Any]:
    info: dict[str, Any] = client.info().get("Swarm", {})
    return info


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
        and any(
            peer.get("Addr") == f"{labnet.node_ip(1)}:{SWARM_PORT}"
            for peer in info.get("RemoteManagers") or []
        )
    )


def _leave(client: Any) -> None:
    import docker.errors

    if _swarm_info(client).get("LocalNodeState", "inactive") != "inactive":
        with contextlib.suppress(docker.errors.APIError):
            client.swarm.leave(force=True)


def _ensure_swarm(count: int) -> None:
    clients = {i: labdaemon.client(NodeDirs(i), timeout=60) for i in range(1, count + 1)}
    try:
        manager = clients[1]
        if not _manager_ok(_swarm_info(manager)):
            for client in clients.values():
                _leave(client)
            manager.swarm.init(
                advertise_addr=labnet.node_ip(1),
                listen_addr=f"{labnet.node_ip(1)}:{SWARM_PORT}",
            )
        manager.swarm.reload()
        token = manager.swarm.attrs["JoinTokens"]["Worker"]
        cluster_nodes = {node.id: node for node in manager.nodes.list()}
        for index in range(2, count + 1):
            client = clients[index]
            if _worker_ok(_swarm_info(client), index, cluster_nodes):
                continue
            _leave(client)
            client.swarm.join(
                remote_addrs=[f"{labnet.node_ip(1)}:{SWARM_PORT}"],
                join_token=token,
                advertise_addr=labnet.node_ip(index),
                listen_addr=f"{labnet.node_ip(index)}:{SWARM_PORT}",
            )
        wanted = {_swarm_info(clients[i]).get("NodeID") for i in range(1, count + 1)}
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


# --- status ------------------------------------------------------------------------


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

    @property
    def healthy(self) -> bool:
        return self.registry and all(n.dockerd and n.state == "ready" for n in self.nodes)


def status() -> LabStatus:
    state = lab_state.load()
    if state is None:
        raise UserError("no lab is up: bring one up with `dockercoins lab up`")
    index_of = {node.name: labnet.node_index(node.name) for node in state.nodes}
    swarm = _swarm_view(NodeDirs(1))
    nodes = []
    for node in state.nodes:
        dirs = NodeDirs(index_of[node.name])
        alive = labdaemon.healthy(dirs)
        node_state, role = swarm.get(node.name, ("-", "-"))
        nodes.append(NodeStatus(node.name, node.ip, alive, node.name, node_state, role))
    return LabStatus(
        state=state,
        nodes=tuple(nodes),
        registry=registry_answers(),
        forwarder=labforward.running_pid() is not None,
    )


def _swarm_view(manager: NodeDirs) -> dict[str, tuple[str, str]]:
    """hostname -> (state, role) from the manager's node list ({} when it cannot tell)."""
    import docker.errors

    if not labdaemon.answers(manager):
        return {}
    client = labdaemon.client(manager, timeout=10)
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


# --- down --------------------------------------------------------------------------


def down(purge: bool = False) -> None:
    """Remove everything `up` made. Node data roots (images) and the registry's storage are
    kept for a fast next `up` unless `purge`; the swarm state is always removed."""
    require_root()
    with _locked():
        with ui.step("web UI forwarder"):
            labforward.stop()
        for index in _existing_node_indexes():
            with ui.step(f"{labnet.node_name(index)}: dockerd, namespace, mounts"):
                _remove_node(index, purge)
        with ui.step("registry"):
            _registry_down()
            if purge:
                shutil.rmtree(lab_dir() / "registry", ignore_errors=True)
        with ui.step(f"bridge {labnet.BRIDGE} and its FORWARD rule"):
            labnet.remove_forward_rule()
            labnet.delete_bridge()
        lab_state.forget()
        left = mounts.mounts_under(lab_dir())
        if left:
            raise UserError(f"{len(left)} mounts are left under {lab_dir()}, e.g. {left[0]}")


def _remove_node(index: int, purge: bool) -> None:
    node = NodeDirs(index)
    if labdaemon.answers(node):
        client = labdaemon.client(node, timeout=30)
        try:
            _leave(client)
        finally:
            client.close()
    labdaemon.stop(node)
    labnet.delete_node_net(index)
    if purge:
        shutil.rmtree(node.root, ignore_errors=True)
    else:
        shutil.rmtree(node.data_root / "swarm", ignore_errors=True)


def _registry_down() -> None:
    from dockercoins.images import registry

    registry.down(lab_dir() / "registry")
