"""The pure parts of `bench rng-modes`: ceilings, rate statistics, rng rates per task,
tables, JSON and the PNG; and `bench pipeline` stopping everything on Ctrl-C."""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from dockercoins.bench import model as bench_model
from dockercoins.bench import plot as bench_plot
from dockercoins.bench import report as bench_report
from dockercoins.bench import rng_modes as bench_rng_modes
from dockercoins.bench.model import BenchReport, Delays, ceiling
from dockercoins.cli import bench as cli_bench
from dockercoins.cli import build_parser
from dockercoins.errors import UserError
from dockercoins.names import GLOBAL, REPLICATED
from dockercoins.swarm import prometheus
from dockercoins.swarm.prometheus import InstanceRate
from dockercoins.swarm.rates import Sample, window_rates

from tests.support.servers import free_port, wait_for

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_ceiling_with_default_delays_is_the_design_example() -> None:
    delays = Delays()
    assert ceiling(10, 1, delays) == pytest.approx(10.0)  # rng-bound: 1 x 10/s
    assert ceiling(10, 3, delays) == pytest.approx(30.0)  # min(10 / 0.3 = 33.3, 3 x 10)
    assert ceiling(5, 3, delays) == pytest.approx(5 / 0.3)  # worker-bound
    assert ceiling(15, 3, delays) == pytest.approx(30.0)  # rng-bound again
    assert ceiling(2, 1, delays) == pytest.approx(2 / 0.3)
    assert ceiling(10, 3, delays) / ceiling(10, 1, delays) == pytest.approx(3.0)


def test_ceiling_reads_concurrency_and_zero_delays() -> None:
    assert ceiling(100, 2, Delays(rng_concurrency=4)) == pytest.approx(80.0)
    assert ceiling(5, 1, Delays(worker=0, rng=0, hasher=0)) == math.inf
    assert ceiling(5, 1, Delays(worker=0.5, rng=0, hasher=0)) == pytest.approx(10.0)
    assert ceiling(2, 9, Delays(worker_concurrency=3)) == pytest.approx(2 * 3 / 0.3)


def test_delays_come_from_the_services_env_or_defaults() -> None:
    env = bench_model.env_list_to_dict(["RNG_DELAY=0.05", "A=b=c", "RNG_CONCURRENCY=2"])
    assert env == {"RNG_DELAY": "0.05", "A": "b=c", "RNG_CONCURRENCY": "2"}
    worker_env = {"WORKER_DELAY": "0.2", "WORKER_CONCURRENCY": "4"}
    delays = bench_model.delays_from_env(worker_env, env, {})
    assert delays == Delays(
        worker=0.2, rng=0.05, hasher=0.1, rng_concurrency=2, worker_concurrency=4
    )
    assert bench_model.delays_from_env({}, {}, {}) == Delays()
    with pytest.raises(UserError, match="HASHER_DELAY"):
        bench_model.delays_from_env({}, {}, {"HASHER_DELAY": "slow"})
    with pytest.raises(UserError, match="RNG_CONCURRENCY"):
        bench_model.delays_from_env({}, {"RNG_CONCURRENCY": "0"}, {})


def _steady(rate: float, seconds: int, start: float = 1000.0, flush: float = 1.0) -> list[Sample]:
    """A counter that grows by `rate` per second in steps, like workers flushing once a second,
    sampled every second with a little clock jitter."""
    samples = []
    for i in range(seconds + 1):
        now = start + i + (0.05 if i % 2 else -0.03)
        flushed = math.floor((now - start) / flush) * flush
        samples.append(Sample(now=now, hashes=int(rate * flushed)))
    return samples


def test_rate_stats_find_the_slope_of_a_stepped_counter() -> None:
    stats = bench_model.rate_stats(_steady(30.0, 30), window=3.0)
    assert stats.mean == pytest.approx(30.0, rel=0.03)
    assert stats.p10 <= stats.mean <= stats.p90 or stats.p10 == pytest.approx(stats.p90)
    assert stats.minimum <= stats.p10 <= stats.p90 <= stats.maximum
    assert stats.windows == 10
    assert stats.samples == 31
    assert stats.seconds == pytest.approx(30.0, abs=0.1)


