"""Which swarm manager a command talks to, and one checked client for it.

DOCKER_HOST, else the current Docker context (DOCKER_CONTEXT or `docker context use`), else
a manager of the lab when a lab is up (its managers tried in order, the first that answers
as a reachable manager: node1 down does not stop the tool), else the default socket.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import Any

from dockercoins.dockerapi import connect, docker_errors
from dockercoins.errors import UserError
from dockercoins.lab import state as lab_state


def manager_url() -> tuple[str | None, str]:
    """(base_url for the SDK or None for DOCKER_HOST/default, a description for messages)."""
    if os.environ.get("DOCKER_HOST"):
        return None, os.environ["DOCKER_HOST"]
    from docker.context.config import get_current_context_name

    context = os.environ.get("DOCKER_CONTEXT") or get_current_context_name()
    if context and context != "default":
        return None, f"the Docker context {context!r}"
    lab = lab_state.load()
    if lab and any(os.path.exists(node.socket) for node in lab.nodes):
        manager = lab.manager  # the first that answers as a reachable manager
        return manager.docker_host, f"{manager.docker_host} (the lab's manager {manager.name})"
    return None, "unix:///var/run/docker.sock"


def connect_manager() -> Any:
    """A docker.DockerClient on a swarm manager, or one clear UserError."""
    base_url, where = manager_url()
    client = connect(base_url)
    swarm = client.info().get("Swarm", {})
    if swarm.get("LocalNodeState") != "active":
        raise UserError(
            f"the Docker daemon at {where} is not part of a swarm: run `docker swarm init` "
            "there, or `dockercoins lab up` for a multi-node lab"
        )
    if not swarm.get("ControlAvailable"):
        raise UserError(
            f"the Docker daemon at {where} is a swarm worker, not a manager: "
            "point DOCKER_HOST at a manager node"
        )
    return client


def manager_errors() -> AbstractContextManager[None]:
    """docker_errors() worded for the swarm manager: `the swarm manager refused: ...`."""
    return docker_errors("the swarm manager", lambda: manager_url()[1])


def published_urls(explicit: str | None, port: int) -> list[str]:
    """Where to reach what the swarm publishes on `port`: the given URL, else loopback (the
    lab's forwarder, or a local swarm) and the lab's node addresses. Never any other address."""
    if explicit:
        return [explicit.rstrip("/")]
    urls = [f"http://127.0.0.1:{port}"]
    lab = lab_state.load()
    if lab:
        urls += [f"http://{node.ip}:{port}" for node in lab.nodes]
    return urls
