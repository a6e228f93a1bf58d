"""The pure parts of `bench scaling` (the values of k, the worker counts and ceilings, the
node label and rng's placement constraint, the nodes it picks, the hint at the limit),
its CPU accounting (bench.lab_cpu) against fake /proc and cgroup files, its report and
its command line; and the memory part of `lab status`."""

from __future__ import annotations

import json
import math
import os
import shlex
from pathlib import Path
from typing import Any

import pytest
from dockercoins.bench import lab_cpu, scaling, scaling_report
from dockercoins.bench import model as bench_model
from dockercoins.bench.lab_cpu import DAEMONS, Snapshot, Usage
from dockercoins.bench.model import Delays, RateStats, measure
from dockercoins.bench.plot import available as plot_available
from dockercoins.bench.scaling import (
    LABEL_VALUE,
    RNG_CONSTRAINT,
    RNG_LABEL,
    ScalingPoint,
    ScalingReport,
)
from dockercoins.cli import bench as cli_bench
from dockercoins.cli import build_parser
from dockercoins.errors import UserError
from dockercoins.host import cgroups
from dockercoins.lab import status as lab_status
from dockercoins.names import GLOBAL
from dockercoins.swarm.prometheus import InstanceRate
from dockercoins.swarm.rates import Sample
from dockercoins.swarm.read import Node

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- the values of k --------------------------------------------------------------------


def test_k_list_is_sorted_and_each_value_once() -> None:
    assert scaling.parse_ks("1,2,4,6,8") == (1, 2, 4, 6, 8)
    assert scaling.parse_ks(" 8, 2 ,2,1 ") == (1, 2, 8)
    assert scaling.parse_ks("3") == (3,)
    assert scaling.parse_ks(str(scaling.MAX_K)) == (scaling.MAX_K,)


@pytest.mark.parametrize("bad", ["", "0", "1,,2", "x", "1,-2", "2.5", str(scaling.MAX_K + 1)])
def test_a_bad_k_list_is_one_line_naming_it(bad: str) -> None:
    with pytest.raises(ValueError, match="expected node counts from 1 to") as raised:
        scaling.parse_ks(bad)
    assert repr(bad) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_cli_parses_the_k_list_and_rejects_a_bad_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = build_parser().parse_args(["bench", "scaling"])
    assert args.rng_nodes == (1, 2, 4, 6, 8)
    assert args.headroom == scaling.DEFAULT_HEADROOM
    args = build_parser().parse_args(["bench", "scaling", "--rng-nodes", "2,1"])
    assert args.rng_nodes == (1, 2)
    for option, value in (("--rng-nodes", "0"), ("--headroom", "0.5"), ("--target", "2")):
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(["bench", "scaling", option, value])
        assert exit_info.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith(f"dockercoins bench scaling: error: argument {option}: ")


def test_options_checked_across_and_the_command_line_repeats_the_run(tmp_path: Path) -> None:
    parser = build_parser()
    argv = ["bench", "scaling", "--rng-nodes", "1,2", "--duration", "8", "--warmup", "4"]
    options = cli_bench.scaling_options(parser.parse_args([*argv, "--out", str(tmp_path)]))
    assert options.ks == (1, 2)
    assert (options.duration, options.warmup, options.out) == (8.0, 4.0, tmp_path)
    again = cli_bench.scaling_options(
        parser.parse_args(shlex.split(cli_bench.scaling_command_line(options))[1:])
    )
    assert again == options
    with pytest.raises(UserError, match="--interval"):
        cli_bench.scaling_options(parser.parse_args([*argv, "--interval", "5", "--window", "3"]))
    with pytest.raises(UserError, match="two /json reads"):
        cli_bench.scaling_options(parser.parse_args([*argv[:-4], "--duration", "1"]))


# --- workers and ceilings ---------------------------------------------------------------


def test_workers_make_rng_the_limit_with_the_default_delays() -> None:
    delays = Delays()
    counts = [scaling.workers_for(k, delays, 1.5) for k in (1, 2, 4, 6, 8)]
    assert counts == [5, 9, 18, 27, 36]
    for k, workers in zip((1, 2, 4, 6, 8), counts, strict=True):
        rng = bench_model.rng_ceiling(k, delays)
        assert rng == pytest.approx(10.0 * k)  # the ceiling is k x 10
        assert bench_model.worker_ceiling(workers, delays) >= 1.5 * rng - 1e-9
        assert bench_model.ceiling(workers, k, delays) == pytest.approx(rng)