def test_rate_stats_ignore_a_counter_reset() -> None:
    samples = [Sample(0, 100), Sample(1, 110), Sample(2, 5), Sample(3, 15), Sample(4, 25)]
    # the drop from 110 to 5 counts as no progress; otherwise 10/s
    points = window_rates(samples, 1.0)
    assert [rate for _, rate in points] == [10.0, 0.0, 10.0, 10.0]
    assert bench_model.rate_stats(samples, 1.0).minimum == 0.0


def test_rate_stats_of_too_few_samples_are_zero_not_an_error() -> None:
    stats = bench_model.rate_stats([Sample(1.0, 5)], 3.0)
    assert stats.mean == 0.0
    assert stats.stdev == 0.0


def test_percentile_interpolates() -> None:
    assert bench_model.percentile([1, 2, 3, 4, 5], 0.5) == 3
    assert bench_model.percentile([0, 10], 0.1) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        bench_model.percentile([], 0.5)


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["bench", "rng-modes", *argv])


def _parse_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The usage error argparse prints for a bad option value (exit status 2)."""
    with pytest.raises(SystemExit) as exited:
        _parse(*argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_parse_sweep(capsys: pytest.CaptureFixture[str]) -> None:
    assert _parse("--sweep", "5, 1,2,5").sweep == [1, 2, 5]
    for bad in ("", "0", "1,,2", "a", "-1", "2.5"):
        assert "--sweep" in _parse_error(capsys, "--sweep", bad)


def _report() -> BenchReport:
    delays = Delays()
    report = BenchReport(main_workers=10, nodes=3, delays=delays, settings={"window": 3.0})
    for mode, tasks in ((REPLICATED, 1), (GLOBAL, 3)):
        for workers in (1, 10):
            rate = min(workers / 0.3, tasks * 10.0) * 0.95
            report.measurements.append(
                bench_model.measure(
                    mode=mode,
                    rng_tasks=tasks,
                    workers=workers,
                    delays=delays,
                    samples=_steady(rate, 20),
                    window=3.0,
                )
            )
    return report


def test_tables_have_a_row_per_run_and_the_ratios() -> None:
    report = _report()
    table = bench_report.results_table(report).splitlines()
    assert len(table) == 2 + 4
    assert table[2].startswith("| replicated | 1 | 1 |")
    assert table[-1].startswith("| global **(main)** | 3 | 10 |")
    assert "| 30.0 | 0.95 |" in table[-1]  # ceiling with 10 workers and 3 rng, ratio
    speedups = report.speedups()
    assert [w for w, _, _ in speedups] == [1, 10]
    ten = speedups[1]
    assert ten[2] == pytest.approx(3.0)  # 30 / 10
    assert ten[1] == pytest.approx(ten[2], rel=0.05)
    assert "| 10 |" in bench_report.speedup_table(report)
    text = bench_report.markdown(report)
    assert "Ceiling = min(W / (0.1 + 0.1 + 0.1) s, R x 1 / 0.1 s); 3 nodes" in text


def test_json_is_plain_json_with_every_result() -> None:
    report = _report()
    report.measurements.append(
        bench_model.measure(
            mode=GLOBAL,
            rng_tasks=3,
            workers=2,
            delays=Delays(0, 0, 0),
            samples=_steady(5.0, 10),
        )
    )
    document = json.loads(json.dumps(bench_report.to_json(report), allow_nan=False))
    assert document["format"] == bench_report.JSON_FORMAT
    assert len(document["results"]) == 5
    first = document["results"][0]
    assert first["ceiling"] == pytest.approx(1 / 0.3)
    assert first["measured_over_ceiling"] == pytest.approx(0.95, rel=0.05)
    assert len(first["samples"]) == 21
    assert document["results"][-1]["ceiling"] is None  # unbounded
    assert document["results"][-1]["measured_over_ceiling"] is None
    assert [row["workers"] for row in document["global_over_replicated"]] == [1, 10]


def test_plot_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "out" / "bench.png"
    bench_plot.plot(_report(), path)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 20_000


def _options(*argv: str) -> bench_rng_modes.Options:
    return cli_bench.rng_modes_options(_parse(*argv))


def test_options_add_the_main_worker_count_to_the_sweep() -> None:
    options = _options("--workers", "7", "--sweep", "5,1", "--duration", "20")
    assert options.counts == (1, 5, 7)
    assert options.duration_for(7) == options.duration_for(5) == 20
    assert _options("--main-duration", "60").duration_for(10) == 60
    command = cli_bench.rng_modes_command_line(options)
    assert command.startswith("dockercoins bench rng-modes --workers 7 --sweep 1,5,7")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "0"], "--workers"),
        (["--duration", "0"], "--duration"),
        (["--warmup", "-1"], "--warmup"),
        (["--webui", "http://192.0.2.1:8000"], "only loopback"),
        (["--webui", "ftp://127.0.0.1"], "argument --webui: bad value"),
        (["--prometheus", "http://192.0.2.1:9090"], "only loopback"),
    ],
)
def test_bad_option_values_are_one_clear_usage_error(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert message in _parse_error(capsys, *argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--interval", "5"], "--interval"),
        (["--duration", "1", "--interval", "1"], "two /json reads"),
    ],
)
def test_options_that_disagree_are_one_clear_error(argv: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        _options(*argv)


def test_loopback_web_ui_is_allowed() -> None:
    for url in ("http://127.0.0.1:8000", "http://localhost:8000", "http://127.0.0.5"):
        assert bench_rng_modes.url_problem(url) is None


def test_plan_starts_in_the_current_mode_and_switches_rng_once() -> None:
    options = _options("--workers", "2", "--sweep", "1,2")
    assert bench_rng_modes.plan(options, GLOBAL) == [
        (GLOBAL, 1),
        (GLOBAL, 2),
        (REPLICATED, 2),
        (REPLICATED, 1),
    ]
    assert bench_rng_modes.plan(options, REPLICATED)[0] == (REPLICATED, 1)


def test_outputs_without_matplotlib_keep_table_and_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_plot, "available", lambda: False)
    bench_report.write_outputs(_report(), tmp_path)
    assert "| global **(main)** | 3 | 10 |" in (tmp_path / bench_report.TABLE_FILE).read_text()
    assert json.loads((tmp_path / bench_report.JSON_FILE).read_text())["main_workers"] == 10
    assert not (tmp_path / bench_report.PNG_FILE).exists()
    assert "matplotlib is missing (pip install 'dockercoins[bench]')" in capsys.readouterr().err


def test_outputs_with_matplotlib_write_a_png(tmp_path: Path) -> None:
    assert bench_plot.available()  # the test environment installs the bench extra
    bench_report.write_outputs(_report(), tmp_path)
    assert (tmp_path / bench_report.PNG_FILE).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


# --- rng answers/s per task (Prometheus) ---------------------------------------------------


def _rng_rates(*rates: float) -> list[InstanceRate]:
    return [
        InstanceRate(f"node{n}", f"10.0.1.{n + 4}:80", rate, node=f"node{n}")
        for n, rate in enumerate(rates, 1)
    ]


def _measured(rng_rates: list[InstanceRate] | None, rate: float = 30.0) -> bench_model.Measurement:
    return bench_model.measure(
        mode=GLOBAL,
        rng_tasks=3,
        workers=10,
        delays=Delays(),
        samples=_steady(rate, 20),
        rng_rates=rng_rates,
        rng_window=20.0,
    )


def test_rng_sum_is_compared_with_the_hash_rate_within_ten_percent() -> None:
    agrees = _measured(_rng_rates(10.0, 9.9, 10.1))
    assert agrees.rng_sum == pytest.approx(30.0)
    assert agrees.rng_sum_ratio == pytest.approx(1.0, rel=0.03)
    assert agrees.rng_sum_agrees is True
    off = _measured(_rng_rates(10.0, 10.0, 15.0))  # 35 answers/s for 30 hashes/s
    assert off.rng_sum_ratio == pytest.approx(35 / 30, rel=0.03)
    assert off.rng_sum_agrees is False
    for unknown in (_measured(None), _measured([]), _measured(_rng_rates(1.0), rate=0.0)):
        assert unknown.rng_sum_ratio is None
        assert unknown.rng_sum_agrees is None
    assert _measured(None).rng_window is None  # no rates, no window


def test_table_and_json_carry_the_rng_rates_per_task() -> None:
    report = BenchReport(
        main_workers=10, nodes=3, delays=Delays(), settings={"prometheus": "http://p:9090"}
    )
    report.measurements += [_measured(_rng_rates(10.0, 9.94, 10.06)), _measured([])]
    report.measurements.append(
        bench_model.measure(
            mode=REPLICATED,
            rng_tasks=1,
            workers=10,
            delays=Delays(),
            samples=_steady(10.0, 20),
            rng_rates=_rng_rates(12.5),
        )
    )
    table = bench_report.results_table(report).splitlines()
    assert table[0].endswith("| measured/ceiling | rng answers/s per task | rng sum / hash rate |")
    assert table[2].endswith("| node1 12.5 | 1.25 (off by > 10%) |")  # replicated first
    assert table[3].endswith("| node1 10.0, node2 9.9, node3 10.1 | 1.00 |")
    assert table[4].endswith("| no series | - |")
    note = bench_report.markdown(report).splitlines()[-1]
    assert note.startswith("rng answers/s per task: rate(dockercoins_rng_requests_total) from")
    assert note.endswith("within 10%: 1 of 2 runs with rates are off by more.")

    results = json.loads(json.dumps(bench_report.to_json(report), allow_nan=False))["results"]
    first = results[0]
    assert first["rng_rates"] == [
        {"label": "node1", "instance": "10.0.1.5:80", "rate": 10.0},
        {"label": "node2", "instance": "10.0.1.6:80", "rate": 9.94},
        {"label": "node3", "instance": "10.0.1.7:80", "rate": 10.06},
    ]
    assert first["rng_rates_window"] == 20.0
    assert first["rng_sum_over_hash_rate"] == pytest.approx(1.0, rel=0.03)
    assert first["rng_sum_within_tolerance"] is True
    assert results[1]["rng_rates"] == []
    assert results[1]["rng_sum_over_hash_rate"] is None
    assert results[2]["rng_sum_within_tolerance"] is False


def test_without_prometheus_the_rng_fields_are_empty_and_the_report_says_why() -> None:
    report = _report()
    report.settings["prometheus"] = None
    report.settings["prometheus_note"] = "no Prometheus answered at http://127.0.0.1:9090"
    table = bench_report.results_table(report).splitlines()
    assert all(row.endswith("| - | - |") for row in table[2:])
    note = bench_report.markdown(report).splitlines()[-1]
    assert note == "No rng answers/s per task: no Prometheus answered at http://127.0.0.1:9090."
    for result in bench_report.to_json(report)["results"]:
        assert result["rng_rates"] is None
        assert result["rng_sum_over_hash_rate"] is None
        assert result["rng_sum_within_tolerance"] is None


def test_rng_window_is_the_run_stretched_into_the_warmup_to_three_scrapes() -> None:
    options = _options("--workers", "2", "--sweep", "1", "--duration", "8", "--warmup", "4")
    assert options.rng_window(1) == 12  # 8 s measured + all 4 s of warm-up
    assert _options("--duration", "8", "--warmup", "10").rng_window(1) == 15
    assert _options("--duration", "30", "--main-duration", "60").rng_window(10) == 60


def test_prometheus_option_is_checked_and_repeated() -> None:
    options = _options("--prometheus", "http://127.0.0.1:9090/")
    assert options.prometheus == "http://127.0.0.1:9090"
    command = cli_bench.rng_modes_command_line(options)
    assert command.endswith("--prometheus http://127.0.0.1:9090")
    assert "--prometheus" not in cli_bench.rng_modes_command_line(_options())


def test_without_prometheus_the_benchmark_runs_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr(prometheus, "candidates", lambda explicit: [explicit or nowhere])
    url, why = bench_rng_modes.find_prometheus(None)
    assert url is None
    assert why == f"no Prometheus answered at {nowhere}"
    with pytest.raises(UserError, match=f"--prometheus: no Prometheus answered at {nowhere}"):
        bench_rng_modes.find_prometheus(nowhere)  # asked for by name: an error
    assert bench_rng_modes.rng_rates_of_run(None, 10.0, 0.0) is None


def test_a_run_line_adds_up_the_rng_rates() -> None:
    text = bench_rng_modes.describe_rng_rates(_rng_rates(10.0, 9.9), 20.0)
    assert text == "; rng answers/s 10.0 + 9.9 = 19.9 (0.99 of the hash rate)"
    assert bench_rng_modes.describe_rng_rates(None, 20.0) == ""


def test_each_run_asks_prometheus_over_its_own_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """run() with the swarm, the web UI and Prometheus faked: every run's rates are asked
    for at its end over rng_window seconds, and land in the files."""
    from dockercoins.bench import cluster
    from dockercoins.swarm.read import Node

    state = cluster.ClusterState(rng_mode=REPLICATED, rng_replicas=1, worker_replicas=1)
    ready = Node("n1", "node1", "ready", "active", "manager", "10.9.0.2")
    monkeypatch.setattr(cluster, "require_deployed", lambda client: {})
    monkeypatch.setattr(cluster, "delays_of", lambda services: Delays())
    monkeypatch.setattr(cluster, "read_state", lambda client: state)
    monkeypatch.setattr(cluster, "rng_spec", lambda client: {})
    monkeypatch.setattr(cluster, "apply", lambda *args: None)
    monkeypatch.setattr(cluster, "running_tasks", lambda client, name: 1)
    monkeypatch.setattr(cluster, "restore", lambda *args: None)
    monkeypatch.setattr(bench_rng_modes, "nodes", lambda client: [ready])
    monkeypatch.setattr(bench_rng_modes, "find_webui", lambda explicit: "http://127.0.0.1:8000")
    monkeypatch.setattr(bench_rng_modes, "find_prometheus", lambda explicit: ("http://p", ""))
    monkeypatch.setattr(
        bench_rng_modes, "sample_counter", lambda url, seconds, *args: _steady(3.3, int(seconds))
    )
    monkeypatch.setattr(bench_plot, "available", lambda: False)
    asked: list[tuple[str, float]] = []

    def rng_rates(url: str, window: float, at: float) -> list[InstanceRate]:
        asked.append((url, window))
        return _rng_rates(3.3)

    monkeypatch.setattr(prometheus, "rng_rates", rng_rates)
    options = _options(
        "--workers", "1", "--sweep", "1", "--duration", "6", "--warmup", "0", "--out", str(tmp_path)
    )
    bench_rng_modes.run(object(), options, "dockercoins bench rng-modes")
    assert asked == [("http://p", 6.0), ("http://p", 6.0)]  # replicated, then global
    document = json.loads((tmp_path / bench_report.JSON_FILE).read_text())
    assert document["settings"]["prometheus"] == "http://p"
    assert [r["rng_sum_within_tolerance"] for r in document["results"]] == [True, True]
    assert "| node1 3.3 | 1.0" in (tmp_path / bench_report.TABLE_FILE).read_text()
    assert "rng answers/s 3.3 = 3.3 (1.0" in capsys.readouterr().err


# --- bench pipeline: Ctrl-C ------------------------------------------------------------


def children_of(pid: int) -> dict[int, str]:
    """pid -> command line of each live process whose parent is `pid`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and cmdline:
            found[int(entry.name)] = cmdline
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_bench_pipeline_ctrl_c_stops_every_process_and_removes_its_folder(
    tmp_path: Path,
) -> None:
    args = ["bench", "pipeline", "--concurrency", "1", "--metrics", "on", "--duration", "300"]
    # started with SIGINT ignored, as a background job of a script starts it: the tool
    # takes Ctrl-C back, or the signal below would do nothing
    command = shlex.join([sys.executable, "-m", "dockercoins", *args, "--warmup", "0"])
    bench = subprocess.Popen(
        ["sh", "-c", f"trap '' INT; exec {command}"],
        env={**os.environ, "TMPDIR": str(tmp_path)},  # its temporary folder goes here
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # interrupt it while the worker mines: redis-server, rng, hasher and worker run
        wait_for(
            lambda: any("worker.py" in line for line in children_of(bench.pid).values()),
            timeout=60,
            interval=0.1,
        )
        started = children_of(bench.pid)
        folders = list(tmp_path.glob("dockercoins-bench-*"))
        assert len(started) == 4, started
        assert len(folders) == 1
        bench.send_signal(signal.SIGINT)
        _, stderr = bench.communicate(timeout=60)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.communicate()
    assert bench.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "dockercoins: interrupted"
    assert "Traceback" not in stderr
    assert [pid for pid in started if alive(pid)] == []
    assert not folders[0].exists()
