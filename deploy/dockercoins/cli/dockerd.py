"""Subcommands: `dockerd start|env|stop` (a dockerd of the project's own on the host)."""

from __future__ import annotations

import argparse

from dockercoins import ui
from dockercoins.cli.common import Subparsers
from dockercoins.errors import UserError


def register(subparsers: Subparsers) -> None:
    """Add `dockerd` and its actions."""
    parser = subparsers.add_parser(
        "dockerd",
        help="a dockerd of the project's own, for when no daemon is reachable",
        description="Start, show or stop a dockerd of the project's own: its data root, "
        "pidfile, socket and log under STATE/dockerd, no default bridge, stopped by its own "
        "pid. A daemon that was already running is never touched. "
        'eval "$(dockercoins dockerd start)" points the docker CLI and the tool at it.',
    )
    actions = parser.add_subparsers(dest="dockerd_action", metavar="ACTION", required=True)
    for name, func, text in (
        ("start", _start, "start it (idempotent), wait until it answers, print its DOCKER_HOST"),
        ("env", _env, "print its `export DOCKER_HOST=...` line if it is running"),
        ("stop", _stop, "stop it by its own pid (its data stays)"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.set_defaults(func=func)


def _start(args: argparse.Namespace) -> int:
    from dockercoins.host import dockerd

    daemon = dockerd.on_host()
    dockerd.start(daemon)
    ui.result(f"export DOCKER_HOST={daemon.docker_host}")
    return 0


def _env(args: argparse.Namespace) -> int:
    from dockercoins.host import dockerd

    daemon = dockerd.on_host()
    if daemon.pid() is None:
        raise UserError("our dockerd is not running: dockercoins dockerd start")
    ui.result(f"export DOCKER_HOST={daemon.docker_host}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    from dockercoins.host import dockerd

    ui.info("stopped" if dockerd.stop(dockerd.on_host()) else "was not running")
    return 0
