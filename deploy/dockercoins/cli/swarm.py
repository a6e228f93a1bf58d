"""Subcommands: deploy, scale, update, rng-mode, status, down (DockerCoins on a swarm)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from dockercoins import ui
from dockercoins.cli.common import Subparsers, int_between, seconds_between
from dockercoins.names import GLOBAL, PROMETHEUS, PROMETHEUS_PORT, REPLICATED, WEBUI_PUBLISHED_PORT
from dockercoins.swarm.encryption import CHOICES

DEFAULT_TIMEOUT = 180.0
TIMEOUT = seconds_between(0.0, low_inclusive=False)
REPLICAS = int_between(0, 999_999)

WHERE = (
    "The swarm is the one DOCKER_HOST points at, else the current Docker context, else the "
    "lab's manager when a lab is up, else the default socket."
)


def _timeout(parser: argparse.ArgumentParser, default: float = DEFAULT_TIMEOUT) -> None:
    parser.add_argument(
        "--timeout",
        type=TIMEOUT,
        default=default,
        metavar="SECONDS",
        help=f"give up waiting for the tasks after this long (default {default:.0f})",
    )


def register(subparsers: Subparsers) -> None:
    """Add this module's subcommands."""
    deploy = subparsers.add_parser(
        "deploy",
        help="create the overlay network and the five services on a swarm",
        description="Create the overlay network `dockercoins` and the services redis, "
        "hasher, rng, webui, worker from the pushed images (webui published on "
        f"{WEBUI_PUBLISHED_PORT}), and {PROMETHEUS} (scraping every task every 5 s, its "
        f"config a swarm config, published on {PROMETHEUS_PORT}) unless --no-metrics, then "
        "wait until every task runs. Running it again leaves unchanged services alone and "
        "keeps their scale. Redis keeps its data (an append-only file, fsynced at every "
        "write) on the volume dockercoins-redis of one node, the one with the node label "
        "dockercoins.redis=true. Without IP_VS in the kernel (detected via /proc/sys/net/ipv4/vs "
        "on this machine), services use --endpoint-mode dnsrr and host-mode publishing; "
        f"with it, the swarm defaults (vip, ingress). The network is encrypted (IPsec between "
        "the nodes) when the kernel has XFRM and ESP, and deploy says which. Redis wants a "
        "password: a random one in a swarm secret (dockercoins-redis-password-<hash>, kept "
        f"on a redeploy, removed by down), read by redis, worker and webui. {WHERE}",
    )
    deploy.add_argument(
        "--registry",
        default=None,
        help="registry HOST:PORT (default: REGISTRY, else the lab's registry, else 127.0.0.1:5000)",
    )
    deploy.add_argument(
        "--namespace", default=None, help="image namespace (default: USER_NAMESPACE or dockercoins)"
    )
    deploy.add_argument("--tag", default=None, help="image tag (default: TAG or latest)")
    deploy.add_argument(
        "--endpoint-mode",
        choices=("auto", "vip", "dnsrr"),
        default="auto",
        help="how service names resolve: auto follows IP_VS (default auto)",
    )
    deploy.add_argument(
        "--publish-mode",
        choices=("auto", "ingress", "host"),
        default="auto",
        help=f"how webui's port {WEBUI_PUBLISHED_PORT} and {PROMETHEUS}'s port "
        f"{PROMETHEUS_PORT} are published: auto follows IP_VS (default auto)",
    )
    deploy.add_argument(
        "--encrypt",
        choices=CHOICES,
        default="auto",
        help="encrypt the overlay network's traffic between nodes (IPsec): auto when the "
        "kernel has XFRM and ESP (default auto; a network that exists is kept as it is)",
    )
    deploy.add_argument(
        "--no-metrics",
        action="store_true",
        help=f"no {PROMETHEUS} service (one there is removed); webui gets no PROMETHEUS_URL",
    )
    deploy.add_argument(
        "--workers",
        type=REPLICAS,
        default=None,
        metavar="N",
        help="worker replicas (default: 1 when created, the current count otherwise)",
    )
    deploy.add_argument(
        "--env",
        action="append",
        default=None,
        metavar="SERVICE:KEY=VALUE",
        help="an environment variable for a service, e.g. rng:ACCESS_LOG=1 (repeatable)",
    )
    deploy.add_argument(
        "--redis-node",
        default=None,
        metavar="NODE",
        help="the node (hostname or ID) redis and its data volume live on; deploy labels it "
        "dockercoins.redis=true (default: the node already labelled, else the manager this "
        "command talks to; moving redis away from its data is refused)",
    )
    _timeout(deploy)
    deploy.set_defaults(func=_deploy)

    scale = subparsers.add_parser(
        "scale",
        help="set the number of replicas of services, e.g. worker=10",
        description=f"Scale replicated services and wait until the tasks run. {WHERE}",
    )
    scale.add_argument("targets", nargs="+", metavar="SERVICE=REPLICAS", help="e.g. worker=10")
    _timeout(scale)
    scale.set_defaults(func=_scale)

    update = subparsers.add_parser(
        "update",
        help="a rolling update of one service (new image tag, settings), rolled back on failure",
        description="Change a service's image tag and/or environment and follow the swarm's "
        "rolling update live: tasks updated, state. Each new task must pass its image's "
        "health check (the service answering on port 80 as the others use it; the worker's "
        "heartbeat); rng, hasher and the workers start the new task before stopping the old "
        "one. A task that fails makes the swarm roll the update back by itself; the command "
        "then exits 1 with `rolled back: ` and the failing task's error. Exit 0 once the "
        f"update is completed (after the swarm's 30 s watch of the new tasks). {WHERE}",
    )
    update.add_argument(
        "service",
        metavar="SERVICE",
        help="redis, hasher, rng, webui, worker or prometheus",
    )
    update.add_argument(
        "--tag",
        default=None,
        help="the image tag to run, from the registry the service pulls from (pushed with "
        "`dockercoins push --tag TAG`; rng, hasher, webui, worker only)",
    )
    update.add_argument(
        "--env",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="set an environment variable of the service, e.g. WORKER_DELAY=0.2 (repeatable)",
    )
    _timeout(update, 300.0)
    update.set_defaults(func=_update)

    mode = subparsers.add_parser(
        "rng-mode",
        help="run rng in global mode (one per node) or replicated mode",
        description="A service's mode cannot change in place: rng is removed and created "
        f"again with the same spec in the new mode, then the tool waits for it. {WHERE}",
    )
    mode.add_argument("mode", choices=(GLOBAL, REPLICATED), help="the new mode")
    mode.add_argument(
        "--replicas", type=REPLICAS, default=1, metavar="N", help="replicas in replicated mode (1)"
    )
    _timeout(mode)
    mode.set_defaults(func=_rng_mode)

    status = subparsers.add_parser(
        "status",
        help="services, tasks per node and the hash rate now",
        description="Show the services (mode, running/desired tasks), the tasks per node and "
        "the hash rate measured from /json samples of the web UI over a few seconds "
        f"(127.0.0.1:{WEBUI_PUBLISHED_PORT}, "
        "else the lab's node addresses); while redis has no running task, why not (e.g. its "
        f"node is down) instead of a rate. {WHERE}",
    )
    status.add_argument("--webui", default=None, metavar="URL", help="read /json from here")
    status.add_argument(
        "--prometheus",
        default=None,
        metavar="URL",
        help="ask this Prometheus for each rng and worker task's rate (default: "
        f"127.0.0.1:{PROMETHEUS_PORT}, else the lab's node addresses; without one, status "
        "says so)",
    )
    status.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for a hash rate above zero (just after a deploy)",
    )
    status.set_defaults(func=_status)

    down = subparsers.add_parser(
        "down",
        help="remove the five services, prometheus and the network",
        description=f"Remove redis, hasher, rng, webui, worker and {PROMETHEUS}, wait until "
        f"their tasks are gone, then remove {PROMETHEUS}'s configs and the network "
        f"`dockercoins` ({PROMETHEUS}'s data volume stays on its node, and so do redis's "
        "volume and node label: the next deploy finds the counter and the wallet). "
        f"{WHERE}",
    )
    _timeout(down, 120.0)
    down.set_defaults(func=_down)


