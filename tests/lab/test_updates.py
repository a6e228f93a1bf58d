"""Rolling updates on the real lab while DockerCoins mines (reusing the deployed services):

- the tutorial's way to break hasher, `docker service update --env-add PORT=81 hasher`
  with the plain docker CLI: the new task never passes its health check (port 80), the
  swarm rolls the update back on its own and mining goes on;
- `dockercoins update worker --tag T` where T's container exits at start: rolled back, the
  tool exits non-zero with `rolled back:` and the task's error;
- good updates of the workers and of rng at once, /json sampled throughout: the hash rate
  never drops to 0 (start-first: the old tasks mine until the new ones are healthy).

Seconds until mining is back at 0.9 x the ceiling after the bad update are printed for the
docs, not asserted."""

from __future__ import annotations

import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from dockercoins.lab.state import LabState
from dockercoins.swarm.update import retagged

from tests.support.lab import cli
from tests.support.mining import (
    Sampler,
    docker_cli,
    redis_on,
    result,
    running,
    wait_mining,
)
from tests.support.servers import wait_for

pytestmark = pytest.mark.lab

WORKERS = 4  # when this module deploys
SAMPLE_EVERY = 0.5  # seconds between /json reads
RATE_WINDOW = 3.0  # seconds of samples per hash rate: each worker writes every second
STEADY_WINDOW = 6.0  # for the printed numbers: 5 to 7 writes of each worker per window
ROLLBACK_WITHIN = 180.0  # a bounded wait, not a claim
EXITS_CMD = 'CMD ["/opt/venv/bin/python", "-c", "raise SystemExit(3)"]'


def ceiling(client: Any) -> float:
    """min(W / 0.3, R x 10) hashes/s with the default delays (docs/swarm.md)."""
    return min(len(running(client, "worker")) / 0.3, len(running(client, "rng")) * 10.0)


def update_state(client: Any, service: str) -> tuple[str, str]:
    """(UpdateStatus.State, StartedAt) of the service ("", "" when it has none)."""
    status = client.api.inspect_service(service).get("UpdateStatus") or {}
    return str(status.get("State", "")), str(status.get("StartedAt", ""))


def env_of(client: Any, service: str) -> list[str]:
    spec = client.api.inspect_service(service)["Spec"]
    return list(spec["TaskTemplate"]["ContainerSpec"].get("Env") or [])


def image_of(client: Any, service: str) -> str:
    spec = client.api.inspect_service(service)["Spec"]
    return str(spec["TaskTemplate"]["ContainerSpec"]["Image"])


@pytest.fixture(scope="module")
def mining(lab: LabState, manager: Any) -> Iterator[None]:
    """DockerCoins mining on the lab with redis on its last node (as the modules after this
    one want it: tests/support/mining.py redis_on), left deployed for them."""
    redis_on(lab, manager, lab.nodes[-1].name, WORKERS)
    wait_mining()
    yield


def test_hasher_moved_to_port_81_by_hand_is_rolled_back_by_the_swarm(
    lab: LabState, manager: Any, mining: None
) -> None:
    _, before = update_state(manager, "hasher")
    wanted = ceiling(manager)
    with Sampler(SAMPLE_EVERY, warm=RATE_WINDOW) as sampler:
        wait_for(lambda: sampler.span() > 2 * STEADY_WINDOW, timeout=60, interval=0.5)
        started = time.monotonic()
        docker_cli(lab, "service", "update", "--detach", "--env-add", "PORT=81", "hasher")

        def rolled_back() -> bool:
            state, since = update_state(manager, "hasher")
            return since != before and state in ("rollback_completed", "rollback_paused")

        wait_for(rolled_back, timeout=ROLLBACK_WITHIN, interval=0.5)
        done = time.monotonic()
        assert update_state(manager, "hasher")[0] == "rollback_completed"
        assert "PORT=81" not in env_of(manager, "hasher")
        wait_for(lambda: len(running(manager, "hasher")) == 1, timeout=60, interval=0.5)
        [task] = running(manager, "hasher")
        assert "PORT=81" not in task["Spec"]["ContainerSpec"].get("Env", [])
        wait_mining(timeout=60)
        time.sleep(STEADY_WINDOW)  # a full window after the rollback
    rates = [(at - started, rate) for at, rate in sampler.rates(RATE_WINDOW) if at >= started]
    assert rates and rates[-1][1] > 0
    steady = sampler.rates(STEADY_WINDOW)
    before_rates = [rate for at, rate in steady if at < started]
    after = [(at - started, rate) for at, rate in steady if at >= started]
    below = [at for at, rate in after if rate < 0.9 * wanted]
    back = next((at for at, _ in after if at > max(below)), None) if below else 0.0
    result(
        f"hasher PORT=81: rollback completed {done - started:.1f} s after the update; "
        f"hash rate over {STEADY_WINDOW:.0f} s windows {min(before_rates):.1f}-"
        f"{max(before_rates):.1f}/s before, {min(r for _, r in after):.1f}-"
        f"{max(r for _, r in after):.1f}/s from the update on (ceiling {wanted:.1f}); "
        f"at 0.9 x ceiling again {back} s after the update"
    )


