"""Where the CPU of a lab on this host goes during a benchmark run: per node and per swarm
service, read from the host (no agent in the containers).

A snapshot holds, at one moment, the CPU seconds used so far by
- each container of each lab node: its cgroup /dockercoins-lab/nodeN/<container id>
  (cgroup v1 cpuacct.usage, v2 cpu.stat usage_usec), named by its swarm service (the
  container's label com.docker.swarm.service.name, asked of the node's dockerd);
- each node's daemons: dockerd, containerd and the shims (the processes in the node's
  network namespace that are not in its containers' cgroup), from /proc/PID/stat;
- the whole host: busy and all CPU time from /proc/stat, and the time some task waited
  for a CPU (pressure stall information, /proc/pressure/cpu "some", where the kernel has
  it);
- the time each container process waited on a run queue for a CPU (the run_delay of
  /proc/PID/task/*/schedstat): on a busy host, a request's CPU work waits its turn.
Two snapshots give cores used (CPU seconds per second) in between: `usage(start, end)`.
Processes that started or ended in between count only while both snapshots saw them
(a health check's process lives in its container's cgroup, which counts it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dockercoins.bench.worker_probe import cpu_seconds
from dockercoins.host import cgroups

SERVICE_LABEL = "com.docker.swarm.service.name"
DAEMONS = "daemons"  # the key of a node's dockerd + containerd + shims
OTHER = "other"  # a container no swarm service owns


def host_cpu(stat_text: str) -> tuple[float, float]:
    """(busy, total) seconds of all CPUs from /proc/stat's first line: busy is everything
    but idle and iowait."""
    fields = stat_text.splitlines()[0].split()
    if not fields or fields[0] != "cpu":
        raise ValueError("not /proc/stat: its first line is not the `cpu` total")
    ticks = [int(value) for value in fields[1:]]
    total = sum(ticks[:8])  # user nice system idle iowait irq softirq steal (guests are in user)
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    hertz = os.sysconf("SC_CLK_TCK")
    return (total - idle) / hertz, total / hertz


def cpu_pressure(text: str) -> float | None:
    """Seconds in which some task waited for a CPU, from /proc/pressure/cpu ("some ...
    total=<microseconds>"); None when the line is missing."""
    for line in text.splitlines():
        if line.startswith("some "):
            for item in line.split()[1:]:
                key, _, value = item.partition("=")
                if key == "total" and value.isdigit():
                    return int(value) / 1e6
    return None


def run_delay(pid: int) -> float:
    """Seconds the threads of `pid` waited on a run queue so far (second field of each
    /proc/PID/task/TID/schedstat); OSError when the process is gone."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "schedstat").read_text().split()
        except OSError:  # a thread that ended meanwhile
            continue
        if len(fields) >= 2 and fields[1].isdigit():
            total += int(fields[1])
    return total / 1e9


def _host_pressure() -> float | None:
    try:
        return cpu_pressure(Path("/proc/pressure/cpu").read_text())
    except OSError:
        return None


def cgroup_cpu_seconds(folder: Path) -> float | None:
    """CPU seconds used by the cgroup of `folder` and below it: v1 cpuacct.usage (ns) or v2
    cpu.stat usage_usec; None when the folder has neither (or is gone)."""
    try:
        return int((folder / "cpuacct.usage").read_text().strip()) / 1e9
    except (OSError, ValueError):
        pass
    try:
        text = (folder / "cpu.stat").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec" and value.strip().isdigit():
            return int(value) / 1e6
    return None


def cpu_hierarchies(found: Sequence[cgroups.Hierarchy]) -> list[cgroups.Hierarchy]:
    """The hierarchies that account CPU time: v1 with cpuacct, else v2."""
    v1 = [h for h in found if h.version == 1 and "cpuacct" in h.controllers]
    return v1 or [h for h in found if h.version == 2]


@dataclass(frozen=True)
class Snapshot:
    """CPU seconds so far, at `at` (monotonic): of each container (id -> seconds), of each
    daemon process (pid -> (node, seconds)), and the host's busy and total seconds."""

    at: float
    containers: dict[str, float] = field(default_factory=dict)
    daemons: dict[int, tuple[str, float]] = field(default_factory=dict)
    host_busy: float = 0.0
    host_total: float = 0.0
    waits: dict[int, tuple[str, float]] = field(default_factory=dict)  # pid -> (container, s)
    pressure: float | None = None  # /proc/pressure/cpu some total, seconds


@dataclass(frozen=True)
class Usage:
    """Cores used between two snapshots (CPU seconds per second)."""

    seconds: float
    cpus: int
    host_busy: float  # cores busy on the whole host
    by_node_service: dict[tuple[str, str], float]
    # run-queue wait of the containers' processes, seconds per second, per (node, service)
    waiting: dict[tuple[str, str], float] = field(default_factory=dict)
    pressure: float | None = None  # share of the time some task waited for a CPU (PSI)

    def waiting_by_service(self) -> dict[str, float]:
        """service -> seconds per second its processes waited for a CPU."""
        result: dict[str, float] = {}
        for (_, service), value in self.waiting.items():
            result[service] = result.get(service, 0.0) + value
        return dict(sorted(result.items()))

    def by_service(self) -> dict[str, float]:
        """service -> cores, over every node (DAEMONS: all nodes' daemons)."""
        result: dict[str, float] = {}
        for (_, service), cores in self.by_node_service.items():
            result[service] = result.get(service, 0.0) + cores
        return dict(sorted(result.items()))

    def by_node(self) -> dict[str, float]:
        """node -> cores (its containers and its daemons)."""
        result: dict[str, float] = {}
        for (node, _), cores in self.by_node_service.items():
            result[node] = result.get(node, 0.0) + cores
        return result

    @property
    def lab(self) -> float:
        """Cores used by the lab's containers and daemons."""
        return sum(self.by_node_service.values())


def usage(
    start: Snapshot, end: Snapshot, owners: Mapping[str, tuple[str, str]], cpus: int
) -> Usage:
    """Cores per (node, service) between the snapshots: each container and each daemon
    process seen in both counts what it used in between; containers are added up by
    `owners` (container id -> (node, service)), daemons under (node, DAEMONS)."""
    seconds = max(end.at - start.at, 1e-9)
    cores: dict[tuple[str, str], float] = {}

    def add(key: tuple[str, str], before: float, after: float) -> None:
        cores[key] = cores.get(key, 0.0) + max(0.0, after - before) / seconds

    for container, value in end.containers.items():
        if container in start.containers and container in owners:
            add(owners[container], start.containers[container], value)
    for pid, (node, value) in end.daemons.items():
        if pid in start.daemons and start.daemons[pid][0] == node:
            add((node, DAEMONS), start.daemons[pid][1], value)
    waiting: dict[tuple[str, str], float] = {}
    for pid, (container, value) in end.waits.items():
        if pid in start.waits and start.waits[pid][0] == container and container in owners:
            key = owners[container]
            waited = max(0.0, value - start.waits[pid][1]) / seconds
            waiting[key] = waiting.get(key, 0.0) + waited
    busy = max(0.0, end.host_busy - start.host_busy)
    total = max(end.host_total - start.host_total, 1e-9)
    pressure = None
    if start.pressure is not None and end.pressure is not None:
        pressure = min(1.0, max(0.0, end.pressure - start.pressure) / seconds)
    return Usage(
        seconds=seconds,
        cpus=cpus,
        host_busy=busy / total * cpus,
        by_node_service=_by_node(cores),
        waiting=_by_node(waiting),
        pressure=pressure,
    )


def _by_node(values: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    return dict(sorted(values.items(), key=lambda item: (natural_key(item[0][0]), item[0][1])))


def natural_key(name: str) -> tuple[str, int]:
    """node2 before node10."""
    stem = name.rstrip("0123456789")
    digits = name[len(stem) :]
    return stem, int(digits) if digits else -1


class LabCpu:
    """Snapshots of the CPU of the lab on this host, nodes by index; `owners` maps each
    container seen to its (node, service)."""

    def __init__(self, indexes: Sequence[int]) -> None:
        self.indexes = list(indexes)
        self.owners: dict[str, tuple[str, str]] = {}
        self.cpus = os.cpu_count() or 1

    def _learn_owners(self, index: int, name: str) -> None:
        """Ask the node's dockerd which service each of its containers belongs to."""
        from dockercoins.lab import nodes

        client = nodes.client(index, timeout=10)
        try:
            for raw in client.api.containers(all=True):
                service = (raw.get("Labels") or {}).get(SERVICE_LABEL) or OTHER
                self.owners[str(raw["Id"])] = (name, service)
        finally:
            client.close()

    def snapshot(self) -> Snapshot:
        from dockercoins.lab import network as labnet
        from dockercoins.lab import nodes

        found = cpu_hierarchies(cgroups.hierarchies())
        containers: dict[str, float] = {}
        daemons: dict[int, tuple[str, float]] = {}
        waits: dict[int, tuple[str, float]] = {}
        pressure = _host_pressure()
        for index in self.indexes:
            name = labnet.node_name(index)
            cgroup = nodes.cgroup(index)
            children = cgroups.children(cgroup, found)
            for child in children:
                for folder in cgroups.folders(f"{cgroup}/{child}", found):
                    value = cgroup_cpu_seconds(folder)
                    if value is not None:
                        containers[child] = value
                        break
                for pid in cgroups.pids_under(f"{cgroup}/{child}", found):
                    try:
                        waits[pid] = (child, run_delay(pid))
                    except OSError:  # gone meanwhile
                        continue
            if any(child not in self.owners for child in children):
                self._learn_owners(index, name)
            in_containers = set(cgroups.pids_under(cgroup))
            for pid in set(labnet.netns_pids(name)) - in_containers:
                try:
                    daemons[pid] = (name, cpu_seconds(pid))
                except (OSError, IndexError, ValueError):  # gone meanwhile
                    continue
        busy, all_time = host_cpu(Path("/proc/stat").read_text())
        return Snapshot(time.monotonic(), containers, daemons, busy, all_time, waits, pressure)

    def usage(self, start: Snapshot, end: Snapshot) -> Usage:
        return usage(start, end, self.owners, self.cpus)