def _manager(*, warn_unready: bool = True) -> Any:
    """The command's one client on the swarm manager, after one warning per unready node."""
    from dockercoins.swarm.connect import connect_manager
    from dockercoins.swarm.read import nodes, warn_unready_nodes

    client = connect_manager()
    if warn_unready:
        warn_unready_nodes(nodes(client))
    return client


def _deploy(args: argparse.Namespace) -> int:
    from dockercoins.images import naming
    from dockercoins.swarm import encryption, operations
    from dockercoins.swarm import specs as swarm_specs
    from dockercoins.swarm.connect import manager_errors
    from dockercoins.swarm.ipvs import ipvs_available

    registry = naming.check_registry(args.registry or naming.default_registry())
    namespace = naming.check_namespace(args.namespace or naming.default_namespace())
    tag = naming.check_tag(args.tag or naming.default_tag())
    env = swarm_specs.parse_env_overrides(args.env)
    ipvs = ipvs_available()
    modes = swarm_specs.resolve_modes(args.endpoint_mode, args.publish_mode, ipvs)
    ui.info(
        f"IP_VS {'present' if ipvs else 'absent'} on this machine's kernel: "
        f"{modes.describe()}"
        + ("" if ipvs else " (force others with --endpoint-mode/--publish-mode)")
    )
    support = encryption.encryption_support()
    encrypted = encryption.resolve_encryption(args.encrypt, support)
    ui.info(encryption.describe(encrypted, args.encrypt, support))
    images = swarm_specs.Images(registry, namespace, tag)
    started = time.monotonic()
    with (
        ui.step(f"deploy DockerCoins ({naming.repository(registry, namespace, '*')}:{tag})"),
        manager_errors(),
    ):
        operations.deploy(
            _manager(),
            images,
            modes,
            workers=args.workers,
            env=env,
            timeout=args.timeout,
            metrics=not args.no_metrics,
            redis_node=args.redis_node,
            encrypted=encrypted,
        )
    where = " of the node running {}" if modes.publish == "host" else " of every node"
    ui.result(
        f"DockerCoins is running ({time.monotonic() - started:.1f} s); web UI published on "
        f"port {WEBUI_PUBLISHED_PORT}" + where.format("webui")
    )
    if not args.no_metrics:
        ui.result(f"Prometheus published on port {PROMETHEUS_PORT}" + where.format(PROMETHEUS))
    return 0


