"""A local image registry: Debian's `docker-registry serve CONFIG.yml` (distribution 2.8)
as a background process with its config, pidfile, log and storage in one data folder.

Daemons reach an address outside 127.0.0.0/8 only when started with
`--insecure-registry HOST:PORT` (plain HTTP).
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dockercoins.errors import UserError
from dockercoins.host import ports, processes
from dockercoins.names import DEFAULT_REGISTRY
from dockercoins.paths import state_dir

BINARY = "docker-registry"


def default_data_dir() -> Path:
    return state_dir() / "registry"


@dataclass(frozen=True)
class RegistryStatus:
    running: bool
    pid: int | None
    addr: str | None
    answers: bool
    data_dir: Path

    def describe(self) -> str:
        if not self.running:
            return f"registry: not running (data in {self.data_dir})"
        health = "answers" if self.answers else "does NOT answer"
        return f"registry: running, pid {self.pid}, http://{self.addr}/v2/ {health}"


def _pidfile(data_dir: Path) -> Path:
    return data_dir / "registry.pid"


def _addrfile(data_dir: Path) -> Path:
    return data_dir / "registry.addr"


def _log(data_dir: Path) -> Path:
    return data_dir / "registry.log"


def _config(data_dir: Path) -> Path:
    return data_dir / "config.yml"


def _pid(data_dir: Path) -> int | None:
    """The registry's pid when that process is alive and is a docker-registry."""
    return processes.pidfile_process(_pidfile(data_dir), BINARY)


def answers(addr: str, timeout: float = 2.0) -> bool:
    """True when http://ADDR/v2/ answers like a registry (200 with the API version header)."""
    try:
        with urllib.request.urlopen(f"http://{addr}/v2/", timeout=timeout) as response:
            return bool(
                response.status == 200
                and response.headers.get("Docker-Distribution-Api-Version", "").startswith(
                    "registry/2"
                )
            )
    except (urllib.error.URLError, OSError, ValueError):
        return False


def status(data_dir: Path | None = None) -> RegistryStatus:
    folder = data_dir or default_data_dir()
    pid = _pid(folder)
    addr = _addrfile(folder).read_text().strip() if pid and _addrfile(folder).exists() else None
    return RegistryStatus(
        running=pid is not None,
        pid=pid,
        addr=addr,
        answers=bool(addr and answers(addr)),
        data_dir=folder,
    )


def _write_config(data_dir: Path, addr: str) -> Path:
    # JSON is YAML: no YAML library needed
    config = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(data_dir / "storage")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": addr, "headers": {"X-Content-Type-Options": ["nosniff"]}},
    }
    path = _config(data_dir)
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def up(addr: str = DEFAULT_REGISTRY, data_dir: Path | None = None, timeout: float = 20.0) -> None:
    """Start the registry on `addr` (HOST:PORT) with its data in `data_dir`, unless it
    already runs there; returns when /v2/ answers. UserError when the port is taken or it
    fails."""
    folder = data_dir or default_data_dir()
    try:
        host, port = ports.parse_address(addr)
    except ValueError as error:
        raise UserError(f"malformed registry address {addr!r}: expected HOST:PORT") from error
    current = status(folder)
    if current.running:
        if current.addr == addr and current.answers:
            return
        if current.addr != addr:
            raise UserError(
                f"a registry with data in {folder} already runs on {current.addr}: "
                "`dockercoins registry down` first"
            )
        down(folder)
    binary = shutil.which(BINARY)
    if binary is None:
        raise UserError("docker-registry is not installed: apt-get install docker-registry")
    if not ports.port_free(host, port):
        raise UserError(f"cannot serve a registry on {addr}: the port is in use by another program")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "storage").mkdir(exist_ok=True)
    config = _write_config(folder, addr)
    proc = processes.spawn_detached([binary, "serve", str(config)], _log(folder), cwd=None)
    _pidfile(folder).write_text(f"{proc.pid}\n")
    _addrfile(folder).write_text(f"{addr}\n")
    try:
        processes.wait_ready(
            proc,
            lambda: answers(addr, timeout=1.0),
            timeout=timeout,
            what=f"the registry on {addr}",
            log=_log(folder),
        )
    except UserError:
        _forget(folder)
        raise


def _forget(data_dir: Path) -> None:
    """Remove the pid and address files of a registry that is gone."""
    for path in (_pidfile(data_dir), _addrfile(data_dir)):
        path.unlink(missing_ok=True)


def down(data_dir: Path | None = None, timeout: float = 10.0) -> bool:
    """Stop the registry whose data is in `data_dir`; True if one was running."""
    folder = data_dir or default_data_dir()
    pid = _pid(folder)
    if pid is None:
        return False
    processes.stop([pid], timeout)
    _forget(folder)
    return True
