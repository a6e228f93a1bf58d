"""The specs `deploy` writes, read back from a real swarm manager: a single-node swarm on
the Docker tier's daemon (`docker swarm init` on it, `swarm leave` afterwards). What the
daemon returns (defaults filled in, fields added) must compare equal to what `deploy`
asked for, or a second `deploy` would update every service; and an update built with
`updated_spec` must read back as asked, keeping what was set by hand. Services run no
task (0 replicas): only the specs are compared."""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from dockercoins.names import PROMETHEUS, SWARM_SERVICES
from dockercoins.swarm import operations, prometheus_service
from dockercoins.swarm.configs import ensure_config
from dockercoins.swarm.specs import (
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

from tests.support.docker import DockerSession
from tests.support.servers import free_port

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
        for config in manager.api.configs(filters={"label": "dockercoins.managed"}):
            with contextlib.suppress(docker.errors.APIError):
                manager.api.remove_config(config["ID"])
        with contextlib.suppress(docker.errors.APIError):
            manager.api.remove_network(network["Id"])


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
    desired: dict[str, Spec] = {}
    for name in SWARM_SERVICES:
        overrides = {"ACCESS_LOG": "1"} if name == "rng" else None
        env = service_env(name, overrides)
        desired[name] = no_tasks(service_spec(name, images, modes, network_id, env=env))
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
