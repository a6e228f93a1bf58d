"""Swarm specs (redis durable and pinned to its labelled node), modes, replica parsing,
IP_VS detection, redis's node, and status output: pure functions and fakes, no daemon."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from dockercoins.errors import UserError
from dockercoins.names import SWARM_SERVICES
from dockercoins.swarm import placement, prometheus, specs
from dockercoins.swarm import status as swarm_status
from dockercoins.swarm.converge import Progress, describe_stuck, progress
from dockercoins.swarm.ipvs import ipvs_available
from dockercoins.swarm.prometheus import InstanceRate
from dockercoins.swarm.rates import Sample, hash_rate
from dockercoins.swarm.read import Node
from dockercoins.swarm.redis_secret import SecretRef
from dockercoins.swarm.specs import (
    Images,
    Modes,
    mode_of,
    normal_image,
    parse_env_overrides,
    parse_scale_args,
    replicas_of,
    resolve_modes,
    service_spec,
    spec_changes,
    updated_spec,
    with_mode,
)
from dockercoins.swarm.status import instance_rate_lines, status_lines

REPO = Path(__file__).resolve().parents[2]
IMAGES = Images("10.9.0.1:5000", "dockercoins", "v1")
NO_IPVS = Modes(endpoint="dnsrr", publish="host")
IPVS = Modes(endpoint="vip", publish="ingress")


# ---------------------------------------------------------------- IP_VS


def test_ipvs_absent_without_proc_entry(tmp_path: Path) -> None:
    (tmp_path / "sys" / "net" / "ipv4").mkdir(parents=True)
    assert ipvs_available(tmp_path) is False


def test_ipvs_present_with_proc_entry(tmp_path: Path) -> None:
    (tmp_path / "sys" / "net" / "ipv4" / "vs").mkdir(parents=True)
    assert ipvs_available(tmp_path) is True


def test_auto_modes_follow_ipvs() -> None:
    assert resolve_modes("auto", "auto", ipvs=False) == NO_IPVS
    assert resolve_modes("auto", "auto", ipvs=True) == IPVS


def test_forced_modes_win_over_detection() -> None:
    assert resolve_modes("vip", "ingress", ipvs=False) == IPVS
    assert resolve_modes("dnsrr", "host", ipvs=True) == NO_IPVS
    assert resolve_modes("vip", "host", ipvs=False) == Modes("vip", "host")


def test_dnsrr_with_ingress_is_refused() -> None:
    with pytest.raises(UserError, match="needs --publish-mode host"):
        resolve_modes("dnsrr", "ingress", ipvs=True)
    with pytest.raises(UserError, match="needs --publish-mode host"):
        resolve_modes("auto", "ingress", ipvs=False)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(UserError, match="endpoint mode"):
        resolve_modes("round-robin", "auto", ipvs=True)


# ---------------------------------------------------------------- specs


def test_image_refs_and_redis() -> None:
    assert IMAGES.ref("rng") == "10.9.0.1:5000/dockercoins/rng:v1"
    assert IMAGES.ref("redis") == "redis"
    pinned = Images("r:5000", "ns", "latest", {"rng": "r:5000/ns/rng:latest@sha256:ab"})
    assert pinned.ref("rng") == "r:5000/ns/rng:latest@sha256:ab"
    assert pinned.ref("worker") == "r:5000/ns/worker:latest"


def test_webui_without_ipvs_is_dnsrr_and_host_published() -> None:
    spec = service_spec("webui", IMAGES, NO_IPVS, "net1")
    assert spec["Name"] == "webui"
    assert spec["EndpointSpec"] == {
        "Mode": "dnsrr",
        "Ports": [
            {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8000, "PublishMode": "host"}
        ],
    }
    assert spec["TaskTemplate"]["Networks"] == [{"Target": "net1"}]
    assert spec["TaskTemplate"]["ContainerSpec"]["Image"] == "10.9.0.1:5000/dockercoins/webui:v1"


def test_webui_with_ipvs_keeps_swarm_defaults() -> None:
    spec = service_spec("webui", IMAGES, IPVS, "net1")
    assert spec["EndpointSpec"]["Mode"] == "vip"
    assert spec["EndpointSpec"]["Ports"][0]["PublishMode"] == "ingress"


@pytest.mark.parametrize("name", ["redis", "hasher", "rng", "worker"])
def test_only_webui_publishes(name: str) -> None:
    for modes in (NO_IPVS, IPVS):
        spec = service_spec(name, IMAGES, modes, "net1")
        assert "Ports" not in spec["EndpointSpec"]
        assert spec["EndpointSpec"]["Mode"] == modes.endpoint


def test_worker_replicas_and_env() -> None:
    spec = service_spec(
        "worker", IMAGES, NO_IPVS, "n", replicas=10, env={"WORKER_DELAY": "0", "A": "1"}
    )
    assert replicas_of(spec) == 10
    assert mode_of(spec) == "replicated"
    assert spec["TaskTemplate"]["ContainerSpec"]["Env"] == ["A=1", "WORKER_DELAY=0"]


def test_unknown_service_spec_is_refused() -> None:
    with pytest.raises(UserError, match="unknown service"):
        service_spec("miner", IMAGES, NO_IPVS, "n")


def _as_read_back(spec: dict[str, Any]) -> dict[str, Any]:
    """What the daemon returns for a spec: defaults filled in, extra fields."""
    back = updated_spec(spec, spec, with_scale=True)
    back["TaskTemplate"]["ContainerSpec"]["Isolation"] = "default"
    back["TaskTemplate"]["ForceUpdate"] = 0
    back["TaskTemplate"]["Runtime"] = "container"
    for policy in ("UpdateConfig", "RollbackConfig"):  # zero Delay, Monitor... left out
        back[policy] = {key: value for key, value in spec[policy].items() if value}
    return back


def test_vip_default_is_missing_mode() -> None:
    spec = service_spec("hasher", IMAGES, IPVS, "n")
    back = _as_read_back(spec)
    back["EndpointSpec"] = {}  # the daemon may omit the default mode
    assert spec_changes(back, spec, with_scale=False) == []


def test_image_without_tag_means_latest() -> None:
    spec = service_spec("redis", IMAGES, NO_IPVS, "n")
    by_cli = _as_read_back(spec)
    by_cli["TaskTemplate"]["ContainerSpec"]["Image"] = "redis:latest"  # `docker service create`
    assert spec_changes(by_cli, spec, with_scale=False) == []
    by_cli["TaskTemplate"]["ContainerSpec"]["Image"] = "redis:7"
    assert spec_changes(by_cli, spec, with_scale=False) == ["image"]
    assert normal_image("10.9.0.1:5000/ns/rng") == "10.9.0.1:5000/ns/rng:latest"
    assert normal_image("10.9.0.1:5000/ns/rng@sha256:ab") == "10.9.0.1:5000/ns/rng@sha256:ab"


def test_changes_are_named() -> None:
    old = _as_read_back(service_spec("webui", IMAGES, IPVS, "n"))
    new = service_spec("webui", Images("r:5000", "ns", "v2"), NO_IPVS, "n")
    # host-mode publishing: webui is updated stop-first (the port is the node's)
    changes = ["image", "endpoint mode", "ports", "update policy", "rollback policy"]
    assert spec_changes(old, new, with_scale=False) == changes


def test_scale_is_kept_unless_asked() -> None:
    current = _as_read_back(service_spec("worker", IMAGES, NO_IPVS, "n", replicas=10))
    desired = service_spec("worker", IMAGES, NO_IPVS, "n", replicas=1)
    assert spec_changes(current, desired, with_scale=False) == []
    assert spec_changes(current, desired, with_scale=True) == ["replicas"]
    kept = updated_spec(current, desired, with_scale=False)
    assert replicas_of(kept) == 10
    assert kept["UpdateConfig"] == desired["UpdateConfig"]  # the policy is deploy's


def test_update_removes_env_no_longer_wanted() -> None:
    current = _as_read_back(service_spec("rng", IMAGES, NO_IPVS, "n", env={"ACCESS_LOG": "1"}))
    desired = service_spec("rng", IMAGES, NO_IPVS, "n")
    assert spec_changes(current, desired, with_scale=False) == ["env"]
    assert "Env" not in updated_spec(current, desired, False)["TaskTemplate"]["ContainerSpec"]


def test_with_mode_keeps_everything_else() -> None:
    current = _as_read_back(service_spec("rng", IMAGES, NO_IPVS, "n", env={"ACCESS_LOG": "1"}))
    global_spec = with_mode(current, "global", 1)
    assert mode_of(global_spec) == "global"
    assert replicas_of(global_spec) is None
    assert global_spec["TaskTemplate"] == current["TaskTemplate"]
    assert global_spec["EndpointSpec"] == current["EndpointSpec"]
    assert replicas_of(with_mode(global_spec, "replicated", 3)) == 3
    assert mode_of(current) == "replicated"  # the original is not modified


# ---------------------------------------------------------------- parsing


def test_parse_scale_args() -> None:
    assert parse_scale_args(["worker=10", "rng=3"]) == {"worker": 10, "rng": 3}
    assert parse_scale_args(["hasher=0"]) == {"hasher": 0}


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([], "nothing to scale"),
        (["worker"], "expected SERVICE=REPLICAS"),
        (["miner=3"], "unknown service 'miner'"),
        (["worker=-1"], "bad replica count '-1'"),
        (["worker=ten"], "bad replica count 'ten'"),
        (["worker=2.5"], "bad replica count '2.5'"),
        (["worker="], "bad replica count ''"),
    ],
)
def test_parse_scale_args_refuses(items: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_scale_args(items)


def test_parse_env_overrides() -> None:
    assert parse_env_overrides(["rng:ACCESS_LOG=1", "rng:X=a=b", "worker:D="]) == {
        "rng": {"ACCESS_LOG": "1", "X": "a=b"},
        "worker": {"D": ""},
    }
    assert parse_env_overrides(None) == {}
    for bad in ("ACCESS_LOG=1", "rng:ACCESS_LOG", "miner:A=1", "rng:1A=2"):
        with pytest.raises(UserError):
            parse_env_overrides([bad])


# ---------------------------------------------------------------- progress and status

NODES = [
    Node("n1", "node1", "ready", "active", "manager", "10.9.0.2"),
    Node("n2", "node2", "ready", "active", "worker", "10.9.0.3"),
    Node("n3", "node3", "down", "active", "worker", "10.9.0.4"),
]


def _service(name: str, spec: dict[str, Any], update: str | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {"ID": f"id-{name}", "Spec": spec, "Version": {"Index": 1}}
    if update:
        raw["UpdateStatus"] = {"State": update}
    return raw


def _task(
    node: str,
    state: str,
    desired: str = "running",
    *,
    err: str = "",
    ts: str = "1",
    image: str = "10.9.0.1:5000/dockercoins/rng:v1",
) -> Any:
    status: dict[str, Any] = {"State": state, "Timestamp": ts}
    if err:
        status["Err"] = err
    spec = {"ContainerSpec": {"Image": image}}
    return {"NodeID": node, "DesiredState": desired, "Status": status, "Spec": spec}


WORKER_IMAGE = "10.9.0.1:5000/dockercoins/worker:v1"


def test_progress_counts_running_tasks_on_ready_nodes() -> None:
    rng = _service("rng", with_mode(service_spec("rng", IMAGES, NO_IPVS, "n"), "global", 1))
    worker = _service("worker", service_spec("worker", IMAGES, NO_IPVS, "n", replicas=3))
    tasks = {
        "rng": [_task("n1", "running"), _task("n2", "running"), _task("n3", "running")],
        "worker": [
            _task("n1", "running", image=WORKER_IMAGE),
            _task("n2", "preparing", image=WORKER_IMAGE),
            _task("n1", "running", desired="shutdown", image=WORKER_IMAGE),
        ],
    }
    states = progress({"rng": rng, "worker": worker}, tasks, NODES)
    # global: one per ready node (node3 is down); worker: one truly running of three
    assert states == [Progress("rng", 2, 2, False), Progress("worker", 1, 3, False)]
    assert states[0].done
    assert not states[1].done
    assert str(states[1]) == "worker 1/3"


def test_progress_waits_for_rolling_update() -> None:
    hasher_image = "10.9.0.1:5000/dockercoins/hasher:v1"
    hasher = _service("hasher", service_spec("hasher", IMAGES, NO_IPVS, "n"), "updating")
    tasks = {"hasher": [_task("n1", "running", image=hasher_image)]}
    [state] = progress({"hasher": hasher}, tasks, NODES)
    assert not state.done
    assert str(state) == "hasher 1/1 (updating)"


def test_progress_does_not_count_tasks_of_the_previous_spec() -> None:
    # just after an update, before the swarm reports it as updating: the old task runs
    worker = _service("worker", service_spec("worker", IMAGES, NO_IPVS, "n"))
    old = _task("n1", "running", image="10.9.0.1:5000/dockercoins/worker:v0")
    [state] = progress({"worker": worker}, {"worker": [old]}, NODES)
    assert state == Progress("worker", 0, 1, False)


def test_describe_stuck_names_latest_errors() -> None:
    tasks = [
        _task("n2", "rejected", "shutdown", err="No such image: r/ns/rng:v1", ts="2"),
        _task("n1", "rejected", "shutdown", err="No such image: r/ns/rng:v1", ts="1"),
        _task("n1", "preparing", ts="3"),
        _task("n2", "running", ts="4"),
    ]
    assert describe_stuck("rng", tasks, NODES) == [
        "rng task preparing on node1",
        "rng task rejected on node2, node1: No such image: r/ns/rng:v1",
    ]


def test_status_lines_show_services_and_tasks_per_node() -> None:
    services = {
        "rng": _service("rng", with_mode(service_spec("rng", IMAGES, NO_IPVS, "n"), "global", 1)),
        "worker": _service("worker", service_spec("worker", IMAGES, NO_IPVS, "n", replicas=3)),
    }
    tasks = {
        "rng": [_task("n1", "running"), _task("n2", "running")],
        "worker": [
            _task("n1", "running", image=WORKER_IMAGE),
            _task("n2", "running", image=WORKER_IMAGE),
            _task("n2", "running", image=WORKER_IMAGE),
        ],
    }
    lines = status_lines(services, tasks, NODES)
    rows = {line.split()[0]: line.split()[1:] for line in lines if line}
    assert rows["rng"][:2] == ["global", "2/2"]
    assert rows["worker"][:2] == ["replicated", "3/3"]
    assert rows["redis"][:3] == ["-", "not", "deployed"]
    node2 = next(line for line in lines if line.startswith("node2"))
    # columns: redis hasher rng webui worker
    assert node2.split()[3:] == ["0", "0", "1", "0", "2"]


def test_hash_rate_spans_whole_counter_steps() -> None:
    # one worker at ~3.3 hashes/s flushing once a second: steps of 3 or 4 every 1.0 s,
    # polled every 0.2 s; two samples 1.5 s apart would say 2.0 or 4.0
    samples = [Sample(100.0 + 0.2 * i, 0) for i in range(3)]  # 100.0 .. 100.4: no step yet
    steps = {100.5: 3, 101.5: 7, 102.5: 10, 103.5: 13}  # flush instants -> new counter
    counter = 0
    for i in range(3, 20):
        now = 100.0 + 0.2 * i
        counter = max([v for t, v in steps.items() if t <= now], default=counter)
        samples.append(Sample(now, counter))
    rate = hash_rate(samples)
    assert rate is not None
    assert 3.0 <= rate <= 3.6  # 10 hashes over the 3.0 s between the first and last step


def test_hash_rate_needs_two_steps() -> None:
    assert hash_rate([Sample(1.0, 5), Sample(2.0, 5), Sample(3.0, 5)]) is None
    assert hash_rate([Sample(1.0, 5), Sample(2.0, 8), Sample(3.0, 8)]) is None
    assert hash_rate([]) is None


# ---------------------------------------------------------------- status: rates per task

RNG_RATES = [
    InstanceRate("node1", "10.0.1.5:80", 10.0, node="node1"),
    InstanceRate("node2", "10.0.1.6:80", 9.93, node="node2"),
    InstanceRate("10.0.1.7:80", "10.0.1.7:80", 9.87),  # its node label was empty
]
WORKER_RATES = [InstanceRate("node1", "10.0.1.9:9100", 3.3, node="node1")]


def test_status_rates_table_has_a_row_per_task() -> None:
    lines = instance_rate_lines("http://127.0.0.1:9090", 15, RNG_RATES, WORKER_RATES)
    assert lines[0] == "per task, over the last 15 s (Prometheus at http://127.0.0.1:9090):"
    assert lines[1].split() == ["SERVICE", "NODE", "INSTANCE", "PER", "SECOND"]
    rows = [line.split() for line in lines[2:-1]]
    assert rows == [
        ["rng", "node1", "10.0.1.5:80", "10.0", "answers"],
        ["rng", "node2", "10.0.1.6:80", "9.9", "answers"],
        ["rng", "-", "10.0.1.7:80", "9.9", "answers"],
        ["worker", "node1", "10.0.1.9:9100", "3.3", "hashes"],
    ]
    assert lines[-1] == "in all: rng 29.8 answers/s, worker 3.3 hashes/s"


def test_status_rates_without_samples_is_one_line() -> None:
    (line,) = instance_rate_lines("http://127.0.0.1:9090", 15, [], [])
    assert line.startswith("per task: no rates yet (Prometheus at http://127.0.0.1:9090 has no")


def test_status_without_prometheus_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(explicit: str | None, http: object) -> str:
        raise prometheus.Unavailable(f"no Prometheus answered at {explicit}")

    monkeypatch.setattr(prometheus, "locate", unavailable)
    assert swarm_status.per_task_lines("http://127.0.0.1:9") == [
        "per task: no rates (no Prometheus answered at http://127.0.0.1:9; deployed with "
        "--no-metrics? else give --prometheus URL)"
    ]


def test_status_keeps_its_lines_and_adds_the_rates(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(swarm_status, "our_services", lambda client: {"webui": {}})
    monkeypatch.setattr(swarm_status, "nodes", lambda client: [])
    monkeypatch.setattr(swarm_status, "tasks_of", lambda client, services: {})
    monkeypatch.setattr(swarm_status, "status_lines", lambda *args: ["SERVICE ..."])
    monkeypatch.setattr(swarm_status, "measure_hash_rate", lambda urls: None)
    monkeypatch.setattr(prometheus, "locate", lambda explicit, http: "http://127.0.0.1:9090")

    def fetch(http: object, url: str, counter: str, window: float) -> list[InstanceRate]:
        return RNG_RATES if counter == prometheus.RNG_REQUESTS else WORKER_RATES

    monkeypatch.setattr(prometheus, "fetch_rates", fetch)
    assert swarm_status.status(object(), "http://127.0.0.1:8000") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "SERVICE ..."
    assert out[1].startswith("hash rate: unknown (no web UI answered at http://127.0.0.1:8000")
    assert out[2:] == instance_rate_lines("http://127.0.0.1:9090", 15, RNG_RATES, WORKER_RATES)


# ---------------------------------------------------------------- redis: durable and pinned


def test_redis_keeps_an_fsynced_append_only_file_on_its_volume() -> None:
    spec = service_spec("redis", IMAGES, NO_IPVS, "n")
    container = spec["TaskTemplate"]["ContainerSpec"]
    args = container["Args"]
    assert args[0] == "redis-server"
    options = dict(zip(args[1::2], args[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "always"
    assert options["--dir"] == specs.REDIS_DATA == "/var/lib/redis"
    assert container["Mounts"] == [
        {
            "Type": "volume",
            "Source": "dockercoins-redis",
            "Target": "/var/lib/redis",
            "VolumeOptions": {"Labels": {"dockercoins.managed": "1"}},
        }
    ]
    assert container["StopGracePeriod"] == 30 * 10**9
    assert spec["TaskTemplate"]["Placement"] == {
        "Constraints": ["node.labels.dockercoins.redis == true"]
    }


def test_worker_gets_time_for_its_final_flush_and_the_others_keep_defaults() -> None:
    worker = service_spec("worker", IMAGES, NO_IPVS, "n")["TaskTemplate"]
    assert worker["ContainerSpec"]["StopGracePeriod"] == 10 * 10**9
    assert "Placement" not in worker
    for name in ("hasher", "rng", "webui"):
        template = service_spec(name, IMAGES, NO_IPVS, "n")["TaskTemplate"]
        assert "Placement" not in template, name
        locked_down = {"ReadOnly", "CapabilityDrop", "Mounts"}  # the lock-down's
        assert set(template["ContainerSpec"]) == {"Image", *locked_down}, name


@pytest.mark.parametrize("name", ["redis", "worker"])
def test_redis_and_worker_read_back_have_no_changes(name: str) -> None:
    spec = service_spec(name, IMAGES, NO_IPVS, "n")
    back = _as_read_back(spec)
    if "Placement" in back["TaskTemplate"]:  # the daemon adds the platforms it found
        back["TaskTemplate"]["Placement"]["Platforms"] = [{"Architecture": "amd64"}]
    assert spec_changes(back, spec, with_scale=False) == []


def test_redis_of_an_older_deploy_becomes_durable_and_keeps_the_rest() -> None:
    old = _as_read_back(service_spec("redis", IMAGES, NO_IPVS, "n"))
    container = old["TaskTemplate"]["ContainerSpec"]
    for key in ("Args", "Mounts", "StopGracePeriod"):
        del container[key]
    del old["TaskTemplate"]["Placement"]
    reservations = {"MemoryBytes": 1 << 26}  # set by hand: kept
    old["TaskTemplate"]["Resources"] = {
        "Limits": {"MemoryBytes": 1 << 30},
        "Reservations": reservations,
    }
    old["UpdateConfig"] = {"Parallelism": 1, "FailureAction": "pause"}  # the swarm's default
    del old["RollbackConfig"]  # an older deploy set none
    desired = service_spec("redis", IMAGES, NO_IPVS, "n")
    assert spec_changes(old, desired, with_scale=False) == [
        "mounts",
        "command",
        "stop grace period",
        "placement",
        "limits",
        "update policy",
        "rollback policy",
    ]
    updated = updated_spec(old, desired, with_scale=False)
    assert spec_changes(updated, desired, with_scale=False) == []
    assert updated["TaskTemplate"]["Resources"] == {
        "Limits": {"MemoryBytes": 256 << 20, "NanoCPUs": 10**9},
        "Reservations": reservations,
    }
    assert updated["UpdateConfig"]["Order"] == "stop-first"
    assert updated["RollbackConfig"] == desired["RollbackConfig"]


def test_compose_file_and_stack_file_run_redis_like_deploy() -> None:
    command = f"    command: {json.dumps(list(specs.REDIS_COMMAND))}\n"
    for path in ("compose.yml", "deploy/dockercoins.yml"):
        text = (REPO / path).read_text()
        redis = text.split("\n  redis:\n", 1)[1].split("\n\n", 1)[0] + "\n"
        assert command in redis, path
        assert "      - redis-data:/var/lib/redis\n" in redis, path
        assert "    stop_grace_period: 30s\n" in redis, path
        assert "\n  redis-data:\n" in text.split("\nvolumes:", 1)[1], path
        worker = text.split("\n  worker:\n", 1)[1].split("\n\n", 1)[0]
        assert "    stop_grace_period: 10s" in worker, path
    stack = (REPO / "deploy/dockercoins.yml").read_text()
    assert f'constraints: ["{specs.REDIS_CONSTRAINT}"]' in stack


# ---------------------------------------------------------------- redis: which node


def _labelled(node: Node) -> Node:
    return dataclasses.replace(node, labels={"dockercoins.redis": "true"})


SWARM = [
    Node("aaa111", "node1", "ready", "active", "manager", "10.9.0.2"),
    Node("bbb222", "node2", "ready", "active", "worker", "10.9.0.3"),
    Node("ccc333", "node3", "down", "active", "worker", "10.9.0.4"),
]


def test_first_deploy_pins_redis_to_the_manager_it_talks_to() -> None:
    planned = placement.plan(SWARM, None, "aaa111")
    assert planned == placement.RedisPlacement(SWARM[0], add=True, remove=())


def test_later_deploys_keep_the_labelled_node() -> None:
    nodes = [SWARM[0], _labelled(SWARM[1]), SWARM[2]]
    assert placement.plan(nodes, None, "aaa111") == placement.RedisPlacement(nodes[1], add=False)
    assert placement.plan(nodes, "node2", "aaa111").add is False
    assert placement.redis_node(nodes) == nodes[1]


def test_redis_node_by_hostname_id_or_id_prefix() -> None:
    assert placement.plan(SWARM, "node3", "aaa111").node.hostname == "node3"
    assert placement.plan(SWARM, "bbb222", "aaa111").node.hostname == "node2"
    assert placement.plan(SWARM, "ccc", "aaa111").node.hostname == "node3"


def test_unknown_redis_node_is_one_line_naming_the_nodes() -> None:
    with pytest.raises(UserError) as error:
        placement.plan(SWARM, "node9", "aaa111")
    assert str(error.value) == (
        "unknown node 'node9' for --redis-node: the swarm's nodes are node1, node2, node3"
    )


def test_moving_redis_away_from_its_data_is_refused() -> None:
    nodes = [SWARM[0], _labelled(SWARM[1]), SWARM[2]]
    with pytest.raises(UserError, match=r"redis's data is on node2 .*--label-rm dockercoins"):
        placement.plan(nodes, "node1", "aaa111")


def test_several_labelled_nodes_need_a_choice() -> None:
    nodes = [_labelled(SWARM[0]), _labelled(SWARM[1]), SWARM[2]]
    with pytest.raises(UserError, match="several nodes carry"):
        placement.plan(nodes, None, "aaa111")
    assert placement.redis_node(nodes) is None
    chosen = placement.plan(nodes, "node2", "aaa111")
    assert (chosen.node.hostname, chosen.add) == ("node2", False)
    assert [node.hostname for node in chosen.remove] == ["node1"]


class NodeAPI:
    """The node calls of the Engine API: nodes, inspect_node, update_node, info."""

    def __init__(self, nodes: list[Node], me: str) -> None:
        self.raw: dict[str, dict[str, Any]] = {
            node.id: {
                "ID": node.id,
                "Version": {"Index": 1},
                "Description": {"Hostname": node.hostname},
                "Status": {"State": node.state, "Addr": node.addr},
                "Spec": {"Availability": node.availability, "Role": node.role, "Labels": {}},
            }
            for node in nodes
        }
        self.me = me
        self.updates = 0

    def nodes(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(raw) for raw in self.raw.values()]

    def inspect_node(self, node_id: str) -> dict[str, Any]:
        return copy.deepcopy(self.raw[node_id])

    def update_node(self, node_id: str, version: int, node_spec: dict[str, Any]) -> None:
        raw = self.raw[node_id]
        assert raw["Version"]["Index"] == version
        raw["Spec"] = copy.deepcopy(node_spec)
        raw["Version"]["Index"] += 1
        self.updates += 1

    def info(self) -> dict[str, Any]:
        return {"Swarm": {"NodeID": self.me}}

    def labels(self) -> dict[str, dict[str, str]]:
        found = {raw["Description"]["Hostname"]: raw["Spec"]["Labels"] for raw in self.raw.values()}
        return {name: labels for name, labels in found.items() if labels}


def test_pin_redis_labels_the_node_once(capsys: pytest.CaptureFixture[str]) -> None:
    api = NodeAPI(SWARM, me="aaa111")
    client = SimpleNamespace(api=api)
    assert placement.pin_redis(client, None).hostname == "node1"
    assert api.labels() == {"node1": {"dockercoins.redis": "true"}}
    assert "node node1: label dockercoins.redis=true set" in capsys.readouterr().err
    assert placement.pin_redis(client, None).hostname == "node1"  # again: nothing to do
    assert api.updates == 1
    assert "redis stays on node1" in capsys.readouterr().err


def test_pin_redis_on_a_down_node_warns(capsys: pytest.CaptureFixture[str]) -> None:
    api = NodeAPI(SWARM, me="aaa111")
    placement.pin_redis(SimpleNamespace(api=api), "node3")
    assert api.labels() == {"node3": {"dockercoins.redis": "true"}}
    assert "warning: redis's node node3 is down" in capsys.readouterr().err


# ---------------------------------------------------------------- status: redis down

REDIS_IMAGE = "redis"


def _redis_service() -> dict[str, Any]:
    return _service("redis", service_spec("redis", IMAGES, NO_IPVS, "n"))


def test_status_says_redis_has_no_running_task_when_its_node_is_down() -> None:
    nodes = [NODES[0], NODES[1], _labelled(NODES[2])]  # node3 (down) holds redis
    tasks = {"redis": [_task("n3", "running", image=REDIS_IMAGE)]}  # as last reported
    line = swarm_status.redis_unavailable({"redis": _redis_service()}, tasks, nodes)
    assert line == "counter unavailable: redis has no running task (its node node3 is down)"


def test_status_names_the_latest_redis_task_problem_on_a_ready_node() -> None:
    nodes = [_labelled(NODES[0]), NODES[1], NODES[2]]
    tasks = {"redis": [_task("n1", "rejected", "shutdown", err="no space left", ts="2")]}
    line = swarm_status.redis_unavailable({"redis": _redis_service()}, tasks, nodes)
    assert line == (
        "counter unavailable: redis has no running task (its node node1 is ready; "
        "redis task rejected on node1: no space left)"
    )


def test_status_redis_line_is_silent_when_redis_runs_or_is_not_deployed() -> None:
    nodes = [_labelled(NODES[0]), NODES[1], NODES[2]]
    tasks = {"redis": [_task("n1", "running", image=REDIS_IMAGE)]}
    assert swarm_status.redis_unavailable({"redis": _redis_service()}, tasks, nodes) is None
    assert swarm_status.redis_unavailable({}, {}, nodes) is None


def test_status_without_redis_reads_no_hash_rate(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = [NODES[0], _labelled(NODES[2])]
    services = {"redis": _redis_service(), "webui": _service("webui", {})}
    tasks = {"redis": [_task("n3", "running", image=REDIS_IMAGE)], "webui": []}
    monkeypatch.setattr(swarm_status, "our_services", lambda client: services)
    monkeypatch.setattr(swarm_status, "nodes", lambda client: nodes)
    monkeypatch.setattr(swarm_status, "tasks_of", lambda client, found: tasks)
    monkeypatch.setattr(swarm_status, "status_lines", lambda *args: ["SERVICE ..."])

    def no_rate(urls: list[str]) -> None:
        raise AssertionError("the web UI was asked for a rate")

    monkeypatch.setattr(swarm_status, "measure_hash_rate", no_rate)
    monkeypatch.setattr(swarm_status, "per_task_lines", lambda explicit: ["per task: ..."])
    assert swarm_status.status(object(), None, wait=30.0) == 0
    assert capsys.readouterr().out.splitlines() == [
        "SERVICE ...",
        "counter unavailable: redis has no running task (its node node3 is down)",
        "per task: ...",
    ]


# ---------------------------------------------------------------- update and rollback policies

STATELESS = ("hasher", "rng", "worker")


def _all_specs(modes: Modes) -> dict[str, dict[str, Any]]:
    from dockercoins.swarm import prometheus_service

    secret = SecretRef("sec1", "dockercoins-redis-password-0123456789ab")
    found = {name: service_spec(name, IMAGES, modes, "n", secret=secret) for name in SWARM_SERVICES}
    config = prometheus_service.ConfigRef("cfg1", "prometheus-0123456789ab")
    found["prometheus"] = prometheus_service.prometheus_spec(modes, "n", config)
    return found


def _dockerfile_healthcheck(service: str) -> dict[str, str]:
    """--interval, --timeout, --start-period, --retries of the image's HEALTHCHECK."""
    text = (REPO / "services" / service / "Dockerfile").read_text()
    line = next(line for line in text.splitlines() if line.startswith("HEALTHCHECK "))
    return dict(option.removeprefix("--").split("=") for option in line.split()[1:5])


