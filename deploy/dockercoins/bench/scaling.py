"""`dockercoins bench scaling`: does the hash rate grow with the number of rng tasks, up to
k x 10 hashes/s?

On the swarm DOCKER_HOST points at (else the lab's manager), with DockerCoins deployed:
rng runs in global mode, limited by a placement constraint (RNG_CONSTRAINT) to the nodes
that carry the node label RNG_LABEL. For each k (1, 2, 4, 6, 8 by default) the first k
schedulable nodes (node1, node2, ... in natural order) get the label, so one swarm serves
every k: the label moves, rng follows, nothing is re-created. The worker is scaled so that
rng is the limit (`workers_for`: the worker ceiling `headroom` times the rng ceiling
k / d_rng), then, as in `bench rng-modes`, a warm-up, the `hashes` counter read from the
web UI about every second, each rng task's answers/s from Prometheus, and, where the lab
runs on this host, the CPU each service and each node's daemons used (bench.lab_cpu):
if the rate stays under the ceiling, those numbers say where the machine ran out.

Everything is put back at the end, also on Ctrl-C: the constraint and the labels are
removed, rng's mode and the worker scale restored (bench.cluster.restore).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dockercoins import ui
from dockercoins.bench import cluster, rng_modes
from dockercoins.bench import model as bench_model
from dockercoins.bench.lab_cpu import LabCpu, Usage, natural_key
from dockercoins.bench.model import Delays, Measurement
from dockercoins.errors import UserError
from dockercoins.lab import state as lab_state
from dockercoins.names import GLOBAL
from dockercoins.swarm import operations, prometheus
from dockercoins.swarm.converge import POLL, describe_stuck, wait_converged, wait_tasks_gone
from dockercoins.swarm.read import Node, nodes, our_services, require, task_running, tasks_of
from dockercoins.swarm.specs import Spec, mode_of, with_mode

RNG_LABEL = "dockercoins.bench.rng"  # the node label of the nodes that run rng
LABEL_VALUE = "true"
RNG_CONSTRAINT = f"node.labels.{RNG_LABEL} == {LABEL_VALUE}"
DEFAULT_KS = (1, 2, 4, 6, 8)
MAX_K = 100
DEFAULT_HEADROOM = 1.5
TARGET = 0.95  # of the ceiling, at every k
MAX_FAILED_READS = rng_modes.MAX_FAILED_READS


# --- the pure parts ---------------------------------------------------------------------


def parse_ks(text: str) -> tuple[int, ...]:
    """ "1,2,4,6,8" -> (1, 2, 4, 6, 8): sorted, each once; ValueError saying what is wrong."""
    found: set[int] = set()
    for raw in text.split(","):
        part = raw.strip()
        if not part.isdigit() or not 1 <= int(part) <= MAX_K:
            raise ValueError(
                f"bad value {text!r}: expected node counts from 1 to {MAX_K}, e.g. 1,2,4,6,8"
            )
        found.add(int(part))
    return tuple(sorted(found))


def workers_for(k: int, delays: Delays, headroom: float) -> int:
    """Worker replicas that make rng the limit with k rng tasks: the worker ceiling is
    `headroom` times the rng ceiling (W >= headroom x k x concurrency / d_rng x loop /
    loops per task); at least one more than the fewest that reach the rng ceiling."""
    rng = bench_model.rng_ceiling(k, delays)
    per_worker = bench_model.worker_ceiling(1, delays)
    if not math.isfinite(rng):
        raise UserError("RNG_DELAY is 0: rng has no ceiling, so there is nothing to scale")
    if not math.isfinite(per_worker):
        return k  # no delays in the worker's loop: one task per rng task is plenty
    fewest = math.ceil(rng / per_worker - 1e-9)
    return max(fewest + 1, math.ceil(headroom * rng / per_worker - 1e-9))


def has_constraint(spec: Spec) -> bool:
    placement = spec.get("TaskTemplate", {}).get("Placement") or {}
    return RNG_CONSTRAINT in (placement.get("Constraints") or [])


def with_constraint(spec: Spec) -> Spec:
    """The spec with RNG_CONSTRAINT added to its placement (once); the rest kept."""
    result = copy.deepcopy(spec)
    placement = result.setdefault("TaskTemplate", {}).setdefault("Placement", {})
    constraints = list(placement.get("Constraints") or [])
    if RNG_CONSTRAINT not in constraints:
        constraints.append(RNG_CONSTRAINT)
    placement["Constraints"] = constraints
    return result


def without_constraint(spec: Spec) -> Spec:
    """The spec without RNG_CONSTRAINT (other constraints and placement settings kept).
    The Placement itself stays, empty if need be: dockerd 20.10's swarm manager
    dereferences the new spec's Placement when only the constraints changed, and panics
    (the whole daemon) when an update removed it."""
    result = copy.deepcopy(spec)
    placement = result.get("TaskTemplate", {}).get("Placement")
    if placement is None:
        return result
    constraints = [item for item in placement.get("Constraints") or [] if item != RNG_CONSTRAINT]
    if constraints:
        placement["Constraints"] = constraints
    else:
        placement.pop("Constraints", None)
    return result


def node_order(all_nodes: Iterable[Node]) -> list[Node]:
    """The schedulable nodes (ready, active) in natural order of their hostnames: node1,
    node2, ..., node10."""
    return sorted(
        (node for node in all_nodes if node.schedulable), key=lambda n: natural_key(n.hostname)
    )


def labelled(all_nodes: Iterable[Node]) -> list[Node]:
    """The nodes that carry RNG_LABEL (any value)."""
    return [node for node in all_nodes if RNG_LABEL in node.labels]


def label_plan(
    ordered: Sequence[Node], all_nodes: Iterable[Node], k: int
) -> tuple[list[Node], list[Node]]:
    """(nodes to label, nodes to unlabel) so that exactly the first k of `ordered` carry
    RNG_LABEL=LABEL_VALUE."""
    if k > len(ordered):
        raise UserError(f"k={k} needs {k} schedulable nodes; the swarm has {len(ordered)}")
    wanted = {node.id for node in ordered[:k]}
    add = [node for node in ordered[:k] if node.labels.get(RNG_LABEL) != LABEL_VALUE]
    remove = [node for node in all_nodes if RNG_LABEL in node.labels and node.id not in wanted]
    return add, remove


def labels_with(labels: Mapping[str, str] | None, present: bool) -> dict[str, str]:
    """A node's labels with RNG_LABEL set (present) or removed."""
    result = dict(labels or {})
    if present:
        result[RNG_LABEL] = LABEL_VALUE
    else:
        result.pop(RNG_LABEL, None)
    return result


