"""compose.yml at the top validates and comes up (Debian's docker-compose, or the
`docker compose` plugin), on the images the session built, with Prometheus scraping every
container and redis keeping an fsynced append-only file on its volume, then is torn down."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dockercoins.images import build as images

from tests.support.docker import DockerSession
from tests.support.servers import free_port, wait_for

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "compose.yml"


def _compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return [docker, "compose"]
    pytest.fail("neither docker-compose nor `docker compose` is installed (scripts/install.sh)")


@pytest.fixture
def compose(
    docker_session: DockerSession, tmp_path: Path
) -> Iterator[tuple[list[str], dict[str, str]]]:
    import os
    import secrets

    # the file secret redis_password, made as compose.yml's comment says
    password_file = tmp_path / "redis_password"
    password_file.write_text(secrets.token_urlsafe(32) + "\n")
    password_file.chmod(0o644)  # mounted as it is: the containers' users read it
    env = {
        "REDIS_PASSWORD_SECRET": str(password_file),
        **os.environ,
        "DOCKER_HOST": docker_session.docker_host,
        "REGISTRY": docker_session.registry,
        "USER_NAMESPACE": docker_session.namespace,
        "TAG": docker_session.tag,
        "PUBLISH_ADDR": "127.0.0.1",
        "RNG_PORT": str(free_port()),
        "HASHER_PORT": str(free_port()),
        "WEBUI_PORT": str(free_port()),
        "PROMETHEUS_PORT": str(free_port()),
        "COMPOSE_PROJECT_NAME": f"dctest{docker_session.session_id}",
    }
    command = [*_compose_command(), "-f", str(COMPOSE_FILE)]
    try:
        yield command, env
    finally:
        subprocess.run(
            [*command, "down", "--volumes", "--remove-orphans", "--timeout", "5"],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )


def test_compose_file_validates_and_comes_up(
    compose: tuple[list[str], dict[str, str]],
    built_images: dict[str, images.BuiltImage],
    docker_session: DockerSession,
) -> None:
    command, env = compose
    config = subprocess.run(
        [*command, "config"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert config.returncode == 0, config.stderr
    for name, built in built_images.items():
        assert f"image: {built.ref}" in config.stdout, name

    up = subprocess.run(
        [*command, "up", "--detach", "--no-build"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert up.returncode == 0, up.stderr

    web = f"http://127.0.0.1:{env['WEBUI_PORT']}"
    assert httpx.get(f"http://127.0.0.1:{env['RNG_PORT']}/", timeout=5).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{env['HASHER_PORT']}/", timeout=5).status_code == 200

    def hashes() -> int:
        return int(httpx.get(f"{web}/json", timeout=3).json()["hashes"])

    wait_for(lambda: hashes() > 0, timeout=60, interval=0.5)
    first = hashes()
    wait_for(lambda: hashes() > first, timeout=30, interval=0.5)

    project = env["COMPOSE_PROJECT_NAME"]
    containers = docker_session.client.containers.list(
        filters={"label": f"com.docker.compose.project={project}"}
    )
    assert len(containers) == 6  # the five and prometheus

    [redis] = [c for c in containers if c.labels.get("com.docker.compose.service") == "redis"]
    assert redis.attrs["HostConfig"]["ReadonlyRootfs"] is True
    assert redis.attrs["HostConfig"]["CapDrop"] == ["ALL"]
    assert redis.exec_run(["redis-cli", "GET", "hashes"]).output.startswith(b"NOAUTH")
    read_config = (
        'REDISCLI_AUTH="$(cat /run/secrets/redis_password)" redis-cli CONFIG GET "append*"'
    )
    config = redis.exec_run(["sh", "-c", read_config]).output.decode().split()
    assert dict(zip(config[::2], config[1::2], strict=True)) == {
        "appendonly": "yes",
        "appendfsync": "always",
        "appendfilename": "appendonly.aof",
        "appenddirname": "appendonlydir",
    }
    mounts = {mount["Destination"]: mount for mount in redis.attrs["Mounts"]}
    assert mounts["/var/lib/redis"]["Type"] == "volume"
    assert mounts["/var/lib/redis"]["Name"] == f"{project}_redis-data"

    prometheus = f"http://127.0.0.1:{env['PROMETHEUS_PORT']}"

    def targets_up() -> set[str]:
        answer = httpx.get(f"{prometheus}/api/v1/targets", timeout=3).json()
        active = answer["data"]["activeTargets"]
        return {target["labels"]["job"] for target in active if target["health"] == "up"}

    wait_for(lambda: targets_up() == {"rng", "hasher", "webui", "worker"}, timeout=60, interval=1)
