"""One dockerd per lab node, in the node's network namespace and its own UTS namespace.

    nsenter --net=/var/run/netns/nodeN unshare --uts sh -c 'hostname nodeN; exec dockerd ...'

(`ip netns exec` would remount /sys, and dockerd then fails.) Each daemon keeps its data
root, exec root, pidfile, socket and log in <state>/lab/nodeN/.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockercoins.errors import UserError
from dockercoins.host import mounts, processes
from dockercoins.lab import network as labnet
from dockercoins.lab.state import lab_dir

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; containerd adds to the exec root


@dataclass(frozen=True)
class NodeDirs:
    """Where node `index` keeps its daemon's files."""

    index: int

    @property
    def name(self) -> str:
        return labnet.node_name(self.index)

    @property
    def root(self) -> Path:
        return lab_dir() / self.name

    @property
    def data_root(self) -> Path:
        return self.root / "data"

    @property
    def exec_root(self) -> Path:
        return self.root / "exec"

    @property
    def pidfile(self) -> Path:
        return self.root / "dockerd.pid"

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"


def dockerd_binary() -> str:
    binary = shutil.which("dockerd")
    if not binary:
        raise UserError("dockerd is not installed: apt-get install docker.io")
    return binary


def dockerd_command(node: NodeDirs, insecure_registry: str) -> list[str]:
    return [
        "nsenter",
        f"--net=/var/run/netns/{node.name}",
        "unshare",
        "--uts",
        "sh",
        "-c",
        f'hostname {node.name} && exec "$@"',
        "sh",
        dockerd_binary(),
        "--data-root",
        str(node.data_root),
        "--exec-root",
        str(node.exec_root),
        "--pidfile",
        str(node.pidfile),
        "-H",
        node.docker_host,
        "--insecure-registry",
        insecure_registry,
        "--shutdown-timeout",
        "5",
    ]


def dockerd_pid(node: NodeDirs) -> int | None:
    """The pid of the node's running dockerd (checked against its command line)."""
    return processes.pidfile_process(node.pidfile, str(node.pidfile))


def client(node: NodeDirs, timeout: int = 60) -> Any:
    """A Docker SDK client for the node's dockerd (UserError when it does not answer)."""
    from dockercoins import dockerapi as dockerclient

    return dockerclient.connect(node.docker_host, timeout=timeout)


def answers(node: NodeDirs) -> bool:
    if not node.socket.exists():
        return False
    try:
        client(node, timeout=5).close()
    except UserError:
        return False
    return True


def healthy(node: NodeDirs) -> bool:
    return dockerd_pid(node) is not None and answers(node)


def start(node: NodeDirs, insecure_registry: str) -> None:
    """Start the node's dockerd (its namespace must exist) and wait until it answers."""
    if len(str(node.exec_root / "containerd" / "containerd.sock.ttrpc")) > SOCKET_PATH_MAX:
        raise UserError(
            f"the lab's state directory {lab_dir()} is too deep for unix sockets: "
            "set DOCKERCOINS_STATE to a shorter path"
        )
    for directory in (node.data_root, node.exec_root):
        directory.mkdir(parents=True, exist_ok=True)
    node.socket.unlink(missing_ok=True)
    node.pidfile.unlink(missing_ok=True)
    proc = processes.spawn_detached(dockerd_command(node, insecure_registry), node.log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserError(f"dockerd of {node.name} exited: {_log_tail(node)} (log: {node.log})")
        if answers(node):
            return
        time.sleep(0.2)
    processes.stop([proc.pid], 5.0)
    raise UserError(
        f"dockerd of {node.name} did not answer within {START_TIMEOUT:.0f} s (log: {node.log})"
    )


def _log_tail(node: NodeDirs) -> str:
    try:
        lines = node.log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    errors = [line for line in lines[-30:] if "level=fatal" in line or "level=error" in line]
    return (errors or lines or ["no log"])[-1][:300]


def stop(node: NodeDirs) -> None:
    """Stop everything the node runs: dockerd (TERM, KILL after a bound), then whatever is
    left in its namespace (containerd, shims) and any process whose root is in its data
    root (orphaned containers); then unmount what dockerd left under the node's folder."""
    pid = dockerd_pid(node)
    if pid is not None:
        processes.stop([pid], STOP_TIMEOUT)
    if node.name in labnet.namespaces():
        processes.stop(labnet.netns_pids(node.name), 5.0)
    if node.root.exists():
        processes.stop(processes.processes_rooted_under(node.root), 2.0)
    left = mounts.unmount_all_under(node.root)
    if left:
        raise UserError(f"could not unmount {len(left)} mounts under {node.root}: {left[0]}")
    if node.exec_root.exists():
        shutil.rmtree(node.exec_root, ignore_errors=True)
    node.pidfile.unlink(missing_ok=True)
    node.socket.unlink(missing_ok=True)
