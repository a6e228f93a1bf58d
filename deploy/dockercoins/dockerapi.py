"""A Docker SDK client for DOCKER_HOST (or the default socket), or one clear UserError."""

from __future__ import annotations

import os
from typing import Any

import docker
import docker.errors

from dockercoins.errors import UserError

HOW_TO_START = (
    "start one with `dockerd &` (Debian: apt-get install docker.io), "
    "or bring the lab up with `dockercoins lab up` and export the DOCKER_HOST it prints"
)


def connect(base_url: str | None = None, timeout: int = 120) -> Any:
    """A connected docker.DockerClient; raises UserError when no daemon answers."""
    where = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = (
            docker.DockerClient(base_url=base_url, timeout=timeout)
            if base_url
            else docker.from_env(timeout=timeout)
        )
        client.ping()
    except docker.errors.DockerException as error:
        raise UserError(f"no Docker daemon answers at {where}: {HOW_TO_START}") from error
    return client
