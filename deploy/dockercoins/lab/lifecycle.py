"""The multi-node Swarm lab on one host: bring it up, tear it down.

`up` makes (or repairs) in order: the bridge and its FORWARD rule, one namespace and one
dockerd per node, the registry on the bridge address, the base images on every node, the
swarm (nodes 1..M managers, the rest workers: lab.cluster), the web UI and Prometheus
forwarders; then records the lab (lab.state). Each step checks what is there first and
keeps what works, so a second `up` is fast and a crashed run is cleaned and restarted.
`down` removes all of it, then checks that nothing is left (lab.leftovers).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from dockercoins import ui
from dockercoins.errors import UserError
from dockercoins.host import cgroups
from dockercoins.lab import cluster, host_checks, leftovers, nodes
from dockercoins.lab import forward as labforward
from dockercoins.lab import network as labnet
from dockercoins.lab import state as lab_state
from dockercoins.lab.state import LabNode, LabState, lab_dir
from dockercoins.names import PROMETHEUS_PORT, WEBUI_PUBLISHED_PORT

if TYPE_CHECKING:
    from dockercoins.images.registry_auth import Credentials

LOCK_FILE = Path("/run/lock/dockercoins-lab.lock")
LOCK_WAIT = 600.0  # seconds a lab command waits for another one to finish


def require_root() -> None:
    """Root, the tools, dockerd, namespaces and cgroups: one line for what is missing."""
    host_checks.require_host()


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One `lab up`/`lab down`/`lab node` at a time on this host (bounded wait, LOCK_WAIT
    seconds, said in one line when it has to wait): the namespaces and the bridge are
    host-wide, so the lock is too. The holder writes its pid into the lock file."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("a+") as handle:  # "a+": never truncate the holder's pid
        deadline = time.monotonic() + LOCK_WAIT
        said = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _lock_holder(handle)
                if time.monotonic() > deadline:
                    raise UserError(
                        f"another `dockercoins lab` command{holder} still holds the lab lock "
                        f"{LOCK_FILE} after {LOCK_WAIT:.0f} s"
                    ) from None
                if not said:
                    ui.info(
                        f"another `dockercoins lab` command{holder} holds the lab lock "
                        f"{LOCK_FILE}: waiting for it (at most {LOCK_WAIT:.0f} s)"
                    )
                    said = True
                time.sleep(0.5)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_holder(handle: IO[str]) -> str:
    """The holder as the lock file names it, " (pid N)"; "" when it names none."""
    handle.seek(0)
    text = handle.read().strip()
    return f" (pid {text})" if text.isdigit() else ""


def _state(count: int, forward_port: int, prometheus_port: int, managers: int) -> LabState:
    members = tuple(
        LabNode(name=labnet.node_name(i), ip=labnet.node_ip(i), socket=str(nodes.daemon(i).socket))
        for i in range(1, count + 1)
    )
    return LabState(
        nodes=members,
        bridge=labnet.BRIDGE,
        host_ip=labnet.HOST_IP,
        registry=labnet.REGISTRY_ADDRESS,
        forward_port=forward_port,
        prometheus_port=prometheus_port,
        managers=tuple(labnet.node_name(i) for i in range(1, managers + 1)),
    )


def _existing_node_indexes() -> list[int]:
    """Nodes that have something on the host: a namespace, a folder or a cgroup."""
    found = {labnet.node_index(name) for name in labnet.namespaces()}
    found |= {
        labnet.node_index(name)
        for name in cgroups.children(nodes.CGROUP_ROOT)
        if labnet.NODE_NAME.match(name)
    }
    if lab_dir().exists():
        found |= {
            labnet.node_index(path.name)
            for path in lab_dir().iterdir()
            if path.is_dir() and labnet.NODE_NAME.match(path.name)
        }
    return sorted(found)


# --- up ----------------------------------------------------------------------------


def up(
    count: int = labnet.DEFAULT_NODES,
    forward_port: int = WEBUI_PUBLISHED_PORT,
    prometheus_port: int = PROMETHEUS_PORT,
    managers: int | None = None,
) -> LabState:
    """Bring up (or repair) a lab of `count` nodes (1 to labnet.MAX_NODES), nodes 1 to
    `managers` its managers (default cluster.default_managers), its web UI forwarded from
    127.0.0.1:`forward_port` and Prometheus from 127.0.0.1:`prometheus_port`; returns what
    it recorded."""
    if not 1 <= count <= labnet.MAX_NODES:
        raise ValueError(f"a lab has 1 to {labnet.MAX_NODES} nodes, not {count}")
    managers = cluster.default_managers(count) if managers is None else managers
    cluster.check_managers(managers, count)
    require_root()
    with locked():
        state = _state(count, forward_port, prometheus_port, managers)
        extra = [i for i in _existing_node_indexes() if i > count]
        if extra:
            with ui.step(f"remove nodes beyond {count}: {', '.join(map(labnet.node_name, extra))}"):
                cluster.release(extra, staying=list(range(1, count + 1)))
                for index in extra:
                    _remove_node(index, purge=False)
        with ui.step(f"bridge {labnet.BRIDGE} ({labnet.HOST_IP}/{labnet.PREFIX_LEN})"):
            labnet.ensure_bridge()
            labnet.ensure_forward_rule()
        for index in range(1, count + 1):
            name = labnet.node_name(index)
            with ui.step(f"{name}: namespace and dockerd ({labnet.node_ip(index)})"):
                ensure_node(index)
        with ui.step(f"registry on {labnet.REGISTRY_ADDRESS}"):
            _ensure_registry()
        with ui.step("base images on every node"):
            _ensure_images(count)
        with ui.step(f"swarm: {managers} managers, {count - managers} workers"):
            cluster.ensure_swarm(count, managers, restart=restart_node)
        lab_state.save(state)
        for forward, port in (
            (labforward.WEBUI, forward_port),
            (labforward.PROMETHEUS, prometheus_port),
        ):
            targets = [f"{node.ip}:{forward.node_port}" for node in state.nodes]
            with ui.step(f"{forward.what} forwarder 127.0.0.1:{port} -> nodes:{forward.node_port}"):
                labforward.start(port, targets, forward=forward)
        return state


def ensure_node(index: int) -> None:
    """The node's namespace and dockerd as this version makes them: kept when they are,
    else whatever is left of the node is cleaned and it is made again."""
    if (
        labnet.node_net_ok(index)
        and nodes.daemon(index).healthy()
        and nodes.runs_current_command(index)
    ):
        return
    nodes.stop(index)  # whatever a crashed run left: processes, mounts, exec root
    labnet.delete_node_net(index)
    labnet.create_node_net(index)
    nodes.start(index)


def restart_node(index: int) -> None:
    """Stop the node's dockerd (cleanly) and start it again as `up` makes it."""
    nodes.stop(index)
    ensure_node(index)


