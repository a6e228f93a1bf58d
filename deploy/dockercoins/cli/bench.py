"""`dockercoins bench ...`: benchmarks print numbers; they are not tests.

Every bench option is declared here. A check of one option's value is its argparse `type`
(a bad value exits 2 with the usage); checks across options follow the parse.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dockercoins.bench.report import JSON_FILE, PNG_FILE, TABLE_FILE
from dockercoins.cli.common import Subparsers, int_between, seconds_between
from dockercoins.names import PROMETHEUS_PORT, WEBUI_PUBLISHED_PORT

if TYPE_CHECKING:
    from dockercoins.bench.rng_modes import Options
    from dockercoins.bench.scaling import Options as ScalingOptions


def register(subparsers: Subparsers) -> None:
    """Add `bench` and its benchmarks."""
    parser = subparsers.add_parser("bench", help="benchmarks (numbers, not tests)")
    bench = parser.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    _register_pipeline(bench)
    _register_rng_modes(bench)
    _register_scaling(bench)


# --- option types -----------------------------------------------------------------------------

SECONDS = seconds_between(0.0, 3600.0)
WORKER_COUNT = int_between(1, 1000)


def _concurrencies(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}"
        ) from None
    if not values or any(value < 1 or value > 4096 for value in values):
        raise argparse.ArgumentTypeError("concurrencies must be between 1 and 4096")
    return values


def _sweep(text: str) -> list[int]:
    """ "1,2,5,10,15" -> [1, 2, 5, 10, 15] (sorted, unique)."""
    counts: set[int] = set()
    for raw in text.split(","):
        part = raw.strip()
        if not part.isdigit() or not 1 <= int(part) <= 1000:
            raise argparse.ArgumentTypeError(
                f"bad value {text!r}: expected worker counts from 1 to 1000, e.g. 1,2,5,10"
            )
        counts.add(int(part))
    return sorted(counts)


def _local_url(text: str) -> str:
    """An http URL on loopback or a lab address (what rng-modes may read)."""
    from dockercoins.bench.rng_modes import url_problem

    problem = url_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"bad value {text!r}: {problem}")
    return text


# --- bench pipeline ---------------------------------------------------------------------------

METRICS_MODES = {"on": True, "off": False}
ROUNDS = int_between(1, 100)


def _metrics_modes(text: str) -> list[bool]:
    """ "on,off" -> [True, False] (in the order given, each once)."""
    modes: list[bool] = []
    for raw in text.split(","):
        part = raw.strip().lower()
        if part not in METRICS_MODES:
            raise argparse.ArgumentTypeError(f"bad value {text!r}: expected on, off or on,off")
        if METRICS_MODES[part] not in modes:
            modes.append(METRICS_MODES[part])
    return modes


def _register_pipeline(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "pipeline",
        help="hashes/second of one worker process with every delay at 0",
        description="Run redis-server, rng, hasher and one worker process on loopback with "
        "every delay at 0, at each worker concurrency with its metrics on and off, and print "
        "hashes/second, the latency of rng and hasher requests (mean, p99, from the "
        "worker's /metrics) and what the metrics cost (hashes/second on / off).",
    )
    parser.add_argument(
        "--concurrency",
        type=_concurrencies,
        default=[1, 8, 32],
        metavar="N,N,...",
        help="WORKER_CONCURRENCY values to run (default 1,8,32)",
    )
    parser.add_argument(
        "--duration", type=SECONDS, default=10.0, help="seconds measured per run (10)"
    )
    parser.add_argument("--warmup", type=SECONDS, default=2.0, help="seconds before measuring (2)")
    parser.add_argument(
        "--metrics",
        type=_metrics_modes,
        default=[True, False],
        metavar="on,off",
        help="run each concurrency with METRICS (worker, rng, hasher) on, off, or both "
        "(default on,off)",
    )
    parser.add_argument(
        "--repeat",
        type=ROUNDS,
        default=1,
        metavar="N",
        help="worker runs per concurrency and metrics mode, in alternating order, pooled "
        "(default 1)",
    )
    parser.add_argument(
        "--compare-clients",
        action="store_true",
        help="also run in-process GET/POST loops with httpx and plain aiohttp",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(func=_pipeline)


def _pipeline(args: argparse.Namespace) -> int:
    from dockercoins.bench import pipeline

    pipeline.run(
        concurrencies=args.concurrency,
        metrics=args.metrics,
        duration=args.duration,
        warmup=args.warmup,
        compare_clients=args.compare_clients,
        as_json=args.json,
        repeat=args.repeat,
    )
    return 0


# --- options the swarm benchmarks share -------------------------------------------------------


def _add_sampling_options(
    parser: argparse.ArgumentParser,
    *,
    window_note: str,
    prometheus_what: str,
    prometheus_note: str,
    timeout_what: str,
    files: tuple[str, str, str],
) -> None:
    """--warmup, --interval, --window, --webui, --prometheus, --timeout and --out: how a
    swarm benchmark reads /json and Prometheus, and where it writes."""
    parser.add_argument(
        "--warmup",
        type=seconds_between(0.0),
        default=10.0,
        help="seconds waited after the tasks run, before measuring (10)",
    )
    parser.add_argument(
        "--interval",
        type=seconds_between(0.1),
        default=1.0,
        help="seconds between /json reads (1)",
    )
    parser.add_argument(
        "--window",
        type=seconds_between(0.1),
        default=3.0,
        help=f"seconds per window for the spread of the rate (3{window_note})",
    )
    parser.add_argument(
        "--webui",
        type=_local_url,
        default=None,
        metavar="URL",
        help="the web UI to read /json from (default: "
        f"http://127.0.0.1:{WEBUI_PUBLISHED_PORT}, then the lab's nodes); loopback or lab "
        "addresses only",
    )
    parser.add_argument(
        "--prometheus",
        type=_local_url,
        default=None,
        metavar="URL",
        help=f"the Prometheus to ask for {prometheus_what} (default: "
        f"http://127.0.0.1:{PROMETHEUS_PORT}, then the lab's nodes{prometheus_note}); "
        "loopback or lab addresses only",
    )
    parser.add_argument(
        "--timeout",
        type=seconds_between(5.0),
        default=180.0,
        help=f"seconds allowed for each change of {timeout_what} to converge (180)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results"),
        help=f"directory for {files[0]}, {files[1]} and {files[2]} (./bench-results)",
    )


def _check_sampling(args: argparse.Namespace, shortest: float) -> None:
    """UserError when /json reads do not fit the windows or the shortest measurement."""
    from dockercoins.errors import UserError

    if args.interval > args.window:
        raise UserError(f"--interval {args.interval:g} must not exceed --window {args.window:g}")
    if shortest < 2 * args.interval:
        raise UserError("--duration must cover at least two /json reads (2 x --interval)")


def _url(text: str | None) -> str | None:
    return text.rstrip("/") if text else None


class _Sampling(Protocol):
    """What both benchmarks' options have (read-only: they are frozen dataclasses)."""

    @property
    def warmup(self) -> float: ...
    @property
    def interval(self) -> float: ...
    @property
    def window(self) -> float: ...
    @property
    def out(self) -> Path: ...
    @property
    def webui(self) -> str | None: ...
    @property
    def prometheus(self) -> str | None: ...


