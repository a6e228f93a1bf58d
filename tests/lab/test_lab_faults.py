"""A lab node that dies, on the real lab with DockerCoins deployed (rng global, so node2 runs
a container): `lab node stop|start` (a swarm command warns, naming the node that is not
ready); `lab node kill` (a power loss: nothing of the node survives) followed by `lab up`;
a node whose daemons and shims are SIGKILLed by hand, whose containers run on as orphans,
followed by `lab down`; and every lab process at once (all nodes' daemons and shims, the
forwarders, the registry) SIGKILLed, after which `lab up` brings it all back and the
coins are mined again. After each, no process is left in the node's cgroup but those of
the containers its live dockerd runs, and no DockerCoins service process of a lab
container runs anywhere else on the host. Every test leaves the lab up and healthy."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockercoins.dockerapi import connect
from dockercoins.host import cgroups, processes
from dockercoins.images import registry
from dockercoins.lab import forward as labforward
from dockercoins.lab import nodes
from dockercoins.lab.network import MAX_NODES
from dockercoins.lab.state import LabState, lab_dir

from tests.lab import test_bench_rng_modes as bench
from tests.lab.test_lab_e2e import wait_hashes_rise
from tests.support.lab import cli, ok
from tests.support.servers import wait_for

pytestmark = pytest.mark.lab

dockercoins = bench.dockercoins  # DockerCoins deployed on the lab (ship + deploy)

NODE = 2
SERVICE_MARKERS = ("worker.py", "rng.py", "hasher.py", "webui.py", "redis-server")
UP_TIMEOUT = 600


@pytest.fixture(scope="module")
def rng_everywhere(lab: LabState, dockercoins: None) -> Iterator[None]:
    """rng in global mode: a task on every node, node2 included (started again on a node
    that comes back), so node2 always has containers to orphan."""
    ok(cli(lab, "rng-mode", "global", "--timeout", "240"))
    yield


def _cgroup_paths(pid: int) -> list[str]:
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return []
    return [line.split(":", 2)[2] for line in lines if line.count(":") >= 2]


def _lab_container_ids() -> set[str]:
    """Ids of every container a lab node's data root knows (also of a node started before
    its cgroup parent, whose containers live in /docker/<id>)."""
    ids: set[str] = set()
    for index in range(1, MAX_NODES + 1):
        folder = nodes.daemon(index).data_root / "containers"
        if folder.is_dir():
            ids |= {entry.name for entry in folder.iterdir()}
    return ids


def lab_service_processes() -> dict[int, str]:
    """pid -> container id of each DockerCoins service process that runs in a lab
    container: in a cgroup below /dockercoins-lab, or in /docker/<id> of a lab container."""
    ids = _lab_container_ids()
    found = {}
    for pid in (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()):
        line = " ".join(processes.cmdline(pid))
        if not any(marker in line for marker in SERVICE_MARKERS):
            continue
        for path in _cgroup_paths(pid):
            last = path.rstrip("/").rsplit("/", 1)[-1]
            if path.startswith(nodes.CGROUP_ROOT + "/") or last in ids:
                found[pid] = last
                break
    return found


def node_service_pids(index: int) -> list[int]:
    """Service processes in node `index`'s cgroup."""
    inside = set(cgroups.pids_under(nodes.cgroup(index)))
    return sorted(pid for pid in lab_service_processes() if pid in inside)


def running_container_ids(lab: LabState) -> dict[str, set[str]]:
    """node name -> ids of the containers its live dockerd runs now."""
    running = {}
    for node in lab.nodes:
        client = connect(node.docker_host, timeout=60)
        try:
            running[node.name] = {container.id for container in client.containers.list()}
        finally:
            client.close()
    return running


def unaccounted(lab: LabState) -> dict[str, object]:
    """What a live lab daemon does not account for: per node, the cgroups below its own
    that are not those of the containers its dockerd runs (and the reverse), and the
    DockerCoins processes of lab containers that no live daemon runs."""
    running = running_container_ids(lab)
    found: dict[str, object] = {}
    for index, node in enumerate(lab.nodes, start=1):
        in_cgroup = set(cgroups.children(nodes.cgroup(index)))
        if in_cgroup != running[node.name]:
            found[node.name] = (in_cgroup - running[node.name], running[node.name] - in_cgroup)
    everywhere = set().union(*running.values())
    orphans = {pid: cid for pid, cid in lab_service_processes().items() if cid not in everywhere}
    if orphans:
        found["orphans"] = orphans
    return found


def assert_no_orphans(lab: LabState) -> None:
    """Once the swarm has settled (bounded), everything is accounted for."""
    with contextlib.suppress(AssertionError):  # the assertion below names what is left
        wait_for(lambda: not unaccounted(lab), timeout=60, interval=1)
    assert unaccounted(lab) == {}


def node_daemons_by_hand(index: int) -> list[int]:
    """The node's dockerd (its pidfile), containerd and shims (their command lines name the
    node's exec root), found without the tool's help."""
    node = nodes.daemon(index)
    found = set()
    dockerd_pid = processes.read_pidfile(node.pidfile)
    if dockerd_pid is not None and processes.is_alive(dockerd_pid):
        found.add(dockerd_pid)
    for pid in (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()):
        if str(node.exec_root) in " ".join(processes.cmdline(pid)):
            found.add(pid)
    return sorted(found)


def swarm_state(lab: LabState, hostname: str) -> str:
    """The node's state in the manager's node list (ready, down, unknown...)."""
    client = connect(lab.manager.docker_host, timeout=60)
    try:
        states = {
            node.attrs["Description"]["Hostname"]: node.attrs["Status"]["State"]
            for node in client.nodes.list()
        }
    finally:
        client.close()
    return str(states[hostname])


