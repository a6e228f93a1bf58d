"""A local image registry: Debian's `docker-registry serve CONFIG.yml` (distribution 2.8)
as a background process with its config, pidfile, log and storage in one data folder.

It serves HTTPS only and wants a login (images.registry_tls, images.registry_auth): a CA and
a certificate for its address in <data>/tls/, one user with a random password in
<data>/auth/ (`docker login ADDR -u dockercoins --password-stdin < <data>/auth/password`).
`up` makes every dockerd on the host trust the CA (images.registry_trust:
/etc/docker/certs.d/ADDR/ca.crt) and `down` takes that back: no daemon needs
--insecure-registry.
"""

from __future__ import annotations

import json
import shutil
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dockercoins.errors import UserError
from dockercoins.host import ports, processes
from dockercoins.images import registry_auth, registry_tls, registry_trust
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
        return f"registry: running, pid {self.pid}, https://{self.addr}/v2/ {health}"


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


def tls_files(data_dir: Path) -> registry_tls.TlsFiles:
    return registry_tls.TlsFiles(data_dir / "tls")


def auth_folder(data_dir: Path) -> Path:
    return data_dir / "auth"


def credentials(data_dir: Path | None = None) -> registry_auth.Credentials:
    """The registry's user and password (made the first time)."""
    return registry_auth.ensure_credentials(auth_folder(data_dir or default_data_dir()))


def answers(addr: str, ca_file: Path, timeout: float = 2.0) -> bool:
    """True when https://ADDR/v2/, verified with `ca_file`, answers like a registry: 401
    asking for the login (or 200), with the registry API version header."""
    if not ca_file.is_file():
        return False
    try:
        context = ssl.create_default_context(cafile=str(ca_file))
        with urllib.request.urlopen(
            f"https://{addr}/v2/", timeout=timeout, context=context
        ) as response:
            status, headers = response.status, response.headers
    except urllib.error.HTTPError as error:
        status, headers = error.code, error.headers
    except (urllib.error.URLError, OSError, ValueError, ssl.SSLError):
        return False
    return status in (200, 401) and str(
        headers.get("Docker-Distribution-Api-Version", "")
    ).startswith("registry/2")


def status(data_dir: Path | None = None) -> RegistryStatus:
    folder = data_dir or default_data_dir()
    pid = _pid(folder)
    addr = _addrfile(folder).read_text().strip() if pid and _addrfile(folder).exists() else None
    return RegistryStatus(
        running=pid is not None,
        pid=pid,
        addr=addr,
        answers=bool(addr and answers(addr, tls_files(folder).ca_cert)),
        data_dir=folder,
    )


def _write_config(data_dir: Path, addr: str) -> tuple[Path, bool]:
    """The config (HTTPS with a current certificate for `addr`, the login); whether it
    changed."""
    tls = registry_tls.ensure_tls(tls_files(data_dir).folder, [addr])
    login = registry_auth.ensure_credentials(auth_folder(data_dir))
    config = registry_auth.secure_config(addr, data_dir / "storage", tls, login)
    path = _config(data_dir)
    text = json.dumps(config, indent=2) + "\n"  # JSON is YAML: no YAML library needed
    changed = not path.exists() or path.read_text() != text
    if changed:
        path.write_text(text)
    # a certificate made after the registry started (new addresses, renewal) needs a restart
    pidfile = _pidfile(data_dir)
    if pidfile.exists() and tls.cert.stat().st_mtime > pidfile.stat().st_mtime:
        changed = True
    return path, changed


def up(addr: str = DEFAULT_REGISTRY, data_dir: Path | None = None, timeout: float = 20.0) -> None:
    """Start the registry on `addr` (HOST:PORT) with its data in `data_dir`, unless it
    already runs there as this version configures it, and make the host's dockerds trust its
    CA; returns when /v2/ answers. UserError when the port is taken or it fails."""
    folder = data_dir or default_data_dir()
    try:
        host, port = ports.parse_address(addr)
    except ValueError as error:
        raise UserError(f"malformed registry address {addr!r}: expected HOST:PORT") from error
    current = status(folder)
    if current.running and current.addr != addr:
        raise UserError(
            f"a registry with data in {folder} already runs on {current.addr}: "
            "`dockercoins registry down` first"
        )
    binary = shutil.which(BINARY)
    if binary is None:
        raise UserError("docker-registry is not installed: apt-get install docker-registry")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "storage").mkdir(exist_ok=True)
    config, changed = _write_config(folder, addr)
    ca = tls_files(folder).ca_cert.read_bytes()
    if current.running:
        if current.answers and not changed:
            registry_trust.trust(addr, ca, folder)
            return
        _stop(folder)  # an older config (plain HTTP, another certificate): start it again
    if not ports.port_free(host, port):
        raise UserError(f"cannot serve a registry on {addr}: the port is in use by another program")
    registry_trust.trust(addr, ca, folder)
    proc = processes.spawn_detached([binary, "serve", str(config)], _log(folder), cwd=None)
    _pidfile(folder).write_text(f"{proc.pid}\n")
    _addrfile(folder).write_text(f"{addr}\n")
    try:
        processes.wait_ready(
            proc,
            lambda: answers(addr, tls_files(folder).ca_cert, timeout=1.0),
            timeout=timeout,
            what=f"the registry on {addr}",
            log=_log(folder),
        )
    except UserError:
        _forget(folder)
        registry_trust.untrust(folder)
        raise


def _forget(data_dir: Path) -> None:
    """Remove the pid and address files of a registry that is gone."""
    for path in (_pidfile(data_dir), _addrfile(data_dir)):
        path.unlink(missing_ok=True)


def _stop(data_dir: Path, timeout: float = 10.0) -> bool:
    pid = _pid(data_dir)
    if pid is not None:
        processes.stop([pid], timeout)
    _forget(data_dir)
    return pid is not None


def down(data_dir: Path | None = None, timeout: float = 10.0) -> bool:
    """Stop the registry whose data is in `data_dir` and take back the host's trust in its
    CA; True if one was running. Its storage, CA and login stay (for the next `up`)."""
    folder = data_dir or default_data_dir()
    running = _stop(folder, timeout)
    registry_trust.untrust(folder)
    return running
