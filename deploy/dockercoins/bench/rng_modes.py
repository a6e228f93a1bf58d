"""`dockercoins bench rng-modes`: is rng in global mode really faster, and by how much?

On the swarm DOCKER_HOST points at (else the lab's manager), with DockerCoins deployed:
for each mode (rng replicated with 1 task, rng global with 1 task per node) and each
worker count, scale, wait until every task runs, warm up, then read the `hashes` counter
from the web UI's /json about every second. Reports the steady rate next to the ceiling
of the delay model (bench_model), as a markdown table, JSON and a PNG (bench_plot).
The services' mode and scale are put back as they were, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import math
import os
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from dockercoins import ui
from dockercoins.bench import model as bench_model
from dockercoins.bench.model import GLOBAL, REPLICATED, BenchReport, Delays, Sample
from dockercoins.errors import UserError
from dockercoins.lab import state as lab_state

NEEDED = ("redis", "hasher", "rng", "webui", "worker")
TABLE_FILE = "rng-modes.md"
JSON_FILE = "rng-modes.json"
PNG_FILE = "rng-modes.png"
MAX_FAILED_READS = 10


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `bench rng-modes`."""
    parser = subparsers.add_parser(
        "rng-modes",
        help="hash rate with rng replicated (1 task) vs global (1 per node), on the swarm",
        description="On the swarm DOCKER_HOST points at (default: the lab's manager), with "
        "DockerCoins deployed: measure the steady hash rate with rng replicated (1 task) "
        "and global (1 task per node) for the same worker counts, next to the ceiling "
        "min(W / (d_worker + d_rng + d_hasher), R / d_rng). Writes a markdown table, JSON "
        "and a PNG to --out and prints the table. The services are put back as they were, "
        "also on Ctrl-C.",
    )
    parser.add_argument(
        "--workers", type=int, default=10, help="worker replicas of the main run (10)"
    )
    parser.add_argument(
        "--sweep",
        default="1,2,5,10,15",
        help="worker counts measured in both modes, comma-separated (1,2,5,10,15)",
    )
    parser.add_argument(
        "--duration", type=float, default=30.0, help="seconds measured per point (30)"
    )
    parser.add_argument(
        "--main-duration",
        type=float,
        default=None,
        help="seconds measured for the main run (--workers) in each mode (--duration)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=10.0,
        help="seconds waited after the tasks run, before measuring (10)",
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between /json reads (1)"
    )
    parser.add_argument(
        "--window",
        type=float,
        default=3.0,
        help="seconds per window for the spread of the rate (3; worker counters flush "
        "about once a second, so 1-second rates are mostly noise)",
    )
    parser.add_argument(
        "--webui",
        default=None,
        metavar="URL",
        help="the web UI to read /json from (default: http://127.0.0.1:8000, then the lab's "
        "nodes); loopback or lab addresses only",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=180.0,
        help="seconds allowed for each change of scale or mode to converge (180)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results"),
        help=f"directory for {TABLE_FILE}, {JSON_FILE} and {PNG_FILE} (./bench-results)",
    )
    parser.set_defaults(func=run)


# --- options ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    workers: int
    counts: tuple[int, ...]
    duration: float
    main_duration: float
    warmup: float
    interval: float
    window: float
    timeout: float
    out: Path
    webui: str | None

    def duration_for(self, workers: int) -> float:
        return self.main_duration if workers == self.workers else self.duration


def options_from(args: argparse.Namespace) -> Options:
    """Checked options; UserError on bad values."""
    if not 1 <= args.workers <= 1000:
        raise UserError(f"bad --workers {args.workers}: expected 1 to 1000")
    main_duration = args.duration if args.main_duration is None else args.main_duration
    for name, value, low in (
        ("--duration", args.duration, 1.0),
        ("--main-duration", main_duration, 1.0),
        ("--warmup", args.warmup, 0.0),
        ("--interval", args.interval, 0.1),
        ("--window", args.window, 0.1),
        ("--timeout", args.timeout, 5.0),
    ):
        if not (low <= value < math.inf):
            raise UserError(f"bad {name} {value}: expected a number of seconds >= {low:g}")
    if args.interval > args.window:
        raise UserError(f"--interval {args.interval:g} must not exceed --window {args.window:g}")
    if min(args.duration, main_duration) < 2 * args.interval:
        raise UserError("--duration must cover at least two /json reads (2 x --interval)")
    counts = sorted({*bench_model.parse_sweep(args.sweep), args.workers})
    if args.webui is not None:
        check_webui_url(args.webui)
    return Options(
        workers=args.workers,
        counts=tuple(counts),
        duration=args.duration,
        main_duration=main_duration,
        warmup=args.warmup,
        interval=args.interval,
        window=args.window,
        timeout=args.timeout,
        out=args.out,
        webui=args.webui.rstrip("/") if args.webui else None,
    )


