"""`dockercoins bench ...`: benchmarks print numbers; they are not tests."""

import argparse
from typing import Any

from dockercoins.bench import pipeline as bench_pipeline
from dockercoins.bench import rng_modes as bench_rng_modes


def register(subparsers: "argparse._SubParsersAction[Any]") -> None:
    parser = subparsers.add_parser("bench", help="benchmarks (numbers, not tests)")
    bench = parser.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    bench_pipeline.register(bench)
    bench_rng_modes.register(bench)
