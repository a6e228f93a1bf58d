"""What the host must offer before the lab can run, each missing piece one line saying
what and what to do: root, the tools, a dockerd recent enough, network namespaces, and
cgroups the node daemons can write (checked without changing anything on the host)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from dockercoins.errors import UserError
from dockercoins.host import cgroups, dockerd

# swarm, overlay networks and `docker service` as the lab uses them: Engine API 1.41
MIN_DOCKER = (20, 10)
MIN_API = "1.41"
TOOLS = (("ip", "iproute2"), ("iptables", "iptables"), ("nsenter", "util-linux"))
_VERSION = re.compile(r"(\d+)\.(\d+)")


def docker_version(text: str) -> tuple[int, int] | None:
    """(major, minor) from `dockerd --version` ("Docker version 27.3.1, build ..."), or
    None when it names no version."""
    match = _VERSION.search(text)
    return (int(match[1]), int(match[2])) if match else None


def check_dockerd(binary: str) -> None:
    """A dockerd the lab can drive: it runs and is 20.10 or newer."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except OSError as exc:
        raise UserError(f"{binary} does not run ({exc.strerror})") from None
    found = docker_version(out)
    if found is None:
        raise UserError(f"{binary} --version printed no version: is it a working dockerd?")
    if found < MIN_DOCKER:
        need = ".".join(map(str, MIN_DOCKER))
        raise UserError(
            f"dockerd {found[0]}.{found[1]} is too old: the lab needs Docker {need} or newer "
            f"(Engine API {MIN_API})"
        )


def check_namespaces() -> None:
    """A new network namespace can be made (not in an unprivileged container)."""
    try:
        proc = subprocess.run(
            ["unshare", "--net", "true"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        raise UserError("unshare is missing: apt-get install util-linux") from None
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["it failed"])[-1]
        raise UserError(
            f"network namespaces are not available here ({why}): the lab needs a host or a "
            "VM that allows them (a container needs --privileged)"
        )


def check_cgroups(found: list[cgroups.Hierarchy] | None = None) -> None:
    """The cgroup hierarchies are mounted and writable: each node's dockerd makes its
    containers' cgroups below them."""
    hierarchies = cgroups.hierarchies() if found is None else found
    if not hierarchies:
        raise UserError(
            "no cgroup hierarchy is mounted: mount cgroup2 on /sys/fs/cgroup (the lab's "
            "dockerds need cgroups)"
        )
    for hierarchy in hierarchies:
        point = hierarchy.mountpoint
        if os.statvfs(point).f_flag & os.ST_RDONLY or not os.access(point, os.W_OK):
            raise UserError(
                f"the cgroup hierarchy at {point} is read-only: the lab's dockerds cannot make "
                "cgroups there (in a container: --privileged --cgroupns=host)"
            )


def require_host() -> None:
    """Everything above, in the order a user would fix it; raises the first UserError."""
    if os.geteuid() != 0:
        raise UserError("the lab needs root (network namespaces, bridges, dockerd): run as root")
    for tool, package in TOOLS:
        if not shutil.which(tool):
            raise UserError(f"{tool} is missing: apt-get install {package}")
    check_dockerd(dockerd.dockerd_binary())
    check_namespaces()
    check_cgroups()
