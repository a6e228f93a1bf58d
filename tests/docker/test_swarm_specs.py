"""The specs `deploy` writes, read back from a real swarm manager: a single-node swarm on
the Docker tier's daemon (`docker swarm init` on it, `swarm leave` afterwards). What the
daemon returns (defaults filled in, fields added) must compare equal to what `deploy`
asked for, or a second `deploy` would update every service; and an update built with
`updated_spec` must read back as asked, keeping what was set by hand. Services run no
task (0 replicas): only the specs are compared; but redis, which runs with its password
from a swarm secret, reached over the overlay."""

from __future__ import annotations

import contextlib
import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from dockercoins.images.base import REDIS_IMAGE_TAG
from dockercoins.names import PROMETHEUS, SWARM_SERVICES
from dockercoins.swarm import operations, prometheus_service, redis_secret
from dockercoins.swarm.configs import ensure_config
from dockercoins.swarm.specs import (
    REDIS_NODE_LABEL,
    REDIS_VOLUME,
    Images,
    Modes,
    Spec,
    replicas_of,
    replicated,
    service_env,
    service_spec,
    spec_changes,
    updated_spec,
)

from tests.support.docker import DockerSession, container_health, pid1_uid
from tests.support.servers import free_port, wait_for

NO_IPVS = Modes(endpoint="dnsrr", publish="host")
IPVS = Modes(endpoint="vip", publish="ingress")
PINNED = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def manager(docker_session: DockerSession) -> Iterator[Any]:
    """The tier's daemon as a swarm manager: a single-node swarm made here (and left, with
    the docker_gwbridge it made, afterwards), or the swarm a given daemon already manages."""
    client = docker_session.client
    swarm = client.info()["Swarm"]
    state = swarm.get("LocalNodeState")
    if state == "active" and swarm.get("ControlAvailable"):
        yield client  # DOCKERCOINS_TEST_DOCKER_HOST names a manager: used as it is
        return
    if state != "inactive":
        pytest.fail(
            f"the Docker tier's daemon ({docker_session.docker_host}) is in swarm state "
            f"{state!r} and not a manager: it cannot run the swarm spec tests"
        )
    networks_before = {network["Name"] for network in client.api.networks()}
    client.swarm.init(advertise_addr="127.0.0.1", listen_addr=f"127.0.0.1:{free_port()}")
    try:
        yield client
    finally:
        client.swarm.leave(force=True)
        if "docker_gwbridge" not in networks_before:
            import docker.errors

            with contextlib.suppress(docker.errors.APIError):
                client.api.remove_network("docker_gwbridge")


@pytest.fixture
def swarm(manager: Any, docker_session: DockerSession) -> Iterator[tuple[Any, str, list[str]]]:
    """(manager, an overlay network's id, names of services to remove after the test)."""
    network = manager.api.create_network(
        f"dctest-{uuid.uuid4().hex[:8]}",
        driver="overlay",
        attachable=True,
        labels=docker_session.labels,
    )
    made: list[str] = []
    try:
        yield manager, str(network["Id"]), made
    finally:
        import docker.errors

        for name in made:
            with contextlib.suppress(docker.errors.APIError):
                manager.api.remove_service(name)
        for name in made:  # a service's tasks hold its secret until they are gone
            wait_for(lambda name=name: tasks_gone(manager, name), timeout=60, interval=0.5)
        for config in manager.api.configs(filters={"label": "dockercoins.managed"}):
            with contextlib.suppress(docker.errors.APIError):
                manager.api.remove_config(config["ID"])
        redis_secret.remove_secrets(manager)
        with contextlib.suppress(docker.errors.APIError):
            manager.api.remove_network(network["Id"])


def tasks_gone(client: Any, service: str) -> bool:
    """No task of `service` left (the API answers 404 once the service is gone)."""
    import docker.errors

    try:
        return not client.api.tasks(filters={"service": service})
    except docker.errors.NotFound:
        return True


def read_back(client: Any, name: str) -> Spec:
    raw: Spec = client.api.inspect_service(name)
    return raw


def no_tasks(spec: Spec) -> Spec:
    """The spec with 0 replicas: the daemon keeps it, the test runs nothing."""
    return dict(copy.deepcopy(spec), Mode=replicated(0))


