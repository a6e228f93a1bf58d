"""What each offline base image holds: its Debian packages, the touches its root filesystem
gets before it is packed and its image config (`docker import --change` lines).

- "python": python3 + python3-venv, the services' base image.
- "redis": redis-server, tagged `redis:latest` so the tutorial's
  `docker service create ... redis` works.
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


# Run on the debootstrapped root filesystem (after the trim, before it is packed).
PREPARE: dict[Kind, Callable[[Path], None]] = {"prometheus": _prepare_prometheus}
