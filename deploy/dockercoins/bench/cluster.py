"""What `bench rng-modes` changes on the swarm (rng's mode, the worker scale): read it,
set it, and put it back as it was, with Ctrl-C deferred while it is put back."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

from dockercoins import ui
from dockercoins.bench.model import Delays, delays_from_env, env_list_to_dict
from dockercoins.errors import UserError
from dockercoins.names import GLOBAL, REDIS, REPLICATED, SWARM_SERVICES
from dockercoins.swarm import operations
from dockercoins.swarm.converge import wait_converged
from dockercoins.swarm.read import our_services, require, tasks_of
from dockercoins.swarm.specs import Spec, mode_of, replicas_of


@dataclass(frozen=True)
class ClusterState:
    """What the benchmark changes, recorded to put it back."""

    rng_mode: str
    rng_replicas: int | None  # None when global
    worker_replicas: int

    def describe(self) -> str:
        rng = GLOBAL if self.rng_mode == GLOBAL else f"{REPLICATED} x{self.rng_replicas}"
        return f"rng {rng}, worker x{self.worker_replicas}"


def read_state(client: Any) -> ClusterState:
    """rng's mode and replicas and the worker replicas now."""
    services = our_services(client, ["rng", "worker"])
    rng = require(services, "rng")["Spec"]
    worker = require(services, "worker")["Spec"]
    if mode_of(worker) != REPLICATED:
        raise UserError("worker runs in global mode: the benchmark needs a replicated worker")
    return ClusterState(
        rng_mode=mode_of(rng),
        rng_replicas=replicas_of(rng),
        worker_replicas=replicas_of(worker) or 0,
    )


def require_deployed(client: Any) -> dict[str, Spec]:
    """The five services; UserError naming the missing ones."""
    services = our_services(client, SWARM_SERVICES)
    missing = [name for name in SWARM_SERVICES if name not in services]
    if missing:
        raise UserError(
            f"DockerCoins is not deployed on this swarm (no service {', '.join(missing)}): "
            "run `dockercoins deploy` first"
        )
    return services


def delays_of(services: dict[str, Spec]) -> Delays:
    """The delays the services read from the environment in their specs."""

    def env(name: str) -> dict[str, str]:
        container = services[name]["Spec"]["TaskTemplate"].get("ContainerSpec", {})
        return env_list_to_dict(container.get("Env"))

    return delays_from_env(env("worker"), env("rng"), env("hasher"))


def running_tasks(client: Any, name: str) -> int:
    """How many of the service's tasks run now."""
    services = our_services(client, [name])
    tasks = tasks_of(client, services).get(name, [])
    return sum(
        1
        for task in tasks
        if task.get("DesiredState") == "running" and task["Status"]["State"] == "running"
    )


def rng_spec(client: Any) -> Spec:
    """rng's spec now, to create it again if an interrupted mode switch removed it."""
    spec: Spec = require(our_services(client, ["rng"]), "rng")["Spec"]
    return spec


def apply(client: Any, mode: str, rng_replicas: int, workers: int, timeout: float) -> None:
    """rng in `mode`, worker at `workers` replicas; returns once every task runs."""
    require_deployed(client)
    state = read_state(client)
    if state.rng_mode != mode or (mode == REPLICATED and state.rng_replicas != rng_replicas):
        operations.rng_mode(client, mode, rng_replicas, timeout)
    if state.worker_replicas != workers:
        operations.scale(client, {"worker": workers}, timeout)
    wait_converged(client, SWARM_SERVICES, timeout, "waiting for the services")


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """While the cluster is put back, Ctrl-C only says to wait (every wait is bounded)."""

    def say_wait(_signum: int, _frame: FrameType | None) -> None:
        ui.info("\nputting the services back as they were first; this ends by itself")

    try:
        previous = signal.signal(signal.SIGINT, say_wait)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def restore(client: Any, original: ClusterState, original_rng: Spec, timeout: float) -> None:
    """Put rng's mode and the worker scale back; rng is created again from its recorded spec
    if an interrupted mode switch left it removed."""
    with interrupts_deferred():
        present = set(our_services(client, SWARM_SERVICES))
        if not present & {REDIS, "hasher", "webui", "worker"}:
            ui.info("DockerCoins was taken down while the benchmark ran: nothing to put back")
            return
        if "rng" not in present:
            ui.info("rng was removed in the middle of a mode switch: creating it again")
            operations.create_service(client, original_rng)
        if "worker" not in present:
            ui.info("worker was removed while the benchmark ran: not putting anything back")
            return
        if read_state(client) == original:
            return
        ui.info(f"putting the services back: {original.describe()}")
        apply(
            client,
            original.rng_mode,
            original.rng_replicas or 1,
            original.worker_replicas,
            timeout,
        )
