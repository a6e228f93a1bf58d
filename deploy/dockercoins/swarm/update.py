"""`update`: a rolling update of one service by the swarm's own updater, followed live.

The tool changes the service's image tag and/or environment (one POST /services/update, as
`docker service update --image/--env-add` does) and the swarm does the rest with the
service's update policy (specs.update_config): new tasks a batch at a time, each one
healthy before the next batch, then a watch of UPDATE_MONITOR seconds. A task that fails
(it exits, or never passes its image's health check) makes the swarm roll back by itself.

Following it reads what the manager says: the service's UpdateStatus (State: updating,
completed, paused, rollback_started, rollback_completed, rollback_paused; Message; the
StartedAt of the update it describes) and its tasks (which run the new spec; the failed
one's Status.Err, exit code and node). The readers here are pure functions of those API
answers; follow() polls them.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dockercoins import ui
from dockercoins.errors import UserError
from dockercoins.names import IMAGES, PROMETHEUS, SWARM_SERVICES
from dockercoins.swarm.read import Node
from dockercoins.swarm.specs import SECOND_NS, Spec, replicas_of

POLL = 0.5
UPDATABLE = (*SWARM_SERVICES, PROMETHEUS)
# States of an update as UpdateStatus.State spells them.
UPDATING = "updating"
COMPLETED = "completed"
PAUSED = "paused"
ROLLBACK_STARTED = "rollback_started"
ROLLBACK_COMPLETED = "rollback_completed"
ROLLBACK_PAUSED = "rollback_paused"
# swarmkit names the task that made it stop or roll back: "update rolled back due to failure
# or early termination of task <id>" (or "paused due to ..."). Task ids: 25 of [0-9a-z].
_TASK_IN_MESSAGE = re.compile(r"\btask ([0-9a-z]{25})\b")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
FAILED_STATES = ("failed", "rejected", "orphaned")


def check_service(name: str) -> str:
    """`name` if it is one of the services deploy makes, else a one-line UserError."""
    if name not in UPDATABLE:
        raise UserError(f"unknown service {name!r}: choose from {', '.join(UPDATABLE)}")
    return name


def parse_env(items: list[str] | None) -> dict[str, str]:
    """`KEY=VALUE` items (from --env) -> {KEY: VALUE}, in order; one-line UserError if bad."""
    result: dict[str, str] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq:
            raise UserError(f"malformed --env {item!r}: expected KEY=VALUE, e.g. WORKER_DELAY=0.2")
        if not _ENV_NAME.match(key):
            raise UserError(
                f"malformed variable name {key!r} in --env {item!r}: letters, digits and _, "
                "not starting with a digit"
            )
        result[key] = value
    return result


def retagged(image: str, tag: str) -> str:
    """The image reference with another tag and no digest:
    `10.0.0.1:5000/ns/rng:latest@sha256:...` -> `10.0.0.1:5000/ns/rng:TAG`."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:  # a tag (a colon before the last slash is a registry's port)
        name = name[:colon]
    return f"{name}:{tag}"


def with_changes(spec: Spec, image: str | None, env: dict[str, str]) -> Spec:
    """A copy of the service spec with `image` (when given) and `env` set: a variable
    already there gets the new value in its place, a new one is added at the end."""
    new = copy.deepcopy(spec)
    container = new.setdefault("TaskTemplate", {}).setdefault("ContainerSpec", {})
    if image is not None:
        container["Image"] = image
    if env:
        current = list(container.get("Env") or [])
        names = [item.partition("=")[0] for item in current]
        for key, value in env.items():
            if key in names:
                current[names.index(key)] = f"{key}={value}"
            else:
                current.append(f"{key}={value}")
                names.append(key)
        container["Env"] = current
    return new


@dataclass(frozen=True)
class UpdateStatus:
    """A service's UpdateStatus ("" everywhere when it has none: never updated)."""

    state: str
    message: str
    started: str

    @property
    def task_id(self) -> str | None:
        """The task the message blames (a failed update), if it names one."""
        found = _TASK_IN_MESSAGE.search(self.message)
        return found.group(1) if found else None