def _sampling_words(options: _Sampling) -> list[str]:
    """The options _add_sampling_options declares, as given, for a repeatable command
    line (--timeout is left out, as before: it bounds waits, not what is measured)."""
    words = [
        "--warmup", f"{options.warmup:g}",
        "--interval", f"{options.interval:g}",
        "--window", f"{options.window:g}",
        "--out", str(options.out),
    ]  # fmt: skip
    if options.webui:
        words += ["--webui", options.webui]
    if options.prometheus:
        words += ["--prometheus", options.prometheus]
    return words


def _on_the_manager(run: Callable[[Any], None]) -> int:
    """`run(client)` with one client of the swarm's manager for every step (restore
    included), after a warning about nodes that are not ready."""
    from dockercoins.swarm.connect import connect_manager, manager_errors
    from dockercoins.swarm.read import nodes, warn_unready_nodes

    with manager_errors():
        client = connect_manager()
        warn_unready_nodes(nodes(client))
        run(client)
    return 0


# --- bench rng-modes --------------------------------------------------------------------------


def _register_rng_modes(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "rng-modes",
        help="hash rate with rng replicated (1 task) vs global (1 per node), on the swarm",
        description="On the swarm DOCKER_HOST points at (default: the lab's manager), with "
        "DockerCoins deployed: measure the steady hash rate with rng replicated (1 task) "
        "and global (1 task per node) for the same worker counts, next to the ceiling "
        "min(W / (d_worker + d_rng + d_hasher), R / d_rng), and, when Prometheus answers, "
        "each rng task's answers/s (their sum should be the hash rate within 10 %). Writes "
        "a markdown table, JSON and a PNG to --out and prints the table. The services are "
        "put back as they were, also on Ctrl-C.",
    )
    parser.add_argument(
        "--workers", type=WORKER_COUNT, default=10, help="worker replicas of the main run (10)"
    )
    parser.add_argument(
        "--sweep",
        type=_sweep,
        default="1,2,5,10,15",
        help="worker counts measured in both modes, comma-separated (1,2,5,10,15)",
    )
    parser.add_argument(
        "--duration",
        type=seconds_between(1.0),
        default=30.0,
        help="seconds measured per point (30)",
    )
    parser.add_argument(
        "--main-duration",
        type=seconds_between(1.0),
        default=None,
        help="seconds measured for the main run (--workers) in each mode (--duration)",
    )
    _add_sampling_options(
        parser,
        window_note="; worker counters flush about once a second, so 1-second rates are "
        "mostly noise",
        prometheus_what="each rng task's answers/s",
        prometheus_note="; without one the benchmark runs and leaves those columns empty",
        timeout_what="scale or mode",
        files=(TABLE_FILE, JSON_FILE, PNG_FILE),
    )
    parser.set_defaults(func=_rng_modes)