@pytest.mark.parametrize("modes", [NO_IPVS, IPVS], ids=["dnsrr-host", "vip-ingress"])
def test_every_service_rolls_back_a_failed_update(modes: Modes) -> None:
    for name, spec in _all_specs(modes).items():
        update, rollback = spec["UpdateConfig"], spec["RollbackConfig"]
        assert update["FailureAction"] == "rollback", name
        assert update["MaxFailureRatio"] == 0, name  # the first failed task is enough
        assert rollback["FailureAction"] == "pause", name  # a failed rollback waits for you
        assert update["Order"] == rollback["Order"], name
        assert update["Parallelism"] >= 1, name
        assert update["Monitor"] >= rollback["Monitor"] > 0, name


@pytest.mark.parametrize("modes", [NO_IPVS, IPVS], ids=["dnsrr-host", "vip-ingress"])
def test_stateless_services_start_first_stateful_ones_stop_first(modes: Modes) -> None:
    orders = {name: spec["UpdateConfig"]["Order"] for name, spec in _all_specs(modes).items()}
    for name in STATELESS:
        assert orders[name] == "start-first", name
    assert orders["redis"] == orders["prometheus"] == "stop-first"  # one writer of the data
    # webui's published port: on the routing mesh any node has it; in host mode its node
    # has it, and a second task there could not bind it
    assert orders["webui"] == ("stop-first" if modes.publish == "host" else "start-first")


