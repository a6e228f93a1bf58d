"""Image names as the tutorial writes them: $REGISTRY/$USER_NAMESPACE/<service>:$TAG.

Defaults: REGISTRY from the environment, else the running lab's registry, else
127.0.0.1:5000 (what `dockercoins registry up` serves); USER_NAMESPACE "dockercoins";
TAG "latest".
"""

from __future__ import annotations

import os
import re

from dockercoins.errors import UserError
from dockercoins.lab import state as lab_state
from dockercoins.names import DEFAULT_NAMESPACE, DEFAULT_REGISTRY, DEFAULT_TAG, IMAGES

_REGISTRY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$")
_NAMESPACE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def default_registry() -> str:
    from_env = os.environ.get("REGISTRY")
    if from_env:
        return from_env
    lab = lab_state.load()
    return lab.registry if lab else DEFAULT_REGISTRY


def default_namespace() -> str:
    return os.environ.get("USER_NAMESPACE") or DEFAULT_NAMESPACE


def default_tag() -> str:
    return os.environ.get("TAG") or DEFAULT_TAG


def check_registry(registry: str) -> str:
    if not _REGISTRY.match(registry) or (
        ":" in registry and not 0 < int(registry.rsplit(":", 1)[1]) < 65536
    ):
        raise UserError(
            f"malformed registry {registry!r}: expected HOST[:PORT], e.g. 127.0.0.1:5000"
        )
    return registry


def check_namespace(namespace: str) -> str:
    if not _NAMESPACE.match(namespace):
        raise UserError(
            f"malformed namespace {namespace!r}: lowercase letters, digits, . _ - and /"
        )
    return namespace


def check_tag(tag: str) -> str:
    if not _TAG.match(tag):
        raise UserError(
            f"malformed tag {tag!r}: up to 128 of A-Z a-z 0-9 _ . - (not starting . or -)"
        )
    return tag


def check_services(names: list[str] | None) -> list[str]:
    """The services named (all four when none), in the order given; UserError on unknown ones."""
    if not names:
        return list(IMAGES)
    unknown = [name for name in names if name not in IMAGES]
    if unknown:
        raise UserError(f"unknown service {unknown[0]!r}: choose from {', '.join(IMAGES)}")
    return names


def check_all(services: list[str] | None, registry: str, namespace: str, tag: str) -> list[str]:
    """The services named (see check_services), after checking every part of their image
    names; UserError on the first bad one."""
    names = check_services(services)
    check_registry(registry)
    check_namespace(namespace)
    check_tag(tag)
    return names


def repository(registry: str, namespace: str, service: str) -> str:
    return f"{registry}/{namespace}/{service}"


def image_ref(registry: str, namespace: str, service: str, tag: str) -> str:
    return f"{repository(registry, namespace, service)}:{tag}"
