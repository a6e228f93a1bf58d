"""The names and numbers every part of the tool agrees on, in one place: the services,
their ports, the swarm's names, the service modes and the image naming defaults."""

from __future__ import annotations

# The four images this project builds, in build order.
IMAGES = ("rng", "hasher", "worker", "webui")
REDIS = "redis"
# The five swarm services, in the order they are created (redis first: the others use it).
SWARM_SERVICES = (REDIS, "hasher", "rng", "webui", "worker")

NETWORK = "dockercoins"  # the overlay network the tutorial creates
MANAGED_LABEL = "dockercoins.managed"  # on every service and network the tool creates

SERVICE_PORT = 80  # where rng, hasher and webui listen inside their containers
WEBUI_PUBLISHED_PORT = 8000  # where the swarm publishes webui, and `local` serves it

# Swarm service modes, as the CLI and the benchmark spell them.
REPLICATED = "replicated"
GLOBAL = "global"
MODES = (REPLICATED, GLOBAL)

# $REGISTRY/$USER_NAMESPACE/<service>:$TAG defaults.
DEFAULT_REGISTRY = "127.0.0.1:5000"  # what `dockercoins registry up` serves
DEFAULT_NAMESPACE = "dockercoins"
DEFAULT_TAG = "latest"

# Metrics: every HTTP service serves Prometheus text on SERVICE_PORT at METRICS_PATH; the
# worker on a port of its own. Prometheus runs beside the application as its own service.
METRICS_PATH = "/metrics"
WORKER_METRICS_PORT = 9100
PROMETHEUS = "prometheus"
PROMETHEUS_PORT = 9090  # inside its container, and where the swarm publishes it
NODE_ENV = "DOCKERCOINS_NODE"  # set by the swarm to the node's hostname in every task
