"""Is IP_VS there? Swarm's virtual IPs and ingress routing mesh need it.

Where the kernel has no IP_VS (this lab machine, some VMs and WSL kernels), a service name
resolves to a virtual IP that times out; `--endpoint-mode dnsrr` and host-mode publishing
work instead. The check reads /proc of the machine the tool runs on, which is the kernel
the lab's nodes share; for a remote cluster, force the modes with --endpoint-mode and
--publish-mode.
"""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")


def ipvs_available(proc_root: Path = PROC) -> bool:
    """True when <proc_root>/sys/net/ipv4/vs exists (the ip_vs module is loaded)."""
    return (proc_root / "sys" / "net" / "ipv4" / "vs").is_dir()
