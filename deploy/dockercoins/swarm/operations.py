"""Deploy, scale, switch rng's mode, show and remove DockerCoins on a swarm (Docker SDK).

Works against whatever manager the user points at: DOCKER_HOST, else the current Docker
context (DOCKER_CONTEXT or `docker context use`), else the lab's manager when a lab is up,
else the default socket.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dockercoins import ui
from dockercoins.errors import UserError
from dockercoins.lab import state as lab_state
from dockercoins.swarm.specs import (
    LABEL,
    NETWORK,
    SERVICE_ORDER,
    WEBUI_PORT,
    Images,
    Modes,
    Spec,
    mode_of,
    replicas_of,
    replicated,
    service_spec,
    spec_changes,
    updated_spec,
    with_mode,
)

POLL = 0.5


# ---------------------------------------------------------------- connecting


def manager_url() -> tuple[str | None, str]:
    """(base_url for the SDK or None for DOCKER_HOST/default, a description for messages)."""
    if os.environ.get("DOCKER_HOST"):
        return None, os.environ["DOCKER_HOST"]
    from docker.context.config import get_current_context_name

    context = os.environ.get("DOCKER_CONTEXT") or get_current_context_name()
    if context and context != "default":
        return None, f"the Docker context {context!r}"
    lab = lab_state.load()
    if lab and os.path.exists(lab.manager.socket):
        return lab.manager.docker_host, f"{lab.manager.docker_host} (the lab's manager)"
    return None, "unix:///var/run/docker.sock"


def connect_manager() -> Any:
    """A docker.DockerClient on a swarm manager, or one clear UserError."""
    from dockercoins.dockerapi import connect

    base_url, where = manager_url()
    client = connect(base_url)
    swarm = client.info().get("Swarm", {})
    if swarm.get("LocalNodeState") != "active":
        raise UserError(
            f"the Docker daemon at {where} is not part of a swarm: run `docker swarm init` "
            "there, or `dockercoins lab up` for a multi-node lab"
        )
    if not swarm.get("ControlAvailable"):
        raise UserError(
            f"the Docker daemon at {where} is a swarm worker, not a manager: "
            "point DOCKER_HOST at a manager node"
        )
    return client


@contextmanager
def docker_errors() -> Iterator[None]:
    """Turn a Docker API or connection failure in the middle of a command into one line."""
    import docker.errors
    import requests

    try:
        yield
    except docker.errors.APIError as error:
        explanation = error.explanation or str(error)
        if isinstance(explanation, bytes):
            explanation = explanation.decode(errors="replace")
        raise UserError(f"the swarm manager refused: {explanation}") from error
    except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
        raise UserError(f"lost the swarm manager ({manager_url()[1]}): {error}") from error


# ---------------------------------------------------------------- reading the swarm


@dataclass(frozen=True)
class Node:
    id: str
    hostname: str
    state: str  # ready, down, unknown, disconnected
    availability: str  # active, pause, drain
    role: str
    addr: str

    @property
    def schedulable(self) -> bool:
        return self.state == "ready" and self.availability == "active"


def nodes(client: Any) -> list[Node]:
    result = [
        Node(
            id=raw["ID"],
            hostname=raw.get("Description", {}).get("Hostname", raw["ID"][:12]),
            state=raw.get("Status", {}).get("State", "unknown"),
            availability=raw.get("Spec", {}).get("Availability", "active"),
            role=raw.get("Spec", {}).get("Role", "worker"),
            addr=raw.get("Status", {}).get("Addr", ""),
        )
        for raw in client.api.nodes()
    ]
    return sorted(result, key=lambda node: node.hostname)


def warn_unready_nodes(all_nodes: list[Node]) -> None:
    down = [node for node in all_nodes if node.state != "ready"]
    for node in down:
        ui.info(
            f"warning: node {node.hostname} is {node.state}: no tasks will run there "
            "(global services count only ready nodes)"
        )
    if all_nodes and len(down) == len(all_nodes):
        raise UserError("no swarm node is ready: nothing can run")


def our_services(client: Any, names: Iterable[str] = SERVICE_ORDER) -> dict[str, Spec]:
    """name -> the service as the API returns it (ID, Version, Spec, UpdateStatus...)."""
    wanted = set(names)
    return {
        raw["Spec"]["Name"]: raw for raw in client.api.services() if raw["Spec"]["Name"] in wanted
    }


def tasks_of(client: Any, services: dict[str, Spec]) -> dict[str, list[Spec]]:
    by_id = {raw["ID"]: name for name, raw in services.items()}
    result: dict[str, list[Spec]] = {name: [] for name in services}
    for task in client.api.tasks():
        name = by_id.get(task.get("ServiceID", ""))
        if name:
            result[name].append(task)
    return result


def _container_key(template: Spec) -> tuple[str, list[str]]:
    container = template.get("ContainerSpec", {})
    return str(container.get("Image", "")), sorted(container.get("Env") or [])


def _running(task: Spec, ready: set[str], service_spec: Spec | None = None) -> bool:
    """A task that runs, on a ready node, and (given the service's spec) runs its current
    image and settings: right after an update the old task is still running."""
    current = service_spec is None or _container_key(task.get("Spec", {})) == _container_key(
        service_spec.get("TaskTemplate", {})
    )
    return (
        task.get("DesiredState") == "running"
        and task.get("Status", {}).get("State") == "running"
        and task.get("NodeID") in ready
        and current
    )


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
    ready = {node.id for node in all_nodes if node.state == "ready"}
    schedulable = sum(1 for node in all_nodes if node.schedulable)
    result = []
    for name in SERVICE_ORDER:
        raw = services.get(name)
        if raw is None:
            continue
        replicas = replicas_of(raw["Spec"])
        desired = schedulable if replicas is None else replicas
        running = sum(1 for task in tasks.get(name, []) if _running(task, ready, raw["Spec"]))
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


# ---------------------------------------------------------------- deploy


def ensure_network(client: Any) -> str:
    """The id of the attachable overlay network `dockercoins`, created if missing."""
    for raw in client.api.networks(names=[NETWORK]):
        if raw["Name"] != NETWORK:
            continue
        if raw.get("Driver") != "overlay" or raw.get("Scope") != "swarm":
            raise UserError(
                f"a network named {NETWORK!r} exists but is not a swarm overlay "
                f"(driver {raw.get('Driver')}, scope {raw.get('Scope')}): remove it first"
            )
        return str(raw["Id"])
    created = client.api.create_network(
        NETWORK, driver="overlay", attachable=True, labels={LABEL: "1"}
    )
    ui.info(f"    network {NETWORK}: created (overlay, attachable)")
    return str(created["Id"])


def pin_images(client: Any, images: Images) -> Images:
    """Ask the registry (through the manager) for each image's digest and pin it, as
    `docker service create` does: a pushed new image then updates the service, the same
    image leaves it alone. A registry the manager cannot reach: warn and keep the tag."""
    import docker.errors

    pinned: dict[str, str] = {}
    for service in SERVICE_ORDER:
        if service == "redis":
            continue
        ref = images.ref(service)
        try:
            digest = client.images.get_registry_data(ref).id
        except docker.errors.APIError as error:
            explanation = getattr(error, "explanation", None) or str(error)
            ui.info(f"warning: cannot read {ref} from the registry: {explanation}")
            continue
        pinned[service] = f"{ref}@{digest}"
    return Images(images.registry, images.namespace, images.tag, pinned)


def create_service(client: Any, spec: Spec) -> None:
    client.api.create_service(
        task_template=spec["TaskTemplate"],
        name=spec["Name"],
        labels=spec.get("Labels"),
        mode=spec.get("Mode"),
        endpoint_spec=spec.get("EndpointSpec"),
        update_config=spec.get("UpdateConfig"),
        rollback_config=spec.get("RollbackConfig"),
    )


def update_service(client: Any, raw: Spec, spec: Spec) -> None:
    client.api.update_service(
        raw["ID"],
        raw["Version"]["Index"],
        task_template=spec["TaskTemplate"],
        name=spec["Name"],
        labels=spec.get("Labels") or {},
        mode=spec.get("Mode"),
        endpoint_spec=spec.get("EndpointSpec"),
        update_config=spec.get("UpdateConfig"),
        rollback_config=spec.get("RollbackConfig"),
    )


def deploy(
    images: Images,
    modes: Modes,
    workers: int | None,
    env: dict[str, dict[str, str]],
    timeout: float,
) -> Any:
    """Network, then the five services in the tutorial's order; waits until they run.
    Existing services with the same spec are left alone; a changed spec is updated. The
    scale of existing services (replicas, rng's mode) is kept unless --workers is given."""
    client = connect_manager()
    warn_unready_nodes(nodes(client))
    network_id = ensure_network(client)
    images = pin_images(client, images)
    existing = our_services(client)
    for name in SERVICE_ORDER:
        want_replicas = workers if (name == "worker" and workers is not None) else 1
        desired = service_spec(
            name, images, modes, network_id, replicas=want_replicas, env=env.get(name)
        )
        raw = existing.get(name)
        if raw is None:
            create_service(client, desired)
            ui.info(f"    {name}: created ({desired['TaskTemplate']['ContainerSpec']['Image']})")
            continue
        with_scale = name == "worker" and workers is not None
        if with_scale and mode_of(raw["Spec"]) == "global":
            raise UserError("worker runs in global mode: --workers needs a replicated worker")
        changes = spec_changes(raw["Spec"], desired, with_scale)
        if not changes:
            ui.info(f"    {name}: unchanged")
            continue
        update_service(client, raw, updated_spec(raw["Spec"], desired, with_scale))
        ui.info(f"    {name}: updated ({', '.join(changes)})")
    wait_converged(client, SERVICE_ORDER, timeout, "deploy")
    return client


# ---------------------------------------------------------------- scale and rng mode


def require(services: dict[str, Spec], name: str) -> Spec:
    raw = services.get(name)
    if raw is None:
        raise UserError(f"service {name!r} is not deployed: run `dockercoins deploy` first")
    return raw


def scale(targets: dict[str, int], timeout: float) -> None:
    client = connect_manager()
    warn_unready_nodes(nodes(client))
    services = our_services(client)
    for name in targets:
        raw = require(services, name)
        if mode_of(raw["Spec"]) == "global":
            raise UserError(
                f"{name} is a global service (one task per node) and cannot be scaled: "
                f"`dockercoins rng-mode replicated --replicas N` makes rng replicated again"
                if name == "rng"
                else f"{name} is a global service (one task per node) and cannot be scaled"
            )
    for name, count in targets.items():
        raw = services[name]
        if replicas_of(raw["Spec"]) == count:
            ui.info(f"    {name}: already {count} replicas")
            continue
        spec = dict(raw["Spec"], Mode=replicated(count))
        update_service(client, raw, spec)
        ui.info(f"    {name}: scaled to {count}")
    wait_converged(client, list(targets), timeout, "scale")


def wait_tasks_gone(client: Any, service_ids: set[str], timeout: float, what: str) -> None:
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


def rng_mode(mode: str, replicas: int, timeout: float) -> None:
    """Switch rng between global and replicated: the mode of a service cannot change in
    place, so rng is removed and created again with the same spec in the new mode."""
    client = connect_manager()
    warn_unready_nodes(nodes(client))
    raw = require(our_services(client, ["rng"]), "rng")
    current = mode_of(raw["Spec"])
    if current == mode:
        if mode == "global":
            ui.info("    rng is already global (one task per node): nothing to change")
        elif replicas_of(raw["Spec"]) == replicas:
            ui.info(f"    rng is already replicated with {replicas} replicas: nothing to change")
        else:
            update_service(client, raw, dict(raw["Spec"], Mode=replicated(replicas)))
            ui.info(f"    rng: scaled to {replicas} (already replicated, no need to recreate)")
        wait_converged(client, ["rng"], timeout, "rng-mode")
        return
    started = time.monotonic()
    target = "global mode" if mode == "global" else f"replicated mode ({replicas} replicas)"
    ui.info(
        f"    a service's mode cannot change in place: removing rng and creating it again "
        f"in {target}, with the same image, settings and network"
    )
    client.api.remove_service(raw["ID"])
    wait_tasks_gone(client, {raw["ID"]}, timeout, "removing rng")
    create_service(client, with_mode(raw["Spec"], mode, replicas))
    ui.info(f"    rng: created again in {target}")
    wait_converged(client, ["rng"], max(10.0, timeout - (time.monotonic() - started)), "rng-mode")


# ---------------------------------------------------------------- status


def webui_candidates(explicit: str | None) -> list[str]:
    """Where to read /json: the given URL, else loopback:8000 (the lab's forwarder, or a
    local swarm) and the lab's node addresses. Never any other address."""
    if explicit:
        return [explicit.rstrip("/")]
    urls = [f"http://127.0.0.1:{WEBUI_PORT}"]
    lab = lab_state.load()
    if lab:
        urls += [f"http://{node.ip}:{WEBUI_PORT}" for node in lab.nodes]
    return urls


def rate_between_changes(samples: list[tuple[float, int]]) -> float | None:
    """Hashes per second from (now, hashes) samples of /json.

    Workers add to the counter about once a second, so it moves in steps: two samples
    1.5 s apart see one or two steps, and the rate looks like 2 or 4 for a true 3.3. The
    rate is measured instead between the first and the last sample at which the counter
    had just moved, so it spans whole steps. None with fewer than two such samples.
    """
    changes = [
        (now, hashes)
        for (_, before), (now, hashes) in itertools.pairwise(samples)
        if hashes != before
    ]
    if len(changes) < 2 or changes[-1][0] <= changes[0][0]:
        return None
    (t1, h1), (t2, h2) = changes[0], changes[-1]
    return (h2 - h1) / (t2 - t1)


def hash_rate(urls: list[str], window: float = 4.0, poll: float = 0.2) -> tuple[str, float] | None:
    """(url, hashes per second) from /json polled every `poll` s for `window` s at the
    first URL that answers; 0.0 when the counter did not move; None when none answers."""
    import httpx

    for url in urls:
        samples: list[tuple[float, int]] = []
        try:
            with httpx.Client(timeout=2.0) as http:
                deadline = time.monotonic() + window
                while True:
                    data = http.get(f"{url}/json").json()
                    samples.append((float(data["now"]), int(data["hashes"])))
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(poll)
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            continue
        rate = rate_between_changes(samples)
        return url, rate if rate is not None else 0.0
    return None


def table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def status_lines(
    services: dict[str, Spec], tasks: dict[str, list[Spec]], all_nodes: list[Node]
) -> list[str]:
    """The services table and the tasks-per-node table (pure: from API answers)."""
    states = {state.name: state for state in progress(services, tasks, all_nodes)}
    rows = [["SERVICE", "MODE", "RUNNING/DESIRED", "IMAGE"]]
    for name in SERVICE_ORDER:
        raw = services.get(name)
        if raw is None:
            rows.append([name, "-", "not deployed", "-"])
            continue
        image = raw["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0]
        state = states[name]
        rows.append([name, mode_of(raw["Spec"]), f"{state.running}/{state.desired}", image])
    lines = [*table(rows), ""]
    header = ["NODE", "STATE", "ROLE", *SERVICE_ORDER]
    node_rows = [header]
    for node in all_nodes:
        counts = []
        for name in SERVICE_ORDER:
            running = [
                task
                for task in tasks.get(name, [])
                if task.get("NodeID") == node.id and _running(task, {node.id})
            ]
            counts.append(str(len(running)))
        node_rows.append([node.hostname, node.state, node.role, *counts])
    return lines + table(node_rows)


def status(webui: str | None, wait: float = 0.0) -> int:
    client = connect_manager()
    services = our_services(client)
    all_nodes = nodes(client)
    tasks = tasks_of(client, services)
    for line in status_lines(services, tasks, all_nodes):
        ui.result(line)
    if "webui" not in services:
        ui.result("hash rate: DockerCoins is not deployed (dockercoins deploy)")
        return 0
    deadline = time.monotonic() + wait
    measured = hash_rate(webui_candidates(webui))
    while (measured is None or measured[1] <= 0) and time.monotonic() < deadline:
        # just deployed: the workers report about once a second, the page may be starting
        time.sleep(1.0)
        measured = hash_rate(webui_candidates(webui))
    if measured is None:
        tried = ", ".join(webui_candidates(webui))
        ui.result(f"hash rate: unknown (no web UI answered at {tried}; try --webui URL)")
        return 0
    url, rate = measured
    ui.result(f"hash rate: {rate:.1f} hashes/s (web UI {url})")
    return 0


# ---------------------------------------------------------------- down


def down(timeout: float) -> None:
    """Remove the five services, wait until their tasks are gone, remove the network."""
    client = connect_manager()
    import docker.errors

    services = our_services(client)
    for name in SERVICE_ORDER:
        if name in services:
            client.api.remove_service(services[name]["ID"])
            ui.info(f"    {name}: removed")
    if not services:
        ui.info("    no DockerCoins service on this swarm")
    deadline = time.monotonic() + timeout
    wait_tasks_gone(client, {raw["ID"] for raw in services.values()}, timeout, "down")
    networks = [raw for raw in client.api.networks(names=[NETWORK]) if raw["Name"] == NETWORK]
    for raw in networks:

        def remove(network_id: str = raw["Id"]) -> None:
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_network(network_id)

        _retry_until(deadline, remove, docker.errors.APIError, f"removing network {NETWORK}")
    # the swarm deletes a network asynchronously: wait, so that a `deploy` right after
    # does not find a network that is going away
    while any(raw["Name"] == NETWORK for raw in client.api.networks(names=[NETWORK])):
        if time.monotonic() > deadline:
            raise UserError(f"network {NETWORK} still there after {timeout:.0f} s")
        time.sleep(POLL)
    if networks:
        ui.info(f"    network {NETWORK}: removed")


def _retry_until(
    deadline: float, action: Callable[[], object], errors: type[Exception], what: str
) -> None:
    while True:
        try:
            action()
            return
        except errors as error:
            if time.monotonic() > deadline:
                raise UserError(f"{what} failed: {error}") from error
            time.sleep(POLL)
