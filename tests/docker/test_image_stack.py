"""The five containers on one user-defined network, as the tutorial runs them before
Swarm: every container non-root, the four services healthy, `hashes` rising in /json. Redis
runs as `deploy` runs it (its append-only file on a volume): restarted, it comes back with
the counter where it was, and mining goes on."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from docker.types import Mount
from dockercoins.images import base as baseimage
from dockercoins.images import build as images
from dockercoins.swarm.specs import REDIS_COMMAND, REDIS_DATA, REDIS_STOP_GRACE

from tests.support.docker import DockerSession, container_health, pid1_uid
from tests.support.servers import free_port, wait_for


def _run(
    session: DockerSession,
    network: Any,
    image: str,
    alias: str,
    ports: dict[str, tuple[str, int]] | None = None,
    **options: Any,
) -> Any:
    client = session.client
    return client.containers.run(
        image,
        detach=True,
        name=f"{network.name}-{alias}",
        network=network.name,
        networking_config={network.name: client.api.create_endpoint_config(aliases=[alias])},
        ports=ports or {},
        labels=session.labels,
        **options,
    )


def test_five_containers_mine_coins(
    docker_session: DockerSession,
    built_images: dict[str, images.BuiltImage],
    make_network: Callable[[], Any],
) -> None:
    network = make_network()
    web_port = free_port()
    containers = {
        "redis": _run(
            docker_session,
            network,
            baseimage.REDIS_IMAGE_TAG,
            "redis",
            command=list(REDIS_COMMAND),
            # an anonymous volume: filled from the image (owned by redis) like a new named
            # one, and removed with the container
            mounts=[Mount(target=REDIS_DATA, source=None, type="volume")],
        ),
        "rng": _run(docker_session, network, built_images["rng"].ref, "rng"),
        "hasher": _run(docker_session, network, built_images["hasher"].ref, "hasher"),
        "webui": _run(
            docker_session,
            network,
            built_images["webui"].ref,
            "webui",
            ports={"80/tcp": ("127.0.0.1", web_port)},
        ),
        "worker": _run(docker_session, network, built_images["worker"].ref, "worker"),
    }
    try:
        for name in ("rng", "hasher", "webui", "worker"):
            wait_for(lambda name=name: container_health(containers[name]) == "healthy", timeout=90)
        for name, container in containers.items():
            container.reload()
            assert container.status == "running", name
            assert pid1_uid(container) != 0, f"{name} runs as root"

        def hashes() -> int:
            answer = httpx.get(f"http://127.0.0.1:{web_port}/json", timeout=3)
            answer.raise_for_status()
            body = answer.json()
            assert set(body) == {"coins", "hashes", "now"}
            return int(body["hashes"])

        wait_for(lambda: hashes() > 0, timeout=60, interval=0.5)
        first = hashes()
        time.sleep(0.1)
        wait_for(lambda: hashes() > first, timeout=30, interval=0.5)

        # redis restarted (SIGTERM, then started again): the counter is where it was
        redis = containers["redis"]
        listed = redis.exec_run(["ls", f"{REDIS_DATA}/appendonlydir"]).output.decode()
        assert ".aof" in listed, listed
        before = hashes()
        redis.restart(timeout=REDIS_STOP_GRACE)
        readings: list[int] = []

        def risen_after_restart() -> bool:
            readings.append(hashes())
            return readings[-1] > before

        wait_for(risen_after_restart, timeout=60, interval=0.5)
        assert min(readings) >= before, readings  # never went backwards
    except BaseException:
        for name, container in containers.items():
            print(f"--- {name} logs ---\n{container.logs(tail=30).decode(errors='replace')}")
        raise
