"""Build and push the four images with the Docker SDK (the low-level API, streamed).

Build: context = services/<name> sent as a tar this module makes (with the host-made
wheelhouse as wheels/), BASE_IMAGE passed as a build argument, output streamed with a
`[name]` prefix, errors in the stream raised as UserError.
Push: progress printed once per layer status change; any "error"/"errorDetail" in the
stream, or a stream that ends without a digest, is a UserError: nothing half-pushed is
reported as pushed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from dockercoins import dockerapi, ui
from dockercoins.errors import UserError
from dockercoins.images import base as baseimage
from dockercoins.images import context as buildcontext
from dockercoins.images import login, naming
from dockercoins.images import wheels as wheelhouse
from dockercoins.paths import SERVICES_DIR

PUBLIC_BASE = "python:3.11-slim"
BASE_AUTO = "auto"
BASE_OFFLINE = "offline"


@dataclass(frozen=True)
class BuiltImage:
    service: str
    ref: str
    image_id: str
    size: int
    seconds: float


@dataclass(frozen=True)
class PushedImage:
    service: str
    ref: str
    digest: str
    seconds: float


def _has_image(client: Any, ref: str) -> bool:
    import docker.errors

    try:
        client.api.inspect_image(ref)
    except docker.errors.ImageNotFound:
        return False
    return True


def resolve_base(client: Any, base: str | None) -> str:
    """The BASE_IMAGE to build from. None/"auto": the public python:3.11-slim when the
    daemon already has it (nothing is pulled: no Docker Hub traffic), else the offline
    base made with debootstrap. "offline": always the offline base. Anything else: that
    image, which must be on the daemon."""
    choice = base or BASE_AUTO
    if choice == BASE_AUTO:
        if _has_image(client, PUBLIC_BASE):
            return PUBLIC_BASE
        choice = BASE_OFFLINE
    if choice == BASE_OFFLINE:
        # redis too: compose.yml and the tutorial's `docker service create ... redis` need it
        baseimage.import_base_images(client)
        return baseimage.BASE_IMAGE_TAG
    if not _has_image(client, choice):
        raise UserError(f"base image {choice!r} is not on the daemon: pull or import it first")
    return choice


def build(
    client: Any,
    services: Iterable[str],
    registry: str,
    namespace: str,
    tag: str,
    *,
    base: str | None = None,
    wheelhouse: bool = True,
    nocache: bool = False,
) -> list[BuiltImage]:
    """Build `services` as REGISTRY/NAMESPACE/<service>:TAG; returns what was built."""
    names = naming.check_all(list(services), registry, namespace, tag)
    with dockerapi.docker_errors(failed="build failed"):
        base_ref = resolve_base(client, base)
        base_size = int(client.api.inspect_image(base_ref)["Size"])
        ui.info(f"base image: {base_ref} ({_mb(base_size)})")
        if wheelhouse:
            _prefetch_wheels(names)
        built = [
            _build_one(
                client,
                name,
                registry,
                namespace,
                tag,
                base_ref=base_ref,
                use_wheelhouse=wheelhouse,
                nocache=nocache,
            )
            for name in names
        ]
    for image in built:
        ui.result(
            f"{image.ref}  {_mb(image.size)} (base + {_mb(image.size - base_size)})"
            f"  built in {image.seconds:.1f} s"
        )
    return built


def _prefetch_wheels(names: list[str]) -> None:
    """Every service's wheelhouse before the first build: the missing downloads side by
    side (`build`'s own `wheelhouse` flag hides the module's name there)."""
    wheelhouse.ensure_all(names)


def _build_one(
    client: Any,
    service: str,
    registry: str,
    namespace: str,
    tag: str,
    *,
    base_ref: str,
    use_wheelhouse: bool,
    nocache: bool,
) -> BuiltImage:
    ref = naming.image_ref(registry, namespace, service, tag)
    wheels = wheelhouse.ensure(service) if use_wheelhouse else None
    context = buildcontext.make(SERVICES_DIR / service, wheels)
    started = time.monotonic()
    with ui.step(f"building {ref}"):
        stream = client.api.build(
            fileobj=context,
            custom_context=True,
            tag=ref,
            buildargs={"BASE_IMAGE": base_ref},
            rm=True,
            forcerm=True,
            pull=False,
            nocache=nocache,
            decode=True,
            labels={"org.dockercoins.service": service},
        )
        image_id = _follow_build(service, stream)
    size = int(client.api.inspect_image(image_id)["Size"])
    return BuiltImage(service, ref, image_id, size, time.monotonic() - started)


def _follow_build(service: str, stream: Iterator[dict[str, Any]]) -> str:
    image_id = ""
    pending = ""
    for item in stream:
        if "error" in item or "errorDetail" in item:
            raise UserError(f"building {service} failed: {_stream_error(item)}")
        if "aux" in item and isinstance(item["aux"], dict) and "ID" in item["aux"]:
            image_id = str(item["aux"]["ID"])
        text = item.get("stream")
        if isinstance(text, str):
            pending += text
            *lines, pending = pending.split("\n")
            for line in lines:
                if line.strip():
                    ui.info(f"[{service}] {line.rstrip()}")
    if pending.strip():
        ui.info(f"[{service}] {pending.rstrip()}")
    if not image_id:
        raise UserError(f"building {service} failed: the daemon reported no image")
    return image_id


def push(
    client: Any,
    services: Iterable[str],
    registry: str,
    namespace: str,
    tag: str,
) -> list[PushedImage]:
    """Push REGISTRY/NAMESPACE/<service>:TAG for each service; UserError on any failure."""
    names = naming.check_all(list(services), registry, namespace, tag)
    refs = {name: naming.image_ref(registry, namespace, name, tag) for name in names}
    with dockerapi.docker_errors(failed="push failed"):
        missing = [ref for ref in refs.values() if not _has_image(client, ref)]
        if missing:
            raise UserError(f"{missing[0]} is not on the daemon: run `dockercoins build` first")
        pushed = [_push_one(client, name, refs[name], tag) for name in names]
    for image in pushed:
        ui.result(f"{image.ref}@{image.digest}  pushed in {image.seconds:.1f} s")
    return pushed


def _push_one(client: Any, service: str, ref: str, tag: str) -> PushedImage:
    repository = ref[: -(len(tag) + 1)]
    started = time.monotonic()
    with ui.step(f"pushing {ref}"):
        # the docker CLI's stored login for the registry goes with it (images.login)
        stream = client.api.push(repository, tag=tag, stream=True, decode=True)
        try:
            digest = _follow_push(service, ref, stream)
        except UserError as error:
            message = str(error).removeprefix(f"pushing {ref} failed: ")
            if login.is_login_error(message):
                registry = ref.split("/", 1)[0]
                raise login.login_error(registry, f"pushing {ref} failed", message) from None
            raise
    return PushedImage(service, ref, digest, time.monotonic() - started)


def _follow_push(service: str, ref: str, stream: Iterator[dict[str, Any]]) -> str:
    layers: dict[str, str] = {}
    digest = ""
    for item in stream:
        if "error" in item or "errorDetail" in item:
            raise UserError(f"pushing {ref} failed: {_stream_error(item)}")
        aux = item.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            digest = str(aux["Digest"])
            continue
        status = str(item.get("status", ""))
        layer = item.get("id")
        if layer and status and layers.get(str(layer)) != status:
            layers[str(layer)] = status
            ui.info(f"[{service}] {layer}: {status}")
        elif not layer and status:
            ui.info(f"[{service}] {status}")
    if not digest:
        raise UserError(f"pushing {ref} failed: the registry confirmed no digest")
    return digest


def _stream_error(item: dict[str, Any]) -> str:
    detail = item.get("errorDetail")
    message = detail.get("message") if isinstance(detail, dict) else None
    return dockerapi.one_line(message or item.get("error") or "unknown error")


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