@pytest.fixture
def exiting_tag(lab: LabState, manager: Any, mining: None) -> Iterator[str]:
    """A tag of the worker's image, pushed to the lab's registry, whose container exits
    with status 3 at start (the same image, another CMD); the local copy goes afterwards."""
    image = manager.api.inspect_service("worker")["Spec"]["TaskTemplate"]["ContainerSpec"]
    source = image["Image"].split("@", 1)[0]
    tag = f"exits-{uuid.uuid4().hex[:6]}"
    target = retagged(source, tag)
    repository = target.rsplit(":", 1)[0]
    manager.images.pull(source)
    container = manager.containers.create(source, command=["true"])
    try:
        container.commit(repository=repository, tag=tag, changes=[EXITS_CMD])
    finally:
        container.remove()
    try:
        for line in manager.images.push(repository, tag=tag, stream=True, decode=True):
            assert "error" not in line, line
        yield tag
    finally:
        manager.images.remove(target, force=True)


def test_update_to_a_tag_that_exits_is_rolled_back_and_says_why(
    lab: LabState, manager: Any, exiting_tag: str
) -> None:
    before = env_of(manager, "worker"), image_of(manager, "worker")
    proc = cli(lab, "update", "worker", "--tag", exiting_tag, "--timeout", str(ROLLBACK_WITHIN))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("dockercoins: error: rolled back: task "), last
    assert re.search(r"non-zero exit \(3\)|exit code 3", last), last
    assert "worker runs its previous version again" in last
    assert re.search(r"worker: updating, \d+/\d+ tasks updated", proc.stderr)  # followed live
    assert (env_of(manager, "worker"), image_of(manager, "worker")) == before
    assert f":{exiting_tag}@" not in image_of(manager, "worker")
    wait_mining(timeout=60)


def test_good_updates_of_workers_and_rng_under_load_never_stop_mining(
    lab: LabState, manager: Any, mining: None
) -> None:
    stamp = uuid.uuid4().hex[:8]
    commands = {
        service: ["update", service, "--env", f"DOCKERCOINS_TEST_UPDATE={stamp}"]
        for service in ("worker", "rng")
    }
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    def update(service: str) -> None:
        results[service] = cli(lab, *commands[service], "--timeout", "240")

    with Sampler(SAMPLE_EVERY, warm=RATE_WINDOW) as sampler:
        started = time.monotonic()
        threads = [threading.Thread(target=update, args=(name,)) for name in commands]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        rates = [rate for at, rate in sampler.rates(RATE_WINDOW) if at >= started]
    for service in commands:
        proc = results[service]
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"{service} updated" in proc.stdout
        assert f"DOCKERCOINS_TEST_UPDATE={stamp}" in env_of(manager, service)
        tasks = running(manager, service)
        assert tasks
        assert all(
            f"DOCKERCOINS_TEST_UPDATE={stamp}" in task["Spec"]["ContainerSpec"]["Env"]
            for task in tasks
        )
    assert len(rates) > 10  # sampled throughout
    assert min(rates) > 0, rates  # the hash rate never reached 0
    result(f"good updates of worker and rng: hash rate at least {min(rates):.1f}/s")
