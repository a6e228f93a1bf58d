"""DockerCoins mining on the lab, watched from the host: /json sampled in a thread, the
plain docker CLI, running tasks, `dockercoins verify`. Shared by the lab tests that
disturb a mining lab (redis restarts, updates, node faults)."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import sys
import threading
import time
from types import TracebackType
from typing import Any

import httpx
from dockercoins.lab.state import LabState
from dockercoins.paths import REPO_ROOT
from dockercoins.swarm.specs import REDIS_NODE_LABEL
from dockercoins.swarm.verify import reports_query

from tests.support.lab import cli, lab_env, ok
from tests.support.servers import wait_for

WEBUI = "http://127.0.0.1:8000"
PROMETHEUS = "http://127.0.0.1:9090"
OURS = {"redis", "hasher", "rng", "webui", "worker", "prometheus"}
SAMPLE_FOR_AT_MOST = 600.0  # a sampler stops by itself after this long
BACK_TIMEOUT = 240.0  # seconds for mining to come back after a fault
# measured numbers (printed, never asserted), collected here; scripts/test.sh shows them
RESULTS_FILE = REPO_ROOT / "test-artifacts" / "lab-results.txt"


def result(line: str) -> None:
    """A measured number for the docs: printed and appended to RESULTS_FILE."""
    print(f"RESULT {line}")
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS_FILE.open("a") as out:
        out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


def hashes(timeout: float = 2.0) -> int:
    return int(httpx.get(f"{WEBUI}/json", timeout=timeout).json()["hashes"])


class Sampler:
    """Reads /json every `every` s in a thread (bounded by SAMPLE_FOR_AT_MOST), keeping
    (monotonic time, hashes) of every read that answered. Entering waits for 3 readings
    spanning at least `warm` s."""

    def __init__(self, every: float = 0.25, warm: float = 0.0) -> None:
        self.every = every
        self.warm = warm
        self.readings: list[tuple[float, int]] = []
        self.failures = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + SAMPLE_FOR_AT_MOST
        with httpx.Client(timeout=1.0) as http:
            while not self.stop_event.is_set() and time.monotonic() < deadline:
                try:
                    value = int(http.get(f"{WEBUI}/json").json()["hashes"])
                except (httpx.HTTPError, ValueError, KeyError):
                    self.failures += 1
                else:
                    self.readings.append((time.monotonic(), value))
                self.stop_event.wait(self.every)

    def __enter__(self) -> Sampler:
        self.thread.start()
        wait_for(
            lambda: len(self.readings) >= 3 and self.span() >= self.warm, timeout=30, interval=0.1
        )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop_event.set()
        self.thread.join(10)

    def span(self) -> float:
        readings = list(self.readings)
        return readings[-1][0] - readings[0][0] if len(readings) > 1 else 0.0

    def rates(self, window: float) -> list[tuple[float, float]]:
        """(time, hashes per second over the `window` s before it), from each reading
        that has a full window behind it."""
        readings = list(self.readings)
        found = []
        first = 0
        for at, value in readings:
            while readings[first][0] < at - window:
                first += 1
            if first > 0:  # the window is full: a reading at least `window` s before
                since, then = readings[first - 1]
                found.append((at, (value - then) / (at - since)))
        return found

    def highest_until(self, moment: float) -> int:
        return max(value for at, value in list(self.readings) if at <= moment)

    def wait_above(self, value: int, timeout: float) -> float:
        """The time of the first reading above `value` (waits up to `timeout` s)."""

        def above() -> float | None:
            return next((at for at, seen in list(self.readings) if seen > value), None)

        wait_for(lambda: above() is not None, timeout=timeout, interval=0.25)
        found = above()
        assert found is not None
        return found

    def backwards(self) -> list[tuple[int, int]]:
        """Pairs of successive readings where the counter went down."""
        values = [value for _, value in self.readings]
        return [(a, b) for a, b in itertools.pairwise(values) if b < a]


def docker_cli(lab: LabState, *args: str, timeout: float = 180) -> str:
    """The plain docker CLI against the lab's manager; its stdout, asserting success."""
    binary = shutil.which("docker")
    assert binary, "the docker CLI is not installed"
    proc = subprocess.run(
        [binary, *args],
        env=lab_env(lab),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    sys.stderr.write(f"$ docker {' '.join(args)} -> {proc.returncode}\n{proc.stderr}")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def running(client: Any, service: str) -> list[dict[str, Any]]:
    """The service's tasks that run now."""
    return [
        task
        for task in client.api.tasks(filters={"service": service, "desired-state": "running"})
        if task["Status"]["State"] == "running"
    ]


def labelled_nodes(client: Any) -> list[Any]:
    """The nodes that carry redis's node label."""
    return [
        node
        for node in client.nodes.list()
        if (node.attrs["Spec"].get("Labels") or {}).get(REDIS_NODE_LABEL) == "true"
    ]


def redis_on(lab: LabState, manager: Any, target: str, workers: int) -> None:
    """DockerCoins deployed with redis pinned to node `target`: kept as it runs when it
    already runs so (the modules that disturb a mining lab follow each other and share it),
    else taken down, the earlier deploys' redis label removed, shipped and deployed with
    `workers` workers. Left deployed: the session's `lab down` ends it."""
    deployed = {service.name for service in manager.services.list()} & OURS
    labelled = [str(node.attrs["Description"]["Hostname"]) for node in labelled_nodes(manager)]
    if deployed == OURS and labelled == [target]:
        return
    if deployed:
        ok(cli(lab, "down", "--timeout", "120"))
    for node in labelled_nodes(manager):  # the data of earlier tests' deploys
        spec = dict(node.attrs["Spec"])
        labels = spec.get("Labels") or {}
        spec["Labels"] = {key: value for key, value in labels.items() if key != REDIS_NODE_LABEL}
        node.update(spec)
    ok(cli(lab, "ship"))
    deploy = ["deploy", "--redis-node", target, "--workers", str(workers), "--timeout", "240"]
    ok(cli(lab, *deploy))


def wait_mining(timeout: float = 180.0) -> None:
    """Until the counter of /json rises (bounded)."""
    first: list[int] = []

    def risen() -> bool:
        value = hashes()
        first.append(value)
        return value > first[0]

    wait_for(risen, timeout=timeout, interval=1.0)


def verify(lab: LabState) -> tuple[int, int]:
    """`dockercoins verify` once Prometheus has the workers' confirmed counts: (lost,
    twice); at least one worker compared."""

    def workers_scraped() -> bool:
        query = {"query": reports_query()}
        answer = httpx.get(f"{PROMETHEUS}/api/v1/query", params=query, timeout=3).json()
        return len(answer["data"]["result"]) > 0

    wait_for(workers_scraped, timeout=90, interval=1.0)
    proc = cli(lab, "verify", timeout=180)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    lost = re.search(r"^hashes lost: (\d+)$", out, re.M)
    twice = re.search(r"^hashes counted twice: (\d+)$", out, re.M)
    compared = re.search(r"^workers compared: (\d+) of (\d+)", out, re.M)
    assert lost and twice and compared, out
    assert int(compared.group(1)) >= 1, out
    assert proc.returncode == (0 if lost.group(1) == twice.group(1) == "0" else 1)
    return int(lost.group(1)), int(twice.group(1))
