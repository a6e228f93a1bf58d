"""The five swarm services as Docker Engine API specs: pure functions, no daemon.

Names and ports are the tutorial's (redis, hasher, rng, webui, worker; webui published
on 8000), so the worker's defaults (http://rng/32, http://hasher/, redis://redis:6379/0)
reach the others with no settings. Prometheus's spec is in swarm.prometheus_service.

Redis is the one service with state: its append-only file (fsynced at every write) on the
named volume REDIS_VOLUME, pinned by a placement constraint to the node that carries the
node label REDIS_NODE_LABEL (a volume is local to its node), and given REDIS_STOP_GRACE to
finish writing when stopped. The worker gets WORKER_STOP_GRACE for its final flush.

Every service gets an update and a rollback policy (update_config, rollback_config): a
task that fails, or never passes its image's health check, during an update makes the
swarm roll the update back by itself. Stateless services start the new task first (their
capacity never dips); redis and prometheus (one writer of their data) and a service
published in host mode (two tasks cannot hold the port on one node) stop the old one first.

Redis wants a password (swarm.redis_secret): with a secret, redis, worker and webui get it as
the file /run/secrets/redis_password, owned by the user their image runs as, mode 0400, and
REDIS_PASSWORD_FILE naming that file; the password itself is in no spec.

Every container is locked down (harden): a read-only root filesystem (the worker's
heartbeat and any temporary file go to a small tmpfs on /tmp), every capability dropped,
and memory and CPU limits. What Docker Engine API 1.41 (dockerd 20.10, the lab's) takes for
a swarm service: ReadOnly and Mounts of type tmpfs (API 1.25+), CapabilityDrop and
CapabilityAdd (1.41+), Resources.Limits MemoryBytes and NanoCPUs (and Pids, 1.41+). Not
no_new_privs: ContainerSpec.Privileges.NoNewPrivileges exists from API 1.44 (Docker 25.0);
an older daemon ignores the field, and `docker stack deploy` drops a stack file's
security_opt whatever its version. Here it comes from the images instead: the services'
ENTRYPOINT is `setpriv --no-new-privs` and redis's start script does the same; and the lab's
dockerds set it for every container (dockerd --no-new-privileges).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from dockercoins.errors import UserError
from dockercoins.images.kinds import REDIS_GID, REDIS_UID
from dockercoins.images.naming import image_ref
from dockercoins.names import (
    GLOBAL,
    MANAGED_LABEL,
    NODE_ENV,
    PROMETHEUS,
    PROMETHEUS_PORT,
    REDIS,
    REPLICATED,
    SERVICE_PORT,
    SWARM_SERVICES,
    WEBUI_PUBLISHED_PORT,
)
from dockercoins.swarm.redis_secret import PASSWORD_ENV, PASSWORD_FILE, SecretRef, secret_file

WORKER = "worker"

REDIS_IMAGE = "redis"
# The node label `deploy` sets on the node redis runs on (its value "true"), and the
# placement constraint that pins redis there.
REDIS_NODE_LABEL = "dockercoins.redis"
REDIS_CONSTRAINT = f"node.labels.{REDIS_NODE_LABEL} == true"
REDIS_VOLUME = "dockercoins-redis"  # its data: a local volume on that node
REDIS_DATA = "/var/lib/redis"  # the image's WORKDIR, owned by its user redis
# redis-server with an append-only file in REDIS_DATA, fsynced before each write is
# acknowledged: a write the worker was told about survives a crash of redis or its node.
REDIS_COMMAND = (
    "redis-server",
    "--bind",
    "0.0.0.0",
    "--port",
    "6379",
    "--protected-mode",
    "no",
    "--appendonly",
    "yes",
    "--appendfsync",
    "always",
    "--save",
    "",
    "--dir",
    REDIS_DATA,
    "--logfile",
    "",
)
SECOND_NS = 1_000_000_000
REDIS_STOP_GRACE = 30  # seconds between SIGTERM and SIGKILL: redis fsyncs and exits
WORKER_STOP_GRACE = 10  # the worker writes what it owes on SIGTERM, within about 2 s

# Lock-down (harden). A tmpfs on /tmp for the Python services: the worker's heartbeat file
# (WORKER_HEARTBEAT, /tmp/worker-heartbeat) and whatever a library puts in tempfile's folder.
TMP_DIR = "/tmp"
TMP_SIZE = 16 * 1024 * 1024
TMP_MODE = 0o1777
TMP_SERVICES = ("hasher", "rng", "webui", WORKER)
MIB = 1024 * 1024
# Memory limits: about twice the peak resident set measured. Idle on the host (dockercoins
# local): rng 54, hasher 52, webui 59, worker 50, redis-server 12 MB; under the overload test
# (500 clients for 30 s) rng 61, hasher 80, webui 70 MiB at their peaks. A container's
# cgroup also counts the page cache of the files it reads (the lab measured 50-80 MB per
# container in all). redis grows with the wallet (about 100 bytes a coin: under 1 MB an hour
# at the default delays) and forks to rewrite its append-only file; prometheus keeps 2 h of
# samples of a few hundred series.
MEMORY_LIMITS = {
    "rng": 128 * MIB,
    "hasher": 192 * MIB,
    "webui": 192 * MIB,
    WORKER: 128 * MIB,
    REDIS: 256 * MIB,
    PROMETHEUS: 512 * MIB,
}
# CPU limits, in cores: caps for a runaway task, far above use. Measured on the lab
# (docs/scaling-benchmark.md, k = 8): 36 workers 0.45 cores (0.0125 each), hasher 0.07, each
# rng 0.02, redis 0.01, webui 0.01, prometheus 0.02. CFS quota is counted per 100 ms: a
# limit near the use would stall a busy task for the rest of the period, which adds to
# rng's and hasher's latency; so no limit below half a core.
CPU_LIMITS = {
    "rng": 1.0,
    "hasher": 1.0,
    "webui": 1.0,
    WORKER: 0.5,
    REDIS: 1.0,
    PROMETHEUS: 1.0,
}
NANO = 1_000_000_000

# The services that read Redis's password, and the (uid, gid) their image runs as: the owner
# of the secret's file (the Dockerfiles' USER 10001; the redis image's redis user).
SERVICE_UID = 10001
SECRET_OWNERS = {
    REDIS: (REDIS_UID, REDIS_GID),
    "webui": (SERVICE_UID, SERVICE_UID),
    WORKER: (SERVICE_UID, SERVICE_UID),
}

# Update and rollback policies (UpdateConfig, RollbackConfig).
START_FIRST = "start-first"
STOP_FIRST = "stop-first"
# After an update's last batch the swarm watches the new tasks this long before it calls the
# update completed; a task that fails within it rolls the update back. The images check
# health every 5 s and call a task unhealthy after 3 failures in a row, so a task that
# passed its first check and then fails is caught within about 15 s (plus the checks'
# timeouts): twice that. A task that never passes its first check (a service on the wrong
# port, a container that exits at start) fails before it counts as running, which rolls the
# update back whatever the window.
UPDATE_MONITOR = 30
# Rolling back restores the version that ran before: a shorter watch.
ROLLBACK_MONITOR = 10
# Tasks replaced at once in an update (the rest: 1). Ten workers in five batches.
UPDATE_PARALLELISM = {WORKER: 2}

# Every service `deploy` may create, in order: the five, then Prometheus (unless --no-metrics).
DEPLOY_ORDER = (*SWARM_SERVICES, PROMETHEUS)

# Swarm expands this template in each task: the hostname of the node it runs on.
NODE_TEMPLATE = "{{.Node.Hostname}}"
# Where webui asks Prometheus (its PROMETHEUS_URL) when metrics are on.
PROMETHEUS_URL = f"http://{PROMETHEUS}:{PROMETHEUS_PORT}"

# service -> (port in its containers, published port)
PUBLISHED = {
    "webui": (SERVICE_PORT, WEBUI_PUBLISHED_PORT),
    PROMETHEUS: (PROMETHEUS_PORT, PROMETHEUS_PORT),
}

ENDPOINT_MODES = ("auto", "vip", "dnsrr")
PUBLISH_MODES = ("auto", "ingress", "host")

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Spec = dict[str, Any]


@dataclass(frozen=True)
class Modes:
    """How services are reached: endpoint mode (vip|dnsrr) and publish mode (ingress|host)."""

    endpoint: str
    publish: str

    def describe(self) -> str:
        return f"--endpoint-mode {self.endpoint}, webui published in {self.publish} mode"


def resolve_modes(endpoint: str, publish: str, ipvs: bool) -> Modes:
    """`auto` follows IP_VS: with it the swarm defaults (vip, ingress), without it dnsrr and
    host-mode publishing. UserError for a combination swarm refuses."""
    if endpoint not in ENDPOINT_MODES:
        raise UserError(f"unknown endpoint mode {endpoint!r}: choose from auto, vip, dnsrr")
    if publish not in PUBLISH_MODES:
        raise UserError(f"unknown publish mode {publish!r}: choose from auto, ingress, host")
    resolved = Modes(
        endpoint=endpoint if endpoint != "auto" else ("vip" if ipvs else "dnsrr"),
        publish=publish if publish != "auto" else ("ingress" if ipvs else "host"),
    )
    if resolved.endpoint == "dnsrr" and resolved.publish == "ingress":
        raise UserError(
            "--endpoint-mode dnsrr needs --publish-mode host: "
            "swarm refuses ingress-published ports on a dnsrr service"
        )
    return resolved


@dataclass(frozen=True)
class Images:
    registry: str
    namespace: str
    tag: str
    # service -> "ref@sha256:..." when the registry told us the digest
    pinned: dict[str, str] = field(default_factory=dict)

    def ref(self, service: str) -> str:
        if service == REDIS:
            return REDIS_IMAGE
        plain = image_ref(self.registry, self.namespace, service, self.tag)
        return self.pinned.get(service, plain)


def parse_env_overrides(items: list[str] | None) -> dict[str, dict[str, str]]:
    """`SERVICE:KEY=VALUE` items (from --env) -> {service: {KEY: VALUE}}; UserError if bad."""
    result: dict[str, dict[str, str]] = {}
    for item in items or []:
        service, sep, assignment = item.partition(":")
        key, eq, value = assignment.partition("=")
        if not sep or not eq:
            raise UserError(f"malformed --env {item!r}: expected SERVICE:KEY=VALUE")
        if service not in SWARM_SERVICES:
            raise UserError(
                f"unknown service {service!r} in --env: choose from {', '.join(SWARM_SERVICES)}"
            )
        if not _ENV_NAME.match(key):
            raise UserError(f"malformed variable name {key!r} in --env {item!r}")
        result.setdefault(service, {})[key] = value
    return result


def service_env(
    service: str, overrides: dict[str, str] | None = None, *, metrics: bool = True
) -> dict[str, str]:
    """The environment `deploy` gives a service: the node's hostname in names.NODE_ENV (a
    swarm template), PROMETHEUS_URL for webui when metrics are on, then `overrides`."""
    env = {NODE_ENV: NODE_TEMPLATE}
    if metrics and service == "webui":
        env["PROMETHEUS_URL"] = PROMETHEUS_URL
    env.update(overrides or {})
    return env


def replicated(replicas: int) -> Spec:
    """The spec's Mode for names.REPLICATED with `replicas` tasks."""
    return {"Replicated": {"Replicas": replicas}}


