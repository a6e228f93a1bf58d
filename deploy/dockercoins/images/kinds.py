"""What each offline base image holds: its Debian packages, the touches its root filesystem
gets before it is packed and its image config (`docker import --change` lines).

- "python": python3 + python3-venv, the services' base image.
- "redis": redis-server, tagged `redis:latest` so the tutorial's
  `docker service create ... redis` works. Its ENTRYPOINT, dockercoins-redis-start (the file
  beside this module in redis/), makes redis-server require the password in
  REDIS_PASSWORD_FILE when that is set; dockercoins-redis-ping is a health check that knows it.
- "prometheus": Debian's prometheus (2.42 in bookworm), run as its `prometheus` user with
  its data in the VOLUME /prometheus, healthy once it answers a query.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from dockercoins.errors import UserError
from dockercoins.names import PROMETHEUS_PORT

Kind = Literal["python", "redis", "prometheus"]
KINDS: tuple[Kind, ...] = ("python", "redis", "prometheus")

# The files dockercoins puts into the redis image's /usr/local/bin (see _prepare_redis).
REDIS_FILES_DIR = Path(__file__).resolve().parent / "redis"
REDIS_START = "dockercoins-redis-start"
REDIS_PING = "dockercoins-redis-ping"
REDIS_SCRIPTS = (REDIS_START, REDIS_PING)
# The redis image's user, as redis-server's package makes it in bookworm's minbase (the first
# system user): the owner of the password file a swarm secret gives redis (swarm.specs).
# _prepare_redis stops the build if a Debian change moves it.
REDIS_USER = "redis"
REDIS_UID = 100
REDIS_GID = 101

# A kind's revision: bumped when what goes into that kind's root filesystem changes, so that
# its cached tarball is made again (the other kinds' caches stay). base.tarball_path uses it.
REVISION: dict[Kind, int] = {"redis": 1}

# debootstrap --include= per kind; minbase brings dpkg, apt and the essential set.
INCLUDES: dict[Kind, tuple[str, ...]] = {
    "python": ("python3", "python3-venv"),
    "redis": ("redis-server",),
    "prometheus": ("prometheus",),
}

_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Prometheus in its image: where it reads its config and keeps its data, how long.
PROMETHEUS_USER = "prometheus"  # made by the package's postinst (a system user)
PROMETHEUS_CONFIG = "/etc/prometheus/prometheus.yml"
PROMETHEUS_DATA = "/prometheus"
PROMETHEUS_RETENTION = "2h"
PROMETHEUS_COMMAND = (
    "/usr/bin/prometheus",
    f"--config.file={PROMETHEUS_CONFIG}",
    f"--storage.tsdb.path={PROMETHEUS_DATA}",
    f"--storage.tsdb.retention.time={PROMETHEUS_RETENTION}",
    f"--web.listen-address=0.0.0.0:{PROMETHEUS_PORT}",
)
# Debian 12's promtool (2.42) has no `check healthy`; an instant query answers only once
# Prometheus is ready (before that the API is 503), so it is the health check.
PROMETHEUS_HEALTH_COMMAND = (
    "promtool",
    "query",
    "instant",
    f"http://127.0.0.1:{PROMETHEUS_PORT}",
    "vector(1)",
)

# The image's own config when none is mounted over it: Prometheus scrapes itself.
PROMETHEUS_DEFAULT_CONFIG = f"""\
# The image's default: Prometheus scrapes itself. DockerCoins mounts its own over this file.
global:
  scrape_interval: 15s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:{PROMETHEUS_PORT}']
"""


def _json_list(items: tuple[str, ...]) -> str:
    """An exec-form instruction's argument list."""
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


