"""Offline base images: a trimmed Debian bookworm root filesystem made with debootstrap on
the host, imported into a daemon with `docker import` (no Docker Hub needed).

Three kinds, tagged here: "python" (the services' base image), "redis" (`redis:latest`, so
the tutorial's `docker service create ... redis` works) and "prometheus"; what each holds
is in images.kinds. Tarballs are cached under state_dir()/base/ and made once, under a
file lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dockercoins import ui
from dockercoins.errors import UserError
from dockercoins.images.kinds import CHANGES, INCLUDES, KINDS, PREPARE, Kind
from dockercoins.paths import state_dir

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BASE_IMAGE_TAG = "dockercoins/base-python:bookworm"
REDIS_IMAGE_TAG = "redis:latest"
PROMETHEUS_IMAGE_TAG = "dockercoins/prometheus:bookworm"
HASH_LABEL = "org.dockercoins.rootfs-sha256"

_TAGS: dict[Kind, str] = {
    "python": BASE_IMAGE_TAG,
    "redis": REDIS_IMAGE_TAG,
    "prometheus": PROMETHEUS_IMAGE_TAG,
}

# Removed from the root filesystem before it is packed: nothing at run time reads them.
_TRIM = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/linda",
    "usr/share/common-licenses",
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/debconf",
    "var/log",
    "tmp",
    "var/tmp",
)


def base_dir() -> Path:
    path = state_dir() / "base"
    path.mkdir(parents=True, exist_ok=True)
    return path


def debian_mirror() -> str:
    """The Debian mirror apt on this host uses (DEBIAN_MIRROR overrides), else deb.debian.org."""
    override = os.environ.get("DEBIAN_MIRROR")
    if override:
        return override
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        try:
            text = source.read_text(errors="replace")
        except OSError:
            continue
        for mirror in _mirrors_in(text):
            return mirror
    return DEFAULT_MIRROR


def _mirrors_in(text: str) -> Iterator[str]:
    """Debian archive URIs (not the security archive) in one-line or deb822 sources."""
    for raw in text.splitlines():
        line = raw.strip()
        one_line = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
        if one_line and one_line.group(2).startswith(SUITE):
            uri = one_line.group(1)
        elif line.startswith("URIs:"):
            uri = line.split(":", 1)[1].split()[0] if line.split(":", 1)[1].split() else ""
        else:
            continue
        if uri.rstrip("/").endswith("/debian") and "security" not in uri:
            yield uri.rstrip("/")


# bump when what goes into the tarball changes: a new name makes a new tarball
LAYOUT_VERSION = 2


def tarball_path(kind: Kind) -> Path:
    return base_dir() / f"{kind}-{SUITE}-v{LAYOUT_VERSION}.tar"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rootfs_tarball(kind: Kind) -> Path:
    """The cached, trimmed root filesystem tarball for `kind`, made with debootstrap once."""
    if kind not in INCLUDES:
        raise UserError(f"unknown base kind {kind!r}: choose from {', '.join(KINDS)}")
    tarball = tarball_path(kind)
    if tarball.exists():
        return tarball
    with _locked(base_dir() / f"{kind}.lock"):
        if tarball.exists():  # made by another process while we waited
            return tarball
        with ui.step(f"making the offline {kind} root filesystem (debootstrap {SUITE})"):
            _make_tarball(kind, tarball)
    return tarball


def _make_tarball(kind: Kind, tarball: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise UserError("debootstrap is not installed: apt-get install debootstrap")
    if os.geteuid() != 0:
        raise UserError("making the offline base image needs root (debootstrap)")
    workdir = Path(tempfile.mkdtemp(prefix=f"rootfs-{kind}-", dir=base_dir()))
    try:
        rootfs = workdir / "rootfs"
        log = base_dir() / f"{kind}-debootstrap.log"
        command = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(INCLUDES[kind])}",
            SUITE,
            str(rootfs),
            debian_mirror(),
        ]
        started = time.monotonic()
        with open(log, "wb") as out:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise UserError(f"debootstrap failed ({tail[0]}); full log in {log}")
        ui.info(f"    debootstrap: {time.monotonic() - started:.0f} s")
        _trim(rootfs)
        prepare = PREPARE.get(kind)
        if prepare is not None:
            prepare(rootfs)
        partial = tarball.with_suffix(".tar.partial")
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."],
            check=True,
        )
        tarball.with_suffix(".sha256").write_text(_sha256(partial) + "\n")
        partial.rename(tarball)
        ui.info(f"    {tarball.name}: {tarball.stat().st_size / 1e6:.0f} MB")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _trim(rootfs: Path) -> None:
    for relative in _TRIM:
        target = rootfs / relative
        if target.is_dir():
            shutil.rmtree(target)
            target.mkdir()
            target.chmod(0o1777 if relative.endswith("tmp") else 0o755)
    # keep apt usable (`apt-get update` recreates what it needs)
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    (rootfs / "var/log/apt").mkdir(parents=True, exist_ok=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tarball_sha256(kind: Kind) -> str:
    tarball = rootfs_tarball(kind)
    sidecar = tarball.with_suffix(".sha256")
    if not sidecar.exists():
        sidecar.write_text(_sha256(tarball) + "\n")
    return sidecar.read_text().strip()


def import_base_image(client: Any, kind: Kind) -> str:
    """Import `kind`'s tarball as its tag unless that tag already holds it; returns the tag."""
    tag = _TAGS[kind]
    digest = tarball_sha256(kind)
    if _image_label(client, tag) == digest:
        return tag
    repository, _, version = tag.rpartition(":")
    with ui.step(f"importing {tag} into the daemon"):
        client.api.import_image(
            src=str(rootfs_tarball(kind)),
            repository=repository,
            tag=version,
            changes=[*CHANGES[kind], f"LABEL {HASH_LABEL}={digest}"],
        )
    if _image_label(client, tag) != digest:
        raise UserError(f"importing {tag} did not produce the expected image")
    return tag


def _image_label(client: Any, tag: str) -> str | None:
    import docker.errors

    try:
        labels = client.api.inspect_image(tag)["Config"].get("Labels") or {}
    except docker.errors.ImageNotFound:
        return None
    value = labels.get(HASH_LABEL)
    return str(value) if value else None


def import_base_images(client: Any) -> None:
    """Make sure the daemon behind `client` has every kind's image: the python base,
    redis:latest and the prometheus image (idempotent)."""
    for kind in KINDS:
        import_base_image(client, kind)