def placement_progress(
    tasks: Iterable[Spec], spec: Spec, wanted: set[str], ready: set[str]
) -> tuple[int, int]:
    """(nodes of `wanted` with a running task of the current spec, running tasks on other
    nodes) of one service."""
    on: set[str] = set()
    elsewhere = 0
    for task in tasks:
        if not task_running(task, ready, spec):
            continue
        node = str(task.get("NodeID", ""))
        if node in wanted:
            on.add(node)
        else:
            elsewhere += 1
    return len(on), elsewhere


# --- one point and the whole run -------------------------------------------------------


@dataclass(frozen=True)
class ScalingPoint:
    """One k: the nodes that ran rng, what was measured (mode global, its rng tasks and
    workers, the ceiling min(worker, rng)), the rng ceiling k x concurrency / d_rng, the
    cores used per service and node (None: no lab on this host), the workers' mean
    latency of rng and hasher answers (from Prometheus), the load average after the run."""

    k: int
    nodes: tuple[str, ...]
    measurement: Measurement
    rng_ceiling: float
    worker_ceiling: float
    cpu: Usage | None = None
    latency: dict[str, float] | None = None
    load_average: tuple[float, ...] = ()

    @property
    def ratio(self) -> float | None:
        """hashes/s over the rng ceiling k x 10 (None when unbounded)."""
        if not math.isfinite(self.rng_ceiling) or self.rng_ceiling <= 0:
            return None
        return self.measurement.stats.mean / self.rng_ceiling

    def meets(self, target: float) -> bool | None:
        ratio = self.ratio
        return None if ratio is None else ratio >= target - 1e-9

    @property
    def rng_wait(self) -> float | None:
        """Seconds rng's processes waited on a run queue for a CPU per answer (per hash)
        during the run; None when not measured."""
        if self.cpu is None or self.measurement.stats.mean <= 0:
            return None
        waited = self.cpu.waiting_by_service().get("rng")
        return None if waited is None else waited / self.measurement.stats.mean


