"""Metrics on the real lab: after ship + deploy, Prometheus (http://localhost:9090, the lab's
forwarder) scrapes every task of rng, hasher, webui and worker and the worker counters
move; with rng global there is one rng series per node, `dockercoins status` prints the
per-task table, and the page's second chart (headless Chromium) lists the same nodes.
What `deploy` made, read back from the manager: the endpoint and publish modes it printed
(dnsrr and host-mode ports where this kernel has no IP_VS, vip and ingress where it has),
and every image of ours pinned to the digest the registry holds; every spec locked down.
And an intruder on the overlay network or in a task: refused by redis and the registry,
unable to write its root filesystem or gain a capability (the answers go to the results)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from dockercoins.dockerapi import connect
from dockercoins.images import registry
from dockercoins.images.base import BASE_IMAGE_TAG, REDIS_IMAGE_TAG
from dockercoins.lab.state import LabState, lab_dir
from dockercoins.names import IMAGES, PROMETHEUS, PROMETHEUS_PORT, SWARM_SERVICES
from dockercoins.names import WEBUI_PUBLISHED_PORT as WEBUI_PORT
from dockercoins.swarm import encryption, prometheus
from dockercoins.swarm.ipvs import ipvs_available

from tests.services import test_page_chromium as page
from tests.support import mining
from tests.support.lab import cli, ok
from tests.support.servers import wait_for

pytestmark = pytest.mark.lab

PROMETHEUS_URL = "http://localhost:9090"
# The page's browser resolves no name but 127.0.0.1 (its --host-resolver-rules).
WEBUI_URL = "http://127.0.0.1:8000/"
JOBS = {"rng", "hasher", "webui", "worker"}
DEPLOYED = {*SWARM_SERVICES, PROMETHEUS}

browser = page.browser  # the page tests' headless Chromium fixture


@pytest.fixture(scope="module")
def dockercoins(lab: LabState, manager: Any) -> Iterator[None]:
    """DockerCoins and its Prometheus deployed on the lab (ship + deploy, both idempotent);
    taken down again afterwards only if none of it was there before."""
    before = {service.name for service in manager.services.list()} & DEPLOYED
    try:
        if before != DEPLOYED:
            ok(cli(lab, "ship"))
            ok(cli(lab, "deploy", "--timeout", "240"))
        yield
    finally:
        if not before:
            cli(lab, "down", "--timeout", "120")


def rng_mode(client: Any) -> tuple[str, int | None]:
    """(rng's mode, its replicas or None when global)."""
    mode = next(s for s in client.services.list() if s.name == "rng").attrs["Spec"]["Mode"]
    if "Global" in mode:
        return ("global", None)
    return ("replicated", mode["Replicated"]["Replicas"])


@pytest.fixture(scope="module")
def rng_global(lab: LabState, manager: Any, dockercoins: None) -> Iterator[None]:
    """rng in global mode (one task per node) for the module, then as it was."""
    mode, replicas = rng_mode(manager)
    try:
        ok(cli(lab, "rng-mode", "global", "--timeout", "240"))
        yield
    finally:
        cli(lab, "rng-mode", mode, *(["--replicas", str(replicas)] if replicas else []))


def running_tasks(client: Any, service: str) -> int:
    tasks = client.api.tasks(filters={"service": service, "desired-state": "running"})
    return sum(1 for task in tasks if task["Status"]["State"] == "running")


def instant_sum(promql: str) -> float:
    """The sum of an instant query's vector (0.0 when it is empty)."""
    with prometheus.connection() as http:
        data = prometheus.query(http, PROMETHEUS_URL, promql)
    return sum(float(series["value"][1]) for series in data["result"])


def test_every_target_is_up_and_the_worker_counters_move(
    lab: LabState, manager: Any, dockercoins: None
) -> None:
    found: list[prometheus.Target] = []

    def every_task_up() -> bool:
        found[:] = prometheus.targets(PROMETHEUS_URL) or []
        print("targets:", [(t.job, t.instance, t.health, t.last_error) for t in found])
        per_job = {job: sum(1 for t in found if t.job == job) for job in JOBS}
        tasks = {job: running_tasks(manager, job) for job in JOBS}
        return per_job == tasks and all(target.health == "up" for target in found)

    # each task its own target, found by DNS within seconds and scraped every 5 s
    wait_for(every_task_up, timeout=90, interval=2.0)
    assert {target.job for target in found} >= JOBS  # and none of them without a task

    for counter in ("dockercoins_worker_loops_total", "dockercoins_worker_hashes_total"):
        first = instant_sum(counter)
        wait_for(lambda c=counter, f=first: instant_sum(c) > f, timeout=30, interval=1.0)


def test_deployed_services_follow_ip_vs_as_deploy_said_with_pinned_images(
    lab: LabState, manager: Any, dockercoins: None
) -> None:
    again = cli(lab, "deploy", "--timeout", "240")  # deployed already: changes nothing
    ok(again)
    ipvs = ipvs_available()  # this machine's /proc/sys/net/ipv4/vs: the nodes' kernel
    endpoint, publish = ("vip", "ingress") if ipvs else ("dnsrr", "host")
    said = [line for line in again.stderr.splitlines() if line.startswith("IP_VS ")]
    assert said == [
        f"IP_VS {'present' if ipvs else 'absent'} on this machine's kernel: "
        f"--endpoint-mode {endpoint}, webui published in {publish} mode"
        + ("" if ipvs else " (force others with --endpoint-mode/--publish-mode)")
    ]
    where = " of every node" if ipvs else " of the node running webui"
    assert f"web UI published on port {WEBUI_PORT}{where}" in again.stdout
    # the overlay: encrypted where this kernel can (XFRM and ESP), said in one line
    support = encryption.encryption_support()
    said = [line for line in again.stderr.splitlines() if line.startswith("overlay network ")]
    assert said == [encryption.describe(support.available, "auto", support)]
    [network] = manager.api.networks(names=["dockercoins"])
    assert ("encrypted" in (network.get("Options") or {})) is support.available

    services = {s.name: s.attrs for s in manager.services.list() if s.name in DEPLOYED}
    assert sorted(services) == sorted(DEPLOYED)
    modes = {
        name: (raw["Spec"]["EndpointSpec"].get("Mode") or "vip") for name, raw in services.items()
    }
    assert modes == dict.fromkeys(DEPLOYED, endpoint)
    # what the daemon did with it: virtual IPs only in vip mode
    with_vips = {name for name, raw in services.items() if raw["Endpoint"].get("VirtualIPs")}
    assert with_vips == (set(DEPLOYED) if ipvs else set())
    published = {
        name: [
            (p["PublishedPort"], p["PublishMode"])
            for p in raw["Spec"]["EndpointSpec"].get("Ports", [])
        ]
        for name, raw in services.items()
    }
    assert {name: ports for name, ports in published.items() if ports} == {
        "webui": [(WEBUI_PORT, publish)],
        PROMETHEUS: [(PROMETHEUS_PORT, publish)],
    }
    if not ipvs:  # host mode: the port is open on the node of the task, not on the mesh
        for name, port in (("webui", WEBUI_PORT), (PROMETHEUS, PROMETHEUS_PORT)):
            tasks = manager.api.tasks(filters={"service": name, "desired-state": "running"})
            on_tasks = {  # a set: the port is listed once per address family
                (p["PublishedPort"], p["PublishMode"])
                for task in tasks
                for p in task["Status"].get("PortStatus", {}).get("Ports", [])
            }
            assert on_tasks == {(port, "host")}, (name, tasks)

    # locked down: every spec read-only with all capabilities dropped and limits, and every
    # running container's process 1 with no_new_privs (the nodes' dockerd sets it)
    for name, raw in services.items():
        task = raw["Spec"]["TaskTemplate"]
        container = task["ContainerSpec"]
        assert (container.get("ReadOnly"), container.get("CapabilityDrop")) == (True, ["ALL"])
        limits = task["Resources"]["Limits"]
        assert limits["MemoryBytes"] > 0 and limits["NanoCPUs"] > 0, name
    assert no_new_privs_everywhere(lab) == dict.fromkeys(DEPLOYED, True)

    # each of our images pinned to the digest the registry holds for its tag
    for name in IMAGES:
        image = services[name]["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        match = re.fullmatch(r"(.+)@(sha256:[0-9a-f]{64})", image)
        assert match, image
        ref, digest = match.groups()
        assert ref.startswith(f"{lab.registry}/")
        assert manager.images.get_registry_data(ref).id == digest


def no_new_privs_everywhere(lab: LabState) -> dict[str, bool]:
    """Per deployed service: does every one of its running containers, on every node, run
    its process 1 with NoNewPrivs set?"""
    found: dict[str, bool] = {}
    for node in lab.nodes:
        client = connect(node.docker_host, timeout=30)
        try:
            for container in client.containers.list():
                service = container.labels.get("com.docker.swarm.service.name", "")
                if service in DEPLOYED:
                    status = container.exec_run(["cat", "/proc/1/status"]).output.decode()
                    set_here = "\nNoNewPrivs:\t1\n" in status
                    found[service] = found.get(service, True) and set_here
        finally:
            client.close()
    return found


def test_rng_global_gives_one_series_per_node_and_status_shows_them(
    lab: LabState, rng_global: None
) -> None:
    nodes = sorted(node.name for node in lab.nodes)
    rates: list[prometheus.InstanceRate] = []

    def one_busy_series_per_node() -> bool:
        rates[:] = prometheus.rng_rates(PROMETHEUS_URL) or []
        print("rng rates:", rates)
        return [r.label for r in rates] == nodes and all(r.rate > 0 for r in rates)

    wait_for(one_busy_series_per_node, timeout=90, interval=2.0)
    assert len({r.instance for r in rates}) == len(nodes)

    lines = ok(cli(lab, "status")).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("per task, over the last"))
    assert lines[header + 1].split() == ["SERVICE", "NODE", "INSTANCE", "PER", "SECOND"]
    rows = [line.split() for line in lines[header + 2 :] if line.startswith("rng ")]
    assert sorted(row[1] for row in rows) == nodes
    assert all(row[4] == "answers" for row in rows)
    assert lines[-1].startswith("in all: rng ")


PAGE_RNG_STATE = """
const state = (window.dockercoins || {}).rngRates || {};
return {
  available: state.available === true,
  reason: state.reason || null,
  labels: (state.labels || []).slice(),
  // the fewest values any series has drawn so far
  drawn: state.plot && state.plot.data.length > 1
    ? Math.min(...state.plot.data.slice(1).map(s => s.filter(v => v != null).length)) : 0,
  legend: Array.from(document.querySelectorAll('#rng-chart .u-legend .u-label'))
    .map(e => e.innerText.trim()),
};
"""


def test_the_page_charts_one_rng_line_per_node(
    lab: LabState, rng_global: None, browser: page.Browser
) -> None:
    nodes = sorted(node.name for node in lab.nodes)
    browser.open(WEBUI_URL)
    state: dict[str, Any] = {}

    def charted() -> bool:
        state.update(browser.run(PAGE_RNG_STATE))
        return bool(state["available"]) and sorted(state["labels"]) == nodes

    try:
        wait_for(charted, timeout=60, interval=1.0)
        assert set(nodes) <= set(state["legend"]), state
        # a few values per line (one every 2 s) make a picture of lines, not of dots
        wait_for(lambda: browser.run(PAGE_RNG_STATE)["drawn"] >= 4, timeout=20, interval=1.0)
    finally:
        browser.run("document.getElementById('rng-card').scrollIntoView(); return true;")
        browser.screenshot(page.ARTIFACTS / "lab-rng-rates.png")


# What a program on the overlay network (or in a task) tries; the answers are asserted as
# refusals and written to the lab results, as an intruder would see them.
REGISTRY_PROBES = """\
import base64, ssl, sys, urllib.error, urllib.request
addr, ca = sys.argv[1], sys.argv[2]
def probe(what, url, context, login=None):
    request = urllib.request.Request(url)
    if login:
        request.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as answer:
            got = f"{answer.status} {answer.reason}"
    except urllib.error.HTTPError as error:
        got = f"{error.code} {error.reason}"
    except (OSError, ssl.SSLError) as error:
        got = f"{type(error).__name__}: {getattr(error, 'reason', error)}"
    print(f"{what}|{got}")
trusted = ssl.create_default_context(cadata=ca)
probe("registry catalog, no login", f"https://{addr}/v2/_catalog", trusted)
probe("registry catalog, a guessed password", f"https://{addr}/v2/_catalog", trusted,
      "dockercoins:password")
probe("registry over plain HTTP", f"http://{addr}/v2/_catalog", None)
probe("registry, its certificate not trusted", f"https://{addr}/v2/", ssl.create_default_context())
"""


def _said(output: bytes) -> str:
    """A command's output on one line."""
    lines = [line.strip() for line in output.decode(errors="replace").splitlines()]
    return " / ".join(line for line in lines if line)


def test_an_intruder_is_refused_everywhere_it_tries(
    lab: LabState, manager: Any, dockercoins: None
) -> None:
    answers: dict[str, str] = {}
    client = connect(lab.nodes[1].docker_host, timeout=120)
    try:
        # a container of its own attached to the overlay (it is attachable)
        def on_overlay(image: str, command: list[str]) -> bytes:
            out: bytes = client.containers.run(
                image, command, network="dockercoins", remove=True, stderr=True
            )
            return out

        answers["redis, no password"] = _said(
            on_overlay(REDIS_IMAGE_TAG, ["sh", "-c", "redis-cli -h redis GET hashes 2>&1"])
        )
        answers["redis, a guessed password"] = _said(
            on_overlay(
                REDIS_IMAGE_TAG,
                ["sh", "-c", "REDISCLI_AUTH=password redis-cli -h redis GET hashes 2>&1"],
            )
        )
        ca = registry.tls_files(lab_dir() / "registry").ca_cert.read_text()
        probes = on_overlay(BASE_IMAGE_TAG, ["python3", "-c", REGISTRY_PROBES, lab.registry, ca])
        for line in probes.decode().splitlines():
            what, _, got = line.partition("|")
            answers[what] = got
    finally:
        client.close()
    # inside a worker task: what a compromised service process could do
    [task] = mining.running(manager, "worker")[:1]
    node = manager.nodes.get(task["NodeID"]).attrs["Description"]["Hostname"]
    client = connect(next(n.docker_host for n in lab.nodes if n.name == node), timeout=60)
    try:
        worker = client.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
        answers["worker task, write to its root filesystem"] = _said(
            worker.exec_run(["sh", "-c", "touch /app/planted 2>&1"]).output
        )
        status = worker.exec_run(["cat", "/proc/1/status"]).output.decode()
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        answers["worker task, its capabilities and no_new_privs"] = (
            f"CapEff {fields['CapEff'].strip()}, CapBnd {fields['CapBnd'].strip()}, "
            f"NoNewPrivs {fields['NoNewPrivs'].strip()}"
        )
    finally:
        client.close()
    for what, got in answers.items():
        mining.result(f"intruder: {what}: {got}")

    assert answers["redis, no password"].startswith("NOAUTH")
    assert "WRONGPASS" in answers["redis, a guessed password"]
    assert answers["registry catalog, no login"] == "401 Unauthorized"
    assert answers["registry catalog, a guessed password"] == "401 Unauthorized"
    assert answers["registry over plain HTTP"].startswith("400")
    assert "CERTIFICATE_VERIFY_FAILED" in answers["registry, its certificate not trusted"]
    assert "Read-only file system" in answers["worker task, write to its root filesystem"]
    assert answers["worker task, its capabilities and no_new_privs"] == (
        "CapEff 0000000000000000, CapBnd 0000000000000000, NoNewPrivs 1"
    )
