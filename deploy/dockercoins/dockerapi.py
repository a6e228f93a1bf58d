"""A Docker SDK client for DOCKER_HOST (or the default socket), or one clear UserError; and
the one place a Docker API or connection failure becomes a one-line UserError."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import docker
import docker.errors

from dockercoins.errors import UserError

HOW_TO_START = (
    "start one with `dockerd &` (Debian: apt-get install docker.io), "
    "or bring the lab up with `dockercoins lab up` and export the DOCKER_HOST it prints"
)


def default_where() -> str:
    """DOCKER_HOST, else the default socket: where docker.from_env() connects."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def connect(base_url: str | None = None, timeout: int = 120) -> Any:
    """A connected docker.DockerClient; raises UserError when no daemon answers."""
    where = base_url or default_where()
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


def one_line(text: object, limit: int = 400) -> str:
    """An error's text on one line, at most `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@contextmanager
def docker_errors(
    daemon: str = "the Docker daemon",
    where: Callable[[], str] = default_where,
    failed: str | None = None,
) -> Iterator[None]:
    """Turn a Docker API or connection failure in the middle of a command into one line:
    `[<failed>: ]<daemon> refused: ...` or `[<failed>: ]lost <daemon> (<where()>): ...`."""
    import requests

    prefix = f"{failed}: " if failed else ""
    try:
        yield
    except docker.errors.APIError as error:
        explanation = error.explanation or str(error)
        if isinstance(explanation, bytes):
            explanation = explanation.decode(errors="replace")
        raise UserError(f"{prefix}{daemon} refused: {one_line(explanation)}") from error
    except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
        raise UserError(f"{prefix}lost {daemon} ({where()}): {one_line(error)}") from error
