"""Each image's own HEALTHCHECK, as built, in a real container (no network: the probes talk
to 127.0.0.1 inside it): healthy when the service serves on port 80, the contract's port;
unhealthy when it was moved to PORT=81 (the tutorial's way to break hasher), which the old
check of "whatever port the process listens on" called healthy. The worker: healthy while
rng, hasher and Redis cannot be reached at all, unhealthy once its event loop is stopped.
All containers at once, with the images' real timings: about 30 s for the tier."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dockercoins.images.build import BuiltImage

from tests.support.docker import DockerSession, container_health
from tests.support.servers import wait_for

HTTP_SERVICES = ("rng", "hasher", "webui")
# The images check every 5 s and count failures after a 10 s start period, 3 in a row:
# unhealthy about 25 s after start. Bounded waits well above that (a busy machine).
HEALTHY_WITHIN = 60.0
UNHEALTHY_WITHIN = 90.0


@pytest.fixture
def containers(docker_session: DockerSession) -> Iterator[list[Any]]:
    """Containers the test starts, removed afterwards even when it fails."""
    started: list[Any] = []
    try:
        yield started
    finally:
        import docker.errors

        for container in started:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)


def run(docker_session: DockerSession, image: BuiltImage, started: list[Any], **env: str) -> Any:
    container = docker_session.client.containers.run(
        image.ref,
        detach=True,
        network_mode="none",
        environment=env,
        labels=docker_session.labels,
    )
    started.append(container)
    return container


def last_probe_output(container: Any) -> str:
    container.reload()
    log = container.attrs["State"].get("Health", {}).get("Log") or [{}]
    return str(log[-1].get("Output", "")).strip()


def test_healthy_on_port_80_unhealthy_on_port_81(
    docker_session: DockerSession,
    built_images: dict[str, BuiltImage],
    containers: list[Any],
) -> None:
    began = time.monotonic()
    on_80 = {name: run(docker_session, built_images[name], containers) for name in HTTP_SERVICES}
    on_81 = {
        name: run(docker_session, built_images[name], containers, PORT="81")
        for name in HTTP_SERVICES
    }
    # the worker reaches nothing (no network): it waits on rng, hasher and Redis, healthy
    worker = run(docker_session, built_images["worker"], containers)
    stuck = run(docker_session, built_images["worker"], containers)

    for name, container in [*on_80.items(), ("worker", worker), ("worker", stuck)]:
        wait_for(lambda c=container: container_health(c) == "healthy", timeout=HEALTHY_WITHIN)
        print(f"TIMING {name} healthy after {time.monotonic() - began:.1f} s")
    stuck.kill(signal="SIGSTOP")  # its event loop no longer runs: nothing beats
    stopped = time.monotonic()

    for name, container in [*on_81.items(), ("worker (stopped)", stuck)]:
        wait_for(lambda c=container: container_health(c) == "unhealthy", timeout=UNHEALTHY_WITHIN)
        print(f"TIMING {name} unhealthy after {time.monotonic() - began:.1f} s")
    print(f"TIMING stopped worker unhealthy {time.monotonic() - stopped:.1f} s after SIGSTOP")

    for name, container in on_81.items():
        # the process serves on 81, and the check says what is missing on 80
        container.reload()
        assert container.attrs["State"]["Running"], name
        output = last_probe_output(container)
        assert output.startswith("unhealthy: "), (name, output)
        assert "on port 80: " in output and "refused" in output, (name, output)
    assert "heartbeat" in last_probe_output(stuck)
    # and the ones on 80 stayed healthy all along, the free-running worker too
    for name, container in [*on_80.items(), ("worker", worker)]:
        assert container_health(container) == "healthy", name
        assert not last_probe_output(container).startswith("unhealthy"), name
    assert "redis unavailable" in last_probe_output(on_80["webui"])
