"""`status`: the services, the tasks per node, the hash rate now and, when Prometheus
answers, the rate of each rng and worker task."""

from __future__ import annotations

import time
from typing import Any

from dockercoins import ui
from dockercoins.names import REDIS, SWARM_SERVICES
from dockercoins.swarm import prometheus
from dockercoins.swarm.converge import describe_stuck, progress
from dockercoins.swarm.placement import redis_node
from dockercoins.swarm.prometheus import InstanceRate
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


def redis_unavailable(
    services: dict[str, Spec], tasks: dict[str, list[Spec]], all_nodes: list[Node]
) -> str | None:
    """One line saying why the counter cannot be read when redis has no running task (its
    node down, or what its latest task says), None when redis runs or is not deployed."""
    raw = services.get(REDIS)
    if raw is None:
        return None
    ready = {node.id for node in all_nodes if node.state == "ready"}
    redis_tasks = tasks.get(REDIS, [])
    if any(task_running(task, ready) for task in redis_tasks):
        return None
    prefix = "counter unavailable: redis has no running task"
    node = redis_node(all_nodes)
    if node is None:
        latest = sorted(
            (task for task in redis_tasks if task.get("NodeID")),
            key=lambda task: task.get("Status", {}).get("Timestamp", ""),
        )
        by_id = {item.id: item for item in all_nodes}
        node = by_id.get(latest[-1]["NodeID"]) if latest else None
    if node is not None and node.state != "ready":
        return f"{prefix} (its node {node.hostname} is {node.state})"
    problems = describe_stuck(REDIS, redis_tasks, all_nodes, limit=1)
    where = f"its node {node.hostname} is {node.state}; " if node is not None else ""
    return f"{prefix} ({where}{problems[0] if problems else 'no task yet'})"


def instance_rate_lines(
    url: str, window: float, rng: list[InstanceRate], worker: list[InstanceRate]
) -> list[str]:
    """The per-task table: rng answers/s and worker hashes/s per instance and node (pure)."""
    if not rng and not worker:
        return [
            f"per task: no rates yet (Prometheus at {url} has no rng or worker samples from "
            f"the last {window:.0f} s; it scrapes every few seconds)"
        ]
    rows = [["SERVICE", "NODE", "INSTANCE", "PER SECOND"]]
    for service, unit, rates in (("rng", "answers", rng), ("worker", "hashes", worker)):
        rows += [
            [service, item.node or "-", item.instance, f"{item.rate:.1f} {unit}"] for item in rates
        ]
    totals = (
        f"rng {prometheus.total(rng):.1f} answers/s, worker {prometheus.total(worker):.1f} hashes/s"
    )
    return [
        f"per task, over the last {window:.0f} s (Prometheus at {url}):",
        *ui.table(rows),
        f"in all: {totals}",
    ]


def per_task_lines(explicit: str | None) -> list[str]:
    """instance_rate_lines from the first Prometheus that answers, else one line saying why
    there are none (never an error: a deploy may run without metrics)."""
    window = prometheus.DEFAULT_WINDOW
    with prometheus.connection() as http:
        try:
            url = prometheus.locate(explicit, http)
            rng = prometheus.fetch_rates(http, url, prometheus.RNG_REQUESTS, window)
            worker = prometheus.fetch_rates(http, url, prometheus.WORKER_HASHES, window)
        except prometheus.Unavailable as why:
            return [
                f"per task: no rates ({why}; deployed with --no-metrics? "
                "else give --prometheus URL)"
            ]
    return instance_rate_lines(url, window, rng, worker)


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


def status(
    client: Any, webui: str | None, wait: float = 0.0, prometheus_url: str | None = None
) -> int:
    """Print the tables, then the hash rate (waiting up to `wait` s for one above zero), then
    the rate of each rng and worker task from Prometheus (`prometheus_url`, else found)."""
    services = our_services(client)
    all_nodes = nodes(client)
    tasks = tasks_of(client, services)
    for line in status_lines(services, tasks, all_nodes):
        ui.result(line)
    if "webui" not in services:
        ui.result("hash rate: DockerCoins is not deployed (dockercoins deploy)")
        return 0
    unavailable = redis_unavailable(services, tasks, all_nodes)
    if unavailable is not None:
        ui.result(unavailable)
        for line in per_task_lines(prometheus_url):
            ui.result(line)
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
    else:
        url, rate = measured
        ui.result(f"hash rate: {rate:.1f} hashes/s (web UI {url})")
    for line in per_task_lines(prometheus_url):
        ui.result(line)
    return 0
