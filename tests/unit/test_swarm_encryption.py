"""Is the overlay encrypted? The kernel check (XFRM, then ESP from the kernel's config or
its modules) on fake /proc and /lib/modules trees, the choice and deploy's line, and the
network `deploy` creates: pure functions and a fake daemon."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest
from dockercoins.swarm import operations
from dockercoins.swarm.encryption import (
    Support,
    config_option,
    describe,
    encryption_support,
    resolve_encryption,
)

RELEASE = "6.1.0-test"


def _proc(tmp_path: Path, *, xfrm: bool = True) -> Path:
    proc = tmp_path / "proc"
    core = proc / "sys/net/core"
    core.mkdir(parents=True)
    if xfrm:
        (core / "xfrm_acq_expires").write_text("30\n")
    return proc


def _support(tmp_path: Path, proc: Path) -> Support:
    return encryption_support(proc, tmp_path / "modules", RELEASE)


def test_no_xfrm_no_encryption(tmp_path: Path) -> None:
    support = _support(tmp_path, _proc(tmp_path, xfrm=False))
    assert support == Support(False, "no IPsec (XFRM) in the kernel")


@pytest.mark.parametrize(
    ("line", "available"),
    [
        ("CONFIG_INET_ESP=y", True),
        ("CONFIG_INET_ESP=m", True),
        ("# CONFIG_INET_ESP is not set", False),  # this machine's kernel
    ],
)
def test_the_kernel_config_decides(tmp_path: Path, line: str, available: bool) -> None:
    proc = _proc(tmp_path)
    config = f"CONFIG_XFRM=y\nCONFIG_XFRM_USER=y\n{line}\nCONFIG_INET_ESP_OFFLOAD=y\n"
    (proc / "config.gz").write_bytes(gzip.compress(config.encode()))
    support = _support(tmp_path, proc)
    assert support.available is available
    assert "CONFIG_INET_ESP" in support.reason


def test_without_a_config_the_modules_decide(tmp_path: Path) -> None:
    proc = _proc(tmp_path)
    assert not _support(tmp_path, proc).available  # nothing says ESP is there
    (proc / "modules").write_text("xfrm_user 45056 0 - Live 0x0\nesp4 24576 0 - Live 0x0\n")
    assert _support(tmp_path, proc) == Support(True, "IPsec ESP in the kernel (module esp4 loaded)")
    (proc / "modules").write_text("esp6 24576 0 - Live 0x0\n")  # IPv6's only
    assert not _support(tmp_path, proc).available
    ko = tmp_path / "modules" / RELEASE / "kernel/net/ipv4/esp4.ko.xz"
    ko.parent.mkdir(parents=True)
    ko.write_bytes(b"")
    assert _support(tmp_path, proc).reason == "IPsec ESP in the kernel (module esp4 available)"
    ko.unlink()
    (ko.parents[3] / "modules.builtin").write_text("kernel/net/ipv4/esp4.ko\n")
    assert _support(tmp_path, proc).available


def test_config_option() -> None:
    text = "# CONFIG_A is not set\nCONFIG_B=m\nCONFIG_BB=y\n"
    assert (config_option(text, "CONFIG_A"), config_option(text, "CONFIG_B")) == (None, "m")


def test_the_choice_and_deploys_line() -> None:
    yes, no = Support(True, "IPsec ESP in the kernel"), Support(False, "no ESP")
    assert resolve_encryption("auto", yes) and not resolve_encryption("auto", no)
    assert resolve_encryption("yes", no) and not resolve_encryption("no", yes)
    assert (
        describe(True, "auto", yes) == "overlay network encrypted (IPsec): IPsec ESP in the kernel"
    )
    assert describe(False, "auto", no).startswith("overlay network NOT encrypted: no ESP")
    assert describe(False, "no", yes).startswith("overlay network not encrypted (--encrypt no")
    for line in (describe(True, "auto", yes), describe(False, "auto", no)):
        assert "\n" not in line


class FakeNetworks:
    def __init__(self, found: list[dict[str, Any]]) -> None:
        self.found = found
        self.created: list[dict[str, Any]] = []
        self.api = self

    def networks(self, names: list[str]) -> list[dict[str, Any]]:
        return [raw for raw in self.found if raw["Name"] in names]

    def create_network(self, name: str, **options: Any) -> dict[str, str]:
        self.created.append({"Name": name, **options})
        return {"Id": "net1"}


def test_deploy_creates_the_network_encrypted_when_asked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeNetworks([])
    assert operations.ensure_network(fake, encrypted=True) == "net1"
    [created] = fake.created
    assert created["options"] == {"encrypted": ""}
    assert (created["driver"], created["attachable"]) == ("overlay", True)
    assert "created (overlay, attachable, encrypted)" in capsys.readouterr().err
    plain = FakeNetworks([])
    operations.ensure_network(plain, encrypted=False)
    assert plain.created[0]["options"] is None


def test_an_existing_network_is_kept_and_the_difference_said(
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw = {"Id": "old", "Name": "dockercoins", "Driver": "overlay", "Scope": "swarm"}
    fake = FakeNetworks(
        [{**raw, "Options": {"com.docker.network.driver.overlay.vxlanid_list": "4097"}}]
    )
    assert operations.ensure_network(fake, encrypted=True) == "old"
    assert fake.created == []
    assert "kept NOT encrypted" in capsys.readouterr().err
    same = FakeNetworks([{**raw, "Options": {"encrypted": ""}}])
    assert operations.ensure_network(same, encrypted=True) == "old"
    assert capsys.readouterr().err == ""