def _ensure_registry() -> None:
    from dockercoins.images import registry

    registry.up(labnet.REGISTRY_ADDRESS, lab_dir() / "registry")


def registry_credentials() -> Credentials:
    """The lab registry's user and password file (the password is never printed)."""
    from dockercoins.images import registry

    return registry.credentials(lab_dir() / "registry")


def _ensure_images(count: int) -> None:
    from dockercoins.images import base as baseimage

    baseimage.import_base_images_on(
        {
            labnet.node_name(index): functools.partial(nodes.client, index, timeout=600)
            for index in range(1, count + 1)
        }
    )


# --- down --------------------------------------------------------------------------


def down(purge: bool = False) -> None:
    """Remove everything `up` made. Node data roots (images) and the registry's storage are
    kept for a fast next `up` unless `purge`; the swarm state is always removed."""
    require_root()
    with locked():
        with ui.step("web UI and Prometheus forwarders"):
            labforward.stop_all()
        indexes = _existing_node_indexes()
        recorded = lab_state.load()
        if recorded is not None and len(indexes) > 1:
            # one manager left before the nodes go: leaving never waits for a lost majority
            keep = labnet.node_index(recorded.manager.name)
            with ui.step(f"swarm: every manager but {labnet.node_name(keep)} demoted"):
                cluster.release([i for i in indexes if i != keep], staying=[keep])
        for index in indexes:
            with ui.step(f"{labnet.node_name(index)}: dockerd, namespace, mounts"):
                _remove_node(index, purge)
        with ui.step("registry"):
            _registry_down()
            if purge:
                shutil.rmtree(lab_dir() / "registry", ignore_errors=True)
        with ui.step(f"bridge {labnet.BRIDGE} and its FORWARD rule"):
            labnet.remove_forward_rule()
            labnet.delete_bridge()
        with ui.step(f"cgroups {nodes.CGROUP_ROOT}"):
            cgroups.kill_all(nodes.CGROUP_ROOT)
            cgroups.remove(nodes.CGROUP_ROOT)
        lab_state.forget()
        left = leftovers.leftovers()
        if left:
            raise UserError(f"lab down left {'; '.join(left)}")


def _remove_node(index: int, purge: bool) -> None:
    node = nodes.daemon(index)
    if node.answers():
        client = nodes.client(index, timeout=30)
        try:
            cluster.leave(client)
        finally:
            client.close()
    nodes.stop(index)
    labnet.delete_node_net(index)
    if purge:
        shutil.rmtree(node.root, ignore_errors=True)
    else:
        shutil.rmtree(node.data_root / "swarm", ignore_errors=True)


def _registry_down() -> None:
    from dockercoins.images import registry

    registry.down(lab_dir() / "registry")
