"""Can the overlay network be encrypted? `docker network create --opt encrypted` makes the
nodes' dockerds exchange the overlay's VXLAN traffic as IPsec ESP (AES-GCM), set up through
the kernel's XFRM framework. Both must be in the kernel: XFRM (CONFIG_XFRM_USER) and ESP
for IPv4 (CONFIG_INET_ESP, the module esp4). Where one is missing (this lab's machine has
XFRM but no ESP), the swarm still creates an encrypted network, but no packet crosses
between nodes: `deploy` then makes a plain overlay and says so.

The check reads the machine the tool runs on, like swarm.ipvs: the kernel the lab's nodes
share; for a remote cluster, force the choice with `deploy --encrypt yes|no`.
  1. XFRM: /proc/sys/net/core/xfrm_acq_expires exists (net.core.xfrm_* sysctls);
  2. ESP: the kernel's config (/proc/config.gz) has CONFIG_INET_ESP=y or =m; without that
     file, esp4 is loaded (/proc/modules) or can be (esp4.ko* under
     /lib/modules/<release>/, or listed in modules.builtin there).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
MODULES = Path("/lib/modules")
ESP_OPTION = "CONFIG_INET_ESP"
ESP_MODULE = "esp4"
CHOICES = ("auto", "yes", "no")


@dataclass(frozen=True)
class Support:
    """Whether the kernel can encrypt the overlay, and how that was found (one phrase)."""

    available: bool
    reason: str


def config_option(config_text: str, name: str) -> str | None:
    """The value of `name` in a kernel config (`y`, `m`, ...), None when it is not set."""
    for line in config_text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == name:
            return value.strip()
    return None


def _module_present(modules_text: str, name: str) -> bool:
    return any(line.split(" ", 1)[0] == name for line in modules_text.splitlines())


def _module_installed(modules_root: Path, release: str) -> bool:
    folder = modules_root / release
    builtin = folder / "modules.builtin"
    if builtin.is_file() and any(
        Path(line.strip()).name.split(".ko")[0] == ESP_MODULE
        for line in builtin.read_text().splitlines()
    ):
        return True
    return folder.is_dir() and any(folder.glob(f"kernel/net/ipv4/{ESP_MODULE}.ko*"))


def encryption_support(
    proc_root: Path = PROC, modules_root: Path = MODULES, release: str | None = None
) -> Support:
    """Can this kernel carry an encrypted overlay (module docstring)? Reads only files."""
    if not (proc_root / "sys" / "net" / "core" / "xfrm_acq_expires").exists():
        return Support(False, "no IPsec (XFRM) in the kernel")
    config = proc_root / "config.gz"
    if config.is_file():
        value = config_option(
            gzip.decompress(config.read_bytes()).decode(errors="replace"), ESP_OPTION
        )
        if value in ("y", "m"):
            return Support(True, f"IPsec ESP in the kernel ({ESP_OPTION}={value})")
        return Support(False, f"the kernel is built without IPsec ESP ({ESP_OPTION} not set)")
    modules = proc_root / "modules"
    if modules.is_file() and _module_present(modules.read_text(), ESP_MODULE):
        return Support(True, f"IPsec ESP in the kernel (module {ESP_MODULE} loaded)")
    if _module_installed(modules_root, release or os.uname().release):
        return Support(True, f"IPsec ESP in the kernel (module {ESP_MODULE} available)")
    return Support(False, f"no IPsec ESP found in the kernel (no module {ESP_MODULE})")


def resolve_encryption(choice: str, support: Support) -> bool:
    """`auto` follows the kernel; `yes` and `no` force it."""
    if choice == "auto":
        return support.available
    return choice == "yes"


def describe(encrypted: bool, choice: str, support: Support) -> str:
    """deploy's one line about it."""
    if choice != "auto":
        forced = "encrypted" if encrypted else "not encrypted"
        return f"overlay network {forced} (--encrypt {choice}; this kernel: {support.reason})"
    if encrypted:
        return f"overlay network encrypted (IPsec): {support.reason}"
    return (
        f"overlay network NOT encrypted: {support.reason} "
        "(the nodes' VXLAN traffic is plain; --encrypt yes forces it)"
    )