def global_mode() -> Spec:
    """The spec's Mode for names.GLOBAL: one task per node."""
    return {"Global": {}}


def endpoint_spec(service: str, modes: Modes) -> Spec:
    """Endpoint mode, and the published port of webui and prometheus (in modes.publish)."""
    spec: Spec = {"Mode": modes.endpoint}
    if service in PUBLISHED:
        target, published = PUBLISHED[service]
        spec["Ports"] = [
            {
                "Protocol": "tcp",
                "TargetPort": target,
                "PublishedPort": published,
                "PublishMode": modes.publish,
            }
        ]
    return spec


def update_order(service: str, modes: Modes) -> str:
    """START_FIRST, except for the services with state (redis, prometheus: one writer of
    their data) and those published in host mode (the new task could not bind the port on
    the old one's node; on a one-node swarm it would never start)."""
    if service in (REDIS, PROMETHEUS):
        return STOP_FIRST
    if service in PUBLISHED and modes.publish == "host":
        return STOP_FIRST
    return START_FIRST


def update_config(service: str, modes: Modes) -> Spec:
    """The service's UpdateConfig: a batch at a time (UPDATE_PARALLELISM), no delay (the
    next batch waits for the new tasks to be healthy anyway), rolled back at the first
    failed task, watched for UPDATE_MONITOR seconds."""
    return {
        "Parallelism": UPDATE_PARALLELISM.get(service, 1),
        "Delay": 0,
        "FailureAction": "rollback",
        "Monitor": UPDATE_MONITOR * SECOND_NS,
        "MaxFailureRatio": 0.0,
        "Order": update_order(service, modes),
    }