def test_the_monitor_window_outlasts_a_failing_health_check() -> None:
    """A new task that passed its first check and then fails `retries` checks in a row,
    each taking up to its timeout, is still inside the window."""
    for service in ("rng", "hasher", "webui", "worker"):
        check = _dockerfile_healthcheck(service)
        seconds = {key: float(value.rstrip("s")) for key, value in check.items()}
        unhealthy_after = seconds["retries"] * (seconds["interval"] + seconds["timeout"])
        monitor = service_spec(service, IMAGES, NO_IPVS, "n")["UpdateConfig"]["Monitor"]
        assert monitor / specs.SECOND_NS >= unhealthy_after, service


def test_policies_read_back_with_zero_fields_left_out_are_unchanged() -> None:
    spec = service_spec("worker", IMAGES, NO_IPVS, "n")
    back = copy.deepcopy(spec)
    back["UpdateConfig"] = {"Parallelism": 2, "FailureAction": "rollback", "Order": "start-first"}
    back["UpdateConfig"]["Monitor"] = spec["UpdateConfig"]["Monitor"]
    back["RollbackConfig"] = {
        key: value for key, value in spec["RollbackConfig"].items() if value
    }  # Parallelism 0, Delay 0, MaxFailureRatio 0: the daemon omits them
    assert spec_changes(back, spec, with_scale=False) == []
    back["UpdateConfig"]["Order"] = "stop-first"  # changed by hand: deploy puts it back
    assert spec_changes(back, spec, with_scale=False) == ["update policy"]
    assert updated_spec(back, spec, with_scale=False)["UpdateConfig"]["Order"] == "start-first"


