"""The offline base images' cache, without debootstrap: the missing kinds are made
together and only once, the .deb cache is offered to every chroot and kept, the work
folder (a tmpfs where one can be mounted) is gone afterwards, also what a killed run left;
and the wheelhouses of several services are fetched side by side, each once."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from dockercoins.errors import UserError
from dockercoins.host import mounts
from dockercoins.images import base, wheels
from dockercoins.images.kinds import KINDS, Kind


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOCKERCOINS_STATE", str(tmp_path / "state"))
    return tmp_path / "state"


def _fake_make(made: list[list[Kind]]) -> Callable[[list[Kind]], None]:
    def make(kinds: list[Kind]) -> None:
        made.append(list(kinds))
        for kind in kinds:
            base.tarball_path(kind).write_bytes(b"rootfs of " + kind.encode())

    return make


def test_missing_kinds_are_made_together_once(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[list[Kind]] = []
    monkeypatch.setattr(base, "_make_tarballs", _fake_make(made))
    base.tarball_path("python").write_bytes(b"kept")
    found = base.ensure_tarballs()
    assert made == [["redis", "prometheus"]]  # in KINDS order, python was there
    assert list(found) == list(KINDS)
    assert base.tarball_path("python").read_bytes() == b"kept"
    assert base.ensure_tarballs() == found  # all there: nothing made
    assert base.rootfs_tarball("redis") == base.tarball_path("redis")
    assert made == [["redis", "prometheus"]]


def test_one_kind_asked_makes_only_that_kind(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[list[Kind]] = []
    monkeypatch.setattr(base, "_make_tarballs", _fake_make(made))
    assert base.rootfs_tarball("prometheus").read_bytes() == b"rootfs of prometheus"
    assert made == [["prometheus"]]
    assert len(base.tarball_sha256("prometheus")) == 64


def test_an_unknown_kind_is_one_line(state: Path) -> None:
    with pytest.raises(UserError, match=r"unknown base kind 'alpine': choose from python, redis"):
        base.ensure_tarballs(["python", "alpine"])  # type: ignore[list-item]


def test_concurrent_callers_make_the_tarballs_once(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[list[Kind]] = []
    inner = _fake_make(made)
    entered = threading.Event()

    def slow(kinds: list[Kind]) -> None:
        entered.set()
        threading.Event().wait(0.3)
        inner(kinds)

    monkeypatch.setattr(base, "_make_tarballs", slow)
    threads = [threading.Thread(target=base.ensure_tarballs) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert entered.is_set()
    assert made == [list(KINDS)]


def test_debs_are_offered_to_a_chroot_and_new_ones_kept(state: Path, tmp_path: Path) -> None:
    cache = base.deb_cache()
    (cache / "a_1_all.deb").write_bytes(b"a")
    archives = tmp_path / "rootfs" / base.ARCHIVES
    base._offer_debs(archives)
    assert (archives / "a_1_all.deb").read_bytes() == b"a"
    (archives / "b_2_amd64.deb").write_bytes(b"b")  # what apt downloaded
    (archives / "lock").write_text("")
    base._keep_debs(archives)
    assert sorted(path.name for path in cache.iterdir()) == ["a_1_all.deb", "b_2_amd64.deb"]
    base._keep_debs(archives)  # again: nothing changes, no error
    assert (cache / "b_2_amd64.deb").read_bytes() == b"b"


def test_the_work_folder_is_gone_afterwards_also_a_stale_one(state: Path) -> None:
    stale = base.base_dir() / f"{base.WORKDIR_PREFIX}killed"
    (stale / "common" / "etc").mkdir(parents=True)
    with base._workdir() as workdir:
        assert not stale.exists()
        assert workdir.parent == base.base_dir()
        (workdir / "common").mkdir()
        (workdir / "common" / "file").write_text("x")
        if os.geteuid() == 0:  # root mounts a tmpfs there
            assert mounts.mounts_under(workdir) == [str(workdir.resolve())]
    assert not workdir.exists()
    assert mounts.mounts_under(base.base_dir()) == []


def test_the_work_folder_goes_also_when_making_fails(state: Path) -> None:
    with pytest.raises(UserError, match="broken"), base._workdir() as workdir:
        raise UserError("broken")
    assert not workdir.exists()
    assert mounts.mounts_under(base.base_dir()) == []


def test_a_failed_step_is_one_line_naming_its_log(state: Path, tmp_path: Path) -> None:
    log = tmp_path / "step.log"
    with pytest.raises(UserError) as raised:
        base._run_logged(
            ["sh", "-c", "echo working; echo 'E: no such package' >&2; exit 3"],
            log,
            "apt-get install x",
        )
    assert str(raised.value) == f"apt-get install x failed (E: no such package); full log in {log}"
    base._run_logged(["true"], log, "true")


def test_wheelhouses_fetched_side_by_side_each_once(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched: list[str] = []
    pips: list[int] = []
    lock = threading.Lock()

    def download(service: str, target: Path) -> None:
        with lock:
            fetched.append(service)
        target.mkdir(parents=True)

    monkeypatch.setattr(wheels, "_download", download)

    def pip() -> list[str]:
        pips.append(1)
        return []

    monkeypatch.setattr(wheels, "_pip_for_the_base", pip)
    wheels.wheelhouse_dir("rng").mkdir(parents=True)  # there already
    found = wheels.ensure_all(["rng", "hasher", "worker", "webui"])
    assert sorted(fetched) == ["hasher", "webui", "worker"]
    assert pips == [1]  # the shared pip made once, before the threads
    assert all(path.is_dir() for path in found.values())
    assert list(found) == ["rng", "hasher", "worker", "webui"]
    wheels.ensure_all(["rng", "hasher", "worker", "webui"])
    assert len(fetched) == 3
