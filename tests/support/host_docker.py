"""A Docker of the user's own on the host, for the lab to run beside: a dockerd on the
default socket with its defaults (docker0, iptables on), as Docker CE or docker.io run it,
and a container of its own that publishes a port. The lab tier brings the lab up beside it
and checks that the daemon's containers, networks and the host's iptables rules are the
same before and after, and that the container answers throughout.

When a daemon already answers on the default socket, that one is used and left running;
otherwise the session starts one (its data in a temporary folder) and removes it after,
with the docker0 bridge it made.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockercoins.host import dockerd
from dockercoins.images import base as baseimage
from dockercoins.lab import network as labnet

from tests.support.servers import free_port

DEFAULT_SOCKET = Path("/var/run/docker.sock")
DEFAULT_HOST = f"unix://{DEFAULT_SOCKET}"
LABEL = "org.dockercoins.test.host-docker"
_COUNTERS = re.compile(r"\[\d+:\d+\]")


@dataclass(frozen=True)
class Snapshot:
    """What the lab must not change: the daemon's containers (id, state), networks (id,
    name), the host's iptables rules (filter and nat, counters dropped) and the registry
    CAs every dockerd trusts (/etc/docker/certs.d: each path and file's content)."""

    containers: frozenset[tuple[str, str]]
    networks: frozenset[tuple[str, str]]
    iptables: tuple[str, ...]
    certs_d: tuple[tuple[str, bytes], ...] = ()


@dataclass
class HostDocker:
    client: Any
    container: Any
    url: str  # the container's published port, on loopback

    def answers(self) -> bool:
        """True when the host container serves its page (one bounded request)."""
        try:
            with urllib.request.urlopen(self.url, timeout=5) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def snapshot(self) -> Snapshot:
        return Snapshot(
            containers=frozenset((c.id, c.status) for c in self.client.containers.list(all=True)),
            networks=frozenset((n.id, n.name) for n in self.client.networks.list()),
            iptables=iptables_rules(),
            certs_d=certs_d_files(),
        )


# the one line the lab adds to the host's rules, as iptables-save prints it
LAB_RULE = "-A " + " ".join(labnet.FORWARD_RULE)


def without_lab_rule(rules: tuple[str, ...]) -> tuple[str, ...]:
    """The rules as they are apart from the lab's own line (a lab may be up already when
    the snapshot is taken)."""
    return tuple(rule for rule in rules if rule != LAB_RULE)


def certs_d_files() -> tuple[tuple[str, bytes], ...]:
    """Every path under the docker daemons' certs.d, with the content of the files."""
    from dockercoins.images import registry_trust

    root = registry_trust.certs_root()
    if not root.exists():
        return (("(no folder)", b""),)
    return tuple(
        (str(path), path.read_bytes() if path.is_file() else b"")
        for path in sorted(root.rglob("*"))
    )


def without_lab_ca(files: tuple[tuple[str, bytes], ...]) -> tuple[tuple[str, bytes], ...]:
    """certs.d's paths but the lab registry's folder and CA."""
    lab = f"/{labnet.REGISTRY_ADDRESS}"
    return tuple(item for item in files if lab not in item[0])


def iptables_rules() -> tuple[str, ...]:
    """The host's filter and nat rules and chains as iptables-save prints them, counters
    and comments dropped."""
    lines: list[str] = []
    for table in ("filter", "nat"):
        out = subprocess.run(
            ["iptables-save", "-t", table], capture_output=True, text=True, check=True, timeout=30
        ).stdout
        lines += [
            _COUNTERS.sub("", line).rstrip()
            for line in out.splitlines()
            if line and not line.startswith("#")
        ]
    return tuple(lines)


def _wait_answers(host: HostDocker, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not host.answers():
        if time.monotonic() > deadline:
            raise AssertionError(f"the host container does not answer on {host.url}")
        time.sleep(0.2)


def _link_exists(name: str) -> bool:
    return (
        subprocess.run(["ip", "link", "show", name], check=False, capture_output=True).returncode
        == 0
    )


@contextlib.contextmanager
def running() -> Iterator[HostDocker]:
    """The host Docker (used if there, else started) with one labelled container serving
    HTTP on a loopback port; both removed after (a daemon that was there stays)."""
    from docker.client import DockerClient

    daemon = None
    had_docker0 = _link_exists("docker0")
    # a daemon of ours leaves its iptables chains behind when it stops: put them back after
    saved = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    if not dockerd.ping(DEFAULT_HOST):
        daemon = dockerd.temporary(prefix="dchost-")
        # its defaults (docker0, iptables, userland proxy), on the default socket as well
        dockerd.start(daemon, extra_args=("-H", DEFAULT_HOST), what="the host's dockerd")
    client = DockerClient(base_url=DEFAULT_HOST, timeout=120)
    container = None
    try:
        image = baseimage.import_base_image(client, "python")
        port = free_port()
        container = client.containers.run(
            image,
            ["python3", "-m", "http.server", "8080"],
            detach=True,
            labels={LABEL: "1"},
            ports={"8080/tcp": ("127.0.0.1", port)},
        )
        host = HostDocker(client=client, container=container, url=f"http://127.0.0.1:{port}/")
        _wait_answers(host)
        yield host
    finally:
        if container is not None:
            with contextlib.suppress(Exception):
                container.remove(force=True)
        client.close()
        if daemon is not None:
            dockerd.discard(daemon)
            if not had_docker0 and _link_exists("docker0"):
                subprocess.run(
                    ["ip", "link", "delete", "docker0"], check=False, capture_output=True
                )
            subprocess.run(["iptables-restore"], input=saved, text=True, check=False)
