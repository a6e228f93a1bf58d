"""Nodes of the real 3-node lab lost and brought back, with DockerCoins mining: rng global
(one task per node, so the rate's ceiling follows the nodes: min(W / 0.3, R x 10) hashes/s
for W workers and R rng tasks) and redis pinned to the last node.

- `lab up --managers`: 3 managers by default; `--managers 1` demotes node2 and node3 (a
  swarm command sent to a worker is one line: "not a manager"), and back to 3 promotes
  them; a second `up` changes no role;
- a node that is neither redis's nor the leader killed: mining goes on at the remaining
  nodes' rate, and `lab node start` brings back the full one;
- a node drained: its tasks shut down and run elsewhere, `dockercoins verify` finds
  nothing lost and nothing counted twice; then active again;
- the leader killed: the two other managers elect one, the tool finds it by itself
  (`lab status`'s DOCKER_HOST, `docker node ls` there, `dockercoins scale` without
  DOCKER_HOST), and `lab up` brings the node back.

/json is sampled throughout (tests/support/mining.py's Sampler); the rates and
seconds are printed for the table in docs/lab.md, not asserted (no timing thresholds):
the assertions are that mining never stops for good and comes back."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from dockercoins.dockerapi import connect
from dockercoins.lab.state import LabState

from tests.support.lab import cli, ok
from tests.support.mining import (
    BACK_TIMEOUT,
    OURS,
    Sampler,
    docker_cli,
    redis_on,
    result,
    running,
    verify,
    wait_mining,
)
from tests.support.servers import wait_for

pytestmark = pytest.mark.lab

WORKERS = 10  # W / 0.3 = 33 hashes/s: above 3 rng tasks' 30, so rng (the nodes) is the limit
RNG_PER_SECOND = 10.0  # answers per second of one rng task
LOOP_SECONDS = 0.3  # one worker loop with the default delays
WINDOW = 6.0  # seconds of /json readings a rate is measured over
UP_TIMEOUT = 600

# fault -> what was measured, printed as a table at the end of the module
RESULTS: dict[str, dict[str, object]] = {}


def ceiling(workers: int, rng_tasks: int) -> float:
    return min(workers / LOOP_SECONDS, rng_tasks * RNG_PER_SECOND)


@contextmanager
def live_manager(lab: LabState) -> Iterator[Any]:
    """A client of the manager the tool picks now (the first that answers as reachable)."""
    client = connect(lab.manager.docker_host, timeout=60)
    try:
        yield client
    finally:
        client.close()


def swarm_nodes(client: Any) -> dict[str, dict[str, Any]]:
    """hostname -> node attrs, from the manager's node list."""
    return {node.attrs["Description"]["Hostname"]: node.attrs for node in client.nodes.list()}


def leader(client: Any) -> str:
    [name] = [
        name
        for name, attrs in swarm_nodes(client).items()
        if (attrs.get("ManagerStatus") or {}).get("Leader")
    ]
    return name


def rate(sampler: Sampler, start: float, end: float) -> float:
    """Hashes per second between the first and the last reading in [start, end]."""
    inside = [(at, value) for at, value in list(sampler.readings) if start <= at <= end]
    assert len(inside) >= 2, f"no readings of /json between {start:.1f} and {end:.1f}"
    (t0, v0), (t1, v1) = inside[0], inside[-1]
    return (v1 - v0) / (t1 - t0)


def measure(sampler: Sampler, seconds: float = WINDOW) -> float:
    """The rate over the next `seconds`."""
    start = time.monotonic()
    time.sleep(seconds)
    return rate(sampler, start, time.monotonic())


def recent_rate(sampler: Sampler) -> float | None:
    """The rate over the last WINDOW s; None while the readings cover less of it."""
    now = time.monotonic()
    inside = [(at, value) for at, value in list(sampler.readings) if at >= now - WINDOW]
    if len(inside) < 2 or inside[-1][0] - inside[0][0] < 0.8 * WINDOW:
        return None
    (t0, v0), (t1, v1) = inside[0], inside[-1]
    return (v1 - v0) / (t1 - t0)


