"""The tutorial end to end on the real multi-node lab: ship -> deploy -> hashes rise through
http://localhost:8000 (redis wants its password: NOAUTH without it, the password seen
nowhere) -> scale worker to 10 (spread over the nodes) -> rng global (one task
per node, each one serving requests) -> status -> down. Plus bad input on a real swarm."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from dockercoins.dockerapi import connect
from dockercoins.images.base import REDIS_IMAGE_TAG
from dockercoins.lab.state import LabState

from tests.support.lab import cli, ok
from tests.support.servers import wait_for

pytestmark = pytest.mark.lab

WEBUI = "http://localhost:8000"
RNG_LABEL = "com.docker.swarm.service.name=rng"
OURS = {"redis", "hasher", "rng", "webui", "worker", "prometheus"}
SECRET_PREFIX = "dockercoins-redis-password-"


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("dockercoins: error: ")
    assert "Traceback" not in proc.stderr
    return last


@pytest.fixture
def cleanup(lab: LabState) -> Iterator[None]:
    """`dockercoins down` after the test, even when it failed."""
    try:
        yield
    finally:
        cli(lab, "down", "--timeout", "120")


def hashes() -> int:
    return int(httpx.get(f"{WEBUI}/json", timeout=2).json()["hashes"])


def wait_hashes_rise(timeout: float) -> None:
    samples: list[int] = []

    def risen() -> bool:
        samples.append(hashes())
        return len(samples) > 1 and samples[-1] > samples[0]

    wait_for(risen, timeout=timeout, interval=1.0)


def running_tasks(client: Any, service: str) -> list[dict[str, Any]]:
    return [
        task
        for task in client.api.tasks(filters={"service": service, "desired-state": "running"})
        if task["Status"]["State"] == "running"
    ]


def rng_requests_per_container(lab: LabState) -> dict[str, int]:
    """container id -> number of GET /32 in its access log, over every lab node."""
    counts: dict[str, int] = {}
    for node in lab.nodes:
        client = connect(node.docker_host, timeout=30)
        try:
            for container in client.containers.list(filters={"label": RNG_LABEL}):
                logs = container.logs().decode(errors="replace")
                counts[f"{node.name}/{container.short_id}"] = logs.count('"GET /32 ')
        finally:
            client.close()
    return counts


def our_leftovers(client: Any) -> list[str]:
    services = [s.name for s in client.services.list() if s.name in OURS]
    networks = [n.name for n in client.networks.list(names=["dockercoins"])]
    secrets = [s.name for s in client.secrets.list() if s.name.startswith(SECRET_PREFIX)]
    return services + [n for n in networks if n == "dockercoins"] + secrets


def redis_password(lab: LabState, manager: Any) -> str:
    """The password, read where redis reads it: its task's secret file."""
    [task] = running_tasks(manager, "redis")
    hostname = manager.nodes.get(task["NodeID"]).attrs["Description"]["Hostname"]
    node = next(node for node in lab.nodes if node.name == hostname)
    client = connect(node.docker_host, timeout=30)
    try:
        container = client.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
        return str(container.exec_run(["cat", "/run/secrets/redis_password"]).output.decode())
    finally:
        client.close()


def check_redis_wants_its_password(lab: LabState, manager: Any) -> None:
    """From a node, a container attached to the overlay without the password gets NOAUTH;
    the password is in no service spec, task environment, log, /json or /metrics."""
    password = redis_password(lab, manager)
    assert len(password) == 43
    client = connect(lab.nodes[-1].docker_host, timeout=60)
    try:
        out = client.containers.run(
            REDIS_IMAGE_TAG,
            ["redis-cli", "-h", "redis", "GET", "hashes"],
            network="dockercoins",
            remove=True,
        )
        assert b"NOAUTH" in out, out
    finally:
        client.close()
    seen = [json.dumps(service.attrs) for service in manager.services.list()]
    seen += [json.dumps(task) for task in manager.api.tasks()]
    seen += [httpx.get(f"{WEBUI}{path}", timeout=5).text for path in ("/json", "/metrics")]
    for node in lab.nodes:
        node_client = connect(node.docker_host, timeout=30)
        try:
            for container in node_client.containers.list():
                seen.append(json.dumps(container.attrs))
                seen.append(container.logs(tail=200).decode(errors="replace"))
        finally:
            node_client.close()
    assert not [text[:200] for text in seen if password in text]