def every_lab_process(lab: LabState) -> dict[str, list[int]]:
    """What runs the lab, found without the tool's help: per node its dockerd, containerd
    and shims; the two forwarders and the registry (their pidfiles, checked alive)."""
    found = {node.name: node_daemons_by_hand(index) for index, node in enumerate(lab.nodes, 1)}
    for forward in (labforward.WEBUI, labforward.PROMETHEUS):
        pid = labforward.running_pid(forward)
        found[f"forwarder{forward.suffix}"] = [] if pid is None else [pid]
    pid = registry.status(lab_dir() / "registry").pid
    found["registry"] = [] if pid is None else [pid]
    return found


def lab_up(lab: LabState) -> None:
    ok(cli(lab, "lab", "up", "--nodes", str(len(lab.nodes)), timeout=UP_TIMEOUT))
    status = cli(lab, "lab", "status", timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr


@pytest.mark.lab_disruptive
def test_every_lab_process_killed_then_up_recovers_and_mines(
    lab: LabState, rng_everywhere: None
) -> None:
    wait_hashes_rise(timeout=120)  # it mines before the crash
    before = every_lab_process(lab)
    assert all(before.values()), before  # each node's daemons, both forwarders, registry
    assert all(len(before[node.name]) >= 3 for node in lab.nodes), before
    killed = sorted({pid for pids in before.values() for pid in pids})
    try:
        for pid in killed:  # all at once, as a crash of the host's lab would
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(processes.is_alive(pid) for pid in killed), timeout=30)
        assert cli(lab, "lab", "status", timeout=120).returncode == 1
        recovered = cli(lab, "lab", "up", "--nodes", str(len(lab.nodes)), timeout=UP_TIMEOUT)
        assert recovered.returncode == 0, recovered.stderr
    finally:
        lab_up(lab)  # also checks `lab status`: every node, registry and forwarder up
    after = every_lab_process(lab)
    assert all(after.values()), after
    assert not set(killed) & {pid for pids in after.values() for pid in pids}
    assert {node.name: swarm_state(lab, node.name) for node in lab.nodes} == dict.fromkeys(
        (node.name for node in lab.nodes), "ready"
    )
    wait_hashes_rise(timeout=240)  # the swarm ran every task again: the coins are mined
    assert_no_orphans(lab)


@pytest.mark.lab_disruptive
def test_node_stop_then_start(lab: LabState, rng_everywhere: None) -> None:
    node = nodes.daemon(NODE)
    try:
        ok(cli(lab, "lab", "node", "stop", f"node{NODE}", timeout=120))
        assert node.pid() is None
        assert cgroups.pids_under(nodes.cgroup(NODE)) == []
        assert node_service_pids(NODE) == []
        assert cli(lab, "lab", "status", timeout=120).returncode == 1  # node2 is DOWN
        # once the manager sees it, a swarm command names the node that is not ready
        wait_for(lambda: swarm_state(lab, f"node{NODE}") != "ready", timeout=90, interval=1)
        warned = cli(lab, "rng-mode", "global", "--timeout", "120")  # rng is global already
        assert warned.returncode == 0, warned.stderr
        warnings = [line for line in warned.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1, warned.stderr
        assert warnings[0].startswith(f"warning: node node{NODE} is ")
        ok(cli(lab, "lab", "node", "start", f"node{NODE}", timeout=UP_TIMEOUT))
        assert node.pid() is not None
        assert cli(lab, "lab", "status", timeout=120).returncode == 0
    finally:
        lab_up(lab)


@pytest.mark.lab_disruptive
def test_node_kill_leaves_no_survivors_and_up_brings_it_back(
    lab: LabState, rng_everywhere: None
) -> None:
    wait_for(lambda: node_service_pids(NODE), timeout=180, interval=1)
    before = cgroups.pids_under(nodes.cgroup(NODE))
    daemons = node_daemons_by_hand(NODE)
    try:
        killed = cli(lab, "lab", "node", "kill", f"node{NODE}", timeout=120)
        assert killed.returncode == 0, killed.stderr
        assert cgroups.pids_under(nodes.cgroup(NODE)) == []  # a power loss: no survivors
        assert [pid for pid in [*before, *daemons] if processes.is_alive(pid)] == []
        assert node_service_pids(NODE) == []
    finally:
        lab_up(lab)
    assert [pid for pid in before if processes.is_alive(pid)] == []
    assert_no_orphans(lab)


@pytest.mark.lab_disruptive
def test_daemons_killed_by_hand_then_down_leaves_no_process(
    lab: LabState, rng_everywhere: None
) -> None:
    wait_for(lambda: node_service_pids(NODE), timeout=180, interval=1)
    daemons = node_daemons_by_hand(NODE)
    assert len(daemons) >= 3  # dockerd, containerd, at least one shim
    try:
        for pid in daemons:  # every daemon of the node at once, as a crash would
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(processes.is_alive(pid) for pid in daemons), timeout=30)
        orphans = node_service_pids(NODE)
        assert orphans, "the node's containers should outlive its daemons"
        down = cli(lab, "lab", "down", timeout=300)
        assert down.returncode == 0, down.stderr
        assert "nothing of the lab is running" in down.stderr
        assert cgroups.pids_under(nodes.CGROUP_ROOT) == []
        assert cgroups.folders(nodes.CGROUP_ROOT) == []
        assert [pid for pid in orphans if processes.is_alive(pid)] == []
        assert lab_service_processes() == {}
    finally:
        lab_up(lab)
