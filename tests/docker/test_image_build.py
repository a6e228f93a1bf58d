"""The four images built from the offline base: named like the tutorial, non-root,
small, and the base and redis images made without Docker Hub."""

from __future__ import annotations

from dockercoins.images import base as baseimage
from dockercoins.images import build as images
from dockercoins.images import kinds
from dockercoins.names import IMAGES

from tests.support.docker import DockerSession


def test_four_images_are_built_from_the_offline_base(
    docker_session: DockerSession, built_images: dict[str, images.BuiltImage]
) -> None:
    client = docker_session.client
    base = client.api.inspect_image(baseimage.BASE_IMAGE_TAG)
    assert base["Config"]["Labels"][baseimage.HASH_LABEL] == baseimage.image_key("python")
    assert sorted(built_images) == sorted(IMAGES)
    for service, built in built_images.items():
        attrs = client.api.inspect_image(built.ref)
        assert built.ref == f"{docker_session.registry}/dctest/{service}:{docker_session.tag}"
        assert attrs["Id"] == built.image_id
        config = attrs["Config"]
        assert config["User"] == "10001"
        assert config["Cmd"] == ["/opt/venv/bin/python", f"{service}.py"]
        # no_new_privs by the image's own default, whatever the daemon's options
        assert config["Entrypoint"] == ["/usr/bin/setpriv", "--no-new-privs", "--"]
        assert config["Healthcheck"]["Test"][0] == "CMD"
        assert "PYTHONUNBUFFERED=1" in config["Env"]
        # the image grows from the offline base: its layers come first
        assert (
            attrs["RootFS"]["Layers"][: len(base["RootFS"]["Layers"])] == base["RootFS"]["Layers"]
        )
        assert built.size > base["Size"]


def test_images_hold_no_pip_and_no_wheels(
    docker_session: DockerSession, built_images: dict[str, images.BuiltImage]
) -> None:
    script = (
        "import importlib.util, os, sys; print(os.getuid()); "
        "sys.exit(1 if importlib.util.find_spec('pip') or os.path.exists('/app/wheels') "
        "or os.path.exists('/opt/venv/bin/pip') else 0)"
    )
    for built in built_images.values():
        output = docker_session.client.containers.run(
            built.ref,
            ["/opt/venv/bin/python", "-c", script],
            remove=True,
            network_mode="none",
            labels=docker_session.labels,
        )
        assert output.decode().strip() == "10001"


def test_the_services_run_with_no_new_privs(
    docker_session: DockerSession, built_images: dict[str, images.BuiltImage]
) -> None:
    for built in built_images.values():
        output = docker_session.client.containers.run(
            built.ref,
            ["/opt/venv/bin/python", "-c", "print(open('/proc/1/status').read())"],
            remove=True,
            network_mode="none",
            security_opt=["no-new-privileges=false"],  # not the daemon's: the image's own
            labels=docker_session.labels,
        )
        assert "\nNoNewPrivs:\t1\n" in output.decode(), built.ref


def test_redis_image_is_made_locally_and_runs_as_non_root(
    docker_session: DockerSession, built_images: dict[str, images.BuiltImage]
) -> None:
    attrs = docker_session.client.api.inspect_image(baseimage.REDIS_IMAGE_TAG)
    assert attrs["Config"]["Labels"][baseimage.HASH_LABEL] == baseimage.image_key("redis")
    assert "6379/tcp" in attrs["Config"]["ExposedPorts"]
    assert attrs["Config"]["Healthcheck"]["Test"] == ["CMD", f"/usr/local/bin/{kinds.REDIS_PING}"]
    output = docker_session.client.containers.run(
        baseimage.REDIS_IMAGE_TAG,
        ["id", "-u"],
        remove=True,
        network_mode="none",
        labels=docker_session.labels,
    )
    assert output.decode().strip() not in ("", "0")


def test_a_second_import_is_skipped(docker_session: DockerSession) -> None:
    before = docker_session.client.api.inspect_image(baseimage.BASE_IMAGE_TAG)["Id"]
    baseimage.import_base_images(docker_session.client)
    assert docker_session.client.api.inspect_image(baseimage.BASE_IMAGE_TAG)["Id"] == before


def test_a_second_build_comes_from_the_cache(
    docker_session: DockerSession, built_images: dict[str, images.BuiltImage]
) -> None:
    again = images.build(
        docker_session.client,
        ["rng"],
        docker_session.registry,
        docker_session.namespace,
        docker_session.tag,
        base=images.BASE_OFFLINE,
    )
    assert again[0].image_id == built_images["rng"].image_id


MB = 1_000_000  # as `docker images` counts
BUDGET_OVER_BASE = 30 * MB  # docs/images.md: every service image within base + 30 MB


def test_each_image_is_within_its_base_plus_30_mb(
    docker_session: DockerSession, built_images: dict[str, images.BuiltImage]
) -> None:
    client = docker_session.client
    base = int(client.api.inspect_image(baseimage.BASE_IMAGE_TAG)["Size"])
    over = {
        service: int(client.api.inspect_image(built.ref)["Size"]) - base
        for service, built in built_images.items()
    }
    print({service: f"+{size / MB:.1f} MB" for service, size in over.items()})
    assert sorted(over) == sorted(IMAGES)
    assert {service: size for service, size in over.items() if size > BUDGET_OVER_BASE} == {}