def test_bad_input_gives_one_clear_line(lab: LabState, cleanup: None) -> None:
    assert "unknown service 'miner'" in one_line_error(cli(lab, "scale", "miner=3"))
    assert "bad replica count '-2'" in one_line_error(cli(lab, "scale", "worker=-2"))
    assert "bad replica count 'x'" in one_line_error(cli(lab, "scale", "worker=x"))
    cli(lab, "down")
    assert "not deployed" in one_line_error(cli(lab, "scale", "worker=3"))
    assert "not deployed" in one_line_error(cli(lab, "rng-mode", "global"))
    # (a swarm worker is not a manager, one line: test_lab_nodes, which makes one; every
    # node of the 3-node lab is a manager)


def test_registry_unreachable_names_stuck_tasks(lab: LabState, cleanup: None) -> None:
    # a lab address where no registry listens: the nodes cannot pull
    nowhere = f"{lab.host_ip}:5999"
    line = one_line_error(cli(lab, "deploy", "--registry", nowhere, "--timeout", "30"))
    assert "timed out" in line
    assert "task" in line
    assert "image" in line.lower() or "pull" in line.lower(), line


def test_tutorial_end_to_end(lab: LabState, manager: Any, cleanup: None) -> None:
    ok(cli(lab, "ship"))

    started = time.monotonic()
    ok(cli(lab, "deploy", "--env", "rng:ACCESS_LOG=1", "--timeout", "240"))
    wait_hashes_rise(timeout=120)
    print(f"TIMING deploy to first hashes: {time.monotonic() - started:.1f} s")
    check_redis_wants_its_password(lab, manager)

    again = time.monotonic()
    second = cli(lab, "deploy", "--env", "rng:ACCESS_LOG=1")
    ok(second)
    assert second.stderr.count(": unchanged") == len(OURS)  # the five and prometheus
    print(f"TIMING second deploy: {time.monotonic() - again:.1f} s")

    # scale the workers: tasks spread over more than one node
    ok(cli(lab, "scale", "worker=10", "--timeout", "240"))
    workers = running_tasks(manager, "worker")
    assert len(workers) == 10
    assert len({task["NodeID"] for task in workers}) > 1
    # scaling a service deploy keeps: a plain `deploy` does not undo it
    assert ": unchanged" in cli(lab, "deploy", "--env", "rng:ACCESS_LOG=1").stderr
    assert len(running_tasks(manager, "worker")) == 10

    # rng global: recreated (the tool says so), one task per node
    switched = cli(lab, "rng-mode", "global", "--timeout", "240")
    ok(switched)
    assert "cannot change in place" in switched.stderr
    assert "scale" in one_line_error(cli(lab, "scale", "rng=2"))
    rngs = running_tasks(manager, "rng")
    ready = [n for n in manager.nodes.list() if n.attrs["Status"]["State"] == "ready"]
    assert len(rngs) == len(ready) == len(lab.nodes)
    assert {task["NodeID"] for task in rngs} == {n.id for n in ready}

    # the workers' requests reach every rng task (counted in each task's access log)
    def every_rng_served() -> bool:
        counts = rng_requests_per_container(lab)
        print("rng requests per task:", counts)
        return len(counts) == len(lab.nodes) and all(count > 0 for count in counts.values())

    wait_for(every_rng_served, timeout=60, interval=2.0)
    wait_hashes_rise(timeout=60)

    status = ok(cli(lab, "status"))
    rng_row = next(line for line in status.splitlines() if line.startswith("rng "))
    assert rng_row.split()[1:3] == ["global", f"{len(lab.nodes)}/{len(lab.nodes)}"]
    worker_row = next(line for line in status.splitlines() if line.startswith("worker "))
    assert worker_row.split()[1:3] == ["replicated", "10/10"]
    for node in lab.nodes:
        assert any(line.startswith(node.name) for line in status.splitlines())
    assert "hash rate: " in status and "unknown" not in status

    # and back to one replicated rng
    ok(cli(lab, "rng-mode", "replicated", "--timeout", "240"))
    assert len(running_tasks(manager, "rng")) == 1

    ok(cli(lab, "down"))
    assert our_leftovers(manager) == []
    assert [t for t in manager.api.tasks() if t["DesiredState"] == "running"] == []
