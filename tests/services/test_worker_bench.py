"""`dockercoins bench pipeline` runs end to end with a tiny duration and prints its table
(numbers are for docs/pipeline-benchmark.md, never asserted here)."""

from __future__ import annotations

import subprocess
import sys


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
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| worker concurrency | hashes/s | rng mean ms | rng p99 ms")
    data = [row.split("|")[1:-1] for row in rows[1:]]
    assert [cells[0].strip() for cells in data] == ["1", "4"]
    for cells in data:
        assert float(cells[1].strip().replace(",", "")) > 0  # it mined
        assert cells[-1].strip() == "yes"  # Redis counted exactly the loops the worker did


def test_bench_pipeline_rejects_bad_concurrency() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dockercoins", "bench", "pipeline", "--concurrency", "0,x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--concurrency" in done.stderr
    assert "Traceback" not in done.stderr
