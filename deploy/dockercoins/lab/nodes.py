"""One dockerd per lab node, in the node's network namespace and its own UTS namespace.

    nsenter --net=/var/run/netns/nodeN unshare --uts sh -c 'hostname nodeN; exec dockerd ...'

(`ip netns exec` would remount /sys, and dockerd then fails.) Each daemon keeps its data
root, exec root, pidfile, socket and log in <state>/lab/nodeN/.
"""

from __future__ import annotations

import shutil
from typing import Any

from dockercoins.errors import UserError
from dockercoins.host import dockerd, mounts, processes
from dockercoins.host.dockerd import Dockerd
from dockercoins.lab import network as labnet
from dockercoins.lab.state import lab_dir

STOP_TIMEOUT = 20.0
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; containerd adds to the exec root


def daemon(index: int) -> Dockerd:
    """Where node `index` keeps its daemon's files: <state>/lab/nodeN/ (exec root in exec/)."""
    root = lab_dir() / labnet.node_name(index)
    return Dockerd(root=root, exec_root=root / "exec")


def client(index: int, timeout: int = 60) -> Any:
    """A Docker SDK client for the node's dockerd (UserError when it does not answer)."""
    return dockerd.connect(daemon(index), timeout=timeout)


def _in_namespaces(name: str) -> list[str]:
    """Enter the node's network namespace and a UTS namespace of its own named `name`."""
    return [
        "nsenter",
        f"--net=/var/run/netns/{name}",
        "unshare",
        "--uts",
        "sh",
        "-c",
        f'hostname {name} && exec "$@"',
        "sh",
    ]


def start(index: int, insecure_registry: str) -> None:
    """Start the node's dockerd (its namespace must exist) and wait until it answers."""
    node = daemon(index)
    if len(str(node.exec_root / "containerd" / "containerd.sock.ttrpc")) > SOCKET_PATH_MAX:
        raise UserError(
            f"the lab's state directory {lab_dir()} is too deep for unix sockets: "
            "set DOCKERCOINS_STATE to a shorter path"
        )
    name = labnet.node_name(index)
    dockerd.start(
        node,
        prefix=_in_namespaces(name),
        extra_args=["--insecure-registry", insecure_registry, "--shutdown-timeout", "5"],
        what=f"dockerd of {name}",
    )


def stop(index: int) -> None:
    """Stop everything the node runs: dockerd (TERM, KILL after a bound), then whatever is
    left in its namespace (containerd, shims) and any process whose root is in its data
    root (orphaned containers); then unmount what dockerd left under the node's folder."""
    node, name = daemon(index), labnet.node_name(index)
    dockerd.stop(node, STOP_TIMEOUT)
    if name in labnet.namespaces():
        processes.stop(labnet.netns_pids(name), 5.0)
    if node.root.exists():
        processes.stop(processes.processes_rooted_under(node.root), 2.0)
    left = mounts.unmount_all_under(node.root)
    if left:
        raise UserError(f"could not unmount {len(left)} mounts under {node.root}: {left[0]}")
    if node.exec_root.exists():
        shutil.rmtree(node.exec_root, ignore_errors=True)
    node.pidfile.unlink(missing_ok=True)
    node.socket.unlink(missing_ok=True)