def test_workers_always_one_more_than_the_fewest_that_reach_the_ceiling() -> None:
    delays = Delays()
    assert scaling.workers_for(1, delays, 1.0) == 4  # 3 reach 10/s exactly: one more
    assert scaling.workers_for(2, Delays(worker_concurrency=4), 1.5) == 3  # 12 loops
    assert scaling.workers_for(2, Delays(rng_concurrency=2), 1.5) == 18
    assert scaling.workers_for(3, Delays(worker=0, rng=0.1, hasher=0), 1.5) == 5  # 10/s each
    assert scaling.workers_for(3, Delays(worker=0, rng=0.1, hasher=0), 1.0) == 4
    with pytest.raises(UserError, match="RNG_DELAY is 0"):
        scaling.workers_for(1, Delays(rng=0), 1.5)


def _point(mean: float, k: int = 2, workers: int = 9, **extra: Any) -> ScalingPoint:
    delays = Delays()
    samples = [Sample(now=float(t), hashes=int(mean * t)) for t in range(0, 21)]
    measurement = measure(mode=GLOBAL, rng_tasks=k, workers=workers, delays=delays, samples=samples)
    return ScalingPoint(
        k=k,
        nodes=tuple(f"node{i}" for i in range(1, k + 1)),
        measurement=measurement,
        rng_ceiling=bench_model.rng_ceiling(k, delays),
        worker_ceiling=bench_model.worker_ceiling(workers, delays),
        **extra,
    )


def test_a_point_is_measured_against_k_times_ten() -> None:
    point = _point(19.4)
    assert point.measurement.stats.mean == pytest.approx(19.4, rel=0.02)
    assert point.ratio == pytest.approx(0.97, rel=0.02)
    assert point.meets(0.95) is True
    assert _point(18.0).meets(0.95) is False


# --- the label and the constraint -------------------------------------------------------


def _rng_spec(constraints: list[str] | None = None) -> dict[str, Any]:
    template: dict[str, Any] = {"ContainerSpec": {"Image": "rng"}}
    if constraints is not None:
        template["Placement"] = {"Constraints": constraints, "MaxReplicas": 0}
    return {"Name": "rng", "TaskTemplate": template, "Mode": {"Global": {}}}


def test_the_constraint_is_added_once_and_removed_keeping_the_rest() -> None:
    assert f"node.labels.{RNG_LABEL} == {LABEL_VALUE}" == RNG_CONSTRAINT
    plain = _rng_spec()
    constrained = scaling.with_constraint(plain)
    assert constrained["TaskTemplate"]["Placement"]["Constraints"] == [RNG_CONSTRAINT]
    assert scaling.has_constraint(constrained) and not scaling.has_constraint(plain)
    assert "Placement" not in plain["TaskTemplate"]  # the original is not changed
    assert scaling.with_constraint(constrained) == constrained  # once
    other = "node.role == worker"
    both = scaling.with_constraint(_rng_spec([other]))
    assert both["TaskTemplate"]["Placement"]["Constraints"] == [other, RNG_CONSTRAINT]
    assert scaling.without_constraint(both) == _rng_spec([other])


def test_removing_the_constraint_keeps_an_empty_placement() -> None:
    # dockerd 20.10's swarm manager panics on an update that drops the Placement when only
    # the constraints changed: the Placement stays, empty
    back = scaling.without_constraint(scaling.with_constraint(_rng_spec()))
    assert back["TaskTemplate"]["Placement"] == {}
    assert not scaling.has_constraint(back)
    assert scaling.without_constraint(_rng_spec()) == _rng_spec()  # nothing to remove


def _node(name: str, labels: dict[str, str] | None = None, **status: str) -> Node:
    return Node(
        id=f"id-{name}",
        hostname=name,
        state=status.get("state", "ready"),
        availability=status.get("availability", "active"),
        role="worker",
        addr="",
        labels=labels or {},
    )


