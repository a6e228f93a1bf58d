"""Prometheus beside DockerCoins on a swarm: its scrape config, its spec, the env every task
gets, and `deploy`/`down` against an in-memory swarm (no daemon)."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from dockercoins.images.base import PROMETHEUS_IMAGE_TAG
from dockercoins.names import MANAGED_LABEL, NODE_ENV, SWARM_SERVICES, WORKER_METRICS_PORT
from dockercoins.swarm import operations
from dockercoins.swarm import prometheus_service as prom
from dockercoins.swarm.specs import (
    DEPLOY_ORDER,
    Images,
    Modes,
    service_env,
    service_spec,
    spec_changes,
    updated_spec,
)

REPO = Path(__file__).resolve().parents[2]
IMAGES = Images("10.9.0.1:5000", "dockercoins", "v1")
NO_IPVS = Modes(endpoint="dnsrr", publish="host")
IPVS = Modes(endpoint="vip", publish="ingress")
CONFIG = prom.ConfigRef("cfg1", "prometheus-0123456789ab")
NODE_TEMPLATE = "DOCKERCOINS_NODE={{.Node.Hostname}}"


# ---------------------------------------------------------------- the scrape config


def _jobs(text: str) -> dict[str, tuple[str, int]]:
    """job -> (DNS name, port), read from the config text."""
    found = re.findall(
        r"- job_name: (\w+)\n    metrics_path: /metrics\n    dns_sd_configs:\n"
        r"      - names: \['([\w.]+)'\]\n        type: A\n        port: (\d+)\n",
        text,
    )
    return {job: (name, int(port)) for job, name, port in found}


def test_config_scrapes_every_task_of_the_four_services_every_5_s() -> None:
    text = prom.config_text()
    assert "  scrape_interval: 5s\n" in text
    assert _jobs(text) == {
        "rng": ("tasks.rng", 80),
        "hasher": ("tasks.hasher", 80),
        "webui": ("tasks.webui", 80),
        "worker": ("tasks.worker", WORKER_METRICS_PORT),
    }
    assert WORKER_METRICS_PORT == 9100


def test_compose_config_uses_plain_service_names() -> None:
    assert _jobs(prom.config_text(prom.COMPOSE_PREFIX)) == {
        "rng": ("rng", 80),
        "hasher": ("hasher", 80),
        "webui": ("webui", 80),
        "worker": ("worker", 9100),
    }


@pytest.mark.parametrize(
    ("path", "prefix"),
    [
        ("deploy/prometheus/prometheus.swarm.yml", prom.SWARM_PREFIX),
        ("deploy/prometheus/prometheus.compose.yml", prom.COMPOSE_PREFIX),
    ],
)
def test_config_files_for_the_stack_and_compose_are_the_same_text(path: str, prefix: str) -> None:
    assert (REPO / path).read_text() == prom.config_text(prefix)


@pytest.mark.parametrize("prefix", [prom.SWARM_PREFIX, prom.COMPOSE_PREFIX])
def test_promtool_accepts_the_config(tmp_path: Path, prefix: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (scripts/install.sh installs prometheus)")
    config = tmp_path / "prometheus.yml"
    config.write_text(prom.config_text(prefix))
    checked = subprocess.run(
        [promtool, "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_config_name_follows_the_content() -> None:
    name = prom.config_name(prom.config_text())
    assert re.fullmatch(r"prometheus-[0-9a-f]{12}", name)
    assert prom.config_name(prom.config_text()) == name
    assert prom.config_name(prom.config_text() + "# changed\n") != name


# ---------------------------------------------------------------- env and spec


def test_every_service_gets_its_node_and_webui_the_prometheus_url() -> None:
    for name in DEPLOY_ORDER:
        env = service_env(name)
        assert env[NODE_ENV] == "{{.Node.Hostname}}", name
        assert ("PROMETHEUS_URL" in env) == (name == "webui"), name
    assert service_env("webui")["PROMETHEUS_URL"] == "http://prometheus:9090"
    assert service_env("webui", metrics=False) == {NODE_ENV: "{{.Node.Hostname}}"}
    # --env wins over what deploy sets
    assert service_env("webui", {"PROMETHEUS_URL": "http://p:1", "A": "1"}) == {
        NODE_ENV: "{{.Node.Hostname}}",
        "PROMETHEUS_URL": "http://p:1",
        "A": "1",
    }


def test_service_spec_carries_the_node_template() -> None:
    spec = service_spec("rng", IMAGES, NO_IPVS, "n", env=service_env("rng", {"ACCESS_LOG": "1"}))
    assert spec["TaskTemplate"]["ContainerSpec"]["Env"] == ["ACCESS_LOG=1", NODE_TEMPLATE]


def test_prometheus_spec_without_ipvs() -> None:
    assert prom.prometheus_spec(NO_IPVS, "net1", CONFIG) == {
        "Name": "prometheus",
        "Labels": {MANAGED_LABEL: "1"},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": "dockercoins/prometheus:bookworm",
                "Env": [NODE_TEMPLATE],
                "Configs": [
                    {
                        "File": {
                            "Name": "/etc/prometheus/prometheus.yml",
                            "UID": "0",
                            "GID": "0",
                            "Mode": 0o444,
                        },
                        "ConfigID": "cfg1",
                        "ConfigName": "prometheus-0123456789ab",
                    }
                ],
                "Mounts": [
                    {
                        "Type": "volume",
                        "Source": "dockercoins-prometheus",
                        "Target": "/prometheus",
                        "VolumeOptions": {"Labels": {MANAGED_LABEL: "1"}},
                    }
                ],
                "ReadOnly": True,  # the lock-down (specs.harden)
                "CapabilityDrop": ["ALL"],
            },
            "Networks": [{"Target": "net1"}],
            "Resources": {"Limits": {"MemoryBytes": 512 << 20, "NanoCPUs": 10**9}},
        },
        "Mode": {"Replicated": {"Replicas": 1}},
        "EndpointSpec": {
            "Mode": "dnsrr",
            "Ports": [
                {
                    "Protocol": "tcp",
                    "TargetPort": 9090,
                    "PublishedPort": 9090,
                    "PublishMode": "host",
                }
            ],
        },
        "UpdateConfig": {
            "Parallelism": 1,
            "Delay": 0,
            "FailureAction": "rollback",
            "Monitor": 30_000_000_000,
            "MaxFailureRatio": 0.0,
            "Order": "stop-first",
        },
        "RollbackConfig": {
            "Parallelism": 0,
            "Delay": 0,
            "FailureAction": "pause",
            "Monitor": 10_000_000_000,
            "MaxFailureRatio": 0.0,
            "Order": "stop-first",
        },
    }
    assert PROMETHEUS_IMAGE_TAG == "dockercoins/prometheus:bookworm"


def test_prometheus_spec_with_ipvs_is_published_like_webui() -> None:
    spec = prom.prometheus_spec(IPVS, "net1", CONFIG)
    webui = service_spec("webui", IMAGES, IPVS, "net1")
    assert spec["EndpointSpec"]["Mode"] == webui["EndpointSpec"]["Mode"] == "vip"
    assert spec["EndpointSpec"]["Ports"][0]["PublishMode"] == "ingress"
    assert spec["EndpointSpec"]["Ports"][0]["PublishedPort"] == 9090


def _as_read_back(spec: dict[str, Any]) -> dict[str, Any]:
    back = updated_spec(spec, spec, with_scale=True)
    back["TaskTemplate"]["ForceUpdate"] = 0
    for policy in ("UpdateConfig", "RollbackConfig"):  # zero Delay, Monitor... left out
        back[policy] = {key: value for key, value in spec[policy].items() if value}
    return back


def test_a_new_config_updates_prometheus() -> None:
    current = _as_read_back(prom.prometheus_spec(NO_IPVS, "n", CONFIG))
    same = prom.prometheus_spec(NO_IPVS, "n", CONFIG)
    assert spec_changes(current, same, with_scale=False) == []
    newer = prom.prometheus_spec(NO_IPVS, "n", prom.ConfigRef("cfg2", "prometheus-ba9876543210"))
    assert spec_changes(current, newer, with_scale=False) == ["configs"]
    updated = updated_spec(current, newer, with_scale=False)
    assert updated["TaskTemplate"]["ContainerSpec"]["Configs"][0]["ConfigID"] == "cfg2"
    assert updated["UpdateConfig"] == newer["UpdateConfig"]


def test_mounts_set_by_hand_on_the_five_are_kept() -> None:
    # hasher's own mount is the lock-down's tmpfs on /tmp; one set by hand stays beside it
    current = _as_read_back(service_spec("hasher", IMAGES, NO_IPVS, "n"))
    mount = {"Type": "volume", "Source": "hasher-scratch", "Target": "/scratch"}
    ours = current["TaskTemplate"]["ContainerSpec"]["Mounts"]
    current["TaskTemplate"]["ContainerSpec"]["Mounts"] = [mount, *ours]
    desired = service_spec("hasher", IMAGES, NO_IPVS, "n", env=service_env("hasher"))
    assert spec_changes(current, desired, with_scale=False) == ["env"]
    kept = updated_spec(current, desired, with_scale=False)
    assert kept["TaskTemplate"]["ContainerSpec"]["Mounts"] == [mount, *ours]
    # a service from before the lock-down (only the hand-set mount): the tmpfs is added
    current["TaskTemplate"]["ContainerSpec"]["Mounts"] = [mount]
    assert spec_changes(current, desired, with_scale=False) == ["env", "mounts"]
    added = updated_spec(current, desired, with_scale=False)
    assert added["TaskTemplate"]["ContainerSpec"]["Mounts"] == [mount, *ours]


# ---------------------------------------------------------------- deploy and down, in memory


class FakeAPI:
    """Just enough of the Engine API for deploy/down: services run at once, one node."""

    def __init__(self) -> None:
        self.services_by_id: dict[str, dict[str, Any]] = {}
        self.configs_by_id: dict[str, dict[str, Any]] = {}
        self.secrets_by_id: dict[str, dict[str, Any]] = {}
        self.network_list: list[dict[str, Any]] = []
        self.node_labels: dict[str, str] = {}
        self.secret_data: dict[str, str] = {}
        self.counter = 0

    def _id(self) -> str:
        self.counter += 1
        return f"id{self.counter}"

    def networks(self, names: list[str]) -> list[dict[str, Any]]:
        return [raw for raw in self.network_list if raw["Name"] in names]

    def create_network(self, name: str, **options: Any) -> dict[str, Any]:
        raw = {"Id": self._id(), "Name": name, "Driver": "overlay", "Scope": "swarm"}
        self.network_list.append(raw)
        return {"Id": raw["Id"]}

    def remove_network(self, network_id: str) -> None:
        self.network_list = [raw for raw in self.network_list if raw["Id"] != network_id]

    def services(self) -> list[dict[str, Any]]:
        return copy.deepcopy(list(self.services_by_id.values()))

    def create_service(self, task_template: Any, name: str, **options: Any) -> None:
        spec = {
            "Name": name,
            "Labels": options["labels"],
            "TaskTemplate": copy.deepcopy(task_template),
            "Mode": options["mode"],
            "EndpointSpec": options["endpoint_spec"],
            "UpdateConfig": options["update_config"],
            "RollbackConfig": options["rollback_config"],
        }
        service_id = self._id()
        self.services_by_id[service_id] = {"ID": service_id, "Version": {"Index": 1}, "Spec": spec}

    def update_service(
        self, service_id: str, version: int, task_template: Any, name: str, **options: Any
    ) -> None:
        raw = self.services_by_id[service_id]
        assert raw["Version"]["Index"] == version
        raw["Spec"] = {
            "Name": name,
            "Labels": options["labels"],
            "TaskTemplate": copy.deepcopy(task_template),
            "Mode": options["mode"],
            "EndpointSpec": options["endpoint_spec"],
            "UpdateConfig": options["update_config"],
            "RollbackConfig": options["rollback_config"],
        }
        raw["Version"]["Index"] += 1

    def remove_service(self, service_id: str) -> None:
        del self.services_by_id[service_id]

    def tasks(self) -> list[dict[str, Any]]:
        tasks = []
        for raw in self.services_by_id.values():
            replicas = raw["Spec"]["Mode"].get("Replicated", {}).get("Replicas", 1)
            tasks += [
                {
                    "ServiceID": raw["ID"],
                    "NodeID": "n1",
                    "DesiredState": "running",
                    "Status": {"State": "running", "Timestamp": "1"},
                    "Spec": copy.deepcopy(raw["Spec"]["TaskTemplate"]),
                }
            ] * replicas
        return tasks

    def nodes(self) -> list[dict[str, Any]]:
        return [self.inspect_node("n1")]

    def inspect_node(self, node_id: str) -> dict[str, Any]:
        assert node_id == "n1"
        spec = {"Availability": "active", "Role": "manager", "Labels": dict(self.node_labels)}
        return {
            "ID": "n1",
            "Version": {"Index": 1},
            "Description": {"Hostname": "node1"},
            "Status": {"State": "ready", "Addr": "10.9.0.2"},
            "Spec": spec,
        }

    def update_node(self, node_id: str, version: int, node_spec: dict[str, Any]) -> None:
        assert node_id == "n1"
        self.node_labels = dict(node_spec.get("Labels") or {})

    def info(self) -> dict[str, Any]:
        return {"Swarm": {"NodeID": "n1"}}

    def configs(self, filters: dict[str, str]) -> list[dict[str, Any]]:
        found = list(self.configs_by_id.values())
        if "name" in filters:
            found = [raw for raw in found if filters["name"] in raw["Spec"]["Name"]]
        if "label" in filters:
            found = [raw for raw in found if filters["label"] in raw["Spec"]["Labels"]]
        return copy.deepcopy(found)

    def create_config(self, name: str, data: bytes, labels: dict[str, str]) -> dict[str, str]:
        assert all(raw["Spec"]["Name"] != name for raw in self.configs_by_id.values())
        config_id = self._id()
        spec = {"Name": name, "Labels": labels, "Data": data.decode()}
        self.configs_by_id[config_id] = {"ID": config_id, "Spec": spec}
        return {"ID": config_id}

    def remove_config(self, config_id: str) -> None:
        import docker.errors

        for raw in self.services_by_id.values():
            for ref in raw["Spec"]["TaskTemplate"]["ContainerSpec"].get("Configs") or []:
                if ref["ConfigID"] == config_id:
                    raise docker.errors.APIError("config is in use")
        del self.configs_by_id[config_id]

    def secrets(self, filters: dict[str, str]) -> list[dict[str, Any]]:
        found = list(self.secrets_by_id.values())
        if "label" in filters:
            found = [raw for raw in found if filters["label"] in raw["Spec"]["Labels"]]
        return copy.deepcopy(found)

    def create_secret(self, name: str, data: bytes, labels: dict[str, str]) -> dict[str, str]:
        assert all(raw["Spec"]["Name"] != name for raw in self.secrets_by_id.values())
        secret_id = self._id()
        spec = {"Name": name, "Labels": labels}  # the daemon never answers with the data
        self.secrets_by_id[secret_id] = {"ID": secret_id, "Spec": spec, "CreatedAt": secret_id}
        self.secret_data[name] = data.decode()
        return {"ID": secret_id}

    def remove_secret(self, secret_id: str) -> None:
        import docker.errors

        for raw in self.services_by_id.values():
            for ref in raw["Spec"]["TaskTemplate"]["ContainerSpec"].get("Secrets") or []:
                if ref["SecretID"] == secret_id:
                    raise docker.errors.APIError("secret is in use")
        del self.secrets_by_id[secret_id]

    # read back
    def secret_names(self) -> list[str]:
        return sorted(raw["Spec"]["Name"] for raw in self.secrets_by_id.values())

    def spec(self, name: str) -> dict[str, Any]:
        return next(
            raw["Spec"] for raw in self.services_by_id.values() if raw["Spec"]["Name"] == name
        )

    def config_names(self) -> list[str]:
        return sorted(raw["Spec"]["Name"] for raw in self.configs_by_id.values())


def _fake_client() -> Any:
    registry = SimpleNamespace(get_registry_data=lambda ref: SimpleNamespace(id="sha256:ab"))
    return SimpleNamespace(api=FakeAPI(), images=registry)


def _deploy(client: Any, metrics: bool = True) -> None:
    operations.deploy(client, IMAGES, NO_IPVS, workers=None, env={}, timeout=5.0, metrics=metrics)


def _env(api: FakeAPI, name: str) -> list[str]:
    return list(api.spec(name)["TaskTemplate"]["ContainerSpec"].get("Env") or [])


def test_deploy_adds_prometheus_and_its_config(capsys: pytest.CaptureFixture[str]) -> None:
    client = _fake_client()
    _deploy(client)
    api = client.api
    assert sorted(raw["Spec"]["Name"] for raw in api.services()) == sorted(DEPLOY_ORDER)
    name = prom.config_name(prom.config_text())
    assert api.config_names() == [name]
    assert api.configs({"name": name})[0]["Spec"]["Data"] == prom.config_text()
    configs = api.spec("prometheus")["TaskTemplate"]["ContainerSpec"]["Configs"]
    assert [ref["ConfigName"] for ref in configs] == [name]
    for service in DEPLOY_ORDER:
        assert NODE_TEMPLATE in _env(api, service), service
    assert "PROMETHEUS_URL=http://prometheus:9090" in _env(api, "webui")
    err = capsys.readouterr().err
    assert f"config {name}: created" in err
    assert "prometheus 1/1" in err

    _deploy(client)  # again: nothing changes
    err = capsys.readouterr().err
    assert err.count(": unchanged") == len(DEPLOY_ORDER)
    assert "created" not in err


def test_a_changed_config_is_a_new_config_and_the_old_one_goes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _fake_client()
    _deploy(client)
    old = prom.config_name(prom.config_text())
    changed = prom.config_text() + "# scrape something else\n"
    monkeypatch.setattr(prom, "config_text", lambda prefix=prom.SWARM_PREFIX: changed)
    capsys.readouterr()
    _deploy(client)
    new = prom.config_name(changed)
    assert client.api.config_names() == [new]
    err = capsys.readouterr().err
    assert "prometheus: updated (configs)" in err
    assert f"config {old}: removed" in err
    assert err.count(": unchanged") == len(SWARM_SERVICES)


def test_no_metrics_removes_prometheus_and_its_config(capsys: pytest.CaptureFixture[str]) -> None:
    client = _fake_client()
    _deploy(client)
    capsys.readouterr()
    _deploy(client, metrics=False)
    api = client.api
    assert sorted(raw["Spec"]["Name"] for raw in api.services()) == sorted(SWARM_SERVICES)
    assert api.config_names() == []
    assert _env(api, "webui") == [NODE_TEMPLATE, "REDIS_PASSWORD_FILE=/run/secrets/redis_password"]
    err = capsys.readouterr().err
    assert "prometheus: removed (--no-metrics)" in err
    assert "webui: updated (env)" in err

    _deploy(client, metrics=False)  # without metrics from the start: no prometheus at all
    assert "prometheus" not in capsys.readouterr().err


def test_down_removes_prometheus_and_its_configs(capsys: pytest.CaptureFixture[str]) -> None:
    client = _fake_client()
    _deploy(client)
    capsys.readouterr()
    operations.down(client, timeout=5.0)
    assert client.api.services() == []
    assert client.api.config_names() == []
    assert client.api.secret_names() == []
    assert client.api.network_list == []
    err = capsys.readouterr().err
    assert "prometheus: removed" in err
    assert "volume dockercoins-prometheus: kept" in err


def test_deploy_and_down_help_speak_of_prometheus(capsys: pytest.CaptureFixture[str]) -> None:
    from dockercoins import cli

    for command in (["deploy"], ["down"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([*command, "--help"])
        assert exit_info.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "--no-metrics" in shown
    assert "prometheus" in shown
    assert "data volume stays" in shown


def test_deploy_makes_redis_password_secret_once_and_down_removes_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = _fake_client()
    _deploy(client)
    api = client.api
    [name] = api.secret_names()
    password = api.secret_data[name]
    for service in ("redis", "worker", "webui"):
        refs = api.spec(service)["TaskTemplate"]["ContainerSpec"]["Secrets"]
        assert [ref["SecretName"] for ref in refs] == [name], service
        assert "REDIS_PASSWORD_FILE=/run/secrets/redis_password" in _env(api, service)
    for service in DEPLOY_ORDER:  # in no spec, no env, no output
        assert password not in json.dumps(api.spec(service)), service
    err = capsys.readouterr().err
    assert f"secret {name}: created" in err
    assert password not in err

    _deploy(client)  # a redeploy keeps it: the services are left alone
    assert api.secret_names() == [name]
    err = capsys.readouterr().err
    assert err.count(": unchanged") == len(DEPLOY_ORDER)
    assert f"secret {name}: kept" in err

    operations.down(client, timeout=5.0)
    assert api.secret_names() == []
    assert f"secret {name}: removed" in capsys.readouterr().err

    _deploy(client)  # after down: a new password, a new secret
    [again] = api.secret_names()
    assert again != name and api.secret_data[again] != password