def _scale(args: argparse.Namespace) -> int:
    from dockercoins.swarm import operations
    from dockercoins.swarm import specs as swarm_specs
    from dockercoins.swarm.connect import manager_errors

    targets = swarm_specs.parse_scale_args(args.targets)
    with (
        ui.step("scale " + " ".join(f"{k}={v}" for k, v in targets.items())),
        manager_errors(),
    ):
        operations.scale(_manager(), targets, args.timeout)
    return 0


def _update(args: argparse.Namespace) -> int:
    from dockercoins.images import naming
    from dockercoins.swarm import update as swarm_update
    from dockercoins.swarm.connect import manager_errors

    name = swarm_update.check_service(args.service)
    env = swarm_update.parse_env(args.env)
    tag = naming.check_tag(args.tag) if args.tag is not None else None
    with ui.step(f"update {name}"), manager_errors():
        outcome = swarm_update.update(_manager(), name, tag, env, args.timeout)
        if outcome.state != swarm_update.COMPLETED:
            raise swarm_update.outcome_error(name, outcome)
    ui.result(f"{name} updated")
    return 0


def _rng_mode(args: argparse.Namespace) -> int:
    from dockercoins.swarm import operations
    from dockercoins.swarm.connect import manager_errors

    with ui.step(f"rng-mode {args.mode}"), manager_errors():
        operations.rng_mode(_manager(), args.mode, args.replicas, args.timeout)
    return 0


def _status(args: argparse.Namespace) -> int:
    from dockercoins.swarm.connect import manager_errors
    from dockercoins.swarm.status import status

    with manager_errors():
        return status(
            _manager(warn_unready=False), args.webui, max(0.0, args.wait), args.prometheus
        )


def _down(args: argparse.Namespace) -> int:
    from dockercoins.swarm import operations
    from dockercoins.swarm.connect import manager_errors

    with ui.step("down: remove the DockerCoins services and network"), manager_errors():
        operations.down(_manager(warn_unready=False), args.timeout)
    return 0