def wait_rate(sampler: Sampler, at_least: float, timeout: float) -> float | None:
    """The first moment the rate over the last WINDOW s is `at_least` (None: not within
    `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now_rate = recent_rate(sampler)
        if now_rate is not None and now_rate >= at_least:
            return time.monotonic()
        time.sleep(0.5)
    return None


def longest_pause(sampler: Sampler, since: float) -> float:
    """The longest time after `since` that the counter did not move (read or not)."""
    everything = list(sampler.readings)
    before = [reading for reading in everything if reading[0] < since][-1:]
    readings = before + [reading for reading in everything if reading[0] >= since]
    rises = [since] + [b[0] for a, b in itertools.pairwise(readings) if b[1] > a[1]]
    end = readings[-1][0] if readings else since
    return max(b - a for a, b in itertools.pairwise([*rises, end]))


def seconds(moment: float | None, since: float) -> str:
    return "not within the wait" if moment is None else f"{moment - since:.1f}"


def record(fault: str, **measured: object) -> None:
    RESULTS[fault] = measured
    result(f"{fault}: " + ", ".join(f"{key} {value}" for key, value in measured.items()))


def without_docker_env() -> dict[str, str]:
    """The caller's environment without DOCKER_HOST or DOCKER_CONTEXT: the tool picks."""
    return {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}


