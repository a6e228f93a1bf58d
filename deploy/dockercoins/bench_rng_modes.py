"""Benchmark: (placeholder, filled in by its issue)."""

import argparse
from typing import Any


def register(subparsers: "argparse._SubParsersAction[Any]") -> None:
    """Add this benchmark's subcommand."""
