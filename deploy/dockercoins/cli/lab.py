"""Subcommands: `lab up`, `lab status`, `lab down` (the multi-node Swarm lab on one host)."""

from __future__ import annotations

import argparse
import time

from dockercoins import ui
from dockercoins.cli.common import Subparsers, int_between, tcp_port
from dockercoins.lab.network import DEFAULT_NODES, MAX_NODES
from dockercoins.names import PROMETHEUS_PORT, WEBUI_PUBLISHED_PORT


def register(subparsers: Subparsers) -> None:
    """Add `lab` and its subcommands."""
    lab = subparsers.add_parser(
        "lab",
        help="a real multi-node Swarm on this host (dockerd per network namespace)",
        description="The Swarm lab: one dockerd per node, each in its own network namespace, "
        "a bridge between them, a registry on the bridge, the base images on every node, "
        "swarm init on node1 and join of the others. Needs root.",
    )
    commands = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND", required=True)

    up = commands.add_parser(
        "up",
        help="bring the lab up (or repair it); prints the DOCKER_HOST of the manager",
        description="Bring the lab up, or check and repair a running one (a second run is fast "
        "and changes nothing that works; after a crashed run it cleans up and starts again). "
        "Prints `export DOCKER_HOST=...` and `export REGISTRY=...` on stdout, so "
        'eval "$(dockercoins lab up)" points the docker CLI at the manager.',
    )
    up.add_argument(
        "--nodes",
        type=int_between(1, MAX_NODES),
        default=DEFAULT_NODES,
        help=f"number of nodes (default {DEFAULT_NODES})",
    )
    up.add_argument(
        "--forward-port",
        type=tcp_port,
        default=WEBUI_PUBLISHED_PORT,
        help=f"host port on 127.0.0.1 forwarded to the web UI port {WEBUI_PUBLISHED_PORT} of "
        f"the nodes (default {WEBUI_PUBLISHED_PORT}; if it is taken, the lab comes up "
        "without it)",
    )
    up.add_argument(
        "--prometheus-port",
        type=tcp_port,
        default=PROMETHEUS_PORT,
        help=f"host port on 127.0.0.1 forwarded to the Prometheus port {PROMETHEUS_PORT} of "
        f"the nodes (default {PROMETHEUS_PORT}; if it is taken, the lab comes up "
        "without it)",
    )
    up.set_defaults(func=_up)

    status = commands.add_parser(
        "status",
        help="nodes, their swarm state and role, daemons, registry, forwarders",
        description="Show the lab's nodes (dockerd up?, swarm state and role from the "
        "manager's node list), the registry and the web UI and Prometheus forwarders. Exit "
        "status 1 when something is down.",
    )
    status.set_defaults(func=_status)

    down = commands.add_parser(
        "down",
        help="remove the lab: daemons, namespaces, links, bridge, rule, mounts, registry",
        description="Tear the lab down and leave nothing running: daemons (by pid), "
        "namespaces, veths, the bridge, the iptables rule, the mounts under the data roots, "
        "the registry and the forwarders. The nodes' data roots (their images) and the "
        "registry's storage are kept so the next `lab up` is fast; --purge deletes them too.",
    )
    down.add_argument(
        "--purge",
        action="store_true",
        help="also delete the nodes' data roots (images) and the registry's storage",
    )
    down.set_defaults(func=_down)


def _up(args: argparse.Namespace) -> int:
    from dockercoins.lab import lifecycle

    # One line and exit status 1, not a usage error (exit 2): the unit tests state it.
    started = time.monotonic()
    state = lifecycle.up(args.nodes, args.forward_port, args.prometheus_port)
    ui.info(
        f"lab up: {len(state.nodes)} nodes in {time.monotonic() - started:.1f} s; "
        f"web UI (once deployed): http://localhost:{state.forward_port}/"
    )
    ui.info(f"Prometheus (once deployed): http://localhost:{state.prometheus_port}/")
    ui.result(f"export DOCKER_HOST={state.manager.docker_host}")
    ui.result(f"export REGISTRY={state.registry}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from dockercoins.lab import status as lab_status

    report = lab_status.status()
    state = report.state
    ui.result(
        f"lab: {len(state.nodes)} nodes, bridge {state.bridge} ({state.host_ip}), "
        f"registry {state.registry} {'up' if report.registry else 'DOWN'}, "
        f"forwarder 127.0.0.1:{state.forward_port} "
        f"{'running' if report.forwarder else 'not running'}, "
        f"Prometheus forwarder 127.0.0.1:{state.prometheus_port} "
        f"{'running' if report.prometheus_forwarder else 'not running'}"
    )
    ui.result(f"{'NODE':<8}{'IP':<15}{'DOCKERD':<9}{'STATE':<9}ROLE")
    for node in report.nodes:
        ui.result(
            f"{node.name:<8}{node.ip:<15}{'up' if node.dockerd else 'DOWN':<9}"
            f"{node.state:<9}{node.role}"
        )
    ui.result(f"export DOCKER_HOST={state.manager.docker_host}")
    return 0 if report.healthy else 1


def _down(args: argparse.Namespace) -> int:
    from dockercoins.lab import lifecycle

    started = time.monotonic()
    lifecycle.down(purge=args.purge)
    ui.info(f"lab down in {time.monotonic() - started:.1f} s: nothing of the lab is running")
    return 0