def dockercoins_picking(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`dockercoins ARGS` with no DOCKER_HOST: the tool finds the lab's manager itself."""
    proc = subprocess.run(
        [sys.executable, "-m", "dockercoins", *args],
        env=without_docker_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    sys.stderr.write(f"$ dockercoins {' '.join(args)} (no DOCKER_HOST) -> {proc.returncode}\n")
    sys.stderr.write(proc.stderr)
    return proc


def lab_up(lab: LabState, *more: str) -> subprocess.CompletedProcess[str]:
    return cli(lab, "lab", "up", "--nodes", str(len(lab.nodes)), *more, timeout=UP_TIMEOUT)


def status_rows(lab: LabState) -> dict[str, list[str]]:
    """`lab status`'s node rows: name -> [ip, dockerd, state, role words...]."""
    shown = cli(lab, "lab", "status", timeout=120).stdout.splitlines()
    ips = {node.name: node.ip for node in lab.nodes}
    rows = [line.split() for line in shown]
    return {row[0]: row[1:] for row in rows if len(row) > 1 and ips.get(row[0]) == row[1]}


def roles(lab: LabState) -> dict[str, str]:
    """node -> role as `lab status` shows it (leader marked)."""
    return {name: " ".join(row[3:]) for name, row in status_rows(lab).items()}


def test_managers_default_to_three_and_follow_lab_up(lab: LabState) -> None:
    try:
        shown = roles(lab)
        assert sorted(shown.values()) == ["manager", "manager", "manager (leader)"], shown
        ids = {name: attrs["ID"] for name, attrs in _nodes(lab).items()}

        demoted = lab_up(lab, "--managers", "1")
        assert demoted.returncode == 0, demoted.stderr
        assert "node2: demoted to worker" in demoted.stderr
        assert roles(lab) == {"node1": "manager (leader)", "node2": "worker", "node3": "worker"}
        worker = cli(lab, "status", host=lab.nodes[-1].docker_host)
        assert worker.returncode != 0
        assert "not a manager" in worker.stderr.strip().splitlines()[-1]
        assert "Traceback" not in worker.stderr

        promoted = lab_up(lab)  # the default again: 3 managers
        assert promoted.returncode == 0, promoted.stderr
        assert "node3: promoted to manager" in promoted.stderr
        again = lab_up(lab)  # and once more: nothing changes
        assert again.returncode == 0, again.stderr
        assert "promoted" not in again.stderr and "demoted" not in again.stderr
        assert sorted(roles(lab).values()) == ["manager", "manager", "manager (leader)"]
        assert {name: attrs["ID"] for name, attrs in _nodes(lab).items()} == ids  # same nodes
        exports = again.stdout.splitlines()
        assert f"export DOCKER_HOST={lab.manager.docker_host}" in exports
    finally:
        ok(lab_up(lab))


def _nodes(lab: LabState) -> dict[str, dict[str, Any]]:
    with live_manager(lab) as client:
        return swarm_nodes(client)


@pytest.fixture(scope="module")
def mining(lab: LabState, manager: Any) -> Iterator[str]:
    """DockerCoins mining with WORKERS workers, rng global and redis on the lab's last node
    (the earlier modules' deployment when redis runs there), taken down afterwards; yields
    redis's node."""
    target = lab.nodes[-1].name
    try:
        redis_on(lab, manager, target, WORKERS)
        ok(cli(lab, "scale", f"worker={WORKERS}", "--timeout", "240"))
        ok(cli(lab, "rng-mode", "global", "--timeout", "240"))
        wait_mining()
        yield target
    finally:
        if RESULTS:
            print("fault | measured")
            for fault, measured in RESULTS.items():
                print(f"{fault} | " + ", ".join(f"{k} {v}" for k, v in measured.items()))
        cli(lab, "down", "--timeout", "120")


@pytest.mark.lab_disruptive
def webui_nodes(client: Any) -> str:
    """The nodes webui runs on. The sampler reads the counter through webui's /json, so a
    fault on webui's node shows as a pause while webui moves, though the workers mine on."""
    names = {attrs["ID"]: name for name, attrs in swarm_nodes(client).items()}
    return ",".join(sorted(names.get(task["NodeID"], "?") for task in running(client, "webui")))


def test_a_worker_node_killed_then_started(lab: LabState, mining: str) -> None:
    with live_manager(lab) as client:
        chief = leader(client)
        webui_on = webui_nodes(client)
    victim = next(n.name for n in lab.nodes if n.name not in (chief, mining))
    full_ceiling = ceiling(WORKERS, len(lab.nodes))
    with Sampler() as sampler:
        full = measure(sampler)
        target = 0.9 * min(full_ceiling, full)
        killed_at = time.monotonic()
        try:
            ok(cli(lab, "lab", "node", "kill", victim, timeout=120))
            # mining never stops for good: the counter rises past its value at the kill
            sampler.wait_above(sampler.highest_until(time.monotonic()), BACK_TIMEOUT)
            with live_manager(lab) as client:

                def rescheduled() -> bool:
                    state = swarm_nodes(client)[victim]["Status"]["State"]
                    return state != "ready" and len(running(client, "worker")) == WORKERS

                wait_for(rescheduled, timeout=120, interval=1.0)
            settled_at = time.monotonic()
            degraded = measure(sampler)
            assert degraded > 0
        finally:
            started_at = time.monotonic()
            ok(cli(lab, "lab", "node", "start", victim, timeout=UP_TIMEOUT))
        back_half = wait_rate(sampler, 0.5 * full, BACK_TIMEOUT)
        back_full = wait_rate(sampler, target, 60)
        pause = longest_pause(sampler, killed_at)
    assert back_half is not None, f"mining did not come back to half of {full:.1f} hashes/s"
    assert sampler.backwards() == []
    record(
        f"worker node {victim} killed, then `lab node start`",
        full_rate=f"{full:.1f}/s (ceiling {full_ceiling:.0f})",
        degraded_rate=f"{degraded:.1f}/s (ceiling {ceiling(WORKERS, len(lab.nodes) - 1):.0f})",
        longest_pause=f"{pause:.1f} s",
        webui_on=webui_on,
        seconds_to_settle=f"{settled_at - killed_at:.1f}",
        seconds_killed=f"{started_at - killed_at:.1f}",
        seconds_back_at_09=f"{seconds(back_full, started_at)} after start, "
        f"{seconds(back_full, killed_at)} after the kill",
    )


@pytest.mark.lab_disruptive
def test_a_drained_node_s_tasks_run_elsewhere_and_nothing_is_lost(
    lab: LabState, mining: str
) -> None:
    with live_manager(lab) as client:
        by_node: dict[str, list[dict[str, Any]]] = {}
        names = {attrs["ID"]: name for name, attrs in swarm_nodes(client).items()}
        for service in OURS - {"redis"}:
            for task in running(client, service):
                by_node.setdefault(names[task["NodeID"]], []).append(task)
        target = max(
            (name for name in by_node if name != mining), key=lambda name: len(by_node[name])
        )
        before = by_node[target]
        replicated = {
            service.name: service.attrs["Spec"]["Mode"]["Replicated"]["Replicas"]
            for service in client.services.list()
            if service.name in OURS and "Replicated" in service.attrs["Spec"]["Mode"]
        }
        node_id = swarm_nodes(client)[target]["ID"]
        webui_on = webui_nodes(client)
        with Sampler() as sampler:
            full = measure(sampler)
            drained_at = time.monotonic()
            try:
                docker_cli(lab, "node", "update", "--availability", "drain", target)

                def moved() -> bool:
                    gone = all(
                        client.api.inspect_task(task["ID"])["Status"]["State"] != "running"
                        for task in before
                    )
                    placed = all(
                        len(tasks) == replicated[name]
                        and all(task["NodeID"] != node_id for task in tasks)
                        for name, tasks in ((n, running(client, n)) for n in replicated)
                    )
                    return gone and placed and not _tasks_on(client, node_id)

                wait_for(moved, timeout=120, interval=1.0)
                moved_at = time.monotonic()
                drained_rate = measure(sampler)
                lost, twice = verify(lab)
            finally:
                docker_cli(lab, "node", "update", "--availability", "active", target)
            active_at = time.monotonic()
            back_full = wait_rate(sampler, 0.9 * min(full, ceiling(WORKERS, 3)), 90)
            pause = longest_pause(sampler, drained_at)
        assert sampler.backwards() == []
    assert (lost, twice) == (0, 0)  # (hashes lost, hashes counted twice)
    record(
        f"{target} drained, then active",
        tasks_moved=f"{len(before)} in {moved_at - drained_at:.1f} s",
        longest_pause=f"{pause:.1f} s",
        webui_on=webui_on,
        rate=f"{full:.1f}/s before, {drained_rate:.1f}/s drained",
        lost=lost,
        twice=twice,
        seconds_back_at_09=f"{seconds(back_full, active_at)} after active, "
        f"{seconds(back_full, drained_at)} after the drain",
    )


def _tasks_on(client: Any, node_id: str) -> list[str]:
    """Our services' tasks running on the node."""
    return [
        task["ID"]
        for task in client.api.tasks(filters={"node": node_id, "desired-state": "running"})
        if task["Status"]["State"] == "running"
    ]


@pytest.mark.lab_disruptive
def test_the_leader_killed_the_others_elect_one_and_the_tool_finds_it(
    lab: LabState, mining: str
) -> None:
    with live_manager(lab) as client:
        chief = leader(client)
        webui_on = webui_nodes(client)
        managers = [n for n, a in swarm_nodes(client).items() if a["Spec"]["Role"] == "manager"]
    assert len(managers) == 3, managers
    chief_node = next(node for node in lab.nodes if node.name == chief)
    with Sampler() as sampler:
        full = measure(sampler)
        killed_at = time.monotonic()
        try:
            ok(cli(lab, "lab", "node", "kill", chief, timeout=120))

            def elected() -> bool:
                with live_manager(lab) as client:
                    return leader(client) != chief

            wait_for(elected, timeout=90, interval=1.0)
            elected_at = time.monotonic()
            # `lab status` names a live manager to export; docker node ls works there
            status = cli(lab, "lab", "status", timeout=120)
            assert status.returncode == 1  # the killed node is DOWN
            [export] = re.findall(r"^export DOCKER_HOST=(\S+)$", status.stdout, re.M)
            assert export != chief_node.docker_host
            listed = subprocess.run(
                ["docker", "node", "ls"],
                env={**without_docker_env(), "DOCKER_HOST": export},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert listed.returncode == 0, listed.stderr
            assert "Leader" in listed.stdout
            # a new leader first marks every node "unknown" until its agent reports again
            with live_manager(lab) as client:

                def others_ready() -> bool:
                    states = {n: a["Status"]["State"] for n, a in swarm_nodes(client).items()}
                    return all(state == "ready" for n, state in states.items() if n != chief)

                wait_for(others_ready, timeout=90, interval=1.0)
            ready_at = time.monotonic()
            # a swarm command without DOCKER_HOST: the tool picks the live manager
            ok(dockercoins_picking("scale", f"worker={WORKERS + 2}", "--timeout", "240"))
            with live_manager(lab) as client:
                assert len(running(client, "worker")) == WORKERS + 2
            sampler.wait_above(sampler.highest_until(time.monotonic()), BACK_TIMEOUT)
        finally:
            up_at = time.monotonic()
            ok(lab_up(lab))
        back_full = wait_rate(sampler, 0.9 * min(full, ceiling(WORKERS, 3)), 90)
        pause = longest_pause(sampler, killed_at)
        assert sampler.backwards() == []
    assert sorted(roles(lab).values()) == ["manager", "manager", "manager (leader)"]
    assert cli(lab, "lab", "status", timeout=120).returncode == 0
    ok(cli(lab, "scale", f"worker={WORKERS}", "--timeout", "240"))
    lost, twice = verify(lab)
    record(
        f"leader {chief} killed, then `lab up`",
        seconds_to_new_leader=f"{elected_at - killed_at:.1f}",
        seconds_to_nodes_ready=f"{ready_at - killed_at:.1f}",
        longest_pause=f"{pause:.1f} s",
        webui_on=webui_on,
        seconds_back_at_09=f"{seconds(back_full, up_at)} after lab up, "
        f"{seconds(back_full, killed_at)} after the kill",
        rate_before=f"{full:.1f}/s",
        lost=lost,
        twice=twice,
    )