def _duration(text: str) -> int:
    return int(float(text.rstrip("s")) * specs.SECOND_NS)


def test_the_stack_file_has_the_policies_deploy_sets() -> None:
    import yaml  # type: ignore[import-untyped]

    stack = yaml.safe_load((REPO / "deploy/dockercoins.yml").read_text())
    wanted = _all_specs(NO_IPVS)  # the stack file publishes in host mode
    for name, spec in wanted.items():
        deploy = stack["services"][name]["deploy"]
        for key, field in (
            ("update_config", "UpdateConfig"),
            ("rollback_config", "RollbackConfig"),
        ):
            written = deploy[key]
            assert written["parallelism"] == spec[field]["Parallelism"], (name, key)
            assert _duration(written["delay"]) == spec[field]["Delay"], (name, key)
            assert written["failure_action"] == spec[field]["FailureAction"], (name, key)
            assert _duration(written["monitor"]) == spec[field]["Monitor"], (name, key)
            assert written["max_failure_ratio"] == spec[field]["MaxFailureRatio"], (name, key)
            assert written["order"] == spec[field]["Order"], (name, key)


# ---------------------------------------------------------------- lock-down


@pytest.mark.parametrize("modes", [NO_IPVS, IPVS], ids=["dnsrr-host", "vip-ingress"])
def test_every_spec_is_locked_down(modes: Modes) -> None:
    for name, spec in _all_specs(modes).items():
        template = spec["TaskTemplate"]
        container = template["ContainerSpec"]
        assert container["ReadOnly"] is True, name
        assert container["CapabilityDrop"] == ["ALL"], name
        assert "CapabilityAdd" not in container, name
        # API 1.41 (dockerd 20.10) has no Privileges.NoNewPrivileges: none is sent
        assert "Privileges" not in container, name
        limits = template["Resources"]["Limits"]
        assert limits["MemoryBytes"] == specs.MEMORY_LIMITS[name], name
        assert limits["NanoCPUs"] == round(specs.CPU_LIMITS[name] * 10**9), name
        assert 64 << 20 <= limits["MemoryBytes"] <= 512 << 20, name
        assert 0.5 <= specs.CPU_LIMITS[name] <= 1.0, name
        tmpfs = [mount for mount in container.get("Mounts", []) if mount["Type"] == "tmpfs"]
        if name in ("hasher", "rng", "webui", "worker"):
            assert tmpfs == [
                {
                    "Type": "tmpfs",
                    "Target": "/tmp",
                    "TmpfsOptions": {"SizeBytes": 16 << 20, "Mode": 0o1777},
                }
            ], name
        else:  # redis and prometheus write only to their volumes
            assert tmpfs == [], name


