"""Which daemon the swarm commands talk to (docs/swarm.md): DOCKER_HOST, else the current
Docker context (DOCKER_CONTEXT, else `docker context use`), else the lab's manager when a
lab is up, else the default socket. Contexts are made with the real docker CLI in a
private DOCKER_CONFIG; each "daemon" is a small Docker API on a unix socket that answers
with its own name, so the test sees which one the tool reached."""

from __future__ import annotations

import json
import os
import shutil
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from dockercoins.errors import UserError
from dockercoins.lab import state as lab_state
from dockercoins.lab.state import LabNode, LabState
from dockercoins.swarm.connect import connect_manager, manager_url

API_VERSION = "1.41"


@dataclass
class FakeDaemon:
    """A Docker Engine API of a swarm manager named `name`, on the unix socket `path`."""

    name: str
    path: Path
    requests: list[str] = field(default_factory=list)

    def answer(self, path: str) -> dict[str, object] | str | None:
        self.requests.append(path)
        route = path.split("?", maxsplit=1)[0].removeprefix(f"/v{API_VERSION}")
        if route == "/_ping":
            return "OK"
        if route == "/version":
            return {"ApiVersion": API_VERSION, "MinAPIVersion": "1.12", "Version": "20.10.24"}
        if route == "/info":
            return {
                "Name": self.name,
                "Swarm": {"LocalNodeState": "active", "ControlAvailable": True},
            }
        return None


def _handler(daemon: FakeDaemon) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = daemon.answer(self.path)
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(404 if body is None else 200)
            self.send_header(
                "Content-Type", "text/plain" if isinstance(body, str) else "application/json"
            )
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[dict[str, FakeDaemon]]:
    """Three fake managers: "context" (what the context points at), "host" (DOCKER_HOST)
    and "lab" (the lab's recorded manager socket)."""
    made: dict[str, FakeDaemon] = {}
    servers: list[_Server] = []
    try:
        for name in ("context", "host", "lab"):
            daemon = FakeDaemon(name, tmp_path / f"{name}.sock")
            server = _Server(str(daemon.path), _handler(daemon))
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
            servers.append(server)
            made[name] = daemon
        yield made
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def docker_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, daemons: dict[str, FakeDaemon]
) -> dict[str, str]:
    """A private DOCKER_CONFIG holding the context `dctest` (made by the real docker CLI)
    that points at the "context" daemon, a lab record naming the "lab" daemon, and no
    DOCKER_HOST or DOCKER_CONTEXT; the environment for the docker CLI."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.fail("the docker CLI is not installed (scripts/install.sh installs docker.io)")
    config = tmp_path / "docker-config"
    config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setenv("DOCKERCOINS_STATE", str(tmp_path / "state"))
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    env = dict(os.environ)
    created = subprocess.run(
        [
            docker,
            "context",
            "create",
            "dctest",
            "--docker",
            f"host=unix://{daemons['context'].path}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    lab_node = LabNode(name="node1", ip="10.213.47.11", socket=str(daemons["lab"].path))
    lab_state.save(
        LabState(nodes=(lab_node,), bridge="dcbr0", host_ip="10.213.47.1", registry="r:5000")
    )
    return env


def reached() -> str:
    """The name of the daemon the swarm commands' client talks to."""
    client = connect_manager()
    try:
        return str(client.info()["Name"])
    finally:
        client.close()


def test_docker_context_wins_over_the_lab(
    docker_config: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONTEXT", "dctest")
    assert manager_url()[1] == "the Docker context 'dctest'"
    assert reached() == "context"


def test_docker_host_wins_over_docker_context(
    docker_config: dict[str, str], monkeypatch: pytest.MonkeyPatch, daemons: dict[str, FakeDaemon]
) -> None:
    monkeypatch.setenv("DOCKER_CONTEXT", "dctest")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{daemons['host'].path}")
    assert reached() == "host"
    assert daemons["context"].requests == []


def test_the_current_context_of_docker_context_use(
    docker_config: dict[str, str], daemons: dict[str, FakeDaemon]
) -> None:
    used = subprocess.run(
        ["docker", "context", "use", "dctest"],
        env=docker_config,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert used.returncode == 0, used.stderr
    assert reached() == "context"
    assert daemons["lab"].requests == []


def test_without_host_or_context_the_lab_manager(
    docker_config: dict[str, str], daemons: dict[str, FakeDaemon]
) -> None:
    assert reached() == "lab"
    assert daemons["context"].requests == []


def test_an_unknown_context_is_one_clear_line(
    docker_config: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONTEXT", "nowhere")
    with pytest.raises(UserError) as caught:
        reached()
    assert str(caught.value).startswith("Docker context 'nowhere' not found in ")
    assert "docker context ls" in str(caught.value)