def rollback_config(service: str, modes: Modes) -> Spec:
    """The service's RollbackConfig: every task at once (back to the version that worked),
    in the same order as updates, paused if the rollback itself fails."""
    return {
        "Parallelism": 0,
        "Delay": 0,
        "FailureAction": "pause",
        "Monitor": ROLLBACK_MONITOR * SECOND_NS,
        "MaxFailureRatio": 0.0,
        "Order": update_order(service, modes),
    }


def tmp_mount() -> Spec:
    """A tmpfs on TMP_DIR: TMP_SIZE bytes at most, writable by any user (sticky)."""
    return {
        "Type": "tmpfs",
        "Target": TMP_DIR,
        "TmpfsOptions": {"SizeBytes": TMP_SIZE, "Mode": TMP_MODE},
    }


def limits(service: str) -> Spec:
    """The task's Resources.Limits: MEMORY_LIMITS and CPU_LIMITS."""
    return {
        "MemoryBytes": MEMORY_LIMITS[service],
        "NanoCPUs": round(CPU_LIMITS[service] * NANO),
    }


def harden(service: str, template: Spec) -> Spec:
    """Lock the task template's container down (see the module's docstring): read-only root
    filesystem, a tmpfs on /tmp for the Python services, every capability dropped, memory
    and CPU limits. Returns `template`."""
    container = template["ContainerSpec"]
    container["ReadOnly"] = True
    container["CapabilityDrop"] = ["ALL"]
    if service in TMP_SERVICES:
        container["Mounts"] = [*container.get("Mounts", []), tmp_mount()]
    template["Resources"] = {"Limits": limits(service)}
    return template


