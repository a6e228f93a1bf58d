"""Make every dockerd on this host trust the registry's CA, and take that back.

dockerd verifies a registry HOST:PORT with the CA certificates in
/etc/docker/certs.d/HOST:PORT/*.crt, read again at each connection, so one file serves the
host's daemon, the lab's nodes (they share the host's files) and `docker login` (the CLI
asks its daemon to log in). No daemon needs --insecure-registry or a restart.

The host is left as it was found: `trust` records in the registry's folder what it created
(the file, and each folder that was not there), and `untrust` removes exactly that, the CA
file only while it still holds our CA, a folder only when it is empty. A ca.crt there that
is someone else's is never replaced: that is a one-line error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from dockercoins.errors import UserError

CERTS_D = Path("/etc/docker/certs.d")
CA_FILE = "ca.crt"
RECORD = "trusted.json"  # in the registry's folder: what trust() created


def certs_root() -> Path:
    """Where dockerd looks for registry CAs: DOCKERCOINS_CERTS_D (tests), else CERTS_D."""
    return Path(os.environ.get("DOCKERCOINS_CERTS_D", CERTS_D))


def ca_path(addr: str, root: Path | None = None) -> Path:
    """<certs.d>/HOST:PORT/ca.crt."""
    return (root or certs_root()) / addr / CA_FILE


def _record(folder: Path) -> Path:
    return folder / RECORD


def _load(folder: Path) -> dict[str, object]:
    try:
        data = json.loads(_record(folder).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _folders(record: dict[str, object]) -> list[str]:
    value = record.get("folders")
    return [str(item) for item in value] if isinstance(value, list) else []


def trust(addr: str, ca_pem: bytes, folder: Path, root: Path | None = None) -> Path:
    """Put `ca_pem` where dockerd looks for `addr`'s CA, recording in `folder` what was
    created; returns the CA file's path. UserError when another CA is there or the folder
    cannot be written (not root)."""
    target = ca_path(addr, root)
    if target.exists():
        if target.read_bytes() == ca_pem:
            return target
        if _load(folder).get("file") != str(target):
            raise UserError(
                f"{target} already holds another CA: this registry's CA is "
                f"{folder / 'tls' / 'ca.crt'}; remove or replace that file yourself"
            )
    created: list[str] = []
    missing = [parent for parent in (target.parent, target.parent.parent) if not parent.exists()]
    try:
        for parent in reversed(missing):
            parent.mkdir(mode=0o755)
            created.append(str(parent))
        partial = target.with_name(f".{CA_FILE}.partial")
        partial.write_bytes(ca_pem)
        partial.chmod(0o644)
        os.replace(partial, target)
    except OSError as error:
        raise UserError(
            f"cannot make dockerd trust the registry: writing {target} failed "
            f"({error.strerror}); run as root"
        ) from None
    folders = [*_folders(_load(folder)), *created]
    folder.mkdir(parents=True, exist_ok=True)
    _record(folder).write_text(
        json.dumps({"file": str(target), "ca": ca_pem.decode(), "folders": folders}) + "\n"
    )
    return target


def untrust(folder: Path) -> list[str]:
    """Remove what `trust` recorded in `folder` (the CA file while it still holds our CA,
    then the folders it made, when empty, deepest first); the paths removed."""
    record = _load(folder)
    if not record:
        return []
    removed: list[str] = []
    target = Path(str(record.get("file", "")))
    ca = str(record.get("ca", "")).encode()
    if target.name == CA_FILE and target.is_file() and target.read_bytes() == ca:
        target.unlink()
        removed.append(str(target))
    folders = [Path(path) for path in _folders(record)]
    for path in sorted(folders, key=lambda item: len(item.parts), reverse=True):
        try:
            path.rmdir()
        except OSError:
            continue  # not empty (someone else's files), or gone already
        removed.append(str(path))
    _record(folder).unlink(missing_ok=True)
    return removed
