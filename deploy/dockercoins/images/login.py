"""Registry logins: the docker CLI's stored credentials, and one line when a registry wants
a login it did not get.

`dockercoins push` and `deploy` use whatever `docker login REGISTRY` stored (config.json in
DOCKER_CONFIG or ~/.docker, or its credential helper): the Docker SDK reads it when the
client is made and sends it with each push, registry read and service create or update
(the X-Registry-Auth header, what `docker service create --with-registry-auth` sends), so
the swarm hands it to the nodes that pull. This works the same for the tool's registries
and for any registry that wants a login (Docker Hub included).
"""

from __future__ import annotations

import re
from pathlib import Path

from dockercoins.errors import UserError

# What dockerd and registries answer when a login is missing or refused.
_AUTH_ERROR = re.compile(
    r"no basic auth credentials|unauthorized|authentication required|"
    r"incorrect username or password|denied: requested access",
    re.IGNORECASE,
)


def is_login_error(message: str) -> bool:
    """True when a registry error means: log in (again)."""
    return bool(_AUTH_ERROR.search(message))


def stored_login(registry: str) -> bool:
    """Does the docker CLI hold a login for `registry` (config.json or a credential helper)?"""
    import docker.auth
    import docker.errors

    try:
        found = docker.auth.resolve_authconfig(docker.auth.load_config(), registry)
    except docker.errors.DockerException:
        return False
    return bool(found)


def _tool_password_file(registry: str) -> Path | None:
    """The password file of the tool's own registry at `registry` (the lab's, or `dockercoins
    registry up`'s), when there is one."""
    from dockercoins.images import registry as local_registry
    from dockercoins.lab.state import lab_dir
    from dockercoins.lab.state import load as load_lab
    from dockercoins.names import DEFAULT_REGISTRY

    default = local_registry.default_data_dir()
    candidates = [(default, local_registry.status(default).addr or DEFAULT_REGISTRY)]
    lab = load_lab()
    if lab is not None:
        candidates.insert(0, (lab_dir() / "registry", lab.registry))
    for folder, addr in candidates:
        password = local_registry.auth_folder(folder) / "password"
        if addr == registry and password.is_file():
            return password
    return None


def login_hint(registry: str) -> str:
    """The command that logs in to `registry`: with the user and password file for the
    tool's own registries."""
    from dockercoins.images.registry_auth import USER

    password = _tool_password_file(registry)
    if password is not None:
        return f"docker login {registry} -u {USER} --password-stdin < {password}"
    return f"docker login {registry}"


def login_error(registry: str, what: str, message: str) -> UserError:
    """One line: `what` failed because `registry` wants a login, and how to log in."""
    if stored_login(registry):
        refused = "refused the stored login (wrong or old password?)"
    else:
        refused = "wants a login and the docker CLI has none stored for it"
    detail = " ".join(message.split())
    return UserError(f"{what}: registry {registry} {refused} ({detail}); `{login_hint(registry)}`")
