"""One dockerd per lab node, in the node's network namespace and its own UTS namespace.

    nsenter --net=/var/run/netns/nodeN unshare --uts sh -c 'hostname nodeN; exec dockerd ...'

(`ip netns exec` would remount /sys, and dockerd then fails.) Each daemon keeps its data
root, exec root, pidfile, socket and log in <state>/lab/nodeN/, and puts its containers
under the cgroup /dockercoins-lab/nodeN (--cgroup-parent, cgroupfs driver): every
container process of a node is found there, also after its daemons died.
"""

from __future__ import annotations

import shutil
from typing import Any

from dockercoins.errors import UserError
from dockercoins.host import cgroups, dockerd, mounts, processes
from dockercoins.host.dockerd import Dockerd
from dockercoins.lab import network as labnet
from dockercoins.lab.state import lab_dir

STOP_TIMEOUT = 20.0
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; containerd adds to the exec root
CGROUP_ROOT = "/dockercoins-lab"  # the lab's cgroups: one below it per node
LEGACY_CGROUP_PARENT = "/docker"  # where nodes started without --cgroup-parent put containers


def daemon(index: int) -> Dockerd:
    """Where node `index` keeps its daemon's files: <state>/lab/nodeN/ (exec root in exec/)."""
    root = lab_dir() / labnet.node_name(index)
    return Dockerd(root=root, exec_root=root / "exec")


def client(index: int, timeout: int = 60) -> Any:
    """A Docker SDK client for the node's dockerd (UserError when it does not answer)."""
    return dockerd.connect(daemon(index), timeout=timeout)


def cgroup(index: int) -> str:
    """The cgroup every container of node `index` lives under: /dockercoins-lab/nodeN."""
    return f"{CGROUP_ROOT}/{labnet.node_name(index)}"


def _dockerd_args(index: int) -> list[str]:
    # No --insecure-registry: the lab's registry serves HTTPS with a CA every dockerd on the
    # host trusts (/etc/docker/certs.d, images.registry_trust).
    return [
        # every container's processes with no_new_privs (no setuid or file capability can
        # raise them): what swarm services cannot ask for themselves before API 1.44
        "--no-new-privileges",
        "--shutdown-timeout",
        "5",
        "--exec-opt",
        "native.cgroupdriver=cgroupfs",  # so that the cgroup parent is a path, as below
        "--cgroup-parent",
        cgroup(index),
    ]


def dockerd_command(index: int) -> list[str]:
    """The node's dockerd command line (without the namespace prefix)."""
    return dockerd.command(daemon(index), _dockerd_args(index))


def runs_current_command(index: int) -> bool:
    """The node's dockerd runs with the command line this version starts (one started
    before a change, e.g. without its cgroup parent, does not)."""
    pid = daemon(index).pid()
    wanted = dockerd_command(index)
    return pid is not None and processes.cmdline(pid)[1:] == wanted[1:]


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


def start(index: int) -> None:
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
        extra_args=_dockerd_args(index),
        what=f"dockerd of {name}",
    )


def _daemon_pids(index: int) -> list[int]:
    """The node's daemons: everything in its network namespace (dockerd, containerd, the
    shims) and dockerd by its pidfile."""
    name, pid = labnet.node_name(index), daemon(index).pid()
    found = labnet.netns_pids(name) if name in labnet.namespaces() else []
    return sorted({*found, *([pid] if pid is not None else [])})


def _legacy_container_pids(node: Dockerd) -> list[int]:
    """Processes of the node's containers started before its cgroup parent: those in
    /docker/<id> for an <id> of its own data root (only read, never written)."""
    containers = node.data_root / "containers"
    if not containers.is_dir():
        return []
    found = cgroups.hierarchies()
    return sorted(
        {
            pid
            for entry in containers.iterdir()
            for pid in cgroups.pids_under(f"{LEGACY_CGROUP_PARENT}/{entry.name}", found)
        }
    )


def kill(index: int) -> int:
    """A power loss: the node's daemons and every process of its containers killed in one
    frozen moment (SIGKILL); nothing is cleaned (pidfile, socket, mounts, namespace stay).
    Returns how many processes were killed."""
    others = _daemon_pids(index) + _legacy_container_pids(daemon(index))
    victims = len(set(others) | set(cgroups.pids_under(cgroup(index))))
    left = cgroups.kill_all(cgroup(index), also=others)
    left += processes.wait_gone(others, 10.0)
    if left:
        raise UserError(f"{len(left)} processes of {labnet.node_name(index)} survived SIGKILL")
    return victims


def stop(index: int) -> None:
    """Stop everything the node runs: dockerd (TERM, KILL after a bound), then whatever is
    left in its namespace (containerd, shims), then every process in its cgroup (the
    containers of a node that died), frozen and killed; then unmount what dockerd left
    under the node's folder and remove its cgroups."""
    node, name = daemon(index), labnet.node_name(index)
    dockerd.stop(node, STOP_TIMEOUT)
    if name in labnet.namespaces():
        processes.stop(labnet.netns_pids(name), 5.0)
    left = cgroups.kill_all(cgroup(index))
    if left:
        raise UserError(f"{len(left)} processes in cgroup {cgroup(index)} survived SIGKILL")
    if node.root.exists():
        strays = _legacy_container_pids(node) + processes.processes_rooted_under(node.root)
        processes.stop(strays, 2.0)
    left_mounts = mounts.unmount_all_under(node.root)
    if left_mounts:
        raise UserError(
            f"could not unmount {len(left_mounts)} mounts under {node.root}: {left_mounts[0]}"
        )
    cgroups.remove(cgroup(index))
    if node.exec_root.exists():
        shutil.rmtree(node.exec_root, ignore_errors=True)
    node.pidfile.unlink(missing_ok=True)
    node.socket.unlink(missing_ok=True)