def test_the_first_k_schedulable_nodes_in_natural_order_get_the_label() -> None:
    swarm = [
        _node("node10"),
        _node("node2"),
        _node("node1"),
        _node("node3", state="down"),
        _node("node4", availability="drain"),
        _node("node5", {RNG_LABEL: LABEL_VALUE}),
        _node("node6", {RNG_LABEL: "false", "other": "x"}),
    ]
    ordered = scaling.node_order(swarm)
    assert [n.hostname for n in ordered] == ["node1", "node2", "node5", "node6", "node10"]
    add, remove = scaling.label_plan(ordered, swarm, 2)
    assert [n.hostname for n in add] == ["node1", "node2"]
    assert [n.hostname for n in remove] == ["node5", "node6"]
    add, remove = scaling.label_plan(ordered, swarm, 3)
    assert [n.hostname for n in add] == ["node1", "node2"]  # node5 carries it already
    assert [n.hostname for n in remove] == ["node6"]  # a wrong value goes too
    assert [n.hostname for n in scaling.labelled(swarm)] == ["node5", "node6"]
    with pytest.raises(UserError, match="k=6 needs 6 schedulable nodes; the swarm has 5"):
        scaling.label_plan(ordered, swarm, 6)


def test_node_labels_set_and_removed_keeping_the_others() -> None:
    assert scaling.labels_with({"a": "1"}, True) == {"a": "1", RNG_LABEL: LABEL_VALUE}
    assert scaling.labels_with({"a": "1", RNG_LABEL: "x"}, False) == {"a": "1"}
    assert scaling.labels_with(None, False) == {}


def _task(node: str, state: str = "running", image: str = "rng") -> dict[str, Any]:
    return {
        "NodeID": node,
        "DesiredState": "running",
        "Status": {"State": state},
        "Spec": {"ContainerSpec": {"Image": image}},
    }


def test_placement_progress_counts_labelled_nodes_and_strays() -> None:
    spec = _rng_spec()
    ready = {"a", "b", "c"}
    tasks = [_task("a"), _task("b", "starting"), _task("c"), _task("a", image="old")]
    assert scaling.placement_progress(tasks, spec, {"a", "b"}, ready) == (1, 1)
    tasks.append(_task("b"))
    assert scaling.placement_progress(tasks, spec, {"a", "b"}, ready) == (2, 1)
    assert scaling.placement_progress(tasks, spec, {"a", "b", "c"}, ready) == (3, 0)
    assert scaling.placement_progress(tasks, spec, {"a", "b", "c"}, {"a"}) == (1, 0)


# --- the hint at the limit ---------------------------------------------------------------


def _usage(host_busy: float, **services: float) -> Usage:
    return Usage(
        seconds=30.0,
        cpus=2,
        host_busy=host_busy,
        by_node_service={("node1", name): cores for name, cores in services.items()},
    )


def test_likely_limit_names_the_ceiling_the_cpu_or_a_service() -> None:
    delays = Delays()
    assert scaling.likely_limit(_point(19.8), 0.95, delays) == "rng (the ceiling)"
    busy = _point(15.0, cpu=_usage(1.9, rng=0.3, worker=1.2))
    assert scaling.likely_limit(busy, 0.95, delays) == "host CPU (1.90 of 2 cores busy)"
    hasher = _point(15.0, cpu=_usage(1.5, hasher=0.95))
    assert scaling.likely_limit(hasher, 0.95, delays).startswith("hasher (0.95 cores")
    few = _point(15.0, workers=5)  # 5 / 0.3 = 16.7 < 0.95 x 20
    assert scaling.likely_limit(few, 0.95, delays).startswith("workers")
    slow = _point(15.0, latency={"rng": 0.3, "hasher": 0.25})
    assert scaling.likely_limit(slow, 0.95, delays) == "hasher answers slowly (250 ms on average)"
    assert scaling.likely_limit(_point(15.0), 0.95, delays) == ""
    waiting = _usage(1.6, rng=0.2, worker=0.5)
    waiting = Usage(
        waiting.seconds,
        waiting.cpus,
        waiting.host_busy,
        waiting.by_node_service,
        waiting={("node1", "rng"): 0.06},  # 60 ms per second over 15 answers/s: 4 ms each
        pressure=0.35,
    )
    contended = _point(15.0, cpu=waiting)
    assert contended.rng_wait == pytest.approx(0.004, rel=0.05)
    assert scaling.likely_limit(contended, 0.95, delays) == (
        "CPU contention (rng waited 4.0 ms per answer; some task waited 35% of the time for a CPU)"
    )