def test_the_worker_heartbeat_is_on_the_tmpfs() -> None:
    import worker_settings

    assert worker_settings.Settings().heartbeat.startswith(specs.TMP_DIR + "/")


def test_a_service_of_an_older_deploy_is_locked_down_and_read_back_is_unchanged() -> None:
    desired = service_spec("worker", IMAGES, NO_IPVS, "n")
    old = _as_read_back(desired)
    container = old["TaskTemplate"]["ContainerSpec"]
    for key in ("ReadOnly", "CapabilityDrop", "Mounts"):
        del container[key]
    del old["TaskTemplate"]["Resources"]
    changes = ["mounts", "read-only root filesystem", "capabilities dropped", "limits"]
    assert spec_changes(old, desired, with_scale=False) == changes
    updated = updated_spec(old, desired, with_scale=False)
    assert spec_changes(updated, desired, with_scale=False) == []
    # what the daemon answers: the tmpfs mount with its options, the limits as they were
    back = _as_read_back(desired)
    back["TaskTemplate"]["ContainerSpec"]["Mounts"][0]["ReadOnly"] = False
    assert spec_changes(back, desired, with_scale=False) == []


def _size(text: str) -> int:
    units = {"M": 1 << 20, "m": 1 << 20, "G": 1 << 30, "g": 1 << 30}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def test_the_stack_file_and_compose_file_lock_every_container_down() -> None:
    import yaml

    stack = yaml.safe_load((REPO / "deploy/dockercoins.yml").read_text())
    compose = yaml.safe_load((REPO / "compose.yml").read_text())
    for name in (*SWARM_SERVICES, "prometheus"):
        for source, service in (
            ("stack", stack["services"][name]),
            ("compose", compose["services"][name]),
        ):
            assert service["read_only"] is True, (source, name)
            assert service["cap_drop"] == ["ALL"], (source, name)
        swarm_limits = stack["services"][name]["deploy"]["resources"]["limits"]
        assert _size(swarm_limits["memory"]) == specs.MEMORY_LIMITS[name], name
        assert float(swarm_limits["cpus"]) == specs.CPU_LIMITS[name], name
        local = compose["services"][name]
        assert _size(local["mem_limit"]) == specs.MEMORY_LIMITS[name], name
        assert float(local["cpus"]) == specs.CPU_LIMITS[name], name
        assert local["security_opt"] == ["no-new-privileges:true"], name
        python = name in ("hasher", "rng", "webui", "worker")
        assert ("/tmp:size=16m" in local.get("tmpfs", [])) == python, name
        tmp = [v for v in stack["services"][name].get("volumes", []) if isinstance(v, dict)]
        assert (tmp == [{"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": 16 << 20}}]) == python
        # security_opt is ignored by `docker stack deploy`: not written there
        assert "security_opt" not in stack["services"][name], name


