"""Subcommand: verify (nothing lost, nothing counted twice)."""

from __future__ import annotations

import argparse

from dockercoins.cli.common import Subparsers
from dockercoins.names import PROMETHEUS_PORT, WEBUI_PUBLISHED_PORT, WORKER_METRICS_PORT


def register(subparsers: Subparsers) -> None:
    """Add `verify`."""
    parser = subparsers.add_parser(
        "verify",
        help="compare Redis's counts with what the workers were told: hashes lost, counted twice",
        description="Read what each worker says Redis confirmed to it (its /metrics, through "
        "Prometheus or directly), then Redis's ledger of every worker's flushes and the "
        "`hashes` counter (the web UI's /ledger), and print the hashes lost (Redis has less "
        "than it acknowledged) and counted twice (Redis counted a flush again, or outside the "
        "ledger). A worker that flushed again between the two reads is sampled again; still "
        "moving, it is `in flight` and checked for loss only. Workers that are gone count by "
        "their ledger entry. Exit status 0 when nothing is lost and nothing counted twice, "
        "1 otherwise. Works during mining.",
    )
    parser.add_argument(
        "--webui",
        default=None,
        metavar="URL",
        help=f"read /ledger from here (default: 127.0.0.1:{WEBUI_PUBLISHED_PORT}, else the "
        "lab's node addresses)",
    )
    parser.add_argument(
        "--prometheus",
        default=None,
        metavar="URL",
        help="read the workers' counts from this Prometheus (default: "
        f"127.0.0.1:{PROMETHEUS_PORT}, else the lab's node addresses)",
    )
    parser.add_argument(
        "--worker-metrics",
        action="append",
        default=None,
        metavar="URL",
        help="read a worker's counts straight from its metrics page instead, e.g. "
        f"http://127.0.0.1:{WORKER_METRICS_PORT} (repeatable: one per worker; for "
        "`dockercoins local`)",
    )
    parser.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    from dockercoins.swarm.verify import verify

    return verify(args.webui, args.worker_metrics, args.prometheus)
