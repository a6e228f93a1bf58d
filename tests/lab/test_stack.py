"""deploy/dockercoins.yml with the real `docker stack deploy` on the lab: the five services,
rng global, ten workers, redis on the labelled node with its data on a volume, hashes rising
through http://localhost:8000, then `stack rm`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from dockercoins.dockerapi import connect
from dockercoins.lab.state import LabState
from dockercoins.paths import REPO_ROOT
from dockercoins.swarm.specs import REDIS_NODE_LABEL

from tests.support.servers import wait_for

pytestmark = pytest.mark.lab

STACK = "dockercoins"
STACK_FILE = REPO_ROOT / "deploy" / "dockercoins.yml"
SECRET = "redis_password"  # the stack file's external secret


def docker_cli(lab: LabState, *args: str, timeout: float = 180) -> str:
    binary = shutil.which("docker")
    assert binary, "the docker CLI is not installed"
    env = {**os.environ, "DOCKER_HOST": lab.manager.docker_host, "REGISTRY": lab.registry}
    proc = subprocess.run(
        [binary, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    sys.stderr.write(f"$ docker {' '.join(args)} -> {proc.returncode}\n{proc.stderr}")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def stack(lab: LabState) -> Iterator[Any]:
    env = {**os.environ, "DOCKER_HOST": lab.manager.docker_host, "REGISTRY": lab.registry}
    subprocess.run([sys.executable, "-m", "dockercoins", "down"], env=env, check=False, timeout=180)
    subprocess.run([sys.executable, "-m", "dockercoins", "ship"], env=env, check=True, timeout=900)
    client = connect(lab.manager.docker_host, timeout=60)
    # the stack's redis runs on the node labelled dockercoins.redis=true: `dockercoins
    # deploy` labels one, else the manager is labelled here (and unlabelled afterwards)
    labelled = set_redis_label(client) if not redis_label_nodes(client) else None
    # the stack's external secret, made with the command the file's comment gives
    made = False
    if not [s for s in client.secrets.list(filters={"name": SECRET}) if s.name == SECRET]:
        subprocess.run(["bash", "-c", secret_command()], env=env, check=True, timeout=60)
        made = True
    try:
        yield client
    finally:
        subprocess.run(["docker", "stack", "rm", STACK], env=env, check=False, timeout=120)
        wait_for(lambda: not stack_tasks(client), timeout=120, interval=1.0)
        wait_for(lambda: not stack_networks(client), timeout=60, interval=1.0)
        if labelled is not None:
            set_redis_label(client, labelled, present=False)
        if made:
            subprocess.run(["docker", "secret", "rm", SECRET], env=env, check=False, timeout=60)
        client.close()


def secret_command() -> str:
    """The stack file's command that makes its external secret (in its comment)."""
    [line] = [
        line.removeprefix("#").strip()
        for line in STACK_FILE.read_text().splitlines()
        if line.startswith("#") and f"docker secret create {SECRET} -" in line
    ]
    return line


def redis_label_nodes(client: Any) -> list[Any]:
    return [
        node
        for node in client.nodes.list()
        if (node.attrs["Spec"].get("Labels") or {}).get(REDIS_NODE_LABEL) == "true"
    ]


def set_redis_label(client: Any, node_id: str | None = None, present: bool = True) -> str:
    """Set (or remove) the redis label on a node, the manager by default; its ID."""
    node = client.nodes.get(node_id or client.info()["Swarm"]["NodeID"])
    spec = dict(node.attrs["Spec"])
    labels = {k: v for k, v in (spec.get("Labels") or {}).items() if k != REDIS_NODE_LABEL}
    if present:
        labels[REDIS_NODE_LABEL] = "true"
    spec["Labels"] = labels
    node.update(spec)
    return str(node.id)


def stack_tasks(client: Any) -> list[Any]:
    return list(client.api.tasks(filters={"label": f"com.docker.stack.namespace={STACK}"}))


def stack_networks(client: Any) -> list[Any]:
    return list(client.networks.list(filters={"label": f"com.docker.stack.namespace={STACK}"}))


def running(client: Any, service: str) -> list[dict[str, Any]]:
    return [
        task
        for task in client.api.tasks(filters={"service": service, "desired-state": "running"})
        if task["Status"]["State"] == "running"
    ]


def test_stack_file_runs_dockercoins(lab: LabState, stack: Any) -> None:
    # as the file's comment says: the nodes pull with the session's stored login
    docker_cli(lab, "stack", "deploy", "--with-registry-auth", "-c", str(STACK_FILE), STACK)
    names = {service.name for service in stack.services.list()}
    assert {f"{STACK}_{name}" for name in ("redis", "hasher", "rng", "webui", "worker")} <= names

    nodes = len(lab.nodes)
    wait_for(lambda: len(running(stack, f"{STACK}_rng")) == nodes, timeout=240, interval=1.0)
    wait_for(lambda: len(running(stack, f"{STACK}_worker")) == 10, timeout=240, interval=1.0)
    assert len({task["NodeID"] for task in running(stack, f"{STACK}_rng")}) == nodes

    # hashes rise: the workers found rng, hasher and redis by their short names
    samples: list[int] = []

    def risen() -> bool:
        answer = httpx.get("http://localhost:8000/json", timeout=2).json()
        samples.append(int(answer["hashes"]))
        return len(samples) > 1 and samples[-1] > samples[0]

    wait_for(risen, timeout=180, interval=1.0)

    # redis as `deploy` runs it: on the labelled node, its append-only file on a volume
    [redis] = running(stack, f"{STACK}_redis")
    assert redis["NodeID"] in {node.id for node in redis_label_nodes(stack)}
    container = redis["Spec"]["ContainerSpec"]
    assert "--appendonly" in container["Args"]
    assert [mount["Target"] for mount in container["Mounts"]] == ["/var/lib/redis"]
    assert [secret["SecretName"] for secret in container["Secrets"]] == [SECRET]
    assert container["Secrets"][0]["File"]["Mode"] == 0o400
    # the password is in no spec or environment: only the file's path
    assert "REDIS_PASSWORD_FILE=/run/secrets/redis_password" in container["Env"]
    assert (container["ReadOnly"], container["CapabilityDrop"]) == (True, ["ALL"])

    docker_cli(lab, "stack", "rm", STACK)
    wait_for(lambda: not stack_tasks(stack), timeout=120, interval=1.0)
    assert not [s for s in stack.services.list() if s.name.startswith(f"{STACK}_")]
