"""Offline base images: trimmed Debian bookworm root filesystems made on the host and
imported into a daemon with `docker import` (no Docker Hub needed).

Three kinds, tagged here: "python" (the services' base image), "redis" (`redis:latest`, so
the tutorial's `docker service create ... redis` works) and "prometheus"; what each holds
is in images.kinds. They are made together, once: one `debootstrap --variant=minbase`
shared by every kind, copied per kind and extended with `apt-get install` in a chroot,
the kinds side by side (all under one file lock). Downloaded .debs are kept in
state_dir()/base/debs/ and offered to every later run, so only the first one downloads.
The trimmed tarballs are cached in state_dir()/base/.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dockercoins import ui
from dockercoins.errors import UserError
from dockercoins.host import mounts
from dockercoins.images.kinds import CHANGES, INCLUDES, KINDS, PREPARE, REVISION, Kind
from dockercoins.paths import state_dir

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BASE_IMAGE_TAG = "dockercoins/base-python:bookworm"
REDIS_IMAGE_TAG = "redis:latest"
PROMETHEUS_IMAGE_TAG = "dockercoins/prometheus:bookworm"
HASH_LABEL = "org.dockercoins.base-image-key"  # its value: image_key(kind)

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

# Only while the root filesystems are made, removed before packing: dpkg without an fsync
# per file (the tarball is written after it all succeeded, so a crash loses nothing), and
# no service started by a package's postinst in the chroot.
UNSAFE_IO = Path("etc/dpkg/dpkg.cfg.d/dockercoins-unsafe-io")
POLICY_RC = Path("usr/sbin/policy-rc.d")
ARCHIVES = Path("var/cache/apt/archives")
CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
    "LC_ALL": "C",
    "HOME": "/root",
}
APT_INSTALL = (
    "apt-get",
    "install",
    "--yes",
    "--no-install-recommends",
    "-o",
    "Dpkg::Use-Pty=0",
    "-o",
    "APT::Keep-Downloaded-Packages=true",
)
WORKDIR_PREFIX = "rootfs-"
WORKDIR_TMPFS_SIZE = "4g"  # an upper bound: the four root filesystems take about 1.3 GB
STEP_TIMEOUT = 900.0  # seconds for debootstrap or one apt-get (a slow mirror, not a hang)
# daemons importing at once (`docker import` unpacks and hashes: CPU and disk bound)
IMPORT_PARALLEL = 2


def base_dir() -> Path:
    path = state_dir() / "base"
    path.mkdir(parents=True, exist_ok=True)
    return path


def deb_cache() -> Path:
    """Where downloaded .debs are kept for the next run (debootstrap's --cache-dir, and
    offered to apt in each chroot)."""
    path = base_dir() / "debs"
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
    revision = f".{REVISION[kind]}" if kind in REVISION else ""
    return base_dir() / f"{kind}-{SUITE}-v{LAYOUT_VERSION}{revision}.tar"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check_kinds(kinds: Iterable[str]) -> list[Kind]:
    wanted = list(dict.fromkeys(kinds))
    for kind in wanted:
        if kind not in INCLUDES:
            raise UserError(f"unknown base kind {kind!r}: choose from {', '.join(KINDS)}")
    return [kind for kind in KINDS if kind in wanted]


def ensure_tarballs(kinds: Iterable[Kind] = KINDS) -> dict[Kind, Path]:
    """The cached, trimmed root filesystem tarball of each kind; the missing ones are made
    together (one debootstrap, then the kinds side by side), once, under a file lock."""
    wanted = _check_kinds(kinds)
    missing = [kind for kind in wanted if not tarball_path(kind).exists()]
    if missing:
        with _locked(base_dir() / "base.lock"):
            missing = [kind for kind in missing if not tarball_path(kind).exists()]
            if missing:  # else made by another process while we waited
                title = f"making the offline root filesystems: {', '.join(missing)}"
                with ui.step(f"{title} (debootstrap {SUITE} once, then apt per kind)"):
                    _make_tarballs(missing)
    return {kind: tarball_path(kind) for kind in wanted}


def rootfs_tarball(kind: Kind) -> Path:
    """The cached, trimmed root filesystem tarball for `kind` (made once)."""
    return ensure_tarballs([kind])[kind]


def _require_tools() -> None:
    if shutil.which("debootstrap") is None:
        raise UserError("debootstrap is not installed: apt-get install debootstrap")
    if os.geteuid() != 0:
        raise UserError("making the offline base image needs root (debootstrap, chroot)")


def _run_logged(
    command: list[str], log: Path, what: str, env: dict[str, str] | None = None
) -> None:
    """Run `command` with its output in `log`; UserError with the log's last line."""
    with open(log, "wb") as out:
        try:
            done = subprocess.run(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                check=False,
                timeout=STEP_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise UserError(
                f"{what} did not finish within {STEP_TIMEOUT:.0f} s; log in {log}"
            ) from None
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
        raise UserError(f"{what} failed ({tail[0]}); full log in {log}")


@contextmanager
def _workdir() -> Iterator[Path]:
    """A fresh folder for the root filesystems, on a tmpfs where one can be mounted (no disk
    writes but the tarballs, and removing it is instant), else on disk; gone afterwards.
    What a killed run left is removed first (the caller holds the base lock)."""
    for stale in base_dir().glob(f"{WORKDIR_PREFIX}*"):
        mounts.unmount_all_under(stale)
        shutil.rmtree(stale, ignore_errors=True)
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=base_dir()))
    options = f"size={WORKDIR_TMPFS_SIZE},mode=0755"
    mount = ["mount", "-t", "tmpfs", "-o", options, "dcrootfs", str(workdir)]
    tmpfs = subprocess.run(mount, capture_output=True, check=False)
    if tmpfs.returncode != 0:
        ui.info("    (no tmpfs for the root filesystems: working on disk)")
    try:
        yield workdir
    finally:
        mounts.unmount_all_under(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


def _make_tarballs(kinds: list[Kind]) -> None:
    _require_tools()
    with _workdir() as workdir:
        common = workdir / "common"
        started = time.monotonic()
        _debootstrap(common)
        ui.info(f"    debootstrap {SUITE} minbase (shared): {time.monotonic() - started:.0f} s")
        with ThreadPoolExecutor(max_workers=len(kinds)) as pool:
            futures = {kind: pool.submit(_make_kind, common, workdir, kind) for kind in kinds}
            failures = []
            for future in futures.values():
                try:
                    future.result()
                except UserError as error:
                    failures.append(str(error))
        if failures:
            raise UserError(failures[0])


def _debootstrap(rootfs: Path) -> None:
    """The shared minbase root filesystem, its downloads kept in deb_cache()."""
    (rootfs / UNSAFE_IO).parent.mkdir(parents=True)
    (rootfs / UNSAFE_IO).write_text("force-unsafe-io\n")
    command = [
        "debootstrap",
        "--variant=minbase",
        f"--cache-dir={deb_cache()}",
        SUITE,
        str(rootfs),
        debian_mirror(),
    ]
    _run_logged(command, base_dir() / "debootstrap.log", "debootstrap")
    _keep_debs(rootfs / ARCHIVES)
    for deb in (rootfs / ARCHIVES).glob("*.deb"):  # kept in the cache, not in every copy
        deb.unlink()
    (rootfs / POLICY_RC).write_text("#!/bin/sh\nexit 101\n")
    (rootfs / POLICY_RC).chmod(0o755)


def _keep_debs(archives: Path) -> None:
    """Hard-link (or copy) the .debs apt left in `archives` into deb_cache()."""
    cache = deb_cache()
    for deb in archives.glob("*.deb"):
        target = cache / deb.name
        if not target.exists():
            _link_or_copy(deb, target)


def _offer_debs(archives: Path) -> None:
    """Put every cached .deb where apt looks first (apt checks each against its index)."""
    archives.mkdir(parents=True, exist_ok=True)
    for deb in deb_cache().glob("*.deb"):
        target = archives / deb.name
        if not target.exists():
            _link_or_copy(deb, target)


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link, else (another file system: the tmpfs) a copy that appears whole or
    not at all."""
    try:
        os.link(source, target)
    except FileExistsError:
        pass
    except OSError:
        partial = target.with_name(f".{target.name}.{threading.get_ident()}.partial")
        shutil.copy2(source, partial)
        os.replace(partial, target)


def _make_kind(common: Path, workdir: Path, kind: Kind) -> None:
    """Copy the shared root filesystem, apt-get install the kind's packages in it, trim,
    prepare and pack it as the kind's tarball."""
    started = time.monotonic()
    rootfs = workdir / kind
    log = base_dir() / f"{kind}-apt.log"
    _run_logged(
        ["cp", "-a", str(common), str(rootfs)], log, f"copying the root filesystem for {kind}"
    )
    _offer_debs(rootfs / ARCHIVES)
    packages = " ".join(INCLUDES[kind])
    command = ["chroot", str(rootfs), *APT_INSTALL, *INCLUDES[kind]]
    _run_logged(command, log, f"apt-get install {packages} (base {kind})", CHROOT_ENV)
    _keep_debs(rootfs / ARCHIVES)
    (rootfs / UNSAFE_IO).unlink()
    (rootfs / POLICY_RC).unlink()
    _trim(rootfs)
    prepare = PREPARE.get(kind)
    if prepare is not None:
        prepare(rootfs)
    tarball = tarball_path(kind)
    partial = tarball.with_suffix(".tar.partial")
    pack = ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."]
    _run_logged(pack, base_dir() / f"{kind}-tar.log", f"packing {tarball.name}")
    tarball.with_suffix(".sha256").write_text(_sha256(partial) + "\n")
    partial.rename(tarball)
    ui.info(
        f"    {kind}: apt-get install {packages}, trim, pack: "
        f"{time.monotonic() - started:.0f} s, {tarball.name} {tarball.stat().st_size / 1e6:.0f} MB"
    )


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


def image_key(kind: Kind) -> str:
    """What `kind`'s image is made of: its tarball's sha256 and its config lines, hashed (a
    changed HEALTHCHECK or ENTRYPOINT imports the image again, as a changed tarball does)."""
    made_of = "\n".join([tarball_sha256(kind), *CHANGES[kind]])
    return hashlib.sha256(made_of.encode()).hexdigest()


def import_base_image(client: Any, kind: Kind, where: str = "the daemon") -> str:
    """Import `kind`'s tarball as its tag unless that tag already holds it (the same
    image_key); returns the tag. `where` names the daemon in the progress line."""
    tag = _TAGS[kind]
    digest = image_key(kind)
    if _image_label(client, tag) == digest:
        return tag
    repository, _, version = tag.rpartition(":")
    with ui.step(f"importing {tag} into {where}"):
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


def import_base_images(client: Any, where: str = "the daemon") -> None:
    """Make sure the daemon behind `client` has every kind's image: the python base,
    redis:latest and the prometheus image (idempotent; the missing tarballs are made
    together first)."""
    ensure_tarballs(KINDS)
    for kind in KINDS:
        import_base_image(client, kind, where)


def import_base_images_on(
    daemons: Mapping[str, Callable[[], Any]], parallel: int = IMPORT_PARALLEL
) -> None:
    """import_base_images on several daemons (name -> a function that connects to it),
    `parallel` daemons at a time; the tarballs are made first, once. The first failure is
    raised after the others finished."""
    ensure_tarballs(KINDS)

    def one(name: str) -> None:
        client = daemons[name]()
        try:
            import_base_images(client, name)
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(daemons)))) as pool:
        futures = [pool.submit(one, name) for name in daemons]
    for future in futures:
        future.result()
