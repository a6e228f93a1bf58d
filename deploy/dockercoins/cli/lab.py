"""Subcommands: `lab up`, `lab status`, `lab down`, `lab node kill|stop|start NODE` (the
multi-node Swarm lab on one host)."""

from __future__ import annotations

import argparse
import time

from dockercoins import ui
from dockercoins.cli.common import Subparsers, int_between, tcp_port
from dockercoins.lab.network import DEFAULT_NODES, MAX_NODES, NODE_NAME
from dockercoins.names import PROMETHEUS_PORT, WEBUI_PUBLISHED_PORT


def register(subparsers: Subparsers) -> None:
    """Add `lab` and its subcommands."""
    lab = subparsers.add_parser(
        "lab",
        help="a real multi-node Swarm on this host (dockerd per network namespace)",
        description="The Swarm lab: one dockerd per node, each in its own network namespace, "
        "a bridge between them, a registry on the bridge, the base images on every node, "
        "swarm init on node1 and join of the others (3 of them managers by default). "
        "Needs root.",
    )
    commands = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND", required=True)

    up = commands.add_parser(
        "up",
        help="bring the lab up (or repair it); prints the DOCKER_HOST of a manager",
        description="Bring the lab up, or check and repair a running one (a second run is fast "
        "and changes nothing that works, roles included; after a crashed run it cleans up "
        "and starts again). Prints `export DOCKER_HOST=...` (the first manager that answers "
        "as a reachable manager) and `export REGISTRY=...` on stdout, so "
        'eval "$(dockercoins lab up)" points the docker CLI at a manager.',
    )
    up.add_argument(
        "--nodes",
        type=int_between(1, MAX_NODES),
        default=DEFAULT_NODES,
        help=f"number of nodes (default {DEFAULT_NODES})",
    )
    up.add_argument(
        "--managers",
        type=int_between(1, MAX_NODES),
        default=None,
        metavar="M",
        help="how many nodes are swarm managers: node1 to nodeM, the others workers "
        "(default 3 when there are 3 nodes or more, else every node). Raft, which the "
        "managers keep the swarm's state with, needs a majority of them to act: 3 "
        "managers survive the loss of one (2 of 3 left), 2 would not (1 of 2 is no "
        "majority), so an odd number is best. On a running lab, a new M promotes or "
        "demotes nodes to match",
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
        help="nodes, their swarm state and role, daemons, memory, registry, forwarders",
        description="Show the lab's nodes (dockerd up?, swarm state and role from the "
        "manager's node list), the memory of each node (its dockerd, its containerd with "
        "the container shims, and its containers: the cgroup /dockercoins-lab/nodeN), the "
        "registry and the web UI and Prometheus forwarders. Exit status 1 when something "
        "is down.",
    )
    status.set_defaults(func=_status)

    down = commands.add_parser(
        "down",
        help="remove the lab: daemons, namespaces, links, bridge, rule, mounts, registry",
        description="Tear the lab down and leave nothing running: daemons (by pid), every "
        "process in the lab's cgroups (also the containers of a node that died), namespaces, "
        "veths, the bridge, the iptables rule, the mounts under the data roots, the registry "
        "and the forwarders; then check that none of it is left. The nodes' data roots (their "
        "images) and the registry's storage are kept so the next `lab up` is fast; --purge "
        "deletes them too.",
    )
    down.add_argument(
        "--purge",
        action="store_true",
        help="also delete the nodes' data roots (images) and the registry's storage",
    )
    down.set_defaults(func=_down)
    _register_node(commands)


def node_name(text: str) -> str:
    """A lab node's name: node1 to node<MAX_NODES>."""
    match = NODE_NAME.match(text)
    if not match or not 1 <= int(match.group(1)) <= MAX_NODES:
        raise argparse.ArgumentTypeError(f"not a lab node: {text!r} (node1 to node{MAX_NODES})")
    return text


