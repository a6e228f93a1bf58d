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
    from dockercoins.images import registry, registry_trust

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
    trusted = registry_trust.ca_path(labnet.REGISTRY_ADDRESS)
    if (lab_dir() / "registry" / registry_trust.RECORD).exists() or (
        trusted.exists() and trusted.read_bytes() == _lab_ca()
    ):
        left.append(f"the registry's CA in {trusted}")
    return left


def _lab_ca() -> bytes | None:
    from dockercoins.images import registry

    ca = registry.tls_files(lab_dir() / "registry").ca_cert
    return ca.read_bytes() if ca.is_file() else None