@dataclass
class ScalingReport:
    delays: Delays
    ks: tuple[int, ...]
    headroom: float
    target: float
    nodes: int
    points: list[ScalingPoint] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)


HIGH = 0.9  # a share of a core (one process) or of the host's CPUs that counts as "full"
PRESSURE = 0.2  # share of the time some task waited for a CPU that counts as contention
WAIT_SHARE = 0.02  # rng's run-queue wait per answer, as a share of RNG_DELAY, that counts


def likely_limit(point: ScalingPoint, target: float, delays: Delays) -> str:
    """What most likely held the rate under the rng ceiling, from the numbers of the run
    (a hint, in order: the rng ceiling reached, the host's CPU, one single-task service's
    core, CPU contention (rng waiting for a CPU), too few workers, slow hasher answers);
    "" without evidence."""
    if point.meets(target):
        return "rng (the ceiling)"
    found = _cpu_limit(point, delays)
    if found:
        return found
    if point.worker_ceiling < point.rng_ceiling * target:
        return "workers (too few for k x 10: raise --headroom)"
    hasher = (point.latency or {}).get("hasher")
    if hasher is not None and hasher > 2 * max(delays.hasher, 0.01):
        return f"hasher answers slowly ({hasher * 1000:.0f} ms on average)"
    return ""


def _cpu_limit(point: ScalingPoint, delays: Delays) -> str:
    """The CPU side of likely_limit: the host full, one task's core full, or contention."""
    usage = point.cpu
    if usage is None:
        return ""
    if usage.host_busy >= HIGH * usage.cpus:
        return f"host CPU ({usage.host_busy:.2f} of {usage.cpus} cores busy)"
    for service, cores in usage.by_service().items():
        if service in ("hasher", "redis", "webui") and cores >= HIGH:
            return f"{service} ({cores:.2f} cores: its one task is CPU-bound)"
    wait, pressure = point.rng_wait, usage.pressure
    if (wait is not None and wait >= WAIT_SHARE * delays.rng) or (
        pressure is not None and pressure >= PRESSURE
    ):
        parts = [] if wait is None else [f"rng waited {wait * 1000:.1f} ms per answer"]
        if pressure is not None:
            parts.append(f"some task waited {pressure:.0%} of the time")
        return f"CPU contention ({'; '.join(parts)} for a CPU)"
    return ""


# --- the swarm side ----------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """A checked run."""

    ks: tuple[int, ...]
    headroom: float
    duration: float
    warmup: float
    interval: float
    window: float
    timeout: float
    out: Path
    webui: str | None
    prometheus: str | None = None
    target: float = TARGET


def set_label(client: Any, node_id: str, present: bool) -> None:
    raw = client.api.inspect_node(node_id)
    spec = dict(raw["Spec"])
    spec["Labels"] = labels_with(spec.get("Labels"), present)
    client.api.update_node(node_id, raw["Version"]["Index"], spec)