@pytest.mark.parametrize("modes", [NO_IPVS, IPVS], ids=["dnsrr-host", "vip-ingress"])
def test_what_deploy_creates_reads_back_without_changes(
    swarm: tuple[Any, str, list[str]], docker_session: DockerSession, modes: Modes
) -> None:
    client, network_id, made = swarm
    registry = docker_session.registry
    images = Images(
        registry, "dctest", "t1", {"rng": f"{registry}/dctest/rng:t1@{PINNED}"}
    )  # rng pinned to a digest, as deploy pins what the registry knows
    secret, _ = redis_secret.ensure_secret(client, None)
    desired: dict[str, Spec] = {}
    for name in SWARM_SERVICES:
        overrides = {"ACCESS_LOG": "1"} if name == "rng" else None
        env = service_env(name, overrides)
        spec = service_spec(name, images, modes, network_id, env=env, secret=secret)
        desired[name] = no_tasks(spec)
    text = prometheus_service.config_text()
    config, _ = ensure_config(client, prometheus_service.config_name(text), text)
    desired[PROMETHEUS] = no_tasks(prometheus_service.prometheus_spec(modes, network_id, config))

    for name, spec in desired.items():
        operations.create_service(client, spec)
        made.append(name)
    changes = {
        name: spec_changes(read_back(client, name)["Spec"], spec, with_scale=True)
        for name, spec in desired.items()
    }
    assert {name: found for name, found in changes.items() if found} == {}
    assert sorted(changes) == sorted([*SWARM_SERVICES, PROMETHEUS])
    webui = read_back(client, "webui")["Spec"]
    assert webui["EndpointSpec"]["Mode"] == modes.endpoint  # the daemon kept what was asked
    assert webui["EndpointSpec"]["Ports"][0]["PublishMode"] == modes.publish
    assert read_back(client, "rng")["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].endswith(
        f"@{PINNED}"
    )
    # locked down as the daemon keeps it: every spec read-only, every capability dropped
    for name in desired:
        back = read_back(client, name)["Spec"]["TaskTemplate"]
        container = back["ContainerSpec"]
        assert container["ReadOnly"] is True, name
        assert container["CapabilityDrop"] == ["ALL"], name
        assert back["Resources"]["Limits"]["MemoryBytes"] > 0, name
    # the password's secret: a file for redis, worker and webui, the password in no spec
    for name in ("redis", "worker", "webui"):
        [ref] = read_back(client, name)["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]
        assert (ref["SecretName"], ref["File"]["Name"], ref["File"]["Mode"]) == (
            secret.name,
            "redis_password",
            0o400,
        ), name
    assert "Data" not in client.api.inspect_secret(secret.id)["Spec"]  # never read back


def test_an_update_reads_back_as_asked_and_keeps_what_was_set_by_hand(
    swarm: tuple[Any, str, list[str]], docker_session: DockerSession
) -> None:
    client, network_id, made = swarm
    old = Images(docker_session.registry, "dctest", "t1")
    new = Images(docker_session.registry, "dctest", "t2")
    first = service_spec("rng", old, NO_IPVS, network_id, env=service_env("rng", {"A": "1"}))
    operations.create_service(client, no_tasks(first))
    made.append("rng")
    # set by hand, as `docker service update --label-add set.by=hand` would (deploy manages
    # the update and rollback policies: those it puts back)
    raw = read_back(client, "rng")
    by_hand = dict(raw["Spec"], Labels={**raw["Spec"]["Labels"], "set.by": "hand"})
    by_hand["UpdateConfig"] = {"Parallelism": 2, "FailureAction": "pause"}
    operations.update_service(client, raw, by_hand)

    desired = service_spec("rng", new, NO_IPVS, network_id, replicas=5, env=service_env("rng"))
    raw = read_back(client, "rng")
    assert spec_changes(raw["Spec"], desired, with_scale=False) == ["image", "env", "update policy"]
    operations.update_service(client, raw, updated_spec(raw["Spec"], desired, with_scale=False))

    back = read_back(client, "rng")["Spec"]
    assert spec_changes(back, desired, with_scale=False) == []
    assert replicas_of(back) == 0  # the scale is kept: not asked for
    assert "A=1" not in back["TaskTemplate"]["ContainerSpec"].get("Env", [])
    assert back["Labels"]["set.by"] == "hand"  # set by hand: kept
    assert back["UpdateConfig"]["FailureAction"] == "rollback"  # deploy's policy
    assert back["UpdateConfig"]["Order"] == "start-first"


def _set_node_label(client: Any, key: str, value: str | None) -> str | None:
    """Set (None: remove) a label on this swarm's node; its value before."""
    node = client.nodes.get(client.info()["Swarm"]["NodeID"])
    spec = dict(node.attrs["Spec"])
    labels = dict(spec.get("Labels") or {})
    before = labels.pop(key, None)
    if value is not None:
        labels[key] = value
    node.update({**spec, "Labels": labels})
    return None if before is None else str(before)


def _task_container(client: Any, service: str) -> Any:
    [container] = client.containers.list(
        filters={"label": f"com.docker.swarm.service.name={service}"}
    )
    return container


def _healthy_or_why(client: Any, service: str) -> bool:
    """True once the service's one container is healthy; else an AssertionError saying why
    (its tasks' states and errors, the container's last health check and log lines)."""
    tasks = [
        (task["Status"]["State"], task["Status"].get("Err", ""))
        for task in client.api.tasks(filters={"service": service})
    ]
    containers = client.containers.list(
        all=True, filters={"label": f"com.docker.swarm.service.name={service}"}
    )
    running = [container for container in containers if container.status == "running"]
    if not running:
        logs = [container.logs(tail=5).decode(errors="replace") for container in containers]
        raise AssertionError(f"no running container of {service}; tasks {tasks}; logs {logs}")
    [container] = running
    health = container_health(container)
    if health != "healthy":
        checks = container.attrs["State"].get("Health", {}).get("Log", [])[-1:]
        logs = container.logs(tail=5).decode(errors="replace")
        raise AssertionError(f"{service} is {health}: last check {checks}; log {logs!r}")
    return True


def test_redis_on_the_overlay_wants_the_password_from_its_secret(
    swarm: tuple[Any, str, list[str]],
    docker_session: DockerSession,
    built_images: dict[str, Any],
) -> None:
    """redis as `deploy` runs it (its password a swarm secret, the spec locked down): a
    container attached to the overlay without the password gets NOAUTH, a wrong one is
    refused, the password file in the task answers PONG; the task runs as redis's user with
    no_new_privs on a read-only root filesystem, and the password is in no inspect or log."""
    import docker.errors

    client, network_id, made = swarm
    network = client.api.inspect_network(network_id)["Name"]
    before = _set_node_label(client, REDIS_NODE_LABEL, "true")
    secret, _ = redis_secret.ensure_secret(client, None)
    spec = service_spec(
        "redis", Images("unused", "dctest", "t1"), NO_IPVS, network_id, secret=secret
    )
    operations.create_service(client, spec)
    made.append("redis")
    try:
        wait_for(lambda: _healthy_or_why(client, "redis"), 90, 0.5)
        task = _task_container(client, "redis")
        labels = docker_session.labels

        def from_overlay(script: str) -> str:
            out = client.containers.run(
                REDIS_IMAGE_TAG,
                ["sh", "-c", f"{script} 2>&1"],  # redis-cli says a refused AUTH on stderr
                network=network,
                remove=True,
                labels=labels,
            )
            return str(out.decode())

        assert "NOAUTH" in from_overlay("redis-cli -h redis PING")
        assert "NOAUTH" in from_overlay("redis-cli -h redis GET hashes")
        wrong = from_overlay("REDISCLI_AUTH=not-the-password redis-cli -h redis PING")
        assert "PONG" not in wrong and "WRONGPASS" in wrong
        with_file = 'REDISCLI_AUTH="$(cat /run/secrets/redis_password)" redis-cli PING'
        assert task.exec_run(["sh", "-c", with_file]).output.strip() == b"PONG"

        password = task.exec_run(["cat", "/run/secrets/redis_password"]).output.decode()
        assert len(password) == 43
        listing = task.exec_run(["stat", "-c", "%a %u", "/run/secrets/redis_password"]).output
        assert listing.decode().split() == ["400", "100"]
        status = task.exec_run(["cat", "/proc/1/status"]).output.decode()
        assert "\nNoNewPrivs:\t1\n" in status
        assert pid1_uid(task) == 100
        assert task.exec_run(["touch", "/written"]).exit_code != 0  # read-only root
        task.reload()
        inspected = [
            json.dumps(task.attrs),
            json.dumps(client.api.inspect_service("redis")),
            json.dumps(client.api.inspect_secret(secret.id)),
            task.logs().decode(),
        ]
        for text in inspected:
            assert password not in text
    finally:
        with contextlib.suppress(docker.errors.APIError):
            client.api.remove_service("redis")
        wait_for(lambda: tasks_gone(client, "redis"), 60, 0.5)
        wait_for(
            lambda: (
                not client.containers.list(
                    all=True, filters={"label": "com.docker.swarm.service.name=redis"}
                )
            ),
            60,
            0.5,
        )
        with contextlib.suppress(docker.errors.APIError):
            client.api.remove_volume(REDIS_VOLUME)
        _set_node_label(client, REDIS_NODE_LABEL, before)
