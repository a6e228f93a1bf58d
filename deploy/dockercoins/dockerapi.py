"""A Docker SDK client for DOCKER_HOST, else the current Docker context (DOCKER_CONTEXT,
else `docker context use`), else the default socket, or one clear UserError; and the one
place a Docker API or connection failure becomes a one-line UserError."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker
import docker.errors

from dockercoins.errors import UserError

HOW_TO_START = (
    "start one with `dockerd &` (Debian: apt-get install docker.io), "
    "or bring the lab up with `dockercoins lab up` and export the DOCKER_HOST it prints"
)


DEFAULT_SOCKET = "unix:///var/run/docker.sock"
DEFAULT_CONTEXT = "default"


def docker_config_dir() -> Path:
    """Where the docker CLI keeps its config.json and contexts: DOCKER_CONFIG, ~/.docker."""
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def current_context() -> str:
    """DOCKER_CONTEXT, else the `currentContext` of config.json (`docker context use`),
    else "default" (the name the docker CLI gives DOCKER_HOST or the default socket)."""
    if os.environ.get("DOCKER_CONTEXT"):
        return os.environ["DOCKER_CONTEXT"]
    try:
        config = json.loads((docker_config_dir() / "config.json").read_text())
    except (OSError, ValueError):
        return DEFAULT_CONTEXT
    name = config.get("currentContext") if isinstance(config, dict) else None
    return str(name) if name else DEFAULT_CONTEXT


def context_endpoint(name: str) -> tuple[str, Any | None]:
    """(host, TLS config or None) of the Docker context `name`, read from the docker CLI's
    context store as the CLI does (the SDK finds that store only next to a config.json,
    which `docker context create` does not write); UserError when there is no such context."""
    import docker.tls

    context_id = hashlib.sha256(name.encode()).hexdigest()
    store = docker_config_dir() / "contexts"
    try:
        meta = json.loads((store / "meta" / context_id / "meta.json").read_text())
        endpoint = meta["Endpoints"]["docker"]
        host = str(endpoint["Host"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(
            f"Docker context {name!r} not found in {store} (`docker context ls` lists them)"
        ) from None
    tls_dir = store / "tls" / context_id / "docker"
    ca, cert, key = (tls_dir / "ca.pem", tls_dir / "cert.pem", tls_dir / "key.pem")
    if not (ca.exists() or cert.exists()):
        return host, None
    tls = docker.tls.TLSConfig(
        client_cert=(str(cert), str(key)) if cert.exists() and key.exists() else None,
        ca_cert=str(ca) if ca.exists() else None,
        verify=not endpoint.get("SkipTLSVerify", False),
    )
    return host, tls


def default_where() -> str:
    """Where connect() without a base URL connects: DOCKER_HOST, else the current Docker
    context's host, else the default socket."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    name = current_context()
    if name == DEFAULT_CONTEXT:
        return DEFAULT_SOCKET
    try:
        return f"{context_endpoint(name)[0]} (Docker context {name!r})"
    except UserError:
        return f"the Docker context {name!r}"


def _client(base_url: str | None, timeout: int) -> Any:
    if base_url:
        return docker.DockerClient(base_url=base_url, timeout=timeout)
    name = current_context()
    if os.environ.get("DOCKER_HOST") or name == DEFAULT_CONTEXT:
        return docker.from_env(timeout=timeout, use_context=False)
    host, tls = context_endpoint(name)
    return docker.DockerClient(base_url=host, tls=tls or False, timeout=timeout)


def connect(base_url: str | None = None, timeout: int = 120) -> Any:
    """A connected docker.DockerClient for `base_url`, else for DOCKER_HOST, else for the
    current Docker context, else the default socket; UserError when no daemon answers."""
    where = base_url or default_where()
    try:
        client = _client(base_url, timeout)
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