def place_labels(client: Any, ordered: Sequence[Node], k: int) -> list[Node]:
    """Label the first k nodes (only those); returns them."""
    add, remove = label_plan(ordered, nodes(client), k)
    for node in remove:
        set_label(client, node.id, present=False)
    for node in add:
        set_label(client, node.id, present=True)
    if add or remove:
        ui.info(f"    node label {RNG_LABEL}: on {', '.join(n.hostname for n in ordered[:k])}")
    return list(ordered[:k])


def constrain_rng(client: Any, timeout: float) -> None:
    """rng global with RNG_CONSTRAINT: updated in place when it is global already, else
    removed and created again in global mode (a service's mode cannot change in place)."""
    raw = require(our_services(client, ["rng"]), "rng")
    spec = with_constraint(raw["Spec"])
    if mode_of(raw["Spec"]) == GLOBAL:
        if not has_constraint(raw["Spec"]):
            operations.update_service(client, raw, spec)
            ui.info(f"    rng: placement constraint {RNG_CONSTRAINT} added")
        return
    ui.info(f"    rng: removed and created again in global mode, constrained ({RNG_CONSTRAINT})")
    client.api.remove_service(raw["ID"])
    wait_tasks_gone(client, {raw["ID"]}, timeout, "removing rng")
    operations.create_service(client, with_mode(spec, GLOBAL, 1))


def wait_rng_on(client: Any, wanted: Sequence[Node], timeout: float) -> int:
    """Wait until rng runs one task of its current spec on each node of `wanted` and none
    elsewhere; returns how many run. UserError naming the stuck tasks after `timeout`."""
    ids = {node.id for node in wanted}
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        services = our_services(client, ["rng"])
        raw = require(services, "rng")
        tasks = tasks_of(client, services).get("rng", [])
        all_nodes = nodes(client)
        ready = {node.id for node in all_nodes if node.state == "ready"}
        on, elsewhere = placement_progress(tasks, raw["Spec"], ids, ready)
        updating = (raw.get("UpdateStatus") or {}).get("State", "") in (
            "updating",
            "rollback_started",
        )
        line = (
            f"    rng {on}/{len(ids)} on the labelled nodes"
            + (f", {elsewhere} elsewhere" if elsewhere else "")
            + (" (updating)" if updating else "")
        )
        if line != last:
            ui.info(line)
            last = line
        if on == len(ids) and not elsewhere and not updating:
            return on
        if time.monotonic() > deadline:
            problems = describe_stuck("rng", tasks, all_nodes)
            raise UserError(
                f"rng did not run on the {len(ids)} labelled nodes within {timeout:.0f} s"
                + (f": {'; '.join(problems)}" if problems else "")
            )
        time.sleep(POLL)


def restore(
    client: Any, original: cluster.ClusterState, original_rng: Spec, timeout: float
) -> None:
    """Remove the constraint and the labels, then rng's mode and the worker scale as they
    were (Ctrl-C deferred meanwhile; every wait is bounded)."""
    with cluster.interrupts_deferred():
        services = our_services(client, ["rng"])
        raw = services.get("rng")
        if raw is not None and has_constraint(raw["Spec"]):
            if original.rng_mode == GLOBAL or mode_of(raw["Spec"]) != GLOBAL:
                operations.update_service(client, raw, without_constraint(raw["Spec"]))
                ui.info(f"    rng: placement constraint {RNG_CONSTRAINT} removed")
                wait_converged(client, ["rng"], timeout, "rng back on every node")
            else:  # it was replicated: created again as it was, in one step
                ui.info("    rng: removed and created again as it was (replicated)")
                client.api.remove_service(raw["ID"])
                wait_tasks_gone(client, {raw["ID"]}, timeout, "removing rng")
                operations.create_service(client, original_rng)
        for node in labelled(nodes(client)):
            set_label(client, node.id, present=False)
            ui.info(f"    node {node.hostname}: label {RNG_LABEL} removed")
        cluster.restore(client, original, original_rng, timeout)


LATENCY_QUERY = (
    "sum by (service) (rate(dockercoins_worker_upstream_seconds_sum[{w}s]))"
    " / sum by (service) (rate(dockercoins_worker_upstream_seconds_count[{w}s]))"
)