def rng_modes_options(args: argparse.Namespace) -> Options:
    """The checked run; UserError when options disagree with each other."""
    from dockercoins.bench.rng_modes import Options

    main_duration = args.duration if args.main_duration is None else args.main_duration
    _check_sampling(args, min(args.duration, main_duration))
    return Options(
        workers=args.workers,
        counts=tuple(sorted({*args.sweep, args.workers})),
        duration=args.duration,
        main_duration=main_duration,
        warmup=args.warmup,
        interval=args.interval,
        window=args.window,
        timeout=args.timeout,
        out=args.out,
        webui=_url(args.webui),
        prometheus=_url(args.prometheus),
    )


def rng_modes_command_line(options: Options) -> str:
    """The command that repeats this run (every option spelled out)."""
    words = [
        "dockercoins", "bench", "rng-modes",
        "--workers", str(options.workers),
        "--sweep", ",".join(map(str, options.counts)),
        "--duration", f"{options.duration:g}",
        "--main-duration", f"{options.main_duration:g}",
    ]  # fmt: skip
    return shlex.join(words + _sampling_words(options))


def _rng_modes(args: argparse.Namespace) -> int:
    from dockercoins.bench import rng_modes

    options = rng_modes_options(args)
    return _on_the_manager(
        lambda client: rng_modes.run(client, options, rng_modes_command_line(options))
    )


# --- bench scaling ----------------------------------------------------------------------------


