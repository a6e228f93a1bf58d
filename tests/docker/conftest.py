"""Docker tier fixtures: a dockerd of the suite's own (unless DOCKERCOINS_TEST_DOCKER_HOST
names one to use), the four images built once from the offline base, the offline
prometheus image, and cleanup of every container, network, image and daemon the suite
made, even when a test fails."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dockercoins.host import dockerd
from dockercoins.images import base as baseimage
from dockercoins.images import build as images
from dockercoins.names import IMAGES

from tests.support.docker import TEST_LABEL, DockerSession
from tests.support.servers import free_port


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.docker)


def _cleanup(session: DockerSession) -> None:
    import docker.errors

    client = session.client
    label = f"{TEST_LABEL}={session.session_id}"
    for container in client.containers.list(all=True, filters={"label": label}):
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True, v=True)
    for network in client.networks.list(filters={"label": label}):
        with contextlib.suppress(docker.errors.APIError):
            network.remove()
    for ref in [*(session.ref(name) for name in IMAGES), *session.extra_refs]:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(ref, force=True)


@pytest.fixture(scope="session")
def docker_session() -> Iterator[DockerSession]:
    """A reachable daemon: ours (own data root, socket, pidfile; stopped and deleted
    afterwards) unless DOCKERCOINS_TEST_DOCKER_HOST names an existing one to use."""
    from docker.client import DockerClient

    given = os.environ.get("DOCKERCOINS_TEST_DOCKER_HOST")
    daemon = None if given else dockerd.temporary(prefix="dctest-")
    try:
        if daemon is not None:
            dockerd.start(daemon)
        docker_host = given or (daemon.docker_host if daemon else "")
        client = DockerClient(base_url=docker_host, timeout=300)
        session_id = uuid.uuid4().hex[:10]
        session = DockerSession(
            docker_host=docker_host,
            client=client,
            session_id=session_id,
            namespace="dctest",
            tag=f"t{session_id}",
            registry=f"127.0.0.1:{free_port()}",
            own_daemon=daemon is not None,
        )
        try:
            yield session
        finally:
            _cleanup(session)
            client.close()
    finally:
        if daemon is not None:
            dockerd.discard(daemon)


@pytest.fixture(scope="session")
def built_images(docker_session: DockerSession) -> dict[str, images.BuiltImage]:
    """The four images, built once per session from the offline base (+ redis:latest)."""
    built = images.build(
        docker_session.client,
        list(IMAGES),
        docker_session.registry,
        docker_session.namespace,
        docker_session.tag,
        base=images.BASE_OFFLINE,
    )
    return {image.service: image for image in built}


@pytest.fixture(scope="session")
def prometheus_image(docker_session: DockerSession) -> str:
    """The offline prometheus image on the daemon (imported once; kept, like redis)."""
    return baseimage.import_base_image(docker_session.client, "prometheus")


@pytest.fixture
def make_network(docker_session: DockerSession) -> Iterator[Callable[[], Any]]:
    """Factory for labelled user-defined networks; they and their containers go after the
    test."""
    made: list[Any] = []

    def make() -> Any:
        network = docker_session.client.networks.create(
            f"dctest-{uuid.uuid4().hex[:8]}", driver="bridge", labels=docker_session.labels
        )
        made.append(network)
        return network

    try:
        yield make
    finally:
        import docker.errors

        for network in made:
            network.reload()
            for container in network.containers:
                with contextlib.suppress(docker.errors.APIError):
                    container.remove(force=True, v=True)
            with contextlib.suppress(docker.errors.APIError):
                network.remove()


@pytest.fixture
def cli_env(docker_session: DockerSession) -> dict[str, str]:
    """Environment for running the real `dockercoins` CLI against the test daemon."""
    return {**os.environ, "DOCKER_HOST": docker_session.docker_host}