def _register_node(commands: Subparsers) -> None:
    node = commands.add_parser(
        "node",
        help="kill, stop or start one node (fault drills)",
        description="Act on one node of a running lab. `kill` is a power loss: the node's "
        "daemons and every process of its containers (its cgroup) are SIGKILLed in one "
        "frozen moment and nothing is cleaned. `stop` stops its dockerd cleanly. `start` "
        "brings it back and into the swarm, as `lab up` would (`lab up` repairs every node).",
    )
    actions = node.add_subparsers(dest="node_action", metavar="ACTION", required=True)
    for name, func, text in (
        ("kill", _node_kill, "SIGKILL the node's daemons and containers at once (power loss)"),
        ("stop", _node_stop, "stop the node's dockerd cleanly (its containers stop with it)"),
        ("start", _node_start, "bring the node's dockerd back and rejoin the swarm"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("node", type=node_name, metavar="NODE", help="node1, node2, ...")
        action.set_defaults(func=func)


def _up(args: argparse.Namespace) -> int:
    from dockercoins.lab import cluster, lifecycle

    managers = cluster.default_managers(args.nodes) if args.managers is None else args.managers
    cluster.check_managers(managers, args.nodes)
    if args.managers is not None and managers % 2 == 0:
        survive = (managers - 1) // 2
        ui.info(
            f"warning: {managers} managers survive the loss of {survive or 'none'}, as "
            f"{managers - 1} would: raft needs a majority ({managers // 2 + 1} of {managers})"
        )
    started = time.monotonic()
    state = lifecycle.up(args.nodes, args.forward_port, args.prometheus_port, managers)
    ui.info(
        f"lab up: {len(state.nodes)} nodes ({len(state.manager_nodes)} managers) in "
        f"{time.monotonic() - started:.1f} s; "
        f"web UI (once deployed): http://localhost:{state.forward_port}/"
    )
    ui.info(f"Prometheus (once deployed): http://localhost:{state.prometheus_port}/")
    login = lifecycle.registry_credentials()
    ui.info(
        f"registry https://{state.registry} (TLS, its CA trusted by every dockerd here): "
        f"user {login.user}, password in {login.password_file}; log in once (push and deploy "
        "use the docker CLI's stored login):"
    )
    ui.info(f"  {login.login_hint(state.registry)}")
    ui.result(f"export DOCKER_HOST={state.manager.docker_host}")
    ui.result(f"export REGISTRY={state.registry}")
    ui.result(f"export REGISTRY_USER={login.user}")
    ui.result(f"export REGISTRY_PASSWORD_FILE={login.password_file}")
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
    for line in lab_status.memory_table(report.nodes):
        ui.result(line)
    ui.result(f"export DOCKER_HOST={state.manager.docker_host}")
    return 0 if report.healthy else 1


def _down(args: argparse.Namespace) -> int:
    from dockercoins.lab import lifecycle

    started = time.monotonic()
    lifecycle.down(purge=args.purge)
    ui.info(f"lab down in {time.monotonic() - started:.1f} s: nothing of the lab is running")
    return 0


def _node_kill(args: argparse.Namespace) -> int:
    from dockercoins.lab import node_control

    killed = node_control.kill(args.node)
    ui.info(
        f"{args.node}: {killed} processes killed at once (daemons and containers); "
        f"`dockercoins lab node start {args.node}` or `dockercoins lab up` brings it back"
    )
    return 0


def _node_stop(args: argparse.Namespace) -> int:
    from dockercoins.lab import node_control

    started = time.monotonic()
    node_control.stop(args.node)
    ui.info(f"{args.node}: stopped in {time.monotonic() - started:.1f} s")
    return 0


def _node_start(args: argparse.Namespace) -> int:
    from dockercoins.lab import node_control

    started = time.monotonic()
    node_control.start(args.node)
    ui.info(f"{args.node}: up and in the swarm in {time.monotonic() - started:.1f} s")
    return 0
