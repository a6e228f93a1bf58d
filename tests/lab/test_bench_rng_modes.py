"""`dockercoins bench rng-modes` on the real lab, short: it runs, writes a table, JSON and a
PNG of the right shape with sane values, and leaves the services as it found them, also
when interrupted with Ctrl-C: while it measures, and in the middle of rng's remove-and-
create (rng is created again from the spec recorded at the start, and a second Ctrl-C
while it puts things back only says to wait). No speed assertions: the benchmark prints
numbers."""

from __future__ import annotations

import itertools
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dockercoins.lab.state import LabState

from tests.support.lab import cli, lab_env, ok
from tests.support.servers import wait_for

pytestmark = pytest.mark.lab

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OURS = ("redis", "hasher", "rng", "webui", "worker")
SHORT = ["--workers", "2", "--sweep", "1,2", "--duration", "8", "--warmup", "4"]


def deployed_services(client: Any) -> set[str]:
    return {service.name for service in client.services.list()} & set(OURS)


@pytest.fixture(scope="module")
def dockercoins(lab: LabState, manager: Any) -> Iterator[None]:
    """DockerCoins deployed on the lab (ship + deploy, both idempotent); taken down again
    afterwards only if this module deployed it."""
    was_deployed = deployed_services(manager) == set(OURS)
    try:
        if not was_deployed:
            ok(cli(lab, "ship"))
            ok(cli(lab, "deploy", "--timeout", "240"))
        yield
    finally:
        if not was_deployed:
            cli(lab, "down", "--timeout", "120")


def scale_state(client: Any) -> tuple[str, int | None, int]:
    """(rng mode, rng replicas or None when global, worker replicas)."""
    specs = {s.name: s.attrs["Spec"] for s in client.services.list() if s.name in OURS}
    rng_mode = specs["rng"]["Mode"]
    worker = specs["worker"]["Mode"]["Replicated"]["Replicas"]
    if "Global" in rng_mode:
        return ("global", None, worker)
    return ("replicated", rng_mode["Replicated"]["Replicas"], worker)


@pytest.fixture(scope="module")
def state_before(lab: LabState, manager: Any, dockercoins: None) -> Iterator[None]:
    """The services' scale as the module found it, put back after the module (each test
    leaves them in the known state below: one switch of rng's mode for the module, not
    two per test)."""
    before = scale_state(manager)
    try:
        yield
    finally:
        mode, replicas, workers = before
        cli(lab, "rng-mode", mode, *(["--replicas", str(replicas)] if replicas else []))
        cli(lab, "scale", f"worker={workers}")


@pytest.fixture
def known_state(lab: LabState, manager: Any, state_before: None) -> tuple[str, Any, int]:
    """The services in a state the benchmark must come back to (rng global, 3 workers);
    quick when a test before left them so."""
    ok(cli(lab, "rng-mode", "global", "--timeout", "240"))
    ok(cli(lab, "scale", "worker=3", "--timeout", "240"))
    return scale_state(manager)


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_MAGIC)
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_short_run_writes_table_json_png_and_restores_the_services(
    lab: LabState, manager: Any, known_state: tuple[str, Any, int], tmp_path: Path
) -> None:
    assert known_state == ("global", None, 3)
    out = tmp_path / "results"
    stdout = ok(cli(lab, "bench", "rng-modes", *SHORT, "--out", str(out), timeout=900))

    # the services are back as they were: rng global (re-created), 3 workers
    assert scale_state(manager) == ("global", None, 3)

    # the table: printed and written; 2 modes x 2 worker counts
    table = (out / "rng-modes.md").read_text()
    assert table.strip() in stdout
    rows = [line for line in table.splitlines() if line.startswith("| replicated")]
    rows += [line for line in table.splitlines() if line.startswith("| global")]
    assert len(rows) == 4
    assert "global/replicated" in table

    # the JSON: every point, sane values, ceilings from the delay model
    document = json.loads((out / "rng-modes.json").read_text())
    assert document["main_workers"] == 2
    assert document["nodes"] == len(lab.nodes)
    delays = document["delays"]
    results = document["results"]
    assert sorted((r["mode"], r["workers"]) for r in results) == [
        ("global", 1),
        ("global", 2),
        ("replicated", 1),
        ("replicated", 2),
    ]
    loop = delays["worker"] + delays["rng"] + delays["hasher"]
    for result in results:
        expected_tasks = 1 if result["mode"] == "replicated" else len(lab.nodes)
        assert result["rng_tasks"] == expected_tasks
        ceiling = min(
            result["workers"] * delays["worker_concurrency"] / loop,
            expected_tasks * delays["rng_concurrency"] / delays["rng"],
        )
        assert result["ceiling"] == pytest.approx(ceiling)
        assert result["hashes_per_second"] >= 0
        assert 0 <= result["min"] <= result["p10"] <= result["p90"] <= result["max"]
        assert result["measured_over_ceiling"] == pytest.approx(
            result["hashes_per_second"] / ceiling
        )
        samples = result["samples"]
        assert len(samples) >= 5  # about one read a second for 8 s
        assert all(b[0] > a[0] for a, b in itertools.pairwise(samples))
    assert [row["workers"] for row in document["global_over_replicated"]] == [1, 2]
    assert "dockercoins bench rng-modes --workers 2 --sweep 1,2" in document["settings"]["command"]

    # the PNG: a real PNG of a sensible size
    data = (out / "rng-modes.png").read_bytes()
    width, height = png_size(data)
    assert width >= 800 and height >= 300
    assert 20_000 < len(data) < 5_000_000


