"""Push to a real registry (Debian's docker-registry on a free loopback port), pull back,
compare digests; a push to a stopped registry fails with one clear line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockercoins.images import build as images
from dockercoins.images import registry
from dockercoins.names import IMAGES

from tests.support.docker import DockerSession
from tests.support.servers import free_port


@pytest.fixture
def test_registry(docker_session: DockerSession, tmp_path: Path) -> Iterator[str]:
    """The registry on the address the session's images are named for."""
    data = tmp_path / "registry"
    registry.up(docker_session.registry, data)
    try:
        yield docker_session.registry
    finally:
        registry.down(data)


def test_push_then_pull_gives_the_same_digests(
    docker_session: DockerSession,
    built_images: dict[str, images.BuiltImage],
    test_registry: str,
) -> None:
    client = docker_session.client
    pushed = images.push(
        client, list(IMAGES), test_registry, docker_session.namespace, docker_session.tag
    )
    assert [image.service for image in pushed] == list(IMAGES)
    for image in pushed:
        assert image.digest.startswith("sha256:")
        client.images.remove(image.ref)
        assert not client.images.list(name=image.ref)
    for image in pushed:
        repository, tag = image.ref.rsplit(":", 1)
        for item in client.api.pull(repository, tag=tag, stream=True, decode=True):
            assert "error" not in item, item
        attrs = client.api.inspect_image(image.ref)
        assert f"{repository}@{image.digest}" in attrs["RepoDigests"]
        assert attrs["Id"] == built_images[image.service].image_id


def test_push_to_a_stopped_registry_fails_with_one_line(
    docker_session: DockerSession,
    built_images: dict[str, images.BuiltImage],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    address = f"127.0.0.1:{free_port()}"
    registry.up(address, tmp_path / "gone")
    assert registry.down(tmp_path / "gone")
    ref = f"{address}/{docker_session.namespace}/rng:{docker_session.tag}"
    docker_session.extra_refs.append(ref)
    docker_session.client.api.tag(
        built_images["rng"].image_id, ref.rsplit(":", 1)[0], docker_session.tag
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dockercoins",
            "push",
            "rng",
            "--registry",
            address,
            "--namespace",
            docker_session.namespace,
            "--tag",
            docker_session.tag,
        ],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("dockercoins: error:")]
    assert len(errors) == 1, done.stderr
    assert f"pushing {ref} failed" in errors[0]
    assert "pushed in" not in done.stdout