def check_webui_url(url: str) -> None:
    """Benchmark traffic goes to loopback or to the lab's own addresses, nowhere else."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http" or not host:
        raise UserError(f"bad --webui {url!r}: expected http://HOST:PORT")
    if host == "localhost":
        return
    lab = lab_state.load()
    lab_hosts = {node.ip for node in lab.nodes} | {lab.host_ip} if lab else set()
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and host not in lab_hosts:
        raise UserError(
            f"--webui {url!r}: only loopback or the lab's node addresses are allowed here"
        )


# --- the cluster --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterState:
    """What the benchmark changes, recorded to put it back."""

    rng_mode: str
    rng_replicas: int | None  # None when global
    worker_replicas: int

    def describe(self) -> str:
        rng = "global" if self.rng_mode == GLOBAL else f"replicated x{self.rng_replicas}"
        return f"rng {rng}, worker x{self.worker_replicas}"


def read_state(client: Any) -> ClusterState:
    from dockercoins.swarm import operations as swarm
    from dockercoins.swarm.specs import mode_of, replicas_of

    services = swarm.our_services(client, ["rng", "worker"])
    rng = swarm.require(services, "rng")["Spec"]
    worker = swarm.require(services, "worker")["Spec"]
    if mode_of(worker) != REPLICATED:
        raise UserError("worker runs in global mode: the benchmark needs a replicated worker")
    return ClusterState(
        rng_mode=mode_of(rng),
        rng_replicas=replicas_of(rng),
        worker_replicas=replicas_of(worker) or 0,
    )


def require_deployed(client: Any) -> dict[str, Any]:
    from dockercoins.swarm import operations as swarm

    services: dict[str, Any] = swarm.our_services(client, NEEDED)
    missing = [name for name in NEEDED if name not in services]
    if missing:
        raise UserError(
            f"DockerCoins is not deployed on this swarm (no service {', '.join(missing)}): "
            "run `dockercoins deploy` first"
        )
    return services


def delays_of(services: dict[str, Any]) -> Delays:
    def env(name: str) -> dict[str, str]:
        container = services[name]["Spec"]["TaskTemplate"].get("ContainerSpec", {})
        return bench_model.env_list_to_dict(container.get("Env"))

    return bench_model.delays_from_env(env("worker"), env("rng"), env("hasher"))


def running_tasks(client: Any, name: str) -> int:
    from dockercoins.swarm import operations as swarm

    services = swarm.our_services(client, [name])
    tasks = swarm.tasks_of(client, services).get(name, [])
    return sum(
        1
        for task in tasks
        if task.get("DesiredState") == "running" and task["Status"]["State"] == "running"
    )


def apply(client: Any, mode: str, rng_replicas: int, workers: int, timeout: float) -> None:
    """rng in `mode`, worker at `workers` replicas; returns once every task runs."""
    from dockercoins.swarm import operations as swarm

    require_deployed(client)
    state = read_state(client)
    if state.rng_mode != mode or (mode == REPLICATED and state.rng_replicas != rng_replicas):
        swarm.rng_mode(mode, rng_replicas, timeout)
    if state.worker_replicas != workers:
        swarm.scale({"worker": workers}, timeout)
    swarm.wait_converged(client, NEEDED, timeout, "waiting for the services")


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """While the cluster is put back, Ctrl-C only says to wait (every wait is bounded)."""

    def say_wait(_signum: int, _frame: FrameType | None) -> None:
        ui.info("\nputting the services back as they were first; this ends by itself")

    try:
        previous = signal.signal(signal.SIGINT, say_wait)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def rng_spec(client: Any) -> dict[str, Any]:
    from dockercoins.swarm import operations as swarm

    spec: dict[str, Any] = swarm.require(swarm.our_services(client, ["rng"]), "rng")["Spec"]
    return spec


def restore(
    client: Any, original: ClusterState, original_rng: dict[str, Any], timeout: float
) -> None:
    """Put rng's mode and the worker scale back; rng is created again from its recorded spec
    if an interrupted mode switch left it removed."""
    from dockercoins.swarm import operations as swarm

    with interrupts_deferred():
        present = set(swarm.our_services(client, NEEDED))
        if not present & {"redis", "hasher", "webui", "worker"}:
            ui.info("DockerCoins was taken down while the benchmark ran: nothing to put back")
            return
        if "rng" not in present:
            ui.info("rng was removed in the middle of a mode switch: creating it again")
            swarm.create_service(client, original_rng)
        if "worker" not in present:
            ui.info("worker was removed while the benchmark ran: not putting anything back")
            return
        if read_state(client) == original:
            return
        ui.info(f"putting the services back: {original.describe()}")
        apply(
            client,
            original.rng_mode,
            original.rng_replicas or 1,
            original.worker_replicas,
            timeout,
        )


# --- reading the hash counter -----------------------------------------------------------


def find_webui(explicit: str | None) -> str:
    """The first web UI URL whose /json answers (loopback or lab addresses only)."""
    import httpx

    from dockercoins.swarm import operations as swarm

    candidates = swarm.webui_candidates(explicit)
    for url in candidates:
        check_webui_url(url)
        try:
            with httpx.Client(timeout=3.0) as http:
                read_json(http, url)
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            continue
        return url
    raise UserError(
        f"no web UI answers /json at {', '.join(candidates)}: is the lab's forwarder up "
        "(`dockercoins lab status`)? or give --webui URL"
    )


def read_json(http: Any, url: str) -> Sample:
    answer = http.get(f"{url}/json")
    answer.raise_for_status()
    data = answer.json()
    return Sample(now=float(data["now"]), hashes=int(data["hashes"]))


class ProgressBar:
    """One line on stderr redrawn in place on a terminal; a line every 10 s otherwise."""

    WIDTH = 30

    def __init__(self, total: float) -> None:
        self.total = max(total, 1e-9)
        self.done = 0.0
        self.tty = sys.stderr.isatty()
        self.last_line = 0.0
        self.drawn = False

    def show(self, extra: float, text: str) -> None:
        fraction = min(1.0, (self.done + extra) / self.total)
        filled = round(fraction * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = f"[{bar}] {fraction:4.0%} {text}"
        if self.tty:
            sys.stderr.write("\r" + line.ljust(100)[:100])
            sys.stderr.flush()
            self.drawn = True
        elif time.monotonic() - self.last_line >= 10:
            ui.info(line)
            self.last_line = time.monotonic()

    def end_line(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.drawn = False


def wait_with_bar(seconds: float, bar: ProgressBar, label: str, tick: float = 0.5) -> None:
    """The warm-up: wait `seconds`, redrawing the bar."""
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        bar.show(elapsed, f"{label} warm-up {elapsed:.0f}/{seconds:.0f} s")
        time.sleep(min(tick, seconds - elapsed))
    bar.done += seconds


def sample_counter(
    url: str, seconds: float, interval: float, bar: ProgressBar, label: str
) -> list[Sample]:
    """Read /json every `interval` seconds for `seconds` (a read at both ends)."""
    import httpx

    samples: list[Sample] = []
    failed = 0
    started = time.monotonic()
    reads = int(seconds / interval) + 1
    with httpx.Client(timeout=max(2.0, interval)) as http:
        for k in range(reads):
            delay = started + k * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                samples.append(read_json(http, url))
                failed = 0
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
                failed += 1
                if failed >= MAX_FAILED_READS:
                    raise UserError(
                        f"the web UI at {url} stopped answering /json: {error}"
                    ) from error
            rate = ""
            if len(samples) >= 2 and samples[-1].now > samples[0].now:
                slope = bench_model.rate_stats(samples, 1e9).mean
                rate = f" {slope:.1f} hashes/s"
            bar.show(min(seconds, k * interval), f"{label} measuring{rate}")
    bar.done += seconds
    return samples


# --- the run ------------------------------------------------------------------------------


def plan(options: Options, first_mode: str) -> list[tuple[str, int]]:
    """(mode, workers) in order: the current mode first, worker counts up, then the other
    mode with worker counts down (fewest changes of scale and one rng re-creation)."""
    second = GLOBAL if first_mode == REPLICATED else REPLICATED
    up = list(options.counts)
    return [(first_mode, w) for w in up] + [(second, w) for w in reversed(up)]


def command_line(options: Options) -> str:
    """The command that repeats this run (every option spelled out)."""
    words = [
        "dockercoins", "bench", "rng-modes",
        "--workers", str(options.workers),
        "--sweep", ",".join(map(str, options.counts)),
        "--duration", f"{options.duration:g}",
        "--main-duration", f"{options.main_duration:g}",
        "--warmup", f"{options.warmup:g}",
        "--interval", f"{options.interval:g}",
        "--window", f"{options.window:g}",
        "--out", str(options.out),
    ]  # fmt: skip
    if options.webui:
        words += ["--webui", options.webui]
    return shlex.join(words)


def load_average() -> list[float]:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


def run(args: argparse.Namespace) -> int:
    from dockercoins.swarm import operations as swarm

    options = options_from(args)
    client = swarm.connect_manager()
    services = require_deployed(client)
    delays = delays_of(services)
    url = find_webui(options.webui)
    schedulable = [node for node in swarm.nodes(client) if node.schedulable]
    original = read_state(client)
    original_rng = rng_spec(client)
    points = plan(options, original.rng_mode)
    per_point = [options.warmup + options.duration_for(w) for _, w in points]
    ui.info(
        f"bench rng-modes: {len(points)} runs on {len(schedulable)} nodes, "
        f"worker counts {', '.join(map(str, options.counts))}, "
        f"about {sum(per_point) / 60:.1f} min of measuring plus the changes of scale; "
        f"web UI {url}; now {original.describe()} (put back at the end, also on Ctrl-C)"
    )
    report = BenchReport(
        main_workers=options.workers,
        nodes=len(schedulable),
        delays=delays,
        settings={
            "command": command_line(options),
            "duration": options.duration,
            "main_duration": options.main_duration,
            "warmup": options.warmup,
            "interval": options.interval,
            "window": options.window,
            "webui": url,
            "nodes": [node.hostname for node in schedulable],
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "load_average_start": load_average(),
        },
    )
    started = time.monotonic()
    bar = ProgressBar(sum(per_point))
    try:
        for index, (mode, workers) in enumerate(points, start=1):
            label = f"run {index}/{len(points)}: rng {mode}, worker x{workers}:"
            bar.end_line()
            ui.info(f"{label} setting up")
            apply(client, mode, 1, workers, options.timeout)
            rng_tasks = running_tasks(client, "rng")
            wait_with_bar(options.warmup, bar, label)
            samples = sample_counter(
                url, options.duration_for(workers), options.interval, bar, label
            )
            measurement = bench_model.measure(
                mode=mode,
                rng_tasks=rng_tasks,
                workers=workers,
                delays=delays,
                samples=samples,
                window=options.window,
            )
            report.measurements.append(measurement)
            bar.end_line()
            ui.info(
                f"{label} {measurement.stats.mean:.1f} hashes/s "
                f"(ceiling {measurement.ceiling:.1f}, rng tasks {rng_tasks})"
            )
    finally:
        bar.end_line()
        restore(client, original, original_rng, options.timeout)
    report.settings["load_average_end"] = load_average()
    report.settings["elapsed_seconds"] = round(time.monotonic() - started, 1)
    write_outputs(report, options.out)
    ui.result(bench_model.markdown(report))
    ui.result(
        f"written: {options.out / TABLE_FILE}, {options.out / JSON_FILE}, {options.out / PNG_FILE}"
    )
    return 0


def write_outputs(report: BenchReport, out: Path) -> None:
    from dockercoins.bench import plot as bench_plot

    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / TABLE_FILE).write_text(bench_model.markdown(report))
        document = bench_model.to_json(report)
        (out / JSON_FILE).write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")
        bench_plot.plot(report, out / PNG_FILE)
    except OSError as error:
        raise UserError(f"cannot write the results to {out}: {error}") from error
