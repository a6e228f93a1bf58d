"""Subcommands: build, push, ship (both) the four images; registry up|down|status."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from dockercoins import ui
from dockercoins.cli.common import Subparsers, tcp_address
from dockercoins.images import naming
from dockercoins.names import DEFAULT_REGISTRY, IMAGES

NAMING_HELP = (
    "Images are named REGISTRY/USER_NAMESPACE/<service>:TAG (the tutorial's variables; "
    f"the options override them; default registry: the lab's, else {DEFAULT_REGISTRY})."
)


def _add_naming(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "services",
        nargs="*",
        metavar="SERVICE",
        help=f"services to handle (default: all of {', '.join(IMAGES)})",
    )
    parser.add_argument("--registry", help="registry HOST[:PORT] (env REGISTRY)")
    parser.add_argument("--namespace", help="namespace (env USER_NAMESPACE, dockercoins)")
    parser.add_argument("--tag", help="image tag (env TAG, latest)")


def _add_build_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base",
        default="auto",
        help="BASE_IMAGE: 'auto' (python:3.11-slim if the daemon has it, else the "
        "offline base), 'offline' (Debian base made with debootstrap), or an image "
        "on the daemon",
    )
    parser.add_argument(
        "--no-wheelhouse",
        action="store_true",
        help="install requirements from the package index inside the build "
        "(needs network in containers) instead of host-downloaded wheels",
    )
    parser.add_argument("--no-cache", action="store_true", help="do not use the build cache")


def _naming(args: argparse.Namespace) -> tuple[list[str], str, str, str]:
    services = naming.check_services(args.services)
    registry = naming.check_registry(args.registry or naming.default_registry())
    namespace = naming.check_namespace(args.namespace or naming.default_namespace())
    tag = naming.check_tag(args.tag or naming.default_tag())
    return services, registry, namespace, tag


def _client() -> Any:
    from dockercoins import dockerapi as dockerclient

    return dockerclient.connect()


def _build(args: argparse.Namespace) -> int:
    from dockercoins.images import build as images

    services, registry, namespace, tag = _naming(args)
    client = _client()
    started = time.monotonic()
    images.build(
        client,
        services,
        registry,
        namespace,
        tag,
        base=args.base,
        wheelhouse=not args.no_wheelhouse,
        nocache=args.no_cache,
    )
    ui.info(f"built {len(services)} image(s) in {time.monotonic() - started:.1f} s")
    return 0


def _push(args: argparse.Namespace) -> int:
    from dockercoins.images import build as images

    services, registry, namespace, tag = _naming(args)
    client = _client()
    started = time.monotonic()
    images.push(client, services, registry, namespace, tag)
    ui.info(f"pushed {len(services)} image(s) in {time.monotonic() - started:.1f} s")
    return 0


def _ship(args: argparse.Namespace) -> int:
    _build(args)
    return _push(args)


def _registry_up(args: argparse.Namespace) -> int:
    from dockercoins.images import registry, registry_trust

    data_dir = args.data_dir or registry.default_data_dir()
    registry.up(args.addr, data_dir)
    login = registry.credentials(data_dir)
    ui.result(f"registry: https://{args.addr}/v2/ (data in {data_dir})")
    ui.result(
        f"its CA: {registry.tls_files(data_dir).ca_cert}, trusted by this host's dockerds "
        f"({registry_trust.ca_path(args.addr)})"
    )
    ui.result(f"login: user {login.user}, password in {login.password_file}; log in once with")
    ui.result(f"  {login.login_hint(args.addr)}")
    return 0


def _registry_down(args: argparse.Namespace) -> int:
    from dockercoins.images import registry

    stopped = registry.down(args.data_dir or registry.default_data_dir())
    ui.result("registry: stopped" if stopped else "registry: was not running")
    return 0


def _registry_status(args: argparse.Namespace) -> int:
    from dockercoins.images import registry

    current = registry.status(args.data_dir or registry.default_data_dir())
    ui.result(current.describe())
    return 0 if current.running and current.answers else 3


def register(subparsers: Subparsers) -> None:
    """Add build, push, ship and registry."""
    build = subparsers.add_parser(
        "build",
        help="build the service images (offline base and wheelhouse when needed)",
        description="Build the images from services/<name> with the Docker SDK. " + NAMING_HELP,
    )
    _add_naming(build)
    _add_build_options(build)
    build.set_defaults(func=_build)

    push = subparsers.add_parser(
        "push",
        help="push the built images to the registry",
        description="Push the images, layer by layer; fails on any registry error. " + NAMING_HELP,
    )
    _add_naming(push)
    push.set_defaults(func=_push)

    ship = subparsers.add_parser(
        "ship",
        help="build, then push",
        description="`dockercoins build` then `dockercoins push`. " + NAMING_HELP,
    )
    _add_naming(ship)
    _add_build_options(ship)
    ship.set_defaults(func=_ship)

    reg = subparsers.add_parser(
        "registry",
        help="run a local image registry (Debian's docker-registry, HTTPS with a login)",
        description="Run Debian's docker-registry in the background, data in a state folder. "
        "It serves HTTPS only, with a certificate from a CA the tool makes (trusted by this "
        "host's dockerds through /etc/docker/certs.d/HOST:PORT/ca.crt while it is up), and "
        "wants a login: user dockercoins, a random password in STATE/registry/auth/password.",
    )
    actions = reg.add_subparsers(dest="registry_action", metavar="ACTION", required=True)
    for name, func, text in (
        ("up", _registry_up, "start it (idempotent) and wait until /v2/ answers"),
        ("down", _registry_down, "stop it, the host's trust in its CA removed (its data stays)"),
        ("status", _registry_status, "is it running and answering? (exit 3 if not)"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help="its config, pid, log and storage (default: STATE/registry)",
        )
        if name == "up":
            action.add_argument(
                "--addr",
                type=tcp_address,
                default=DEFAULT_REGISTRY,
                help=f"HOST:PORT to serve on ({DEFAULT_REGISTRY})",
            )
        action.set_defaults(func=func)
