"""Swarm configs the tool owns (Prometheus's scrape config): one per content, named by its
hash because a config cannot change, removed once no service uses it."""

from __future__ import annotations

from typing import Any

from dockercoins.names import MANAGED_LABEL
from dockercoins.swarm.prometheus_service import ConfigRef


def ensure_config(client: Any, name: str, text: str) -> tuple[ConfigRef, bool]:
    """The config `name` holding `text`, created if missing; (it, whether it was created)."""
    for raw in client.api.configs(filters={"name": name}):
        if raw["Spec"]["Name"] == name:  # the filter matches prefixes too
            return ConfigRef(str(raw["ID"]), name), False
    created = client.api.create_config(name, text.encode(), labels={MANAGED_LABEL: "1"})
    return ConfigRef(str(created["ID"]), name), True


def remove_configs(client: Any, prefix: str, keep: str | None = None) -> list[str]:
    """Remove our configs named `prefix`... except `keep`; returns the names removed. One
    still in use (a task that is going away) stays, for the next deploy or down."""
    import docker.errors

    removed = []
    for raw in client.api.configs(filters={"label": MANAGED_LABEL}):
        name = str(raw["Spec"]["Name"])
        if not name.startswith(prefix) or name == keep:
            continue
        try:
            client.api.remove_config(raw["ID"])
        except docker.errors.APIError:
            continue
        removed.append(name)
    return sorted(removed)