def service_spec(
    service: str,
    images: Images,
    modes: Modes,
    network_id: str,
    *,
    replicas: int = 1,
    env: dict[str, str] | None = None,
    secret: SecretRef | None = None,
) -> Spec:
    """The full service spec (as POST /services/create takes it) for one of the five:
    redis with its command, volume, placement and stop grace period, the worker with its
    stop grace period; redis, worker and webui with Redis's password `secret` (when given);
    each locked down (harden) with its update and rollback policy."""
    if service not in SWARM_SERVICES:
        raise UserError(f"unknown service {service!r}: choose from {', '.join(SWARM_SERVICES)}")
    container: Spec = {"Image": images.ref(service)}
    if secret is not None and service in SECRET_OWNERS:
        uid, gid = SECRET_OWNERS[service]
        container["Secrets"] = [secret_file(secret, uid, gid)]
        env = {**(env or {}), PASSWORD_ENV: PASSWORD_FILE}
    if env:
        container["Env"] = [f"{key}={value}" for key, value in sorted(env.items())]
    template: Spec = {"ContainerSpec": container, "Networks": [{"Target": network_id}]}
    if service == REDIS:
        container["Args"] = list(REDIS_COMMAND)
        container["Mounts"] = [
            {
                "Type": "volume",
                "Source": REDIS_VOLUME,
                "Target": REDIS_DATA,
                "VolumeOptions": {"Labels": {MANAGED_LABEL: "1"}},
            }
        ]
        container["StopGracePeriod"] = REDIS_STOP_GRACE * SECOND_NS
        template["Placement"] = {"Constraints": [REDIS_CONSTRAINT]}
    elif service == WORKER:
        container["StopGracePeriod"] = WORKER_STOP_GRACE * SECOND_NS
    return {
        "Name": service,
        "Labels": {MANAGED_LABEL: "1"},
        "TaskTemplate": harden(service, template),
        "Mode": replicated(replicas),
        "EndpointSpec": endpoint_spec(service, modes),
        "UpdateConfig": update_config(service, modes),
        "RollbackConfig": rollback_config(service, modes),
    }


def mode_of(spec: Spec) -> str:
    """names.GLOBAL or names.REPLICATED."""
    return GLOBAL if "Global" in spec.get("Mode", {}) else REPLICATED


def replicas_of(spec: Spec) -> int | None:
    """Desired replicas of a replicated service, None for a global one."""
    mode = spec.get("Mode", {})
    if "Replicated" in mode:
        return int(mode["Replicated"].get("Replicas", 1))
    return None


