"""Redis as a stateful service on the real lab, while mining: redis pinned to a node that is
not the manager (`deploy --redis-node`), its append-only file on that node's volume.

- `docker service update --force redis` (a new redis container on the same volume);
- `lab node kill` of redis's node (a power loss), `status` saying why there is no counter,
  then `lab up`.

Throughout, /json is sampled: the counter never goes backwards (so is never reset), mining
comes back, redis comes back on its node, and `dockercoins verify` finds nothing lost and
nothing counted twice. The numbers (lost, twice, seconds until mining was back) are
printed for the table in docs/swarm.md, not asserted.

Both tests are disruptive, and disruptive tests run last in file order: this module comes
after test_updates.py's (whose deployment, redis on the last node, it keeps) and before
test_lab_faults.py's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from dockercoins.lab.state import LabState

from tests.support.lab import cli, ok
from tests.support.mining import (
    BACK_TIMEOUT,
    Sampler,
    docker_cli,
    redis_on,
    result,
    running,
    verify,
    wait_mining,
)
from tests.support.servers import wait_for

pytestmark = [pytest.mark.lab, pytest.mark.lab_disruptive]

WORKERS = 3
UP_TIMEOUT = 600

# (fault, lost, twice, seconds until mining was back, seconds until redis ran again)
RESULTS: list[tuple[str, int, int, float, float]] = []


def hostname(client: Any, node_id: str) -> str:
    return str(client.nodes.get(node_id).attrs["Description"]["Hostname"])


def record(fault: str, counts: tuple[int, int], back: float, redis_running: float) -> None:
    RESULTS.append((fault, *counts, back, redis_running))
    result(
        f"{fault}: hashes lost {counts[0]}, counted twice {counts[1]}, "
        f"redis running again after {redis_running:.1f} s, mining back after {back:.1f} s"
    )


@pytest.fixture(scope="module")
def redis_node(lab: LabState, manager: Any) -> Iterator[str]:
    """DockerCoins mining with redis on the lab's last node (not the manager): the earlier
    module's deployment when redis runs there, else deployed here; left deployed for the
    modules after this one."""
    target = lab.nodes[-1].name
    assert target != lab.manager.name
    try:
        redis_on(lab, manager, target, WORKERS)
        wait_mining()
        yield target
    finally:
        if RESULTS:
            print("fault | hashes lost | counted twice | redis running (s) | mining back (s)")
            for fault, lost, twice, back, redis_s in RESULTS:
                print(f"{fault} | {lost} | {twice} | {redis_s:.1f} | {back:.1f}")


def test_redis_restarted_by_the_swarm_keeps_the_counter(
    lab: LabState, manager: Any, redis_node: str
) -> None:
    [old] = running(manager, "redis")
    with Sampler() as sampler:
        started = time.monotonic()
        docker_cli(lab, "service", "update", "--force", "--detach", "redis")

        def old_task_stopped() -> bool:
            task = manager.api.inspect_task(old["ID"])
            return bool(task["Status"]["State"] != "running")

        wait_for(old_task_stopped, timeout=60, interval=0.2)
        stopped = time.monotonic()
        wait_for(lambda: len(running(manager, "redis")) == 1, timeout=120, interval=0.2)
        redis_back = time.monotonic()
        back = sampler.wait_above(sampler.highest_until(stopped), BACK_TIMEOUT)
    assert sampler.backwards() == []
    [new] = running(manager, "redis")
    assert new["ID"] != old["ID"]
    assert hostname(manager, new["NodeID"]) == redis_node
    counts = verify(lab)
    record("redis restarted (service update --force)", counts, back - started, redis_back - started)
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
        wait_for(lambda: len(running(manager, "redis")) == 1, timeout=BACK_TIMEOUT, interval=0.2)
        redis_back = time.monotonic()
        back = sampler.wait_above(before, BACK_TIMEOUT)
    assert sampler.backwards() == []
    [task] = running(manager, "redis")
    assert hostname(manager, task["NodeID"]) == redis_node  # back on its node, with its data
    counts = verify(lab)
    fault = f"redis's node killed ({redis_node}), then lab up"
    record(fault, counts, back - killed_at, redis_back - killed_at)
    assert counts == (0, 0)  # (hashes lost, hashes counted twice)
