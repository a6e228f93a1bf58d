"""The images' health checks, read as code: each image's HEALTHCHECK runs its service's probe
on the contract's port (names.SERVICE_PORT, never $PORT), in exec form, with a standard
library python; the worker's heartbeat (worker_heartbeat.Beats) stops for a stalled part and
not for one that waits on another service. Pure: no process, no clock."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import hasher_probe
import pytest
import rng
import rng_probe
import webui_probe
import worker_probe
from dockercoins.names import IMAGES, SERVICE_PORT
from worker_heartbeat import MARGIN, NAME_LOOKUP_ALLOWANCE, Beats, stall_limit
from worker_settings import Settings as WorkerSettings

REPO = Path(__file__).resolve().parents[2]
PROBES = {"rng": rng_probe, "hasher": hasher_probe, "webui": webui_probe}


def healthcheck(service: str) -> tuple[dict[str, str], list[str]]:
    """The image's HEALTHCHECK: its options and its exec-form command."""
    text = (REPO / "services" / service / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("HEALTHCHECK "))
    options_text, _, command = line.partition(" CMD ")
    options = dict(item.removeprefix("--").split("=") for item in options_text.split()[1:])
    return options, json.loads(command)


@pytest.mark.parametrize("service", IMAGES)
def test_each_image_checks_its_probe_on_the_contract_port(service: str) -> None:
    options, command = healthcheck(service)
    # exec form, python without site-packages, the probe with no port: the default, 80
    assert command == ["/opt/venv/bin/python", "-I", "-S", f"/app/{service}_probe.py"]
    assert set(options) == {"interval", "timeout", "start-period", "retries"}
    assert "PORT" not in json.dumps(command)


@pytest.mark.parametrize("service", ["rng", "hasher", "webui"])
def test_http_probes_ask_the_contract_port_within_the_checks_timeout(service: str) -> None:
    probe = PROBES[service]
    assert probe.CONTRACT_PORT == SERVICE_PORT
    options, _ = healthcheck(service)
    allowed = float(options["timeout"].rstrip("s"))
    worst = probe.TIMEOUT + getattr(probe, "NUMBERS_TIMEOUT", 0.0)
    assert worst < allowed  # the probe says why before docker kills it


@pytest.mark.parametrize("service", IMAGES)
def test_probes_use_the_standard_library_only(service: str) -> None:
    source = (REPO / "services" / service / f"{service}_probe.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_rng_probe_expects_what_rng_health_answers() -> None:
    assert rng_probe.HEALTH_BYTES == rng.HEALTH_BYTES
    assert rng_probe.PATH == rng.HEALTH_PATH


def test_worker_probe_reads_the_default_heartbeat_file() -> None:
    assert WorkerSettings().heartbeat == worker_probe.DEFAULT_HEARTBEAT


def test_worker_probe_age_rule(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    beat.write_text("")
    touched = beat.stat().st_mtime
    assert worker_probe.check(str(beat), now=touched + 1.0) == (
        True,
        "worker heartbeat 1.0 s old",
    )
    healthy, line = worker_probe.check(str(beat), now=touched + worker_probe.MAX_AGE + 1)
    assert not healthy
    assert line.startswith("heartbeat 6 s old")
    healthy, line = worker_probe.check(str(tmp_path / "none"))
    assert not healthy
    assert line.startswith("no heartbeat file: ")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_beats_name_the_parts_quiet_for_longer_than_the_limit() -> None:
    clock = FakeClock()
    beats = Beats(limit=10.0, clock=clock)
    beats.beat("mining loop 1")
    beats.beat("flusher")
    clock.now += 8
    beats.beat("flusher")
    assert beats.stalled() == []
    clock.now += 4  # the loop: 12 s quiet; the flusher 4 s
    assert beats.stalled() == [("mining loop 1", 12.0)]
    beats.beat("mining loop 1")
    assert beats.stalled() == []
    beats.forget("flusher")  # a part that ended does not hold the heartbeat
    clock.now += 30
    assert beats.stalled() == [("mining loop 1", 30.0)]


def test_the_stall_limit_outlasts_the_longest_wait_on_another_service() -> None:
    settings = WorkerSettings()
    limit = stall_limit(
        delay=settings.delay,
        http_timeout=settings.http_timeout,
        backoff_max=settings.backoff_max,
        retry_after_max=5.0,
        flush_interval=settings.flush_interval,
    )
    # a request that times out after its name lookup timed out too
    assert limit == settings.http_timeout + NAME_LOOKUP_ALLOWANCE + MARGIN == 25.0
    slow = stall_limit(
        delay=60.0, http_timeout=1.0, backoff_max=2.0, retry_after_max=5.0, flush_interval=1.0
    )
    assert slow == 60.0 + MARGIN  # a long WORKER_DELAY is a wait too
