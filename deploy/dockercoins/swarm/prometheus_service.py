"""The prometheus service beside DockerCoins: its scrape config, the swarm config's name
(by content: a config cannot change) and the service spec. Pure functions, no daemon.

Every 5 s Prometheus scrapes each task of rng, hasher and webui on port 80 and of the
worker on names.WORKER_METRICS_PORT, found by DNS: on a swarm `tasks.<service>` resolves to
every task's address (each task its own target, `instance` = IP:port); compose has no
`tasks.` names, and there the plain service name resolves to every container.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from dockercoins.images.base import PROMETHEUS_IMAGE_TAG
from dockercoins.images.kinds import PROMETHEUS_CONFIG, PROMETHEUS_DATA
from dockercoins.names import (
    MANAGED_LABEL,
    METRICS_PATH,
    PROMETHEUS,
    SERVICE_PORT,
    WORKER_METRICS_PORT,
)
from dockercoins.swarm.specs import (
    Modes,
    Spec,
    endpoint_spec,
    harden,
    replicated,
    rollback_config,
    service_env,
    update_config,
)

SCRAPE_INTERVAL = "5s"
SWARM_PREFIX = "tasks."  # DNS names of a swarm service's tasks
COMPOSE_PREFIX = ""  # compose: the service name itself
CONFIG_NAME_PREFIX = f"{PROMETHEUS}-"  # + the first 12 hex digits of the content's sha256
VOLUME = "dockercoins-prometheus"  # its data, a local volume on the node that runs it
CONFIG_MODE = 0o444


@dataclass(frozen=True)
class ScrapeJob:
    """One Prometheus job: a service and the port of its /metrics."""

    service: str
    port: int


SCRAPE_JOBS = (
    ScrapeJob("rng", SERVICE_PORT),
    ScrapeJob("hasher", SERVICE_PORT),
    ScrapeJob("webui", SERVICE_PORT),
    ScrapeJob("worker", WORKER_METRICS_PORT),
)


@dataclass(frozen=True)
class ConfigRef:
    """A swarm config as the service spec names it."""

    id: str
    name: str


def config_text(prefix: str = SWARM_PREFIX) -> str:
    """Prometheus's config: one job per service, its targets from the DNS name
    `<prefix><service>` (type A, refreshed every 5 s so new tasks show up soon)."""
    where, each = ("a swarm", "task") if prefix == SWARM_PREFIX else ("compose", "container")
    lines = [
        f"# Prometheus for DockerCoins on {where}: each {each} of each service is a target,",
        f"# found by the DNS name {prefix}<service> (type A).",
        "# Made by dockercoins.swarm.prometheus_service.config_text (a unit test keeps",
        "# the copies in deploy/prometheus/ equal to it).",
        "global:",
        f"  scrape_interval: {SCRAPE_INTERVAL}",
        f"  evaluation_interval: {SCRAPE_INTERVAL}",
        "scrape_configs:",
    ]
    for job in SCRAPE_JOBS:
        lines += [
            f"  - job_name: {job.service}",
            f"    metrics_path: {METRICS_PATH}",
            "    dns_sd_configs:",
            f"      - names: ['{prefix}{job.service}']",
            "        type: A",
            f"        port: {job.port}",
            f"        refresh_interval: {SCRAPE_INTERVAL}",
        ]
    return "\n".join(lines) + "\n"


def config_name(text: str) -> str:
    """The swarm config's name for `text`: a new text is a new config."""
    return CONFIG_NAME_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:12]


def prometheus_spec(modes: Modes, network_id: str, config: ConfigRef) -> Spec:
    """The prometheus service (as POST /services/create takes it): one replica of the
    offline image, `config` mounted as its config file, its data on a named volume,
    published on names.PROMETHEUS_PORT like webui on its port; updated stop-first (one
    writer of its data), rolled back on failure (specs.update_config), locked down like the
    others (specs.harden)."""
    env = service_env(PROMETHEUS)
    container: Spec = {
        "Image": PROMETHEUS_IMAGE_TAG,
        "Env": [f"{key}={value}" for key, value in sorted(env.items())],
        "Configs": [
            {
                "File": {"Name": PROMETHEUS_CONFIG, "UID": "0", "GID": "0", "Mode": CONFIG_MODE},
                "ConfigID": config.id,
                "ConfigName": config.name,
            }
        ],
        "Mounts": [
            {
                "Type": "volume",
                "Source": VOLUME,
                "Target": PROMETHEUS_DATA,
                "VolumeOptions": {"Labels": {MANAGED_LABEL: "1"}},
            }
        ],
    }
    template: Spec = {"ContainerSpec": container, "Networks": [{"Target": network_id}]}
    return {
        "Name": PROMETHEUS,
        "Labels": {MANAGED_LABEL: "1"},
        "TaskTemplate": harden(PROMETHEUS, template),
        "Mode": replicated(1),
        "EndpointSpec": endpoint_spec(PROMETHEUS, modes),
        "UpdateConfig": update_config(PROMETHEUS, modes),
        "RollbackConfig": rollback_config(PROMETHEUS, modes),
    }
