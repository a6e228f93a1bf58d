"""Redis as a stateful service on the real lab, while mining: redis pinned to a node that is
not the manager (`deploy --redis-node`), its append-only file on that node's volume.

- `docker service update --force redis` (a new redis container on the same volume);
- `lab node kill` of redis's node (a power loss), `status` saying why there is no counter,
  then `lab up`.

Throughout, /json is sampled: the counter never goes backwards (so is never reset), mining
comes back, redis comes back on its node, and `dockercoins verify` finds nothing lost and
nothing counted twice. The numbers (lost, twice, seconds until mining was back) are
printed for the table in docs/swarm.md, not asserted.

Both tests are disruptive, and disruptive tests run last in file order: this file's name
puts it before test_lab_faults.py, whose last test takes the lab down."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import httpx
import pytest
from dockercoins.lab.state import LabState
from dockercoins.swarm.specs import REDIS_NODE_LABEL
from dockercoins.swarm.verify import reports_query

from tests.support.lab import cli, lab_env, ok
from tests.support.servers import wait_for

pytestmark = [pytest.mark.lab, pytest.mark.lab_disruptive]

WEBUI = "http://127.0.0.1:8000"
PROMETHEUS = "http://127.0.0.1:9090"
OURS = {"redis", "hasher", "rng", "webui", "worker", "prometheus"}
WORKERS = 3
SAMPLE_EVERY = 0.25  # seconds between /json reads
SAMPLE_FOR_AT_MOST = 600.0  # the sampler stops by itself after this long
BACK_TIMEOUT = 240.0  # seconds for mining to come back after a fault
UP_TIMEOUT = 600

# (fault, lost, twice, seconds until mining was back, seconds until redis ran again)
RESULTS: list[tuple[str, int, int, float, float]] = []


def hashes(timeout: float = 2.0) -> int:
    return int(httpx.get(f"{WEBUI}/json", timeout=timeout).json()["hashes"])


class Sampler:
    """Reads /json every SAMPLE_EVERY s in a thread (bounded), keeping (monotonic time,
    hashes) of every read that answered."""

    def __init__(self) -> None:
        self.readings: list[tuple[float, int]] = []
        self.failures = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + SAMPLE_FOR_AT_MOST
        with httpx.Client(timeout=1.0) as http:
            while not self.stop_event.is_set() and time.monotonic() < deadline:
                try:
                    value = int(http.get(f"{WEBUI}/json").json()["hashes"])
                except (httpx.HTTPError, ValueError, KeyError):
                    self.failures += 1
                else:
                    self.readings.append((time.monotonic(), value))
                self.stop_event.wait(SAMPLE_EVERY)

    def __enter__(self) -> Sampler:
        self.thread.start()
        wait_for(lambda: len(self.readings) >= 3, timeout=30, interval=0.1)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop_event.set()
        self.thread.join(10)

    def highest_until(self, moment: float) -> int:
        return max(value for at, value in list(self.readings) if at <= moment)

    def wait_above(self, value: int, timeout: float) -> float:
        """The time of the first reading above `value` (waits up to `timeout` s)."""

        def above() -> float | None:
            return next((at for at, seen in list(self.readings) if seen > value), None)

        wait_for(lambda: above() is not None, timeout=timeout, interval=0.25)
        found = above()
        assert found is not None
        return found

    def backwards(self) -> list[tuple[int, int]]:
        """Pairs of successive readings where the counter went down."""
        values = [value for _, value in self.readings]
        return [(a, b) for a, b in itertools.pairwise(values) if b < a]


def docker_cli(lab: LabState, *args: str, timeout: float = 180) -> str:
    binary = shutil.which("docker")
    assert binary, "the docker CLI is not installed"
    proc = subprocess.run(
        [binary, *args],
        env=lab_env(lab),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    sys.stderr.write(f"$ docker {' '.join(args)} -> {proc.returncode}\n{proc.stderr}")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def labelled_nodes(client: Any) -> list[Any]:
    return [
        node
        for node in client.nodes.list()
        if (node.attrs["Spec"].get("Labels") or {}).get(REDIS_NODE_LABEL) == "true"
    ]


def redis_tasks(client: Any) -> list[dict[str, Any]]:
    return [
        task
        for task in client.api.tasks(filters={"service": "redis", "desired-state": "running"})
        if task["Status"]["State"] == "running"
    ]


def hostname(client: Any, node_id: str) -> str:
    return str(client.nodes.get(node_id).attrs["Description"]["Hostname"])


def wait_mining(timeout: float = 180.0) -> None:
    first: list[int] = []

    def risen() -> bool:
        value = hashes()
        first.append(value)
        return value > first[0]

    wait_for(risen, timeout=timeout, interval=1.0)


def verify(lab: LabState) -> tuple[int, int]:
    """`dockercoins verify` once Prometheus has the workers' confirmed counts: (lost,
    twice); at least one worker compared."""

    def workers_scraped() -> bool:
        query = {"query": reports_query()}
        answer = httpx.get(f"{PROMETHEUS}/api/v1/query", params=query, timeout=3).json()
        return len(answer["data"]["result"]) > 0

    wait_for(workers_scraped, timeout=90, interval=1.0)
    proc = cli(lab, "verify", timeout=180)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    lost = re.search(r"^hashes lost: (\d+)$", out, re.M)
    twice = re.search(r"^hashes counted twice: (\d+)$", out, re.M)
    compared = re.search(r"^workers compared: (\d+) of (\d+)", out, re.M)
    assert lost and twice and compared, out
    assert int(compared.group(1)) >= 1, out
    assert proc.returncode == (0 if lost.group(1) == twice.group(1) == "0" else 1)
    return int(lost.group(1)), int(twice.group(1))


def record(fault: str, counts: tuple[int, int], back: float, redis_running: float) -> None:
    RESULTS.append((fault, *counts, back, redis_running))
    print(
        f"RESULT {fault}: hashes lost {counts[0]}, counted twice {counts[1]}, "
        f"redis running again after {redis_running:.1f} s, mining back after {back:.1f} s"
    )


@pytest.fixture(scope="module")
def redis_node(lab: LabState, manager: Any) -> Iterator[str]:
    """DockerCoins mining with redis on the lab's last node (not the manager); deployed
    here unless it already runs that way, and then taken down again afterwards."""
    target = lab.nodes[-1].name
    assert target != lab.manager.name
    deployed = {service.name for service in manager.services.list()} & OURS
    on_target = [hostname(manager, node.id) for node in labelled_nodes(manager)] == [target]
    reuse = deployed == OURS and on_target
    try:
        if not reuse:
            if deployed:
                ok(cli(lab, "down", "--timeout", "120"))
            for node in labelled_nodes(manager):  # the data of earlier tests' deploys
                spec = dict(node.attrs["Spec"])
                spec["Labels"] = {
                    key: value
                    for key, value in (spec.get("Labels") or {}).items()
                    if key != REDIS_NODE_LABEL
                }
                node.update(spec)
            ok(cli(lab, "ship"))
            deploy = ["deploy", "--redis-node", target, "--workers", str(WORKERS)]
            ok(cli(lab, *deploy, "--timeout", "240"))
        wait_mining()
        yield target
    finally:
        if RESULTS:
            print("fault | hashes lost | counted twice | redis running (s) | mining back (s)")
            for fault, lost, twice, back, running in RESULTS:
                print(f"{fault} | {lost} | {twice} | {running:.1f} | {back:.1f}")
        if not reuse:
            cli(lab, "down", "--timeout", "120")


def test_redis_restarted_by_the_swarm_keeps_the_counter(
    lab: LabState, manager: Any, redis_node: str
) -> None:
    [old] = redis_tasks(manager)
    with Sampler() as sampler:
        started = time.monotonic()
        docker_cli(lab, "service", "update", "--force", "--detach", "redis")

        def old_task_stopped() -> bool:
            task = manager.api.inspect_task(old["ID"])
            return bool(task["Status"]["State"] != "running")

        wait_for(old_task_stopped, timeout=60, interval=0.2)
        stopped = time.monotonic()
        wait_for(lambda: len(redis_tasks(manager)) == 1, timeout=120, interval=0.2)
        running = time.monotonic()
        back = sampler.wait_above(sampler.highest_until(stopped), BACK_TIMEOUT)
    assert sampler.backwards() == []
    [new] = redis_tasks(manager)
    assert new["ID"] != old["ID"]
    assert hostname(manager, new["NodeID"]) == redis_node
    counts = verify(lab)
    record("redis restarted (service update --force)", counts, back - started, running - started)
    assert counts == (0, 0)  # (hashes lost, hashes counted twice)


def test_redis_node_killed_then_back(lab: LabState, manager: Any, redis_node: str) -> None:
    with Sampler() as sampler:
        try:
            killed_at = time.monotonic()
            ok(cli(lab, "lab", "node", "kill", redis_node, timeout=120))
            before = sampler.highest_until(time.monotonic())
            expected = (
                f"counter unavailable: redis has no running task (its node {redis_node} is down)"
            )
            wait_for(
                lambda: expected in cli(lab, "status", timeout=120).stdout,
                timeout=120,
                interval=1.0,
            )
        finally:
            ok(cli(lab, "lab", "up", "--nodes", str(len(lab.nodes)), timeout=UP_TIMEOUT))
        wait_for(lambda: len(redis_tasks(manager)) == 1, timeout=BACK_TIMEOUT, interval=0.2)
        running = time.monotonic()
        back = sampler.wait_above(before, BACK_TIMEOUT)
    assert sampler.backwards() == []
    [task] = redis_tasks(manager)
    assert hostname(manager, task["NodeID"]) == redis_node  # back on its node, with its data
    counts = verify(lab)
    fault = f"redis's node killed ({redis_node}), then lab up"
    record(fault, counts, back - killed_at, running - killed_at)
    assert counts == (0, 0)  # (hashes lost, hashes counted twice)
