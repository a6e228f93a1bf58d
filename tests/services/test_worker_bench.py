"""`dockercoins bench pipeline` runs end to end with a tiny duration and prints its tables
(numbers are for docs/pipeline-benchmark.md, never asserted here); the histogram reading it
relies on, checked on a page of known counts."""

from __future__ import annotations

import subprocess
import sys

import pytest
from dockercoins.bench.metrics_page import HistogramWindow, MetricsPage


def tables(stdout: str) -> list[list[list[str]]]:
    """Each markdown table of the output (its lines starting with "|"), as rows of cells."""
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*stdout.splitlines(), ""]:
        if line.startswith("|"):
            current.append([cell.strip() for cell in line.split("|")[1:-1]])
        elif current:
            found.append(current)
            current = []
    return found


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_bench_pipeline_prints_a_table_and_counts_every_loop() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dockercoins",
            "bench",
            "pipeline",
            "--concurrency",
            "1,4",
            "--duration",
            "1",
            "--warmup",
            "0.5",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    worker, cost = tables(done.stdout)
    assert " | ".join(worker[0]).startswith("worker concurrency | hashes/s | rng mean ms | rng p99")
    data = worker[2:]
    assert [cells[0] for cells in data] == ["1", "4"]
    for cells in data:
        assert number(cells[1]) > 0  # it mined
        assert all(number(cell) > 0 for cell in cells[2:6])  # latencies from /metrics
        assert cells[-1] == "yes"  # Redis counted exactly the hashes the worker confirmed

    assert cost[0][:4] == [
        "worker concurrency",
        "hashes/s, metrics on",
        "hashes/s, metrics off",
        "on / off",
    ]
    assert [cells[0] for cells in cost[2:]] == ["1", "4"]
    for cells in cost[2:]:
        on, off, ratio = number(cells[1]), number(cells[2]), number(cells[3])
        assert on > 0 and off > 0
        assert ratio == pytest.approx(on / off, rel=0.01, abs=0.002)


@pytest.mark.parametrize(
    ("option", "value"),
    [("--concurrency", "0,x"), ("--metrics", "on,maybe"), ("--repeat", "0")],
)
def test_bench_pipeline_rejects_bad_options(option: str, value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dockercoins", "bench", "pipeline", option, value],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert option in done.stderr
    assert "Traceback" not in done.stderr


PAGE = """# TYPE t_seconds histogram
t_seconds_bucket{service="rng",le="0.001"} %d
t_seconds_bucket{service="rng",le="0.01"} %d
t_seconds_bucket{service="rng",le="0.1"} %d
t_seconds_bucket{service="rng",le="+Inf"} %d
t_seconds_count{service="rng"} %d
t_seconds_sum{service="rng"} %f
"""


def test_a_histogram_window_gives_mean_and_quantiles_like_histogram_quantile() -> None:
    before = MetricsPage.parse(PAGE % (10, 10, 10, 10, 10, 0.005))
    # 100 more: 50 under 1 ms, 40 in (1, 10] ms, 9 in (10, 100] ms, 1 above.
    after = MetricsPage.parse(PAGE % (60, 100, 109, 110, 110, 0.005 + 0.5))
    window = HistogramWindow.between(before, after, "t_seconds", service="rng")
    assert window.count == 100
    assert window.mean() == pytest.approx(0.005)
    assert window.quantile(0.25) == pytest.approx(0.0005)  # rank 25 of 50 in [0, 1 ms]
    assert window.quantile(0.5) == pytest.approx(0.001)
    assert window.quantile(0.7) == pytest.approx(0.001 + 0.009 * 20 / 40)
    assert window.quantile(0.99) == pytest.approx(0.1)  # rank 99 ends the (10, 100] bucket
    assert window.quantile(0.999) == pytest.approx(0.1)  # in +Inf: the highest finite bound
    twice = HistogramWindow.pooled([window, window])
    assert (twice.count, twice.mean(), twice.quantile(0.7)) == (
        200,
        window.mean(),
        window.quantile(0.7),
    )
    empty = HistogramWindow.between(after, after, "t_seconds", service="rng")
    assert (empty.mean(), empty.quantile(0.99)) == (None, None)