def _rng_nodes(text: str) -> tuple[int, ...]:
    """ "1,2,4,6,8" -> (1, 2, 4, 6, 8) (sorted, unique)."""
    from dockercoins.bench.scaling import parse_ks

    try:
        return parse_ks(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _float_between(low: float, high: float) -> Callable[[str], float]:
    """A number from `low` to `high`."""

    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {low:g} to {high:g}, not {text!r}")
        return value

    return check


def _register_scaling(subparsers: Subparsers) -> None:
    from dockercoins.bench.scaling import DEFAULT_HEADROOM, RNG_LABEL, TARGET
    from dockercoins.bench.scaling_report import JSON_FILE as S_JSON
    from dockercoins.bench.scaling_report import PNG_FILE as S_PNG
    from dockercoins.bench.scaling_report import TABLE_FILE as S_TABLE

    parser = subparsers.add_parser(
        "scaling",
        help="hash rate with rng on k nodes (k = 1, 2, 4, 6, 8) against the ceiling k x 10",
        description="On the swarm DOCKER_HOST points at (default: the lab's manager), with "
        "DockerCoins deployed: run rng in global mode on the first k nodes only (node label "
        f"{RNG_LABEL} on those k, a placement constraint on rng), with enough workers that "
        "rng is the limit, and measure the steady hash rate against the ceiling "
        "k x RNG_CONCURRENCY / RNG_DELAY (k x 10 with the default delays), each rng task's "
        "answers/s and, when the lab runs on this host, the cores each service and each "
        "node's daemons used. Writes a markdown table, JSON and a PNG to --out and prints "
        "the tables. The labels, the constraint, rng's mode and the worker scale are put "
        "back as they were, also on Ctrl-C.",
    )
    parser.add_argument(
        "--rng-nodes",
        type=_rng_nodes,
        default="1,2,4,6,8",
        metavar="K,K,...",
        help="the values of k: on how many nodes rng runs, comma-separated (1,2,4,6,8); the "
        "swarm needs at least the largest k schedulable nodes",
    )
    parser.add_argument(
        "--headroom",
        type=_float_between(1.0, 10.0),
        default=DEFAULT_HEADROOM,
        help="workers per k: enough for this many times the rng ceiling "
        f"({DEFAULT_HEADROOM:g}: 5, 9, 18, 27, 36 workers for k = 1, 2, 4, 6, 8 with the "
        "default delays)",
    )
    parser.add_argument(
        "--duration", type=seconds_between(1.0), default=30.0, help="seconds measured per k (30)"
    )
    parser.add_argument(
        "--target",
        type=_float_between(0.0, 1.0),
        default=TARGET,
        help=f"the share of the ceiling each k should reach, reported per k ({TARGET:g})",
    )
    _add_sampling_options(
        parser,
        window_note="",
        prometheus_what="each rng task's answers/s and the workers' latencies",
        prometheus_note="; optional",
        timeout_what="labels or scale",
        files=(S_TABLE, S_JSON, S_PNG),
    )
    parser.set_defaults(func=_scaling)


def scaling_options(args: argparse.Namespace) -> ScalingOptions:
    """The checked run; UserError when options disagree with each other."""
    from dockercoins.bench.scaling import Options as Checked

    _check_sampling(args, args.duration)
    return Checked(
        ks=tuple(args.rng_nodes),
        headroom=args.headroom,
        duration=args.duration,
        warmup=args.warmup,
        interval=args.interval,
        window=args.window,
        timeout=args.timeout,
        out=args.out,
        webui=_url(args.webui),
        prometheus=_url(args.prometheus),
        target=args.target,
    )


def scaling_command_line(options: ScalingOptions) -> str:
    """The command that repeats this run (every option spelled out)."""
    words = [
        "dockercoins", "bench", "scaling",
        "--rng-nodes", ",".join(map(str, options.ks)),
        "--headroom", f"{options.headroom:g}",
        "--duration", f"{options.duration:g}",
        "--target", f"{options.target:g}",
    ]  # fmt: skip
    return shlex.join(words + _sampling_words(options))


def _scaling(args: argparse.Namespace) -> int:
    from dockercoins.bench import scaling

    options = scaling_options(args)
    return _on_the_manager(
        lambda client: scaling.run(client, options, scaling_command_line(options))
    )
