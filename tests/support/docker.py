"""The Docker tier's session record (tests/docker/conftest.py makes it; tests read it) and
two probes of a running container."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TEST_LABEL = "org.dockercoins.test-session"


@dataclass
class DockerSession:
    """The daemon the tier runs on, and what the tier made there."""

    docker_host: str  # its DOCKER_HOST
    client: Any
    session_id: str
    namespace: str
    tag: str
    registry: str  # 127.0.0.1:<port reserved for the test registry>
    own_daemon: bool
    extra_refs: list[str] = field(default_factory=list)

    @property
    def labels(self) -> dict[str, str]:
        return {TEST_LABEL: self.session_id}

    def ref(self, service: str) -> str:
        return f"{self.registry}/{self.namespace}/{service}:{self.tag}"


def container_health(container: Any) -> str:
    """The container's health status after a reload ("none" without a HEALTHCHECK)."""
    container.reload()
    return str(container.attrs["State"].get("Health", {}).get("Status", "none"))


def pid1_uid(container: Any) -> int:
    """The real uid of the container's process 1."""
    status = container.exec_run(["cat", "/proc/1/status"]).output.decode()
    line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    return int(line.split()[1])