# `docker import --change` lines per kind (the image's config). dockerd accepts CMD,
# ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, USER, VOLUME and WORKDIR here.
CHANGES: dict[Kind, tuple[str, ...]] = {
    "python": (
        f"ENV {_PATH_ENV}",
        "ENV LANG=C.UTF-8",
        'CMD ["python3"]',
    ),
    "redis": (
        f"ENV {_PATH_ENV}",
        "ENV LANG=C.UTF-8",
        "EXPOSE 6379",
        "WORKDIR /var/lib/redis",
        "USER redis",
        f'ENTRYPOINT ["/usr/local/bin/{REDIS_START}"]',
        "HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 "
        f'CMD ["/usr/local/bin/{REDIS_PING}"]',
        'CMD ["redis-server", "--bind", "0.0.0.0", "--port", "6379", '
        '"--protected-mode", "no", "--save", "", "--appendonly", "no", '
        '"--dir", "/var/lib/redis", "--logfile", ""]',
    ),
    "prometheus": (
        f"ENV {_PATH_ENV}",
        "ENV LANG=C.UTF-8",
        f"EXPOSE {PROMETHEUS_PORT}",
        f'VOLUME ["{PROMETHEUS_DATA}"]',
        f"WORKDIR {PROMETHEUS_DATA}",
        f"USER {PROMETHEUS_USER}",
        # no_new_privs for Prometheus and whatever it starts, as the services' Dockerfiles
        # do (swarm services cannot ask for it before Docker Engine API 1.44)
        'ENTRYPOINT ["/usr/bin/setpriv", "--no-new-privs", "--"]',
        "HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 "
        f"CMD {_json_list(PROMETHEUS_HEALTH_COMMAND)}",
        f"CMD {_json_list(PROMETHEUS_COMMAND)}",
    ),
}


def _user_ids(rootfs: Path, user: str) -> tuple[int, int]:
    """(uid, gid) of `user` in the root filesystem's /etc/passwd."""
    for line in (rootfs / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) > 3 and fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise UserError(f"no user {user!r} in {rootfs}/etc/passwd: did the package change?")


# libjs-moment-timezone's raw time zone data (216 MB of JSON): the web UI loads only the
# bundled moment-timezone-with-data.min.js
_PROMETHEUS_UNUSED = (
    "usr/share/javascript/moment-timezone/data",
    "etc/init.d/prometheus",
    "etc/default/prometheus",
    "etc/logrotate.d/prometheus",
)


def _prepare_prometheus(rootfs: Path) -> None:
    """The data folder, owned by the image's prometheus user (ids from the root
    filesystem's /etc/passwd: a new volume copies the owner), the default config; what
    nothing reads (raw time zone data, the init script) goes."""
    uid, gid = _user_ids(rootfs, PROMETHEUS_USER)
    data = rootfs / PROMETHEUS_DATA.lstrip("/")
    data.mkdir(mode=0o755, exist_ok=True)
    data.chmod(0o755)
    os.chown(data, uid, gid)
    config = rootfs / PROMETHEUS_CONFIG.lstrip("/")
    config.write_text(PROMETHEUS_DEFAULT_CONFIG)
    config.chmod(0o644)
    for relative in _PROMETHEUS_UNUSED:
        unused = rootfs / relative
        if unused.is_dir() and not unused.is_symlink():
            shutil.rmtree(unused)
        else:
            unused.unlink(missing_ok=True)


def _prepare_redis(rootfs: Path) -> None:
    """The start script and the health check in /usr/local/bin, root-owned, mode 755; the
    redis user's ids checked against REDIS_UID and REDIS_GID."""
    ids = _user_ids(rootfs, REDIS_USER)
    if ids != (REDIS_UID, REDIS_GID):
        raise UserError(
            f"the redis image's user {REDIS_USER} has uid:gid {ids[0]}:{ids[1]}, not "
            f"{REDIS_UID}:{REDIS_GID}: update REDIS_UID and REDIS_GID in {__name__}"
        )
    bin_dir = rootfs / "usr/local/bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in REDIS_SCRIPTS:
        target = bin_dir / name
        shutil.copyfile(REDIS_FILES_DIR / name, target)
        target.chmod(0o755)
        os.chown(target, 0, 0)


# Run on the debootstrapped root filesystem (after the trim, before it is packed).
PREPARE: dict[Kind, Callable[[Path], None]] = {
    "prometheus": _prepare_prometheus,
    "redis": _prepare_redis,
}
