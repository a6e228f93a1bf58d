"""Waiting for the swarm: running/desired tasks per service, what is stuck, and the waits
that print a line at every change and give up with the stuck tasks' errors."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dockercoins import ui
from dockercoins.errors import UserError
from dockercoins.swarm.read import Node, nodes, our_services, task_running, tasks_of
from dockercoins.swarm.specs import DEPLOY_ORDER, Spec, replicas_of

POLL = 0.5


@dataclass(frozen=True)
class Progress:
    name: str
    running: int
    desired: int
    updating: bool

    @property
    def done(self) -> bool:
        return self.running == self.desired and not self.updating

    def __str__(self) -> str:
        return f"{self.name} {self.running}/{self.desired}" + (
            " (updating)" if self.updating else ""
        )


def progress(
    services: dict[str, Spec], tasks: dict[str, list[Spec]], all_nodes: list[Node]
) -> list[Progress]:
    """Running/desired tasks of each service, in DEPLOY_ORDER (pure)."""
    ready = {node.id for node in all_nodes if node.state == "ready"}
    schedulable = sum(1 for node in all_nodes if node.schedulable)
    result = []
    for name in DEPLOY_ORDER:
        raw = services.get(name)
        if raw is None:
            continue
        replicas = replicas_of(raw["Spec"])
        desired = schedulable if replicas is None else replicas
        running = sum(1 for task in tasks.get(name, []) if task_running(task, ready, raw["Spec"]))
        update_state = (raw.get("UpdateStatus") or {}).get("State", "")
        result.append(
            Progress(name, running, desired, update_state in ("updating", "rollback_started"))
        )
    return result


def describe_stuck(
    name: str, tasks: list[Spec], all_nodes: list[Node], limit: int = 2
) -> list[str]:
    """The latest distinct problems of a service's tasks: state, nodes and error."""
    hostnames = {node.id: node.hostname for node in all_nodes}
    problems: dict[tuple[str, str], list[str]] = {}
    latest = sorted(tasks, key=lambda t: t.get("Status", {}).get("Timestamp", ""), reverse=True)
    for task in latest:
        status = task.get("Status", {})
        state = status.get("State", "?")
        if state == "running" and task.get("DesiredState") == "running":
            continue
        error = status.get("Err") or status.get("Message") or ""
        if error == state:
            error = ""
        key = (state, error)
        if key not in problems:
            if len(problems) >= limit:
                continue
            problems[key] = []
        node = hostnames.get(task.get("NodeID", ""), "no node")
        if node not in problems[key]:
            problems[key].append(node)
    return [
        f"{name} task {state} on {', '.join(where)}" + (f": {error}" if error else "")
        for (state, error), where in problems.items()
    ]


def wait_converged(client: Any, names: Iterable[str], timeout: float, what: str) -> None:
    """Print a progress line at every change until every service runs its desired tasks;
    UserError naming the stuck tasks and their errors after `timeout` seconds."""
    wanted = list(names)
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        services = our_services(client, wanted)
        tasks = tasks_of(client, services)
        all_nodes = nodes(client)
        states = progress(services, tasks, all_nodes)
        line = ", ".join(str(state) for state in states)
        if line != last:
            ui.info(f"    {line}")
            last = line
        if all(state.done for state in states):
            return
        if time.monotonic() > deadline:
            stuck = [state for state in states if not state.done]
            details = []
            for state in stuck:
                problems = describe_stuck(state.name, tasks.get(state.name, []), all_nodes)
                details.append(f"{state}" + (f" [{'; '.join(problems)}]" if problems else ""))
            hint = ""
            if any("image" in detail.lower() or "pull" in detail.lower() for detail in details):
                hint = " (can every node pull from the registry? check `dockercoins push`)"
            raise UserError(f"{what} timed out after {timeout:.0f} s: {'; '.join(details)}{hint}")
        time.sleep(POLL)


def wait_tasks_gone(client: Any, service_ids: set[str], timeout: float, what: str) -> None:
    """Print the count of tasks left at every change until the services' tasks are gone;
    UserError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = -1
    while True:
        left = [task for task in client.api.tasks() if task.get("ServiceID") in service_ids]
        if len(left) != last:
            ui.info(f"    {len(left)} task(s) left")
            last = len(left)
        if not left:
            return
        if time.monotonic() > deadline:
            states = sorted({task.get("Status", {}).get("State", "?") for task in left})
            raise UserError(
                f"{what} timed out after {timeout:.0f} s: {len(left)} task(s) still there "
                f"({', '.join(states)})"
            )
        time.sleep(POLL)