def _ports(endpoint: Spec) -> list[tuple[int, int, str, str]]:
    return sorted(
        (
            int(port.get("PublishedPort", 0)),
            int(port.get("TargetPort", 0)),
            str(port.get("Protocol", "tcp")),
            str(port.get("PublishMode", "ingress")),
        )
        for port in endpoint.get("Ports") or []
    )


def normal_image(ref: str) -> str:
    """`redis` and `redis:latest` are the same image (the CLI writes the tag)."""
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last or "@" in last else f"{ref}:latest"


def _configs(container: Spec) -> list[tuple[str, str]]:
    return sorted(
        (str(config.get("ConfigName", "")), str((config.get("File") or {}).get("Name", "")))
        for config in container.get("Configs") or []
    )


def _secrets(container: Spec) -> list[tuple[str, str, str, str, int]]:
    found = []
    for entry in container.get("Secrets") or []:
        file = entry.get("File") or {}
        found.append(
            (
                str(entry.get("SecretName", "")),
                str(file.get("Name", "")),
                str(file.get("UID", "")),
                str(file.get("GID", "")),
                int(file.get("Mode", 0)),
            )
        )
    return sorted(found)


def _mounts(container: Spec) -> list[tuple[str, str, str]]:
    return sorted(
        (str(mount.get("Type", "")), str(mount.get("Source", "")), str(mount.get("Target", "")))
        for mount in container.get("Mounts") or []
    )


# The fields of an UpdateConfig or RollbackConfig, and the value the daemon leaves out when
# it is zero (it omits a zero Delay and Monitor).
_POLICY_FIELDS: dict[str, Any] = {
    "Parallelism": 0,
    "Delay": 0,
    "FailureAction": "",
    "Monitor": 0,
    "MaxFailureRatio": 0.0,
    "Order": "",
}


def _policy(config: Spec | None) -> list[tuple[str, Any]]:
    config = config or {}
    view: list[tuple[str, Any]] = []
    for name, zero in _POLICY_FIELDS.items():
        value = config.get(name) or zero
        view.append((name, float(value) if isinstance(zero, float) else value))
    return view


def _limits(template: Spec) -> list[tuple[str, int]]:
    found = (template.get("Resources") or {}).get("Limits") or {}
    return sorted((str(name), int(value)) for name, value in found.items() if value)


def _constraints(template: Spec) -> list[str]:
    return sorted(str(item) for item in (template.get("Placement") or {}).get("Constraints") or [])


def managed_view(spec: Spec, with_scale: bool) -> dict[str, Any]:
    """The parts of a spec `deploy` manages, normalised so that a spec read back from the
    daemon compares equal to the one we built. Configs, secrets, mounts, command, stop grace
    period and placement only where the spec has them (prometheus, redis, worker, webui); the
    lock-down
    (read-only root filesystem, capabilities dropped, resource limits) and the update and
    rollback policies where it has them (every spec deploy builds); scale (mode, replicas)
    only if asked."""
    template = spec.get("TaskTemplate", {})
    container = template.get("ContainerSpec", {})
    endpoint = spec.get("EndpointSpec") or {}
    view: dict[str, Any] = {
        "image": normal_image(str(container.get("Image", ""))),
        "env": sorted(container.get("Env") or []),
        "networks": sorted(net.get("Target") for net in template.get("Networks") or []),
        "endpoint mode": endpoint.get("Mode") or "vip",
        "ports": _ports(endpoint),
    }
    if container.get("Configs"):
        view["configs"] = _configs(container)
    if container.get("Secrets"):
        view["secrets"] = _secrets(container)
    if container.get("Mounts"):
        view["mounts"] = _mounts(container)
    if container.get("Args"):
        view["command"] = [str(arg) for arg in container["Args"]]
    if container.get("StopGracePeriod"):
        view["stop grace period"] = int(container["StopGracePeriod"])
    if _constraints(template):
        view["placement"] = _constraints(template)
    if container.get("ReadOnly"):
        view["read-only root filesystem"] = True
    if container.get("CapabilityDrop"):
        view["capabilities dropped"] = sorted(container["CapabilityDrop"])
    if _limits(template):
        view["limits"] = _limits(template)
    for key, name in (("update policy", "UpdateConfig"), ("rollback policy", "RollbackConfig")):
        if spec.get(name):
            view[key] = _policy(spec[name])
    if with_scale:
        view["mode"] = mode_of(spec)
        view["replicas"] = replicas_of(spec)
    return view