def test_redis_password_comes_from_a_secret_everywhere() -> None:
    import yaml

    stack = yaml.safe_load((REPO / "deploy/dockercoins.yml").read_text())
    compose = yaml.safe_load((REPO / "compose.yml").read_text())
    assert stack["secrets"] == {"redis_password": {"external": True}}
    assert compose["secrets"] == {
        "redis_password": {"file": "${REDIS_PASSWORD_SECRET:-./secrets/redis_password}"}
    }
    for document in (stack, compose):
        for name in ("redis", "worker", "webui"):
            service = document["services"][name]
            assert service["environment"]["REDIS_PASSWORD_FILE"] == "/run/secrets/redis_password"
    for name in ("redis", "worker", "webui"):
        assert compose["services"][name]["secrets"] == ["redis_password"], name
        # in the swarm, owned by the image's user, mode 0400, as `deploy` makes it
        uid, gid = specs.SECRET_OWNERS[name]
        assert stack["services"][name]["secrets"] == [
            {"source": "redis_password", "uid": str(uid), "gid": str(gid), "mode": 0o400}
        ], name
    for document in (stack, compose):
        for name in ("hasher", "rng", "prometheus"):
            assert "secrets" not in document["services"][name], name
    assert compose["services"]["redis"]["healthcheck"]["test"] == ["CMD", "dockercoins-redis-ping"]
