"""`dockercoins local`: redis-server and the four services as processes on loopback."""

from __future__ import annotations

import argparse

from dockercoins import ui
from dockercoins.cli.common import Subparsers, tcp_port, tcp_port_or_zero
from dockercoins.errors import UserError
from dockercoins.names import WEBUI_PUBLISHED_PORT


def register(subparsers: Subparsers) -> None:
    """Add `local`."""
    parser = subparsers.add_parser(
        "local",
        help="run DockerCoins on this machine without Docker (Ctrl-C stops it)",
        description="Start a redis-server (temporary directory, loopback) and rng, hasher, "
        "webui and worker as processes on 127.0.0.1, print the page's URL, and on Ctrl-C or "
        "SIGTERM stop everything and remove the temporary directory. The services read "
        "their usual settings from the environment (e.g. RNG_DELAY=0, WORKER_CONCURRENCY=8).",
    )
    parser.add_argument(
        "--webui-port",
        type=tcp_port,
        default=WEBUI_PUBLISHED_PORT,
        help=f"web UI port ({WEBUI_PUBLISHED_PORT})",
    )
    parser.add_argument("--rng-port", type=tcp_port, default=8001, help="rng port (8001)")
    parser.add_argument("--hasher-port", type=tcp_port, default=8002, help="hasher port (8002)")
    parser.add_argument(
        "--redis-port",
        type=tcp_port_or_zero,
        default=0,
        help="redis-server port (default: a free port)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dockercoins.local import LocalPorts, PortInUse, run_local

    ports = LocalPorts(
        webui=args.webui_port, rng=args.rng_port, hasher=args.hasher_port, redis=args.redis_port
    )
    try:
        return run_local(ports, ui.info, ui.result)
    except PortInUse as error:
        raise UserError(f"{error}; choose another with --{error.name}-port") from error
