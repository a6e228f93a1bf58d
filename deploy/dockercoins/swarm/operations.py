"""Deploy, scale, switch rng's mode and remove DockerCoins (and its Prometheus) on a swarm
(Docker SDK).

Each takes the command's one client on a swarm manager (connect.connect_manager); the
command warns about unready nodes once (read.warn_unready_nodes) before changing anything.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from dockercoins import ui
from dockercoins.errors import UserError
from dockercoins.images import login
from dockercoins.names import GLOBAL, MANAGED_LABEL, NETWORK, PROMETHEUS, REDIS, SWARM_SERVICES
from dockercoins.swarm import prometheus_service, redis_secret
from dockercoins.swarm.configs import ensure_config, remove_configs
from dockercoins.swarm.converge import POLL, wait_converged, wait_tasks_gone
from dockercoins.swarm.placement import pin_redis
from dockercoins.swarm.read import our_services, require
from dockercoins.swarm.specs import (
    DEPLOY_ORDER,
    REDIS_VOLUME,
    Images,
    Modes,
    Spec,
    mode_of,
    replicas_of,
    replicated,
    service_env,
    service_spec,
    spec_changes,
    updated_spec,
    with_mode,
)

ENCRYPTED_OPTION = "encrypted"  # the overlay driver's option: IPsec between the nodes


def ensure_network(client: Any, encrypted: bool = False) -> str:
    """The id of the attachable overlay network `dockercoins`, created if missing (with
    `encrypted`, its traffic between nodes in IPsec). A network's options cannot change in
    place: one that exists is kept as it is, with a line saying how to change it."""
    for raw in client.api.networks(names=[NETWORK]):
        if raw["Name"] != NETWORK:
            continue
        if raw.get("Driver") != "overlay" or raw.get("Scope") != "swarm":
            raise UserError(
                f"a network named {NETWORK!r} exists but is not a swarm overlay "
                f"(driver {raw.get('Driver')}, scope {raw.get('Scope')}): remove it first"
            )
        has = ENCRYPTED_OPTION in (raw.get("Options") or {})
        if has != encrypted:
            ui.info(
                f"    network {NETWORK}: kept {'encrypted' if has else 'NOT encrypted'} "
                "(a network cannot change in place: `dockercoins down`, then deploy)"
            )
        return str(raw["Id"])
    options = {ENCRYPTED_OPTION: ""} if encrypted else None
    created = client.api.create_network(
        NETWORK, driver="overlay", attachable=True, labels={MANAGED_LABEL: "1"}, options=options
    )
    what = "overlay, attachable" + (", encrypted" if encrypted else "")
    ui.info(f"    network {NETWORK}: created ({what})")
    return str(created["Id"])


def pin_images(client: Any, images: Images) -> Images:
    """Ask the registry (through the manager, with the docker CLI's stored login) for each
    image's digest and pin it, as `docker service create` does: a pushed new image then
    updates the service, the same image leaves it alone. A registry that wants a login it
    did not get: one line saying how to log in (the nodes could not pull either). A
    registry the manager cannot reach: warn and keep the tag."""
    import docker.errors

    pinned: dict[str, str] = {}
    for service in SWARM_SERVICES:
        if service == REDIS:
            continue
        ref = images.ref(service)
        try:
            digest = client.images.get_registry_data(ref).id
        except docker.errors.APIError as error:
            explanation = str(getattr(error, "explanation", None) or error)
            if login.is_login_error(explanation):
                raise login.login_error(images.registry, f"reading {ref}", explanation) from None
            ui.info(f"warning: cannot read {ref} from the registry: {explanation}")
            continue
        pinned[service] = f"{ref}@{digest}"
    return Images(images.registry, images.namespace, images.tag, pinned)


def create_service(client: Any, spec: Spec) -> None:
    client.api.create_service(
        task_template=spec["TaskTemplate"],
        name=spec["Name"],
        labels=spec.get("Labels"),
        mode=spec.get("Mode"),
        endpoint_spec=spec.get("EndpointSpec"),
        update_config=spec.get("UpdateConfig"),
        rollback_config=spec.get("RollbackConfig"),
    )


def update_service(client: Any, raw: Spec, spec: Spec) -> None:
    client.api.update_service(
        raw["ID"],
        raw["Version"]["Index"],
        task_template=spec["TaskTemplate"],
        name=spec["Name"],
        labels=spec.get("Labels") or {},
        mode=spec.get("Mode"),
        endpoint_spec=spec.get("EndpointSpec"),
        update_config=spec.get("UpdateConfig"),
        rollback_config=spec.get("RollbackConfig"),
    )


def _apply(client: Any, raw: Spec | None, desired: Spec, with_scale: bool) -> None:
    """Create the service, or update what differs from `desired`, or leave it alone."""
    name = desired["Name"]
    if raw is None:
        create_service(client, desired)
        ui.info(f"    {name}: created ({desired['TaskTemplate']['ContainerSpec']['Image']})")
        return
    changes = spec_changes(raw["Spec"], desired, with_scale)
    if not changes:
        ui.info(f"    {name}: unchanged")
        return
    update_service(client, raw, updated_spec(raw["Spec"], desired, with_scale))
    ui.info(f"    {name}: updated ({', '.join(changes)})")


def deploy(
    client: Any,
    images: Images,
    modes: Modes,
    *,
    workers: int | None,
    env: dict[str, dict[str, str]],
    timeout: float,
    metrics: bool = True,
    redis_node: str | None = None,
    encrypted: bool = False,
) -> None:
    """Redis's node label (placement.pin_redis: `redis_node`, else the node that has it,
    else this manager), the network (`encrypted` when new), Redis's password secret, then
    the five services in the tutorial's order, then Prometheus (with `metrics`; without, a
    prometheus service is removed); waits until they run. Existing services with the same
    spec are left alone; a changed spec is updated. The scale of existing services
    (replicas, rng's mode) is kept unless `workers` is given."""
    pin_redis(client, redis_node)
    network_id = ensure_network(client, encrypted)
    images = pin_images(client, images)
    existing = our_services(client, DEPLOY_ORDER)
    secret = _ensure_secret(client, existing.get(REDIS))
    for name in SWARM_SERVICES:
        want_replicas = workers if (name == "worker" and workers is not None) else 1
        desired = service_spec(
            name,
            images,
            modes,
            network_id,
            replicas=want_replicas,
            env=service_env(name, env.get(name), metrics=metrics),
            secret=secret,
        )
        with_scale = name == "worker" and workers is not None
        raw = existing.get(name)
        if raw is not None and with_scale and mode_of(raw["Spec"]) == GLOBAL:
            raise UserError("worker runs in global mode: --workers needs a replicated worker")
        _apply(client, raw, desired, with_scale)
    if metrics:
        text = prometheus_service.config_text()
        config, created = ensure_config(client, prometheus_service.config_name(text), text)
        if created:
            ui.info(f"    config {config.name}: created")
        desired = prometheus_service.prometheus_spec(modes, network_id, config)
        _apply(client, existing.get(PROMETHEUS), desired, with_scale=False)
        wait_converged(client, DEPLOY_ORDER, timeout, "deploy")
        _forget_configs(client, keep=config.name)
        _forget_secrets(client, keep=secret.name)
        return
    if PROMETHEUS in existing:
        _remove_prometheus(client, existing[PROMETHEUS], timeout)
    wait_converged(client, SWARM_SERVICES, timeout, "deploy")
    _forget_secrets(client, keep=secret.name)


def _ensure_secret(client: Any, redis: Spec | None) -> redis_secret.SecretRef:
    """Redis's password secret: the one redis reads now, else ours, else a new one."""
    secret, created = redis_secret.ensure_secret(client, redis_secret.used_secret(redis))
    what = "created (a new random password)" if created else "kept"
    ui.info(f"    secret {secret.name}: {what}, read by redis, worker and webui")
    return secret


def _forget_secrets(client: Any, keep: str | None = None) -> None:
    for name in redis_secret.remove_secrets(client, keep):
        ui.info(f"    secret {name}: removed")


def _remove_prometheus(client: Any, raw: Spec, timeout: float) -> None:
    client.api.remove_service(raw["ID"])
    ui.info(f"    {PROMETHEUS}: removed (--no-metrics)")
    wait_tasks_gone(client, {raw["ID"]}, timeout, f"removing {PROMETHEUS}")
    _forget_configs(client)


def _forget_configs(client: Any, keep: str | None = None) -> None:
    for name in remove_configs(client, prometheus_service.CONFIG_NAME_PREFIX, keep):
        ui.info(f"    config {name}: removed")


def scale(client: Any, targets: dict[str, int], timeout: float) -> None:
    """Set the replicas of replicated services; waits until their tasks run."""
    services = our_services(client)
    for name in targets:
        raw = require(services, name)
        if mode_of(raw["Spec"]) == GLOBAL:
            raise UserError(
                f"{name} is a global service (one task per node) and cannot be scaled: "
                f"`dockercoins rng-mode replicated --replicas N` makes rng replicated again"
                if name == "rng"
                else f"{name} is a global service (one task per node) and cannot be scaled"
            )
    for name, count in targets.items():
        raw = services[name]
        if replicas_of(raw["Spec"]) == count:
            ui.info(f"    {name}: already {count} replicas")
            continue
        spec = dict(raw["Spec"], Mode=replicated(count))
        update_service(client, raw, spec)
        ui.info(f"    {name}: scaled to {count}")
    wait_converged(client, list(targets), timeout, "scale")


def rng_mode(client: Any, mode: str, replicas: int, timeout: float) -> None:
    """Switch rng between global and replicated: the mode of a service cannot change in
    place, so rng is removed and created again with the same spec in the new mode."""
    raw = require(our_services(client, ["rng"]), "rng")
    current = mode_of(raw["Spec"])
    if current == mode:
        if mode == GLOBAL:
            ui.info("    rng is already global (one task per node): nothing to change")
        elif replicas_of(raw["Spec"]) == replicas:
            ui.info(f"    rng is already replicated with {replicas} replicas: nothing to change")
        else:
            update_service(client, raw, dict(raw["Spec"], Mode=replicated(replicas)))
            ui.info(f"    rng: scaled to {replicas} (already replicated, no need to recreate)")
        wait_converged(client, ["rng"], timeout, "rng-mode")
        return
    started = time.monotonic()
    target = "global mode" if mode == GLOBAL else f"replicated mode ({replicas} replicas)"
    ui.info(
        f"    a service's mode cannot change in place: removing rng and creating it again "
        f"in {target}, with the same image, settings and network"
    )
    client.api.remove_service(raw["ID"])
    wait_tasks_gone(client, {raw["ID"]}, timeout, "removing rng")
    create_service(client, with_mode(raw["Spec"], mode, replicas))
    ui.info(f"    rng: created again in {target}")
    wait_converged(client, ["rng"], max(10.0, timeout - (time.monotonic() - started)), "rng-mode")


def down(client: Any, timeout: float) -> None:
    """Remove the five services and Prometheus, wait until their tasks are gone, remove
    Prometheus's configs, Redis's password secret and the network. The data volumes
    (redis's, Prometheus's) and redis's node label stay, so that the next deploy finds the
    data (redis takes the next deploy's password from its new secret)."""
    import docker.errors

    services = our_services(client, DEPLOY_ORDER)
    for name in DEPLOY_ORDER:
        if name in services:
            client.api.remove_service(services[name]["ID"])
            ui.info(f"    {name}: removed")
    if not services:
        ui.info("    no DockerCoins service on this swarm")
    deadline = time.monotonic() + timeout
    wait_tasks_gone(client, {raw["ID"] for raw in services.values()}, timeout, "down")
    _forget_configs(client)
    _forget_secrets(client)
    if REDIS in services:
        ui.info(
            f"    volume {REDIS_VOLUME}: kept on the node that ran {REDIS} (the counter and "
            "the wallet; the next deploy puts redis there again)"
        )
    if PROMETHEUS in services:
        ui.info(
            f"    volume {prometheus_service.VOLUME}: kept on the node that ran {PROMETHEUS} "
            "(its data; `docker volume rm` there to delete it)"
        )
    networks = [raw for raw in client.api.networks(names=[NETWORK]) if raw["Name"] == NETWORK]
    for raw in networks:

        def remove(network_id: str = raw["Id"]) -> None:
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_network(network_id)

        _retry_until(deadline, remove, docker.errors.APIError, f"removing network {NETWORK}")
    # the swarm deletes a network asynchronously: wait, so that a `deploy` right after
    # does not find a network that is going away
    while any(raw["Name"] == NETWORK for raw in client.api.networks(names=[NETWORK])):
        if time.monotonic() > deadline:
            raise UserError(f"network {NETWORK} still there after {timeout:.0f} s")
        time.sleep(POLL)
    if networks:
        ui.info(f"    network {NETWORK}: removed")


def _retry_until(
    deadline: float, action: Callable[[], object], errors: type[Exception], what: str
) -> None:
    while True:
        try:
            action()
            return
        except errors as error:
            if time.monotonic() > deadline:
                raise UserError(f"{what} failed: {error}") from error
            time.sleep(POLL)
