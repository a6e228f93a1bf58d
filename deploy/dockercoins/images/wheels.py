"""The wheelhouse: a service's pinned requirements downloaded on the host with pip, for the
base image's Python (CPython 3.11, manylinux x86_64), so the image build needs no network.

Cached in state_dir()/wheels/<service>-<hash of requirements.txt and target>.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dockercoins import ui
from dockercoins.errors import UserError
from dockercoins.paths import SERVICES_DIR, state_dir

# Debian bookworm's python3 is 3.11.2: the full version matters for markers such as
# redis's `async-timeout; python_full_version < "3.11.3"`
PYTHON_VERSION = "3.11.2"
# bookworm has glibc 2.36: every manylinux tag up to it (pip does not expand them itself)
PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)
IMPLEMENTATION = "cp"
ABI = "cp311"


def requirements_file(service: str) -> Path:
    path = SERVICES_DIR / service / "requirements.txt"
    if not path.is_file():
        raise UserError(f"{path} is missing: every service needs a pinned requirements.txt")
    return path


def wheelhouse_dir(service: str) -> Path:
    """Where `service`'s wheels live for its current requirements.txt."""
    digest = hashlib.sha256()
    digest.update(requirements_file(service).read_bytes())
    digest.update(
        f"{PYTHON_VERSION} {PLATFORMS} {IMPLEMENTATION} {ABI} {DEBIAN_PYTHON.exists()}".encode()
    )
    return state_dir() / "wheels" / f"{service}-{digest.hexdigest()[:16]}"


def ensure(service: str) -> Path:
    """The folder of wheels for `service` (downloaded once, then reused)."""
    target = wheelhouse_dir(service)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{service}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_dir():
            return target
        _download(service, target)
    return target


def ensure_all(services: Sequence[str]) -> dict[str, Path]:
    """ensure() for several services, the missing downloads side by side (pip spends
    most of its time waiting for the index); the shared pip is made first, once."""
    missing = [service for service in services if not wheelhouse_dir(service).is_dir()]
    if len(missing) > 1:
        (state_dir() / "wheels").mkdir(parents=True, exist_ok=True)
        _pip_for_the_base()
        with ThreadPoolExecutor(max_workers=len(missing)) as pool:
            futures = [pool.submit(ensure, service) for service in missing]
        for future in futures:
            future.result()
    return {service: ensure(service) for service in services}


DEBIAN_PYTHON = Path("/usr/bin/python3.11")


def _pip_for_the_base() -> list[str]:
    """A pip that resolves as the base image's Python would.

    pip evaluates environment markers with the interpreter it runs on, whatever
    --python-version says (redis needs async-timeout on 3.11.2 but not on 3.11.7), so
    the best pip is one running on Debian's own python3.11, the base image's interpreter:
    a venv of it (python3-venv) kept in the wheel cache. Elsewhere, this Python with
    explicit target flags."""
    if not DEBIAN_PYTHON.exists():
        return [
            sys.executable,
            "-m",
            "pip",
            "download",
            f"--python-version={PYTHON_VERSION}",
            *(f"--platform={platform}" for platform in PLATFORMS),
            f"--implementation={IMPLEMENTATION}",
            f"--abi={ABI}",
        ]
    venv = state_dir() / "wheels" / ".pip-debian-python3.11"
    if not (venv / "bin" / "pip").exists():
        shutil.rmtree(venv, ignore_errors=True)
        done = subprocess.run(
            [str(DEBIAN_PYTHON), "-m", "venv", str(venv)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise UserError(
                f"cannot make a venv of {DEBIAN_PYTHON} (apt-get install python3-venv): "
                + (done.stderr.strip().splitlines() or ["?"])[-1]
            )
    return [str(venv / "bin" / "python"), "-m", "pip", "download"]


def _download(service: str, target: Path) -> None:
    partial = Path(tempfile.mkdtemp(prefix=f".{service}-", dir=target.parent))
    command = [
        *_pip_for_the_base(),
        "--disable-pip-version-check",
        "--quiet",
        "--only-binary=:all:",
        "--dest",
        str(partial),
        "-r",
        str(requirements_file(service)),
    ]
    try:
        with ui.step(f"downloading the wheels for {service}"):
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                lines = [line for line in done.stderr.splitlines() if line.strip()]
                last = lines[-1].strip() if lines else f"pip exited with {done.returncode}"
                raise UserError(f"pip download for {service} failed: {last}")
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
