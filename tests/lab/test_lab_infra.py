"""The lab itself on a real 3-node swarm: nodes, hostnames, images, overlay across nodes,
registry seen from a node, the web UI forwarder, idempotent `up`, `status`, the host-wide
lock (a second lab command waits, saying so), and a `down --purge` that leaves nothing
behind, caches included. (Recovery after every lab process is killed: test_lab_faults.)"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dockercoins.dockerapi import connect
from dockercoins.host import mounts, processes
from dockercoins.images.base import BASE_IMAGE_TAG, REDIS_IMAGE_TAG
from dockercoins.lab import lifecycle, nodes
from dockercoins.lab import network as labnet
from dockercoins.lab import state as lab_state
from dockercoins.lab.state import LabState, lab_dir

from tests.support.lab import cli, lab_env
from tests.support.servers import wait_for

pytestmark = pytest.mark.lab

CONTAINER_TIMEOUT = 120


@pytest.fixture
def clients(lab: LabState) -> Iterator[dict[str, Any]]:
    """node name -> Docker SDK client of that node's dockerd."""
    made = {node.name: connect(node.docker_host, timeout=120) for node in lab.nodes}
    try:
        yield made
    finally:
        for client in made.values():
            client.close()


def run_to_end(client: Any, command: list[str], **options: Any) -> tuple[int, str]:
    """Run a base-image container to its end (bounded); exit status and logs; removed."""
    container = client.containers.run(BASE_IMAGE_TAG, command, detach=True, **options)
    try:
        status = container.wait(timeout=CONTAINER_TIMEOUT)["StatusCode"]
        return int(status), container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def fetch_script(url: str, tries: int = 30) -> str:
    """Python for a container: GET `url` until it answers (bounded), print the status."""
    return (
        "import time, urllib.request\n"
        f"for _ in range({tries}):\n"
        "    try:\n"
        f"        print(urllib.request.urlopen({url!r}, timeout=2).status); break\n"
        "    except OSError as error:\n"
        "        print(error); time.sleep(1)\n"
        "else:\n"
        "    raise SystemExit(1)\n"
    )


def swarm_nodes(manager: Any) -> dict[str, tuple[str, str, str]]:
    """hostname -> (node id, role, state) from the manager's node list."""
    return {
        node.attrs["Description"]["Hostname"]: (
            node.id,
            node.attrs["Spec"]["Role"],
            node.attrs["Status"]["State"],
        )
        for node in manager.nodes.list()
    }


def test_all_nodes_ready_and_three_managers(lab: LabState, clients: dict[str, Any]) -> None:
    nodes = swarm_nodes(clients["node1"])
    assert sorted(nodes) == ["node1", "node2", "node3"]
    assert {name: state for name, (_, _, state) in nodes.items()} == dict.fromkeys(nodes, "ready")
    managers = [name for name, (_, role, _) in nodes.items() if role == "manager"]
    assert sorted(managers) == ["node1", "node2", "node3"]  # 3 nodes: 3 managers by default
    assert lab.managers == ("node1", "node2", "node3")
    assert lab.manager.name == "node1"  # the first that answers


def test_each_node_has_its_own_hostname_address_and_images(
    lab: LabState, clients: dict[str, Any]
) -> None:
    for node in lab.nodes:
        info = clients[node.name].info()
        assert info["Name"] == node.name
        assert info["Swarm"]["NodeAddr"] == node.ip
        tags = {tag for image in clients[node.name].images.list() for tag in image.tags}
        assert {BASE_IMAGE_TAG, REDIS_IMAGE_TAG} <= tags
    assert len({node.ip for node in lab.nodes}) == len(lab.nodes)


def test_overlay_network_spans_nodes(lab: LabState, clients: dict[str, Any]) -> None:
    suffix = uuid.uuid4().hex[:8]
    network = clients["node1"].networks.create(
        f"labinfra-{suffix}", driver="overlay", attachable=True
    )
    server = None
    try:
        server = clients["node2"].containers.run(
            BASE_IMAGE_TAG,
            ["python3", "-m", "http.server", "8080"],
            name=f"labinfra-server-{suffix}",
            network=network.name,
            detach=True,
        )
        status, logs = run_to_end(
            clients["node3"],
            ["python3", "-c", fetch_script(f"http://labinfra-server-{suffix}:8080/")],
            network=network.name,
        )
        assert status == 0, logs
        assert "200" in logs
    finally:
        if server is not None:
            server.remove(force=True)
        network.remove()


def test_registry_answers_from_a_node_over_tls_and_wants_a_login(
    lab: LabState, clients: dict[str, Any]
) -> None:
    from dockercoins.images import registry

    ca = registry.tls_files(lab_dir() / "registry").ca_cert.read_text()
    script = (
        "import ssl, urllib.error, urllib.request\n"
        f"context = ssl.create_default_context(cadata={ca!r})\n"
        "try:\n"
        f"    urllib.request.urlopen('https://{lab.registry}/v2/', timeout=5, context=context)\n"
        "except urllib.error.HTTPError as error:\n"
        "    print(error.code, error.headers['Docker-Distribution-Api-Version'])\n"
    )
    status, logs = run_to_end(clients["node2"], ["python3", "-c", script])
    assert status == 0, logs
    assert "401 registry/2.0" in logs  # the certificate checked with the lab's CA; no login


