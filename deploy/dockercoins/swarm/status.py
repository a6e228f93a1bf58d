"""`status`: the services, the tasks per node and the hash rate now."""

from __future__ import annotations

import time
from typing import Any

from dockercoins import ui
from dockercoins.names import SWARM_SERVICES
from dockercoins.swarm.converge import progress
from dockercoins.swarm.rates import WebUIUnreadable, hash_rate, sample, webui_candidates
from dockercoins.swarm.read import Node, nodes, our_services, task_running, tasks_of
from dockercoins.swarm.specs import Spec, mode_of

WINDOW = 4.0  # seconds of /json samples per hash rate: spans about four counter steps
POLL = 0.2  # seconds between /json reads


def status_lines(
    services: dict[str, Spec], tasks: dict[str, list[Spec]], all_nodes: list[Node]
) -> list[str]:
    """The services table and the tasks-per-node table (pure: from API answers)."""
    states = {state.name: state for state in progress(services, tasks, all_nodes)}
    rows = [["SERVICE", "MODE", "RUNNING/DESIRED", "IMAGE"]]
    for name in SWARM_SERVICES:
        raw = services.get(name)
        if raw is None:
            rows.append([name, "-", "not deployed", "-"])
            continue
        image = raw["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0]
        state = states[name]
        rows.append([name, mode_of(raw["Spec"]), f"{state.running}/{state.desired}", image])
    lines = [*ui.table(rows), ""]
    node_rows = [["NODE", "STATE", "ROLE", *SWARM_SERVICES]]
    for node in all_nodes:
        counts = []
        for name in SWARM_SERVICES:
            running = [
                task
                for task in tasks.get(name, [])
                if task.get("NodeID") == node.id and task_running(task, {node.id})
            ]
            counts.append(str(len(running)))
        node_rows.append([node.hostname, node.state, node.role, *counts])
    return lines + ui.table(node_rows)


def measure_hash_rate(urls: list[str]) -> tuple[str, float] | None:
    """(url, hashes per second) from /json sampled for WINDOW s at the first URL that
    answers; 0.0 when the counter did not move; None when none answers."""
    for url in urls:
        try:
            samples = sample(url, WINDOW, POLL, max_failures=1)
        except WebUIUnreadable:
            continue
        rate = hash_rate(samples)
        return url, rate if rate is not None else 0.0
    return None


def status(client: Any, webui: str | None, wait: float = 0.0) -> int:
    """Print the tables, then the hash rate (waiting up to `wait` s for one above zero)."""
    services = our_services(client)
    all_nodes = nodes(client)
    tasks = tasks_of(client, services)
    for line in status_lines(services, tasks, all_nodes):
        ui.result(line)
    if "webui" not in services:
        ui.result("hash rate: DockerCoins is not deployed (dockercoins deploy)")
        return 0
    deadline = time.monotonic() + wait
    measured = measure_hash_rate(webui_candidates(webui))
    while (measured is None or measured[1] <= 0) and time.monotonic() < deadline:
        # just deployed: the workers report about once a second, the page may be starting
        time.sleep(1.0)
        measured = measure_hash_rate(webui_candidates(webui))
    if measured is None:
        tried = ", ".join(webui_candidates(webui))
        ui.result(f"hash rate: unknown (no web UI answered at {tried}; try --webui URL)")
        return 0
    url, rate = measured
    ui.result(f"hash rate: {rate:.1f} hashes/s (web UI {url})")
    return 0