def test_ctrl_c_puts_the_services_back(
    lab: LabState, manager: Any, known_state: tuple[str, Any, int], tmp_path: Path
) -> None:
    args = ["bench", "rng-modes", "--workers", "1", "--sweep", "1", "--duration", "300"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockercoins", *args, "--warmup", "1", "--out", str(tmp_path)],
        env=lab_env(lab),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the benchmark changed the services (1 worker instead of 3): interrupt it there
        wait_for(lambda: scale_state(manager)[2] == 1, timeout=240, interval=1.0)
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    sys.stderr.write(stderr)
    assert proc.returncode == 130
    assert "Traceback" not in stderr
    assert scale_state(manager) == ("global", None, 3)
    assert not (tmp_path / "rng-modes.json").exists()


RECREATING = "rng was removed in the middle of a mode switch: creating it again"
WAIT = "putting the services back as they were first; this ends by itself"


def rng_service(client: Any) -> dict[str, Any] | None:
    """rng as the manager returns it (ID, Spec...), None while there is none."""
    found = [raw for raw in client.api.services() if raw["Spec"]["Name"] == "rng"]
    return found[0] if found else None


def test_ctrl_c_in_the_middle_of_rng_s_mode_switch_creates_it_again_from_its_spec(
    lab: LabState, manager: Any, known_state: tuple[str, Any, int], tmp_path: Path
) -> None:
    before = rng_service(manager)
    assert before is not None
    # run 1 in rng's mode now (global), then run 2 switches it: rng removed, then created
    args = ["rng-modes", "--workers", "1", "--sweep", "1", "--duration", "2", "--warmup", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockercoins", "bench", *args, "--out", str(tmp_path)],
        env=lab_env(lab),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    said: list[bytes] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        while chunk := os.read(proc.stderr.fileno(), 65536):
            said.append(chunk)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()

    def text() -> str:
        return b"".join(said).decode(errors="replace")

    try:
        # watch the daemon: Ctrl-C once rng is gone and not yet created again
        wait_for(lambda: rng_service(manager) is None, timeout=300, interval=0.05)
        proc.send_signal(signal.SIGINT)
        # it creates rng again while it puts things back: a second Ctrl-C then only waits
        wait_for(lambda: RECREATING in text(), timeout=60, interval=0.05)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
    stderr = text()
    sys.stderr.write(stderr)
    assert proc.returncode == 130
    assert "Traceback" not in stderr
    assert stderr.count(WAIT) == 1
    assert stderr.index(RECREATING) < stderr.index(WAIT)
    after = rng_service(manager)
    assert after is not None
    assert after["ID"] != before["ID"]  # created again...
    assert after["Spec"] == before["Spec"]  # ...from the spec recorded at the start
    assert scale_state(manager) == ("global", None, 3)
    assert not (tmp_path / "rng-modes.json").exists()