def update_status(service: Spec) -> UpdateStatus:
    raw = service.get("UpdateStatus") or {}
    return UpdateStatus(
        state=str(raw.get("State", "")),
        message=str(raw.get("Message", "")),
        started=str(raw.get("StartedAt", "")),
    )


def _container_key(template: Spec) -> tuple[str, list[str]]:
    container = template.get("ContainerSpec", {})
    return str(container.get("Image", "")), sorted(container.get("Env") or [])


def runs_spec(task: Spec, spec: Spec) -> bool:
    """The task runs the service spec `spec` (its image and environment)."""
    return _container_key(task.get("Spec", {})) == _container_key(spec.get("TaskTemplate", {}))


@dataclass(frozen=True)
class Progress:
    """Where an update stands, from the service and its tasks."""

    service: str
    state: str  # the UpdateStatus state of this update ("" before the swarm starts it)
    updated: int  # tasks running the new spec
    desired: int
    starting: int  # tasks of the new spec on their way (not yet running: not yet healthy)

    def line(self, monitor: float) -> str:
        state = self.state or "waiting for the swarm to start the update"
        text = f"    {self.service}: {state}, {self.updated}/{self.desired} tasks updated"
        if self.starting:
            text += f", {self.starting} starting (running once healthy)"
        if self.state == UPDATING and self.updated >= self.desired:
            text += f"; the swarm watches them for {monitor:.0f} s before calling it completed"
        return text


def desired_tasks(service: Spec, all_nodes: list[Node]) -> int:
    replicas = replicas_of(service["Spec"])
    if replicas is not None:
        return replicas
    return sum(1 for node in all_nodes if node.schedulable)


def progress(
    name: str,
    service: Spec,
    new_spec: Spec,
    tasks: list[Spec],
    all_nodes: list[Node],
    *,
    ours: bool,
) -> Progress:
    """The update's progress (pure): `ours` says whether the UpdateStatus describes this
    update yet (the swarm sets it a moment after the spec changed)."""
    ready = {node.id for node in all_nodes if node.state == "ready"}
    updated = starting = 0
    for task in tasks:
        if task.get("DesiredState") != "running" or not runs_spec(task, new_spec):
            continue
        state = task.get("Status", {}).get("State", "")
        if state == "running" and task.get("NodeID") in ready:
            updated += 1
        elif state not in (*FAILED_STATES, "running", "shutdown", "complete"):
            starting += 1
    return Progress(
        service=name,
        state=update_status(service).state if ours else "",
        updated=updated,
        desired=desired_tasks(service, all_nodes),
        starting=starting,
    )


def describe_task(task: Spec, all_nodes: list[Node], *, ran: bool = True) -> str:
    """`task 0123456789ab on node2: failed: <Err> (exit code 2)` from an API task. A task
    that ended with no error and was never seen running (`ran` False) never became healthy:
    the swarm counts a task with a health check as running once it passed it, and stops
    one that turned unhealthy first (its container then exits as told, often with 0)."""
    status = task.get("Status", {})
    hostnames = {node.id: node.hostname for node in all_nodes}
    where = hostnames.get(task.get("NodeID", ""), "no node")
    state = str(status.get("State", "?"))
    error = str(status.get("Err") or "").strip()
    message = error or str(status.get("Message") or "").strip()
    code = (status.get("ContainerStatus") or {}).get("ExitCode")
    text = f"task {str(task.get('ID', '?'))[:12]} on {where}"
    if not ran and not error and state in ("complete", "shutdown"):
        return f"{text} never became healthy (it ended {state}, exit code {code or 0})"
    text += f": {state}"
    if message and message != state:
        text += f": {message}"
    if code and f"({code})" not in message:
        text += f" (exit code {code})"
    return text


