"""`dockercoins`: one entry point, one subcommand module per job.

Each command module exposes `register(subparsers)`, which adds its subcommands and sets
`func` (a callable taking the parsed arguments and returning an exit status) on each.
"""

import argparse
import signal
import sys
from collections.abc import Sequence
from types import ModuleType

from dockercoins import __version__
from dockercoins.errors import UserError


def _command_modules() -> list[ModuleType]:
    from dockercoins.cli import bench as commands_bench
    from dockercoins.cli import dockerd as commands_dockerd
    from dockercoins.cli import images as commands_images
    from dockercoins.cli import lab as commands_lab
    from dockercoins.cli import local as commands_local
    from dockercoins.cli import swarm as commands_swarm
    from dockercoins.cli import verify as commands_verify

    return [
        commands_local,
        commands_images,
        commands_dockerd,
        commands_lab,
        commands_swarm,
        commands_verify,
        commands_bench,
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dockercoins",
        description="DockerCoins in Python: run the services, build and push their images, "
        "run the multi-node Swarm lab, deploy and benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"dockercoins {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules():
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Ctrl-C (SIGINT) stops every command cleanly, also when it was started with SIGINT
    # ignored (a background job of a script inherits SIG_IGN, and Python keeps it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except UserError as error:
        print(f"dockercoins: error: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        print("dockercoins: interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
