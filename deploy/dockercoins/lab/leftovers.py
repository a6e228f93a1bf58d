"""What of the lab is still on the host, as `lab down` checks it before it says "nothing of
the lab is running": processes in the lab's cgroups, node namespaces, links, the FORWARD
rule, mounts under the lab's folder, the forwarders and the registry."""

from __future__ import annotations

from dockercoins.host import cgroups, mounts, processes
from dockercoins.lab import forward as labforward
from dockercoins.lab import network as labnet
from dockercoins.lab.nodes import CGROUP_ROOT
from dockercoins.lab.state import lab_dir


def _process(pid: int) -> str:
    return f"pid {pid} ({' '.join(processes.cmdline(pid))[:80] or 'gone'})"


def leftovers() -> list[str]:
    """One short phrase per kind of thing that is left; [] when nothing is."""
    from dockercoins.images import registry

    left = []
    pids = cgroups.pids_under(CGROUP_ROOT)
    if pids:
        left.append(f"{len(pids)} processes in cgroup {CGROUP_ROOT}, e.g. {_process(pids[0])}")
    if names := labnet.namespaces():
        left.append(f"namespaces {', '.join(names)}")
    if links := labnet.lab_links():
        left.append(f"links {', '.join(links)}")
    if labnet.forward_rule_present():
        left.append(f"the iptables rule {' '.join(labnet.FORWARD_RULE)}")
    if points := mounts.mounts_under(lab_dir()):
        left.append(f"{len(points)} mounts under {lab_dir()}, e.g. {points[0]}")
    for forward in labforward.FORWARDS:
        if (pid := labforward.running_pid(forward)) is not None:
            left.append(f"the {forward.what} forwarder, {_process(pid)}")
    if registry.status(lab_dir() / "registry").running:
        left.append("the registry")
    return left
