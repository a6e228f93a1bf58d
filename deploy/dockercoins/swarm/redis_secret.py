"""Redis's password as a swarm secret: made by `deploy`, read by redis, worker and webui from
/run/secrets/redis_password (their REDIS_PASSWORD_FILE), removed by `down`.

A secret cannot change in place, so each password is a secret of its own, named by a hash of
its content (SECRET_NAME_PREFIX + 12 hex digits of its sha256: 48 bits of a hash of 256
random bits, which tells nothing about the password). A redeploy keeps the secret redis
already uses, so redis, worker and webui always read the same password; redis takes it from
the file at every start (requirepass is not stored with its data), so a new secret after
`down` is fine for the counter and the wallet on redis's volume.

The password is in no environment variable, command line, log or `docker service inspect`:
the specs carry only the secret's id and name, and the file's path.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from dockercoins.names import MANAGED_LABEL

SECRET_NAME_PREFIX = "dockercoins-redis-password-"
FILE_NAME = "redis_password"  # the same name as the stack file's and compose.yml's secret
PASSWORD_FILE = f"/run/secrets/{FILE_NAME}"
PASSWORD_ENV = "REDIS_PASSWORD_FILE"
PASSWORD_BYTES = 32  # of randomness: 43 URL-safe characters, all that Redis's config takes
FILE_MODE = 0o400  # read by the service's own user only


@dataclass(frozen=True)
class SecretRef:
    """A swarm secret as a service spec names it."""

    id: str
    name: str


def new_password() -> str:
    """A random password: letters, digits, - and _ (what redis's start script accepts)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def secret_name(password: str) -> str:
    """The secret's name for `password`: a new password is a new secret."""
    return SECRET_NAME_PREFIX + hashlib.sha256(password.encode()).hexdigest()[:12]


def secret_file(secret: SecretRef, uid: int, gid: int) -> dict[str, Any]:
    """The ContainerSpec.Secrets entry: the secret as /run/secrets/redis_password, owned by
    `uid`:`gid` (the user the service's image runs as), mode FILE_MODE."""
    return {
        "File": {"Name": FILE_NAME, "UID": str(uid), "GID": str(gid), "Mode": FILE_MODE},
        "SecretID": secret.id,
        "SecretName": secret.name,
    }


def used_secret(service: dict[str, Any] | None) -> str | None:
    """The name of our secret a service (as the API returns it) reads, if any."""
    if service is None:
        return None
    container = service["Spec"].get("TaskTemplate", {}).get("ContainerSpec", {})
    for entry in container.get("Secrets") or []:
        name = str(entry.get("SecretName", ""))
        if name.startswith(SECRET_NAME_PREFIX):
            return name
    return None


def _ours(client: Any) -> list[dict[str, Any]]:
    return [
        raw
        for raw in client.api.secrets(filters={"label": MANAGED_LABEL})
        if str(raw["Spec"]["Name"]).startswith(SECRET_NAME_PREFIX)
    ]


def ensure_secret(client: Any, in_use: str | None) -> tuple[SecretRef, bool]:
    """The secret to give redis, worker and webui: `in_use` (what redis reads now) when it is
    still there, else the newest of ours, else a new one with a new random password; (it,
    whether it was created)."""
    found = sorted(_ours(client), key=lambda raw: str(raw.get("CreatedAt", "")), reverse=True)
    for raw in found:
        if in_use is not None and raw["Spec"]["Name"] == in_use:
            return SecretRef(str(raw["ID"]), in_use), False
    if found:
        return SecretRef(str(found[0]["ID"]), str(found[0]["Spec"]["Name"])), False
    password = new_password()
    name = secret_name(password)
    created = client.api.create_secret(name, password.encode(), labels={MANAGED_LABEL: "1"})
    return SecretRef(str(created["ID"]), name), True


def remove_secrets(client: Any, keep: str | None = None) -> list[str]:
    """Remove our secrets except `keep`; the names removed. One still in use (a task going
    away) stays, for the next deploy or down."""
    import docker.errors

    removed = []
    for raw in _ours(client):
        name = str(raw["Spec"]["Name"])
        if name == keep:
            continue
        try:
            client.api.remove_secret(raw["ID"])
        except docker.errors.APIError:
            continue
        removed.append(name)
    return sorted(removed)