def test_forwarder_reaches_the_node_that_publishes_port_8000(
    lab: LabState, clients: dict[str, Any]
) -> None:
    # webui is published on 8000 on one node only (host mode): the forwarder finds it
    container = clients["node3"].containers.run(
        BASE_IMAGE_TAG,
        ["python3", "-m", "http.server", "8000", "--directory", "/etc"],
        ports={"8000/tcp": 8000},
        detach=True,
    )
    url = f"http://127.0.0.1:{lab.forward_port}/os-release"
    try:

        def served() -> bool:
            with urllib.request.urlopen(url, timeout=3) as reply:
                return b"bookworm" in reply.read()

        wait_for(served, timeout=60, interval=0.5)
    finally:
        container.remove(force=True)


def test_up_again_is_idempotent(lab: LabState, clients: dict[str, Any]) -> None:
    pids = [nodes.daemon(labnet.node_index(node.name)).pid() for node in lab.nodes]
    before = swarm_nodes(clients["node1"])
    again = cli(lab, "lab", "up", "--nodes", str(len(lab.nodes)))
    assert again.returncode == 0, again.stderr
    assert f"export DOCKER_HOST={lab.manager.docker_host}" in again.stdout.splitlines()
    assert f"export REGISTRY={lab.registry}" in again.stdout.splitlines()
    assert [nodes.daemon(labnet.node_index(n.name)).pid() for n in lab.nodes] == pids
    assert swarm_nodes(clients["node1"]) == before
    assert lab_state.load() == lab


def test_status_shows_nodes_state_and_role(lab: LabState) -> None:
    shown = cli(lab, "lab", "status", timeout=120)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines()[2:5]}
    for index, name in enumerate(("node1", "node2", "node3")):
        assert rows[name][1:5] == [lab.nodes[index].ip, "up", "ready", "manager"]
    assert sorted(row[5:] for row in rows.values()) == [[], [], ["(leader)"]]
    assert "registry 10.213.47.1:5000 up" in shown.stdout
    assert "forwarder 127.0.0.1:8000 running" in shown.stdout


def test_a_second_lab_command_waits_for_the_lock_saying_who_holds_it(lab: LabState) -> None:
    with lifecycle.LOCK_FILE.open("a+") as held:  # this test holds the lab lock, as `up` would
        fcntl.flock(held, fcntl.LOCK_EX)
        held.truncate(0)
        held.write(f"{os.getpid()}\n")
        held.flush()
        second = subprocess.Popen(
            [sys.executable, "-m", "dockercoins", "lab", "up", "--nodes", str(len(lab.nodes))],
            env=lab_env(lab),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert second.stderr is not None
        said: list[str] = []
        reader = threading.Thread(target=lambda: said.extend(second.stderr or []), daemon=True)
        reader.start()
        try:
            wait_for(lambda: bool(said), timeout=60, interval=0.2)
            assert said[0].rstrip("\n") == (
                f"another `dockercoins lab` command (pid {os.getpid()}) holds the lab lock "
                f"{lifecycle.LOCK_FILE}: waiting for it (at most {lifecycle.LOCK_WAIT:.0f} s)"
            )
            assert second.poll() is None  # it waits, and has done nothing else
            assert len(said) == 1
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
        try:
            second.wait(timeout=300)  # the lock is free: it goes on
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
    reader.join(timeout=10)
    sys.stderr.write("".join(said))
    assert second.returncode == 0, "".join(said)
    assert second.stdout is not None  # a few short lines: the pipe never filled
    exports = second.stdout.read().splitlines()
    assert f"export DOCKER_HOST={lab.manager.docker_host}" in exports


def lab_processes(directory: Path) -> list[str]:
    """Command lines of processes that mention the lab's folder or are its forwarder."""
    found = []
    for pid in (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()):
        line = " ".join(processes.cmdline(pid))
        if str(directory) in line or "dockercoins.lab.forwarder" in line:
            found.append(f"{pid}: {line}")
    return found


@pytest.mark.lab_disruptive
@pytest.mark.lab_teardown
def test_down_purge_leaves_nothing_and_deletes_the_caches(lab: LabState) -> None:
    directory = lab_state.lab_dir()
    node_roots = [nodes.daemon(labnet.node_index(node.name)).root for node in lab.nodes]
    registry_storage = directory / "registry"
    assert lab_processes(directory)  # the lab runs: the checks below can see it
    assert all(root.is_dir() for root in node_roots) and registry_storage.is_dir()
    down = cli(lab, "lab", "down", "--purge", timeout=300)
    assert down.returncode == 0, down.stderr
    # --purge: the nodes' data roots (their images) and the registry's storage are gone
    assert [root for root in node_roots if root.exists()] == []
    assert not registry_storage.exists()
    assert lab_processes(directory) == []
    assert labnet.namespaces() == []
    assert labnet.lab_links() == []
    assert not labnet.forward_rule_present()
    assert mounts.mounts_under(directory) == []
    assert lab_state.load() is None
    assert not (directory / "forwarder.pid").exists()
    for node in lab.nodes:
        assert not Path(node.socket).exists()
