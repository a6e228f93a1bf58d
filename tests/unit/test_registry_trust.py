"""The host's trust in the registry's CA (/etc/docker/certs.d/HOST:PORT/ca.crt, here in a
temporary folder): made with the folders it needs, taken back exactly (nothing that was
there before goes), another CA never replaced; and the one line a registry that wants a
login gives."""

from __future__ import annotations

from pathlib import Path

import pytest
from dockercoins.errors import UserError
from dockercoins.images import login, registry_trust

CA = b"-----BEGIN CERTIFICATE-----\nours\n-----END CERTIFICATE-----\n"
ADDR = "10.213.47.1:5000"


def test_trust_then_untrust_leaves_the_host_as_it_was(tmp_path: Path) -> None:
    root = tmp_path / "etc/docker/certs.d"  # not there yet: made, then removed again
    (tmp_path / "etc/docker").mkdir(parents=True)
    folder = tmp_path / "registry"
    target = registry_trust.trust(ADDR, CA, folder, root)
    assert target == root / ADDR / "ca.crt"
    assert target.read_bytes() == CA
    assert target.stat().st_mode & 0o777 == 0o644
    assert registry_trust.trust(ADDR, CA, folder, root) == target  # again: nothing new
    removed = registry_trust.untrust(folder)
    assert removed == [str(target), str(root / ADDR), str(root)]
    assert sorted(p.name for p in (tmp_path / "etc/docker").iterdir()) == []
    assert registry_trust.untrust(folder) == []  # nothing recorded any more


def test_what_was_there_before_stays(tmp_path: Path) -> None:
    root = tmp_path / "certs.d"
    mine = root / "registry.example:443" / "ca.crt"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"the user's own")
    folder = tmp_path / "registry"
    registry_trust.trust(ADDR, CA, folder, root)
    (root / ADDR / "client.cert").write_bytes(b"added by someone else meanwhile")
    assert registry_trust.untrust(folder) == [str(root / ADDR / "ca.crt")]
    assert mine.read_bytes() == b"the user's own"
    assert (root / ADDR / "client.cert").exists()  # its folder, not empty, stays


def test_another_ca_is_never_replaced(tmp_path: Path) -> None:
    root = tmp_path / "certs.d"
    theirs = root / ADDR / "ca.crt"
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"someone else's CA")
    with pytest.raises(UserError, match="already holds another CA"):
        registry_trust.trust(ADDR, CA, tmp_path / "registry", root)
    assert theirs.read_bytes() == b"someone else's CA"
    assert registry_trust.untrust(tmp_path / "registry") == []


def test_our_own_older_ca_is_replaced_and_a_changed_file_is_left(tmp_path: Path) -> None:
    root, folder = tmp_path / "certs.d", tmp_path / "registry"
    registry_trust.trust(ADDR, b"old CA", folder, root)
    target = registry_trust.trust(ADDR, CA, folder, root)  # the CA was made again
    assert target.read_bytes() == CA
    target.write_bytes(b"edited by hand")
    assert registry_trust.untrust(folder) == []  # not ours any more: left alone
    assert target.read_bytes() == b"edited by hand"


def test_a_folder_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "certs.d"
    root.write_text("a file where a folder should be")
    with pytest.raises(UserError, match=r"^cannot make dockerd trust the registry: writing .*"):
        registry_trust.trust(ADDR, CA, tmp_path / "registry", root)


@pytest.mark.parametrize(
    ("message", "wanted"),
    [
        ("no basic auth credentials", True),
        ("unauthorized: authentication required", True),
        ("denied: requested access to the resource is denied", True),
        ("unauthorized: incorrect username or password", True),
        ("Get https://10.213.47.1:5000/v2/: dial tcp: connection refused", False),
        ("manifest unknown", False),
    ],
)
def test_login_errors_are_told_apart(message: str, wanted: bool) -> None:
    assert login.is_login_error(message) is wanted


def test_a_missing_login_is_one_line_with_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("DOCKERCOINS_STATE", str(tmp_path / "state"))
    error = login.login_error("registry.example:5000", "pushing x failed", "no basic auth\n cr")
    text = str(error)
    assert "\n" not in text
    assert text == (
        "pushing x failed: registry registry.example:5000 wants a login and the docker CLI "
        "has none stored for it (no basic auth cr); `docker login registry.example:5000`"
    )
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker/config.json").write_text(
        '{"auths": {"registry.example:5000": {"auth": "ZG9ja2VyY29pbnM6d3Jvbmc="}}}'
    )
    assert login.stored_login("registry.example:5000")
    assert "refused the stored login" in str(login.login_error("registry.example:5000", "x", "y"))


def test_the_hint_for_the_tools_own_registry_names_its_password_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKERCOINS_STATE", str(tmp_path / "state"))
    password = tmp_path / "state/registry/auth/password"
    password.parent.mkdir(parents=True)
    password.write_text("secret\n")
    assert login.login_hint("127.0.0.1:5000") == (
        f"docker login 127.0.0.1:5000 -u dockercoins --password-stdin < {password}"
    )
    assert login.login_hint("other:5000") == "docker login other:5000"


def test_deploy_stops_before_anything_when_the_registry_wants_a_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    import docker.errors
    from dockercoins.swarm import operations
    from dockercoins.swarm.specs import Images

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("DOCKERCOINS_STATE", str(tmp_path / "state"))

    def refuse(ref: str) -> None:
        raise docker.errors.APIError("500", explanation=f"Head {ref}: no basic auth credentials")

    client = SimpleNamespace(images=SimpleNamespace(get_registry_data=refuse))
    with pytest.raises(UserError) as error:
        operations.pin_images(client, Images("reg.example:5000", "dockercoins", "v1"))
    text = str(error.value)
    assert text.startswith("reading reg.example:5000/dockercoins/hasher:v1: registry ")
    assert text.endswith("`docker login reg.example:5000`")
    assert "\n" not in text