def spec_changes(current: Spec, desired: Spec, with_scale: bool) -> list[str]:
    """Names of the managed fields that differ (empty: leave the service alone). Mounts
    differ when one `deploy` sets is missing: mounts set by hand elsewhere are kept."""
    have = managed_view(current, with_scale)
    want = managed_view(desired, with_scale)
    changed = []
    for key, wanted in want.items():
        if key == "mounts":
            if not set(wanted) <= set(have.get(key, [])):
                changed.append(key)
        elif have.get(key) != wanted:
            changed.append(key)
    return changed


def _merged_mounts(current: list[Spec], desired: list[Spec]) -> list[Spec]:
    """`current`'s mounts on targets `desired` does not use (set by hand), then `desired`'s."""
    targets = {mount.get("Target") for mount in desired}
    kept = [mount for mount in current if mount.get("Target") not in targets]
    return [*copy.deepcopy(kept), *copy.deepcopy(desired)]


def updated_spec(current: Spec, desired: Spec, with_scale: bool) -> Spec:
    """`current` with the managed fields taken from `desired` (the lock-down and the update
    and rollback policies too); the rest (resource reservations, labels, anything else set
    by hand) is kept."""
    spec = copy.deepcopy(current)
    template = spec.setdefault("TaskTemplate", {})
    container = template.setdefault("ContainerSpec", {})
    want_container = desired["TaskTemplate"]["ContainerSpec"]
    container["Image"] = want_container["Image"]
    if want_container.get("Env"):
        container["Env"] = list(want_container["Env"])
    else:
        container.pop("Env", None)
    managed = ("Configs", "Secrets", "Args", "StopGracePeriod", "ReadOnly", "CapabilityDrop")
    for field_name in managed:  # where `deploy` sets them
        if want_container.get(field_name):
            container[field_name] = copy.deepcopy(want_container[field_name])
    if want_container.get("Mounts"):
        container["Mounts"] = _merged_mounts(
            container.get("Mounts") or [], want_container["Mounts"]
        )
    want_constraints = _constraints(desired["TaskTemplate"])
    if want_constraints:
        placement = template.setdefault("Placement", {})
        placement["Constraints"] = want_constraints
    want_limits = (desired["TaskTemplate"].get("Resources") or {}).get("Limits")
    if want_limits:
        template.setdefault("Resources", {})["Limits"] = copy.deepcopy(want_limits)
    template["Networks"] = copy.deepcopy(desired["TaskTemplate"]["Networks"])
    spec["EndpointSpec"] = copy.deepcopy(desired["EndpointSpec"])
    spec.setdefault("Labels", {}).update(desired.get("Labels", {}))
    for name in ("UpdateConfig", "RollbackConfig"):
        if desired.get(name):
            spec[name] = copy.deepcopy(desired[name])
    if with_scale:
        spec["Mode"] = copy.deepcopy(desired["Mode"])
    return spec


def with_mode(current: Spec, mode: str, replicas: int) -> Spec:
    """The same spec in another scheduling mode (for remove-and-create-again)."""
    spec = copy.deepcopy(current)
    spec["Mode"] = global_mode() if mode == GLOBAL else replicated(replicas)
    return spec


def parse_scale_args(items: list[str]) -> dict[str, int]:
    """`worker=10 rng=3` -> {"worker": 10, "rng": 3}; UserError on anything else."""
    if not items:
        raise UserError("nothing to scale: give SERVICE=REPLICAS, e.g. worker=10")
    result: dict[str, int] = {}
    for item in items:
        name, sep, count = item.partition("=")
        if not sep:
            raise UserError(f"malformed {item!r}: expected SERVICE=REPLICAS, e.g. worker=10")
        if name not in SWARM_SERVICES:
            raise UserError(f"unknown service {name!r}: choose from {', '.join(SWARM_SERVICES)}")
        if not re.fullmatch(r"[0-9]{1,6}", count.strip()):
            raise UserError(f"bad replica count {count!r} for {name}: expected an integer >= 0")
        result[name] = int(count)
    return result
