"""The redis image's start script and health check go into its root filesystem, its
ENTRYPOINT is the start script (the CMD and a service's command stay redis-server's
arguments), and its cached tarball is made again for them (its own revision)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dockercoins.errors import UserError
from dockercoins.images import base, kinds


def _passwd(rootfs: Path, uid: int, gid: int) -> None:
    (rootfs / "etc").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/passwd").write_text(
        f"root:x:0:0:root:/root:/bin/bash\nredis:x:{uid}:{gid}::/var/lib/redis:/usr/sbin/nologin\n"
    )


def test_the_scripts_go_into_usr_local_bin(tmp_path: Path) -> None:
    _passwd(tmp_path, kinds.REDIS_UID, kinds.REDIS_GID)
    kinds.PREPARE["redis"](tmp_path)
    for name in kinds.REDIS_SCRIPTS:
        installed = tmp_path / "usr/local/bin" / name
        assert installed.read_bytes() == (kinds.REDIS_FILES_DIR / name).read_bytes()
        assert installed.stat().st_mode & 0o7777 == 0o755
        assert (installed.stat().st_uid, installed.stat().st_gid) == (0, 0)
        assert installed.read_text().startswith("#!/bin/bash\n")


def test_a_redis_user_with_other_ids_stops_the_build(tmp_path: Path) -> None:
    # the swarm secret's file is owned by REDIS_UID: another uid could not read it
    _passwd(tmp_path, 999, 999)
    with pytest.raises(UserError, match="uid:gid 999:999, not 100:101"):
        kinds.PREPARE["redis"](tmp_path)
    assert not (tmp_path / "usr/local/bin" / kinds.REDIS_START).exists()


def test_the_entrypoint_is_the_start_script_and_the_command_is_redis_servers() -> None:
    changes = kinds.CHANGES["redis"]
    assert f'ENTRYPOINT ["/usr/local/bin/{kinds.REDIS_START}"]' in changes
    [cmd] = [line for line in changes if line.startswith("CMD ")]
    assert cmd.startswith('CMD ["redis-server", ')
    assert "USER redis" in changes


def test_only_the_redis_tarball_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKERCOINS_STATE", str(tmp_path))
    assert base.tarball_path("redis").name == f"redis-bookworm-v{base.LAYOUT_VERSION}.1.tar"
    assert base.tarball_path("python").name == f"python-bookworm-v{base.LAYOUT_VERSION}.tar"
    assert os.access(kinds.REDIS_FILES_DIR / kinds.REDIS_START, os.X_OK)
