"""The registry's login: one user with a random password, an htpasswd file (bcrypt, the only
hash docker-registry accepts) and the registry config that asks for both TLS and the login.

Kept in one folder (default <state>/registry/auth/, mode 0700):
    htpasswd   `USER:$2b$...`, what docker-registry checks a login against (mode 0600)
    password   the password alone, one line, mode 0600: for
               `docker login ADDR -u dockercoins --password-stdin < password`

The password is made once and kept (the nodes and the docker CLI keep the login they did
with it); remove the folder to make a new one.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

from dockercoins.errors import UserError
from dockercoins.images.registry_tls import TlsFiles

USER = "dockercoins"
PASSWORD_BYTES = 24  # of randomness: 32 URL-safe characters
BCRYPT_ROUNDS = 10  # docker-registry checks a login in about 50-80 ms at this cost
REALM = "DockerCoins registry"


@dataclass(frozen=True)
class Credentials:
    """The registry's user, its password and where both are kept."""

    user: str
    password: str = field(default="", repr=False)  # never printed
    folder: Path = Path()

    @property
    def htpasswd(self) -> Path:
        return self.folder / "htpasswd"

    @property
    def password_file(self) -> Path:
        return self.folder / "password"

    def login_hint(self, addr: str) -> str:
        """How to log in with the docker CLI, without the password itself."""
        return f"docker login {addr} -u {self.user} --password-stdin < {self.password_file}"


def _write_private(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(partial, path)


def htpasswd_line(user: str, password: str, rounds: int = BCRYPT_ROUNDS) -> str:
    """`user:bcrypt-hash`, one htpasswd entry."""
    if not user or ":" in user:
        raise UserError(f"bad registry user name {user!r}: not empty, no ':'")
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode("ascii")
    return f"{user}:{hashed}"


def check_htpasswd(path: Path, user: str, password: str) -> bool:
    """True when `path` holds an entry for `user` that `password` matches."""
    for line in path.read_text().splitlines():
        name, sep, hashed = line.partition(":")
        if sep and name == user:
            return bcrypt.checkpw(password.encode(), hashed.encode("ascii"))
    return False


def ensure_credentials(folder: Path, user: str = USER) -> Credentials:
    """The user and password kept in `folder` (made with a new random password the first
    time), with an htpasswd file that matches them."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    credentials = Credentials(user=user, folder=folder)
    if credentials.password_file.exists():
        password = credentials.password_file.read_text().removesuffix("\n")
        if not password:
            raise UserError(
                f"{credentials.password_file} is empty: remove {folder} to make a new login"
            )
    else:
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        _write_private(credentials.password_file, password + "\n")
    credentials = Credentials(user=user, password=password, folder=folder)
    htpasswd = credentials.htpasswd
    if not (htpasswd.exists() and check_htpasswd(htpasswd, user, password)):
        _write_private(htpasswd, htpasswd_line(user, password) + "\n")
    return credentials


def secure_config(
    addr: str, storage: Path, tls: TlsFiles, credentials: Credentials
) -> dict[str, Any]:
    """docker-registry's config (distribution 2.8): HTTPS only on `addr` with the server
    certificate, every request asked for the login in the htpasswd file."""
    return {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {
            "addr": addr,
            "headers": {"X-Content-Type-Options": ["nosniff"]},
            "tls": {"certificate": str(tls.cert), "key": str(tls.key)},
        },
        "auth": {"htpasswd": {"realm": REALM, "path": str(credentials.htpasswd)}},
    }
