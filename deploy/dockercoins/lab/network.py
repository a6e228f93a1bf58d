"""The lab's network: a host bridge, one network namespace per node, a veth pair each.

    host: dcbr0 10.213.47.1/24  <- dcveth1 ... dcveth3 (bridge ports)
    node1 netns: eth0 10.213.47.11/24, lo, default via 10.213.47.1     (node2 .12, ...)

Every address and name the lab uses is defined here. The subnet stays out of Docker's
default pools (172.17.0.0/16 and up for bridges, 10.0.x.0/24 for swarm overlays).
All calls go through `ip` and `iptables`; failures become one-line UserErrors.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

from dockercoins.errors import UserError

BRIDGE = "dcbr0"
SUBNET_PREFIX = "10.213.47"
PREFIX_LEN = 24
HOST_IP = f"{SUBNET_PREFIX}.1"
REGISTRY_PORT = 5000
REGISTRY_ADDRESS = f"{HOST_IP}:{REGISTRY_PORT}"  # the lab's registry, as every node reaches it
FIRST_NODE_HOST_PART = 11  # node1 is .11, node2 .12, ...
DEFAULT_NODES = 3
MAX_NODES = 10  # checked on a 2-core, 24 GiB host: see docs/lab.md "At scale"
NODE_NAME = re.compile(r"^node([0-9]+)$")
FORWARD_RULE = ["FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"]


def node_name(index: int) -> str:
    """node1, node2, ... (1-based): the namespace and the hostname."""
    return f"node{index}"


def node_ip(index: int) -> str:
    return f"{SUBNET_PREFIX}.{FIRST_NODE_HOST_PART + index - 1}"


def host_veth(index: int) -> str:
    return f"dcveth{index}"


def node_index(name: str) -> int:
    match = NODE_NAME.match(name)
    if not match:
        raise ValueError(f"not a lab node name: {name!r}")
    return int(match.group(1))


def run(args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a networking command; a failure is a one-line UserError naming the command."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=30)
    except FileNotFoundError as error:
        raise UserError(
            f"{args[0]} is missing: apt-get install iproute2 iptables util-linux"
        ) from error
    except subprocess.TimeoutExpired as error:
        raise UserError(f"`{' '.join(args)}` did not finish within 30 s") from error
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise UserError(f"`{' '.join(args)}` failed: {detail[-1] if detail else 'no output'}")
    return done


def _json(args: list[str]) -> list[dict[str, Any]]:
    done = run(args, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        return []
    data: list[dict[str, Any]] = json.loads(done.stdout)
    return data


# --- the bridge and the forward rule -------------------------------------------------


def bridge_ok() -> bool:
    links = _json(["ip", "-j", "addr", "show", "dev", BRIDGE])
    if not links:
        return False
    addrs = {info.get("local") for info in links[0].get("addr_info", [])}
    return HOST_IP in addrs and "UP" in links[0].get("flags", [])


def link_exists(name: str, netns: str | None = None) -> bool:
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    return run([*prefix, "link", "show", "dev", name], check=False).returncode == 0


def ensure_bridge() -> None:
    if bridge_ok():
        return
    if not link_exists(BRIDGE):
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    run(["ip", "addr", "replace", f"{HOST_IP}/{PREFIX_LEN}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def delete_bridge() -> None:
    if link_exists(BRIDGE):
        run(["ip", "link", "delete", BRIDGE])


def forward_rule_present() -> bool:
    return run(["iptables", "-C", *FORWARD_RULE], check=False).returncode == 0


def ensure_forward_rule() -> None:
    """Bridged traffic between nodes goes through the host's FORWARD chain (br_netfilter),
    whose policy is DROP once any dockerd ran on the host: accept the lab bridge."""
    if not forward_rule_present():
        run(["iptables", "-I", *FORWARD_RULE])


def remove_forward_rule() -> None:
    for _ in range(10):  # remove duplicates too, bounded
        if not forward_rule_present():
            return
        run(["iptables", "-D", *FORWARD_RULE])


# --- the nodes' namespaces ---------------------------------------------------------


def namespaces() -> list[str]:
    """Lab node namespaces that exist now (node1, node2, ...)."""
    names = [entry.get("name", "") for entry in _json(["ip", "-j", "netns", "list"])]
    return sorted((name for name in names if NODE_NAME.match(name)), key=node_index)


def node_net_ok(index: int) -> bool:
    """The node's namespace, eth0 with its address and up, and the host end on the bridge."""
    name = node_name(index)
    if name not in namespaces():
        return False
    links = _json(["ip", "-n", name, "-j", "addr", "show", "dev", "eth0"])
    if not links or "UP" not in links[0].get("flags", []):
        return False
    if node_ip(index) not in {info.get("local") for info in links[0].get("addr_info", [])}:
        return False
    host = _json(["ip", "-j", "link", "show", "dev", host_veth(index)])
    return bool(host) and host[0].get("master") == BRIDGE and "UP" in host[0].get("flags", [])


def create_node_net(index: int) -> None:
    """Namespace, veth pair (eth0 inside, dcvethN on the bridge), address, lo, route."""
    name, veth, peer = node_name(index), host_veth(index), f"dcpeer{index}"
    run(["ip", "netns", "add", name])
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", peer])
    run(["ip", "link", "set", peer, "netns", name])
    run(["ip", "-n", name, "link", "set", peer, "name", "eth0"])
    run(["ip", "-n", name, "addr", "add", f"{node_ip(index)}/{PREFIX_LEN}", "dev", "eth0"])
    run(["ip", "-n", name, "link", "set", "eth0", "up"])
    run(["ip", "-n", name, "link", "set", "lo", "up"])
    run(["ip", "-n", name, "route", "replace", "default", "via", HOST_IP])
    run(["ip", "link", "set", veth, "master", BRIDGE])
    run(["ip", "link", "set", veth, "up"])


def delete_node_net(index: int) -> None:
    """Remove the namespace (which takes eth0 with it) and the host veth if still there."""
    name = node_name(index)
    if name in namespaces():
        run(["ip", "netns", "delete", name])
    for leftover in (host_veth(index), f"dcpeer{index}"):
        if link_exists(leftover):
            run(["ip", "link", "delete", leftover], check=False)


def netns_pids(name: str) -> list[int]:
    """Processes running in the node's network namespace (dockerd, containerd, shims)."""
    done = run(["ip", "netns", "pids", name], check=False)
    return [int(word) for word in done.stdout.split() if word.isdigit()]


def lab_links() -> list[str]:
    """Host links that belong to the lab (the bridge and the node veths)."""
    names = [entry.get("ifname", "") for entry in _json(["ip", "-j", "link", "show"])]
    return [n for n in names if n == BRIDGE or n.startswith(("dcveth", "dcpeer"))]