def failure_reason(
    blamed: str | None,
    new_spec: Spec,
    tasks: list[Spec],
    all_nodes: list[Node],
    ran: set[str] | None = None,
) -> str:
    """Why the update failed: the task the swarm blamed (its id from the UpdateStatus
    message), else the newest failed task of the new spec; else that no task said why.
    `ran`: the ids of the tasks seen running (None: take them all as having run)."""
    by_id = {str(task.get("ID", "")): task for task in tasks}
    if blamed and blamed in by_id:
        return describe_task(by_id[blamed], all_nodes, ran=ran is None or blamed in ran)

    def ended_badly(task: Spec) -> bool:
        """Failed, ended with an error, or (never seen running) ended before it was healthy."""
        status = task.get("Status", {})
        state = status.get("State")
        if state in FAILED_STATES:
            return True
        if state in ("complete", "shutdown") and status.get("Err"):
            return True
        return state == "complete" and ran is not None and task.get("ID") not in ran

    failed = [task for task in tasks if runs_spec(task, new_spec) and ended_badly(task)]
    if failed:
        newest = max(failed, key=lambda task: str(task.get("Status", {}).get("Timestamp", "")))
        return describe_task(newest, all_nodes, ran=ran is None or newest.get("ID") in ran)
    if blamed:
        return f"task {blamed[:12]} (gone: the swarm keeps only recent tasks)"
    return "no task of the new version said why"


def monitor_seconds(spec: Spec) -> float:
    return float((spec.get("UpdateConfig") or {}).get("Monitor") or 0) / SECOND_NS


@dataclass
class Outcome:
    """What follow() ends with: the final state and, after a failure, why (and the task
    the swarm blamed, when it named one)."""

    state: str
    reason: str = ""
    task_id: str | None = None


