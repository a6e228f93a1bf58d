"""`lab status`: each node's daemon and its swarm state and role, its memory, the registry,
the web UI and Prometheus forwarders, as the manager and the host see them now.

A node's memory, three parts: its dockerd (with the docker-proxy helpers it starts), its
containerd with the container shims (resident set sizes from /proc, so shared pages count
in each process), and its containers: the usage of the node's cgroup
/dockercoins-lab/nodeN (cgroup v2 memory.current, v1 memory.usage_in_bytes; both count
the page cache of the containers' files), None where no memory controller is mounted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dockercoins import ui
from dockercoins.errors import UserError
from dockercoins.host import cgroups
from dockercoins.lab import forward as labforward
from dockercoins.lab import network as labnet
from dockercoins.lab import nodes
from dockercoins.lab import state as lab_state
from dockercoins.lab.state import LabState, lab_dir


@dataclass(frozen=True)
class NodeMemory:
    """Bytes of memory a node uses now (see the module's doc)."""

    dockerd: int  # dockerd and docker-proxy: resident set sizes added up
    containerd: int  # containerd and the containerd-shim processes: the same
    containers: int | None  # the node's cgroup usage; None without a memory controller
    shims: int = 0  # how many containerd-shim processes

    @property
    def total(self) -> int:
        return self.dockerd + self.containerd + (self.containers or 0)


@dataclass(frozen=True)
class NodeStatus:
    name: str
    ip: str
    dockerd: bool
    hostname: str
    state: str  # swarm node state (ready, down, ...) or "-" when not in the swarm
    role: str  # manager, manager (leader), worker or "-"
    memory: NodeMemory | None = None  # None when nothing of the node runs


@dataclass(frozen=True)
class LabStatus:
    state: LabState
    nodes: tuple[NodeStatus, ...]
    registry: bool
    forwarder: bool
    prometheus_forwarder: bool = False

    @property
    def healthy(self) -> bool:
        return self.registry and all(n.dockerd and n.state == "ready" for n in self.nodes)


def status() -> LabStatus:
    """The recorded lab, checked now; UserError when no lab is up."""
    from dockercoins.images import registry

    state = lab_state.load()
    if state is None:
        raise UserError("no lab is up: bring one up with `dockercoins lab up`")
    swarm = _swarm_view(state)
    found = []
    hierarchies = cgroups.hierarchies()
    for node in state.nodes:
        index = labnet.node_index(node.name)
        alive = nodes.daemon(index).healthy()
        node_state, role = swarm.get(node.name, ("-", "-"))
        memory = node_memory(index, hierarchies)
        found.append(NodeStatus(node.name, node.ip, alive, node.name, node_state, role, memory))
    return LabStatus(
        state=state,
        nodes=tuple(found),
        registry=registry.answers(
            labnet.REGISTRY_ADDRESS, registry.tls_files(lab_dir() / "registry").ca_cert
        ),
        forwarder=labforward.running_pid(labforward.WEBUI) is not None,
        prometheus_forwarder=labforward.running_pid(labforward.PROMETHEUS) is not None,
    )


def _swarm_view(state: LabState) -> dict[str, tuple[str, str]]:
    """hostname -> (state, role) from the node list of the lab's first live manager ({}
    when it cannot tell); a manager's role says "(leader)", or its reachability when it
    is not reachable."""
    import docker.errors

    index = labnet.node_index(state.manager.name)
    if not nodes.daemon(index).answers():
        return {}
    client = nodes.client(index, timeout=10)
    try:
        view = {}
        for node in client.nodes.list():
            role = node.attrs["Spec"]["Role"]
            manager_status = node.attrs.get("ManagerStatus") or {}
            if manager_status.get("Leader"):
                role += " (leader)"
            elif manager_status and manager_status.get("Reachability") != "reachable":
                role += f" ({manager_status.get('Reachability', 'unknown')})"
            view[node.attrs["Description"]["Hostname"]] = (node.attrs["Status"]["State"], role)
        return view
    except docker.errors.APIError:
        return {}
    finally:
        client.close()


# --- memory -----------------------------------------------------------------------------


def rss_bytes(status_text: str) -> int:
    """VmRSS of a /proc/PID/status text, in bytes (0 when absent: a kernel thread, a
    zombie)."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return 0


def _proc_text(pid: int, name: str) -> str:
    try:
        return Path(f"/proc/{pid}/{name}").read_text()
    except OSError:  # gone meanwhile
        return ""


def is_containerd(comm: str) -> bool:
    """containerd itself and its shims (comm is cut to 15 characters: "containerd-shim")."""
    return comm.startswith("containerd")


def daemon_memory(pids: Iterable[int], skip: Iterable[int] = ()) -> tuple[int, int, int]:
    """(dockerd bytes, containerd bytes, shims) of a node's daemon processes: each pid's
    RSS goes to containerd when its name starts with "containerd", else to dockerd;
    processes in `skip` (the containers' own) are left out."""
    skipped = set(skip)
    dockerd = containerd = shims = 0
    for pid in sorted(set(pids) - skipped):
        comm = _proc_text(pid, "comm").strip()
        rss = rss_bytes(_proc_text(pid, "status"))
        if is_containerd(comm):
            containerd += rss
            shims += comm.startswith("containerd-shim")
        else:
            dockerd += rss
    return dockerd, containerd, shims


MEMORY_FILES = ("memory.current", "memory.usage_in_bytes")  # cgroup v2, v1


def _accounts_memory(hierarchy: cgroups.Hierarchy) -> bool:
    if hierarchy.version == 1:
        return "memory" in hierarchy.controllers
    try:
        return "memory" in (hierarchy.mountpoint / "cgroup.controllers").read_text().split()
    except OSError:
        return False


def cgroup_memory(cgroup: str, found: Sequence[cgroups.Hierarchy]) -> int | None:
    """Bytes the cgroup (and all below it) uses: memory.current (v2) or
    memory.usage_in_bytes (v1) of its folder; 0 when it does not exist (yet) in a hierarchy
    that accounts memory; None when no hierarchy does."""
    accounting = [hierarchy for hierarchy in found if _accounts_memory(hierarchy)]
    for folder in cgroups.folders(cgroup, accounting):
        for name in MEMORY_FILES:
            try:
                text = (folder / name).read_text().strip()
            except OSError:
                continue
            if text.isdigit():
                return int(text)
    return 0 if accounting else None


def node_memory(index: int, found: Sequence[cgroups.Hierarchy]) -> NodeMemory | None:
    """What node `index` uses now; None when none of its processes runs."""
    name = labnet.node_name(index)
    pid = nodes.daemon(index).pid()
    daemons = set(labnet.netns_pids(name)) if name in labnet.namespaces() else set()
    daemons |= {pid} if pid is not None else set()
    containers = cgroups.pids_under(nodes.cgroup(index), found)
    if not daemons and not containers:
        return None
    dockerd, containerd, shims = daemon_memory(daemons, skip=containers)
    return NodeMemory(
        dockerd=dockerd,
        containerd=containerd,
        containers=cgroup_memory(nodes.cgroup(index), found),
        shims=shims,
    )


def megabytes(value: int | None) -> str:
    """Bytes as "123 MB" (10^6), "-" for None."""
    return "-" if value is None else f"{value / 1e6:.0f} MB"


def memory_table(found: Sequence[NodeStatus]) -> list[str]:
    """The memory of each node and of them all, as aligned lines (a header first)."""
    rows = [["MEMORY", "DOCKERD", "CONTAINERD+SHIMS", "CONTAINERS", "NODE TOTAL"]]
    measured = [node.memory for node in found if node.memory is not None]
    for node in found:
        memory = node.memory
        if memory is None:
            rows.append([node.name, "-", "-", "-", "-"])
            continue
        rows.append(
            [
                node.name,
                megabytes(memory.dockerd),
                f"{megabytes(memory.containerd)} ({memory.shims} shim"
                f"{'' if memory.shims == 1 else 's'})",
                megabytes(memory.containers),
                megabytes(memory.total),
            ]
        )
    if len(measured) > 1:
        known = [m.containers for m in measured if m.containers is not None]
        rows.append(
            [
                "all",
                megabytes(sum(m.dockerd for m in measured)),
                megabytes(sum(m.containerd for m in measured)),
                megabytes(sum(known)) if known else "-",
                megabytes(sum(m.total for m in measured)),
            ]
        )
    return ui.table(rows)