def parse_latency(data: Any) -> dict[str, float]:
    """service -> seconds from the `data` of LATENCY_QUERY's answer (finite values only)."""
    found: dict[str, float] = {}
    if not isinstance(data, Mapping) or data.get("resultType") != "vector":
        return found
    for series in data.get("result") or ():
        service = str((series.get("metric") or {}).get("service", ""))
        try:
            value = float(series["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if service and math.isfinite(value):
            found[service] = value
    return found


def upstream_latency(url: str | None, window: float, end: float) -> dict[str, float] | None:
    """The workers' mean latency of rng and hasher answers over the run (None without
    Prometheus)."""
    if url is None:
        return None
    try:
        with prometheus.connection() as http:
            data = prometheus.query(http, url, LATENCY_QUERY.format(w=max(1, round(window))), end)
    except prometheus.Unavailable:
        return None
    return parse_latency(data)


def lab_cpu_for(all_nodes: Sequence[Node]) -> tuple[LabCpu | None, str]:
    """CPU accounting when the swarm is the lab on this host (its nodes are the lab's),
    else (None, why not)."""
    from dockercoins.lab import network as labnet

    lab = lab_state.load()
    if lab is None:
        return None, "no lab on this host"
    names = {node.name for node in lab.nodes}
    if not {node.hostname for node in all_nodes} <= names or os.geteuid() != 0:
        return None, "the swarm is not this host's lab (or not root)"
    return LabCpu(sorted(labnet.node_index(name) for name in names)), ""


@dataclass
class Session:
    """What every point of one run uses: the swarm client, the options, the nodes in
    order, the delays, where to read, the CPU accounting and the progress bar."""

    client: Any
    options: Options
    ordered: Sequence[Node]
    delays: Delays
    url: str
    prometheus_url: str | None
    cpu: LabCpu | None
    bar: ui.ProgressBar

    def measure(self, k: int, label: str) -> ScalingPoint:
        """Label the first k nodes, scale the worker, wait, warm up, measure."""
        client, options, delays = self.client, self.options, self.delays
        workers = workers_for(k, delays, options.headroom)
        chosen = place_labels(client, self.ordered, k)
        constrain_rng(client, options.timeout)
        if cluster.read_state(client).worker_replicas != workers:
            operations.scale(client, {"worker": workers}, options.timeout)
        rng_tasks = wait_rng_on(client, chosen, options.timeout)
        rng_modes.wait_with_bar(options.warmup, self.bar, label)
        start = self.cpu.snapshot() if self.cpu else None
        samples = rng_modes.sample_counter(
            self.url, options.duration, options.interval, self.bar, label
        )
        end = self.cpu.snapshot() if self.cpu else None
        rng_window = max(
            options.duration, min(bench_model.MIN_RNG_WINDOW, options.duration + options.warmup)
        )
        now = time.time()
        rng_rates = rng_modes.rng_rates_of_run(self.prometheus_url, rng_window, now)
        measurement = bench_model.measure(
            mode=GLOBAL,
            rng_tasks=rng_tasks,
            workers=workers,
            delays=delays,
            samples=samples,
            window=options.window,
            rng_rates=rng_rates,
            rng_window=rng_window,
        )
        return ScalingPoint(
            k=k,
            nodes=tuple(node.hostname for node in chosen),
            measurement=measurement,
            rng_ceiling=bench_model.rng_ceiling(k, delays),
            worker_ceiling=bench_model.worker_ceiling(workers, delays),
            cpu=self.cpu.usage(start, end) if self.cpu and start and end else None,
            latency=upstream_latency(self.prometheus_url, rng_window, now),
            load_average=tuple(rng_modes.load_average()),
        )


def run(client: Any, options: Options, command: str) -> None:
    """Measure every k with the command's one swarm client, put everything back, write the
    files and print the tables. `command` repeats the run."""
    from dockercoins.bench import scaling_report

    services = cluster.require_deployed(client)
    delays = cluster.delays_of(services)
    for k in options.ks:
        workers_for(k, delays, options.headroom)  # RNG_DELAY=0: say so before changing anything
    all_nodes = nodes(client)
    ordered = node_order(all_nodes)
    if options.ks[-1] > len(ordered):
        raise UserError(
            f"k={options.ks[-1]} needs {options.ks[-1]} schedulable nodes and the swarm has "
            f"{len(ordered)}: `dockercoins lab up --nodes {options.ks[-1]}` (or more), or "
            "fewer --rng-nodes"
        )
    url = rng_modes.find_webui(options.webui)
    prometheus_url, no_prometheus = rng_modes.find_prometheus(options.prometheus)
    cpu, no_cpu = lab_cpu_for(all_nodes)
    original = cluster.read_state(client)
    original_rng = without_constraint(cluster.rng_spec(client))
    if has_constraint(cluster.rng_spec(client)) or labelled(all_nodes):
        ui.info(
            f"a run that was cut short left {RNG_LABEL} labels or rng's constraint: "
            "removed at the end"
        )
    per_point = options.warmup + options.duration
    workers = [workers_for(k, delays, options.headroom) for k in options.ks]
    ui.info(
        f"bench scaling: k = {', '.join(map(str, options.ks))} rng nodes of {len(ordered)} "
        f"(workers {', '.join(map(str, workers))}), about "
        f"{len(options.ks) * per_point / 60:.1f} min of measuring plus the changes; web UI "
        f"{url}; now {original.describe()} (put back at the end, also on Ctrl-C)"
    )
    if not prometheus_url:
        ui.info(f"no rng answers/s per task: {no_prometheus}")
    if cpu is None:
        ui.info(f"no CPU per service: {no_cpu}")
    report = ScalingReport(
        delays=delays,
        ks=options.ks,
        headroom=options.headroom,
        target=options.target,
        nodes=len(ordered),
        settings={
            "command": command,
            "duration": options.duration,
            "warmup": options.warmup,
            "interval": options.interval,
            "window": options.window,
            "webui": url,
            "prometheus": prometheus_url,
            **({"prometheus_note": no_prometheus} if no_prometheus else {}),
            **({"cpu_note": no_cpu} if no_cpu else {}),
            "nodes": [node.hostname for node in ordered],
            "label": RNG_LABEL,
            "constraint": RNG_CONSTRAINT,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "load_average_start": rng_modes.load_average(),
        },
    )
    started = time.monotonic()
    bar = ui.ProgressBar(len(options.ks) * per_point)
    session = Session(client, options, ordered, delays, url, prometheus_url, cpu, bar)
    try:
        for index, k in enumerate(options.ks, start=1):
            label = f"run {index}/{len(options.ks)}: rng on {k} node(s):"
            bar.end_line()
            ui.info(f"{label} setting up")
            point = session.measure(k, label)
            report.points.append(point)
            bar.end_line()
            ratio = point.ratio
            ui.info(
                f"{label} {point.measurement.stats.mean:.1f} hashes/s of {point.rng_ceiling:.0f}"
                + (f" ({ratio:.2f})" if ratio is not None else "")
                + f", {point.measurement.workers} workers"
                + (f", host CPU {point.cpu.host_busy:.2f} of {point.cpu.cpus}" if point.cpu else "")
                + rng_modes.describe_rng_rates(
                    list(point.measurement.rng_rates or ()) or None, point.measurement.stats.mean
                )
            )
    finally:
        bar.end_line()
        restore(client, original, original_rng, options.timeout)
    report.settings["load_average_end"] = rng_modes.load_average()
    report.settings["elapsed_seconds"] = round(time.monotonic() - started, 1)
    scaling_report.write_outputs(report, options.out)
    ui.result(scaling_report.markdown(report))
    ui.result(f"written: {', '.join(str(options.out / name) for name in scaling_report.FILES)}")