def test_latency_answer_parsed_per_service() -> None:
    data = {
        "resultType": "vector",
        "result": [
            {"metric": {"service": "rng"}, "value": [1, "0.25"]},
            {"metric": {"service": "hasher"}, "value": [1, "NaN"]},
            {"metric": {}, "value": [1, "1"]},
        ],
    }
    assert scaling.parse_latency(data) == {"rng": 0.25}
    assert scaling.parse_latency({"resultType": "matrix"}) == {}
    assert "{w}" not in scaling.LATENCY_QUERY.format(w=30)


# --- CPU accounting ----------------------------------------------------------------------


def test_host_cpu_from_proc_stat() -> None:
    hertz = os.sysconf("SC_CLK_TCK")
    busy, total = lab_cpu.host_cpu("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n")
    assert busy == pytest.approx(150 / hertz)
    assert total == pytest.approx(1000 / hertz)
    real_busy, real_total = lab_cpu.host_cpu(Path("/proc/stat").read_text())
    assert 0 < real_busy < real_total
    with pytest.raises(ValueError, match="not /proc/stat"):
        lab_cpu.host_cpu("intr 1 2 3\n")


def test_cgroup_cpu_seconds_v1_and_v2(tmp_path: Path) -> None:
    v1, v2, empty = tmp_path / "v1", tmp_path / "v2", tmp_path / "none"
    for folder in (v1, v2, empty):
        folder.mkdir()
    (v1 / "cpuacct.usage").write_text("2500000000\n")
    (v2 / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\n")
    assert lab_cpu.cgroup_cpu_seconds(v1) == pytest.approx(2.5)
    assert lab_cpu.cgroup_cpu_seconds(v2) == pytest.approx(1.5)
    assert lab_cpu.cgroup_cpu_seconds(empty) is None
    assert lab_cpu.cgroup_cpu_seconds(tmp_path / "gone") is None


def test_cpu_hierarchies_prefer_v1_cpuacct() -> None:
    v1 = cgroups.Hierarchy(Path("/a"), "/", 1, frozenset({"cpuacct"}))
    mem = cgroups.Hierarchy(Path("/b"), "/", 1, frozenset({"memory"}))
    v2 = cgroups.Hierarchy(Path("/c"), "/", 2, frozenset())
    assert lab_cpu.cpu_hierarchies([mem, v2, v1]) == [v1]
    assert lab_cpu.cpu_hierarchies([mem, v2]) == [v2]


def test_usage_counts_what_both_snapshots_saw() -> None:
    start = Snapshot(
        at=10.0,
        containers={"c1": 5.0, "c2": 1.0, "gone": 3.0},
        daemons={100: ("node1", 2.0), 200: ("node2", 1.0)},
        host_busy=50.0,
        host_total=200.0,
    )
    end = Snapshot(
        at=30.0,
        containers={"c1": 15.0, "c2": 3.0, "new": 9.0},
        daemons={100: ("node1", 4.0), 200: ("node2", 1.5), 300: ("node2", 7.0)},
        host_busy=80.0,
        host_total=240.0,
    )
    owners = {"c1": ("node1", "rng"), "c2": ("node2", "rng"), "new": ("node2", "worker")}
    used = lab_cpu.usage(start, end, owners, cpus=2)
    assert used.seconds == pytest.approx(20.0)
    assert used.by_node_service == pytest.approx(
        {
            ("node1", DAEMONS): 0.1,
            ("node1", "rng"): 0.5,
            ("node2", DAEMONS): 0.025,
            ("node2", "rng"): 0.1,
        }
    )
    assert used.by_service() == pytest.approx({DAEMONS: 0.125, "rng": 0.6})
    assert used.by_node() == pytest.approx({"node1": 0.6, "node2": 0.125})
    assert used.lab == pytest.approx(0.725)
    assert used.host_busy == pytest.approx(30 / 40 * 2)


def test_cpu_pressure_and_run_queue_wait() -> None:
    text = "some avg10=1.00 avg60=2.00 avg300=3.00 total=2500000\nfull avg10=0 total=0\n"
    assert lab_cpu.cpu_pressure(text) == pytest.approx(2.5)
    assert lab_cpu.cpu_pressure("full avg10=0 total=7\n") is None
    assert lab_cpu.run_delay(os.getpid()) >= 0.0
    with pytest.raises(OSError):
        lab_cpu.run_delay(2**22 + 1)  # above pid_max: no such process


def test_usage_adds_run_queue_waits_per_service_and_the_pressure() -> None:
    start = Snapshot(at=0.0, waits={1: ("c1", 1.0), 2: ("c2", 0.5), 3: ("c1", 9.0)}, pressure=10.0)
    end = Snapshot(
        at=10.0,
        waits={1: ("c1", 1.2), 2: ("c2", 0.6), 4: ("c1", 5.0)},
        pressure=13.0,
    )
    owners = {"c1": ("node1", "rng"), "c2": ("node2", "rng")}
    used = lab_cpu.usage(start, end, owners, cpus=2)
    assert used.waiting == pytest.approx({("node1", "rng"): 0.02, ("node2", "rng"): 0.01})
    assert used.waiting_by_service() == pytest.approx({"rng": 0.03})
    assert used.pressure == pytest.approx(0.3)
    assert lab_cpu.usage(Snapshot(at=0.0), Snapshot(at=1.0), owners, 2).pressure is None


def test_natural_order_of_node_names() -> None:
    names = ["node10", "node2", "node1", "x"]
    assert sorted(names, key=lab_cpu.natural_key) == ["node1", "node2", "node10", "x"]


# --- the report --------------------------------------------------------------------------


def _report() -> ScalingReport:
    delays = Delays()
    report = ScalingReport(
        delays=delays,
        ks=(1, 2),
        headroom=1.5,
        target=0.95,
        nodes=3,
        settings={"command": "dockercoins bench scaling", "cpus": 2, "label": RNG_LABEL},
    )
    rates = [InstanceRate("node1", "10.0.1.5:80", 9.9)]
    one = _point(9.9, k=1, workers=5)
    one = ScalingPoint(
        k=1,
        nodes=("node1",),
        measurement=measure(
            mode=GLOBAL,
            rng_tasks=1,
            workers=5,
            delays=delays,
            samples=one.measurement.samples,
            rng_rates=rates,
            rng_window=15.0,
        ),
        rng_ceiling=10.0,
        worker_ceiling=5 / 0.3,
        cpu=_usage(0.5, rng=0.05, worker=0.2, **{DAEMONS: 0.1}),
        latency={"rng": 0.2, "hasher": 0.1},
        load_average=(1.0, 1.0, 1.0),
    )
    report.points += [one, _point(16.0, k=2, workers=9, cpu=_usage(1.95, worker=1.0))]
    return report


def test_json_has_every_k_with_its_ceiling_and_cpu() -> None:
    document = scaling_report.to_json(_report())
    json.dumps(document, allow_nan=False)
    assert document["format"] == scaling_report.JSON_FORMAT
    assert document["ks"] == [1, 2]
    assert document["delays"]["rng"] == 0.1
    first, second = document["results"]
    assert (first["k"], first["rng_tasks"], first["workers"]) == (1, 1, 5)
    assert first["rng_ceiling"] == pytest.approx(10.0)
    assert first["measured_over_rng_ceiling"] == pytest.approx(0.99, rel=0.02)
    assert first["meets_target"] is True
    assert first["likely_limit"] == "rng (the ceiling)"
    assert first["rng_rates"] == [{"label": "node1", "instance": "10.0.1.5:80", "rate": 9.9}]
    assert first["cpu"]["by_service"] == pytest.approx({DAEMONS: 0.1, "rng": 0.05, "worker": 0.2})
    assert first["upstream_latency_seconds"] == {"rng": 0.2, "hasher": 0.1}
    assert second["meets_target"] is False
    assert second["likely_limit"].startswith("host CPU")
    assert len(second["samples"]) == 21


def test_markdown_has_a_row_per_k_the_summary_and_the_cpu_table() -> None:
    text = scaling_report.markdown(_report())
    rows = [line for line in text.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert len(rows) == 4  # results and CPU, per k
    assert "Met at k = 1. Missed at k = 2 (0.80)." in text
    assert "| rng | worker | daemons |" in text.replace("| k | ", "| ")
    assert "node1 9.9" in text
    assert "200/100" in text  # rng / hasher latency, ms
    assert "| CPU pressure (some) | rng's wait for a CPU per answer |" in text


def test_outputs_written(tmp_path: Path) -> None:
    scaling_report.write_outputs(_report(), tmp_path / "out")
    assert (tmp_path / "out" / scaling_report.TABLE_FILE).read_text().startswith("| k (rng")
    document = json.loads((tmp_path / "out" / scaling_report.JSON_FILE).read_text())
    assert [r["k"] for r in document["results"]] == [1, 2]
    png = tmp_path / "out" / scaling_report.PNG_FILE
    if plot_available():
        assert png.read_bytes().startswith(PNG_MAGIC)
    else:
        assert not png.exists()


def test_rate_stats_shape_is_what_the_report_reads() -> None:
    stats = _point(10.0).measurement.stats
    assert isinstance(stats, RateStats)
    assert math.isfinite(stats.p10) and stats.p10 <= stats.p90


# --- lab status: memory ---------------------------------------------------------------------


def test_rss_from_proc_status() -> None:
    assert lab_status.rss_bytes("Name:\tx\nVmRSS:\t  1234 kB\n") == 1234 * 1024
    assert lab_status.rss_bytes("Name:\tkthreadd\n") == 0
    own = lab_status.rss_bytes(Path("/proc/self/status").read_text())
    assert own > 1_000_000


def test_daemon_memory_sorts_containerd_and_shims_apart() -> None:
    assert lab_status.is_containerd("containerd")
    assert lab_status.is_containerd("containerd-shim")
    assert not lab_status.is_containerd("dockerd")
    dockerd, containerd, shims = lab_status.daemon_memory([os.getpid()])
    assert dockerd > 1_000_000 and containerd == 0 and shims == 0  # python: not containerd
    assert lab_status.daemon_memory([os.getpid()], skip=[os.getpid()]) == (0, 0, 0)


def test_cgroup_memory_v1_v2_and_none(tmp_path: Path) -> None:
    v1 = cgroups.Hierarchy(tmp_path / "memory", "/", 1, frozenset({"memory"}))
    v2 = cgroups.Hierarchy(tmp_path / "unified", "/", 2, frozenset())
    cpu = cgroups.Hierarchy(tmp_path / "cpu", "/", 1, frozenset({"cpu"}))
    (tmp_path / "memory/lab/node1").mkdir(parents=True)
    (tmp_path / "memory/lab/node1/memory.usage_in_bytes").write_text("4096\n")
    (tmp_path / "unified/lab/node2").mkdir(parents=True)
    (tmp_path / "unified/cgroup.controllers").write_text("cpu io memory pids\n")
    (tmp_path / "unified/lab/node2/memory.current").write_text("8192\n")
    (tmp_path / "cpu/lab/node1").mkdir(parents=True)
    assert lab_status.cgroup_memory("/lab/node1", [cpu, v1, v2]) == 4096
    assert lab_status.cgroup_memory("/lab/node2", [v1, v2]) == 8192
    assert lab_status.cgroup_memory("/lab/node2", [v2]) == 8192
    assert lab_status.cgroup_memory("/lab/node3", [v1, v2]) == 0  # no container yet
    assert lab_status.cgroup_memory("/lab/node1", [cpu]) is None  # no memory accounting
    (tmp_path / "unified/cgroup.controllers").write_text("cpu io pids\n")
    assert lab_status.cgroup_memory("/lab/node2", [v2]) is None


def test_memory_table_has_a_row_per_node_and_a_total() -> None:
    memory = lab_status.NodeMemory(
        dockerd=90_000_000, containerd=40_000_000, containers=100_000_000, shims=2
    )
    assert memory.total == 230_000_000
    found = [
        lab_status.NodeStatus("node1", "10.0.0.1", True, "node1", "ready", "manager", memory),
        lab_status.NodeStatus("node2", "10.0.0.2", False, "node2", "-", "-", None),
        lab_status.NodeStatus(
            "node3",
            "10.0.0.3",
            True,
            "node3",
            "ready",
            "worker",
            lab_status.NodeMemory(dockerd=80_000_000, containerd=30_000_000, containers=None),
        ),
    ]
    lines = lab_status.memory_table(found)
    assert lines[0].split() == [
        "MEMORY",
        "DOCKERD",
        "CONTAINERD+SHIMS",
        "CONTAINERS",
        "NODE",
        "TOTAL",
    ]
    assert lines[1].split() == [
        "node1",
        "90",
        "MB",
        "40",
        "MB",
        "(2",
        "shims)",
        "100",
        "MB",
        "230",
        "MB",
    ]
    assert lines[2].split() == ["node2", "-", "-", "-", "-"]
    assert lines[3].split()[-3:] == ["-", "110", "MB"]
    assert lines[4].split() == ["all", "170", "MB", "70", "MB", "100", "MB", "340", "MB"]
