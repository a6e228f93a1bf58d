"""The offline prometheus image: made without Docker Hub, runs as its non-root user, takes
the scrape config deploy mounts over its own, keeps its data in the /prometheus volume and
becomes healthy (its HEALTHCHECK: an instant query with promtool)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from typing import Any

import httpx
from dockercoins.images import base as baseimage
from dockercoins.images import kinds
from dockercoins.swarm import prometheus_service

from tests.support.docker import DockerSession, container_health, pid1_uid
from tests.support.servers import free_port, wait_for


def _config_archive(text: str) -> bytes:
    """A tar holding prometheus.yml (root-owned, read-only), for put_archive."""
    data = text.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("prometheus.yml")
        info.size = len(data)
        info.mode = 0o444
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_prometheus_image_config(docker_session: DockerSession, prometheus_image: str) -> None:
    attrs = docker_session.client.api.inspect_image(prometheus_image)
    config = attrs["Config"]
    assert prometheus_image == baseimage.PROMETHEUS_IMAGE_TAG
    assert config["Labels"][baseimage.HASH_LABEL] == baseimage.image_key("prometheus")
    assert config["User"] == "prometheus"
    assert config["Cmd"] == list(kinds.PROMETHEUS_COMMAND)
    assert "--config.file=/etc/prometheus/prometheus.yml" in config["Cmd"]
    assert "--storage.tsdb.path=/prometheus" in config["Cmd"]
    assert "/prometheus" in config["Volumes"]
    assert "9090/tcp" in config["ExposedPorts"]
    assert config["Healthcheck"]["Test"] == ["CMD", *kinds.PROMETHEUS_HEALTH_COMMAND]
    assert config["Entrypoint"] == ["/usr/bin/setpriv", "--no-new-privs", "--"]


def test_prometheus_runs_non_root_with_the_deploy_config_and_gets_healthy(
    docker_session: DockerSession, prometheus_image: str, make_network: Callable[[], Any]
) -> None:
    client = docker_session.client
    network = make_network()
    port = free_port()
    text = prometheus_service.config_text()
    container = client.containers.create(
        prometheus_image,
        name=f"{network.name}-prometheus",
        network=network.name,
        ports={"9090/tcp": ("127.0.0.1", port)},
        labels=docker_session.labels,
        security_opt=["no-new-privileges=false"],  # not the daemon's no_new_privs: the image's
    )
    # the config deploy mounts (tasks.<service> names: nothing resolves here, which is fine)
    assert container.put_archive("/etc/prometheus", _config_archive(text))
    container.start()
    try:
        wait_for(lambda: container_health(container) == "healthy", timeout=90, interval=1)
        uid = pid1_uid(container)
        assert uid != 0, "prometheus runs as root"
        expected = container.exec_run(["id", "-u", "prometheus"]).output.decode().strip()
        assert uid == int(expected)
        status = container.exec_run(["cat", "/proc/1/status"]).output.decode()
        assert "\nNoNewPrivs:\t1\n" in status  # the image's own default
        assert container.exec_run(["test", "-w", "/prometheus"]).exit_code == 0
        assert container.exec_run(["test", "-d", "/prometheus/wal"]).exit_code == 0

        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/-/ready", timeout=5).status_code == 200
        loaded = httpx.get(f"{base}/api/v1/status/config", timeout=5).json()["data"]["yaml"]
        for job in prometheus_service.SCRAPE_JOBS:
            assert f"job_name: {job.service}" in loaded
            assert f"tasks.{job.service}" in loaded
        assert "scrape_interval: 5s" in loaded
        flags = httpx.get(f"{base}/api/v1/status/flags", timeout=5).json()["data"]
        assert flags["storage.tsdb.retention.time"] == kinds.PROMETHEUS_RETENTION
        # the page's assets are there (Debian's classic UI)
        assert httpx.get(f"{base}/classic/graph", timeout=5).status_code == 200
    except BaseException:
        print(f"--- prometheus logs ---\n{container.logs(tail=40).decode(errors='replace')}")
        container.reload()
        print(f"--- health ---\n{container.attrs['State'].get('Health')}")
        raise