def follow(
    read: Callable[[], tuple[Spec, list[Spec], list[Node]]],
    name: str,
    before: UpdateStatus,
    new_spec: Spec,
    timeout: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Outcome:
    """Print a progress line at every change until the update completes, is rolled back
    (or paused), or `timeout` seconds pass (UserError). `read()` answers (service, its tasks,
    the nodes); `before` is the UpdateStatus before the spec changed: a status with the
    same StartedAt describes an older update."""
    deadline = clock() + timeout
    monitor = monitor_seconds(new_spec)
    last = ""
    blamed: str | None = None
    ran: set[str] = set()  # tasks seen running
    while True:
        service, tasks, all_nodes = read()
        status = update_status(service)
        ours = bool(status.state) and status.started != before.started
        if ours and status.task_id:
            blamed = blamed or status.task_id
        ran |= {
            str(task.get("ID"))
            for task in tasks
            if task.get("Status", {}).get("State") == "running"
        }
        state = progress(name, service, new_spec, tasks, all_nodes, ours=ours)
        line = state.line(monitor)
        if line != last:
            ui.info(line)
            last = line
        if ours and status.state == COMPLETED:
            return Outcome(COMPLETED)
        if not ours and state.desired == 0:
            return Outcome(COMPLETED)  # nothing to replace: the swarm starts no update
        if ours and status.state in (PAUSED, ROLLBACK_COMPLETED, ROLLBACK_PAUSED):
            reason = failure_reason(blamed, new_spec, tasks, all_nodes, ran)
            return Outcome(status.state, reason, blamed)
        if clock() > deadline:
            where = status.state if ours else "not started"
            raise UserError(
                f"the update of {name} did not finish within {timeout:.0f} s (state: {where}, "
                f"{state.updated}/{state.desired} tasks updated); the swarm goes on with it: "
                f"`docker service ps {name}` shows its tasks"
            )
        sleep(POLL)


LOG_LINES_READ = 5000  # at most, looking for the blamed task's first log line
LOG_LINE_SHOWN = 200  # characters of it in the error
LOG_TIMEOUT = 10  # seconds for each read of the logs


def task_line(chunk: bytes, task_id: str) -> str | None:
    """The message of one line of GET /services/{id}/logs?details=1 when the task
    `task_id` wrote it (details: `com.docker.swarm.task.id=...,... message`), else None."""
    text = chunk.decode("utf-8", "replace").rstrip("\r\n")
    details, _, message = text.partition(" ")
    if f"com.docker.swarm.task.id={task_id}" not in details.split(","):
        return None
    return message.strip()


def first_log_line(client: Any, service_id: str, task_id: str) -> str | None:
    """The blamed task's first log line, through the manager (where the services say how
    they start: `hasher starting on 0.0.0.0:81`, or `bad setting: ...`); None when it wrote
    none or its logs cannot be read."""
    import docker.errors
    import requests

    timeout = client.api.timeout
    client.api.timeout = LOG_TIMEOUT  # a node that does not answer must not hold the error up
    try:
        task = client.api.inspect_task(task_id)
        created = str(task.get("CreatedAt", ""))[:19]
        since = int(datetime.fromisoformat(created).replace(tzinfo=UTC).timestamp()) - 1
        chunks = client.api.service_logs(
            service_id, details=True, stdout=True, stderr=True, since=since
        )
        for count, chunk in enumerate(chunks):
            line = task_line(chunk, task_id)
            if line:
                return line[:LOG_LINE_SHOWN]
            if count >= LOG_LINES_READ:
                break
    except (docker.errors.APIError, requests.RequestException, ValueError, OSError):
        return None  # the error already says what the swarm says; the log line is a bonus
    finally:
        client.api.timeout = timeout
    return None


def outcome_error(name: str, outcome: Outcome) -> UserError:
    """The one line a failed update ends with."""
    if outcome.state == ROLLBACK_COMPLETED:
        return UserError(f"rolled back: {outcome.reason}; {name} runs its previous version again")
    if outcome.state == PAUSED:
        return UserError(
            f"update paused: {outcome.reason}; `docker service update --rollback {name}` "
            "puts the previous version back"
        )
    return UserError(
        f"rolled back, and the rollback paused: {outcome.reason}; "
        f"`docker service ps {name}` shows its tasks"
    )


def resolve_image(client: Any, current_image: str, tag: str) -> str:
    """The image with `tag`, pinned to the digest the registry has for it (as deploy and
    `docker service update --image` pin); UserError when the registry does not have it."""
    import docker.errors

    ref = retagged(current_image, tag)
    try:
        digest = client.images.get_registry_data(ref).id
    except docker.errors.APIError as error:
        explanation = getattr(error, "explanation", None) or str(error)
        raise UserError(
            f"cannot read {ref} from the registry: {explanation} (push it first: "
            f"`dockercoins push --tag {tag}`)"
        ) from None
    return f"{ref}@{digest}"


def update(client: Any, name: str, tag: str | None, env: dict[str, str], timeout: float) -> Outcome:
    """Change the service's image tag and/or environment and follow the update; the
    Outcome (completed, or the failure and why). UserError when nothing would change, the
    service is not deployed, or the wait times out."""
    from dockercoins.swarm.operations import update_service
    from dockercoins.swarm.read import nodes, our_services, require

    if tag is None and not env:
        raise UserError("nothing to update: give --tag TAG and/or --env KEY=VALUE")
    if tag is not None and name not in IMAGES:
        raise UserError(
            f"{name} runs an image this project does not build: --tag applies to "
            f"{', '.join(IMAGES)}"
        )
    raw = require(our_services(client, [name]), name)
    spec = raw["Spec"]
    image = None
    if tag is not None:
        image = resolve_image(client, spec["TaskTemplate"]["ContainerSpec"]["Image"], tag)
    new_spec = with_changes(spec, image, env)
    if _container_key(new_spec["TaskTemplate"]) == _container_key(spec["TaskTemplate"]):
        ui.info(f"    {name}: already runs that image and environment: nothing to change")
        return Outcome(COMPLETED)
    before = update_status(raw)
    update_service(client, raw, new_spec)
    what = [f"image {image}"] if image else []
    what += [f"{key}={value}" for key, value in env.items()]
    order = (spec.get("UpdateConfig") or {}).get("Order") or "stop-first"
    ui.info(f"    {name}: updating to {', '.join(what)} ({order})")

    def read() -> tuple[Spec, list[Spec], list[Node]]:
        service = client.api.inspect_service(raw["ID"])
        tasks = client.api.tasks(filters={"service": raw["ID"]})
        return service, tasks, nodes(client)

    outcome = follow(read, name, before, new_spec, timeout)
    if outcome.state != COMPLETED and outcome.task_id:
        line = first_log_line(client, raw["ID"], outcome.task_id)
        if line:
            outcome.reason += f"; its first log line: {line!r}"
    return outcome
