"""Push to a real registry (Debian's docker-registry on a free loopback port, HTTPS with the
tool's CA and a login), pull back, compare digests: with the login the docker CLI stored
(`docker login ... --password-stdin`, the line `registry up` prints), never without it
(401, one line naming `docker login`), never with a wrong password; the host's
/etc/docker/certs.d as it was once the registry is down. A push to a stopped registry
fails with one clear line."""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from docker.client import DockerClient
from dockercoins.images import build as images
from dockercoins.images import registry, registry_trust
from dockercoins.names import IMAGES

from tests.support.docker import DockerSession
from tests.support.servers import free_port


@dataclass
class SecureRegistry:
    addr: str
    data: Path

    @property
    def password_file(self) -> Path:
        return registry.credentials(self.data).password_file


def _certs_d() -> list[str]:
    root = registry_trust.certs_root()
    return sorted(str(path) for path in root.rglob("*")) if root.exists() else ["(none)"]


@pytest.fixture
def test_registry(docker_session: DockerSession, tmp_path: Path) -> Iterator[SecureRegistry]:
    """The registry on the address the session's images are named for; afterwards the
    host's certs.d is as it was."""
    data = tmp_path / "registry"
    before = _certs_d()
    registry.up(docker_session.registry, data)
    try:
        assert registry_trust.ca_path(docker_session.registry).read_bytes() == (
            registry.tls_files(data).ca_cert.read_bytes()
        )
        yield SecureRegistry(docker_session.registry, data)
    finally:
        registry.down(data)
        assert _certs_d() == before


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A docker CLI config folder of the test's own: no login stored yet."""
    folder = tmp_path / "docker-config"
    folder.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    return folder


def docker_login(
    docker_session: DockerSession, addr: str, password: bytes
) -> subprocess.CompletedProcess[str]:
    """`docker login ADDR -u dockercoins --password-stdin` against the tier's daemon."""
    binary = shutil.which("docker")
    assert binary, "the docker CLI is not installed"
    return subprocess.run(
        [binary, "login", addr, "-u", "dockercoins", "--password-stdin"],
        input=password.decode(),
        env={**os.environ, "DOCKER_HOST": docker_session.docker_host},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _pull_error(client: DockerClient, repository: str, tag: str) -> str:
    """What the daemon says when a pull fails (raised, or in the progress stream; "" when
    it did not fail). On a loopback registry (insecure to dockerd by default) it tries
    plain HTTP after HTTPS, so its last word is not always about the login: the registry's
    own 401 is checked apart."""
    import docker.errors

    try:
        items = list(client.api.pull(repository, tag=tag, stream=True, decode=True))
    except docker.errors.APIError as error:
        return str(error)
    return " ".join(str(item["error"]) for item in items if item.get("error"))


def test_push_then_pull_with_the_stored_login_only(
    docker_session: DockerSession,
    built_images: dict[str, images.BuiltImage],
    test_registry: SecureRegistry,
    docker_config: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    addr = test_registry.addr
    # plain HTTPS: 401 without the login
    context = ssl.create_default_context(cafile=str(registry.tls_files(test_registry.data).ca_cert))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"https://{addr}/v2/", timeout=5, context=context)
    assert refused.value.code == 401

    # no login stored: `dockercoins push` is refused, in one line that says how to log in
    push = [sys.executable, "-m", "dockercoins", "push", "rng", "--registry", addr]
    push += ["--namespace", docker_session.namespace, "--tag", docker_session.tag]
    done = subprocess.run(
        push,
        env={**os.environ, "DOCKER_HOST": docker_session.docker_host},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("dockercoins: error:")]
    assert len(errors) == 1, done.stderr
    assert "wants a login and the docker CLI has none stored for it" in errors[0]
    assert f"`docker login {addr}`" in errors[0]
    assert "Traceback" not in done.stderr

    # a wrong password is refused, and nothing is stored
    wrong = docker_login(docker_session, addr, b"not-the-password")
    assert wrong.returncode != 0
    assert "unauthorized" in wrong.stderr.lower(), wrong.stderr
    assert (
        addr not in (docker_config / "config.json").read_text()
        if (docker_config / "config.json").exists()
        else True
    )

    # the right one, as `registry up` prints it: push and pull work with the stored login
    right = docker_login(docker_session, addr, test_registry.password_file.read_bytes())
    assert right.returncode == 0, right.stderr
    password = test_registry.password_file.read_text().strip()
    assert password not in right.stdout + right.stderr
    client = DockerClient(base_url=docker_session.docker_host, timeout=300)  # reads the login
    try:
        pushed = images.push(
            client, list(IMAGES), addr, docker_session.namespace, docker_session.tag
        )
        assert [image.service for image in pushed] == list(IMAGES)
        for image in pushed:
            assert image.digest.startswith("sha256:")
            client.images.remove(image.ref)
            assert not client.images.list(name=image.ref)
        # without the login a pull is refused too (the SDK reads the stored logins when it
        # first needs them, so DOCKER_CONFIG names an empty folder until the pull is over)
        empty = docker_config / "empty"
        empty.mkdir()
        monkeypatch.setenv("DOCKER_CONFIG", str(empty))
        anonymous = DockerClient(base_url=docker_session.docker_host, timeout=60)
        try:
            repository, tag = pushed[0].ref.rsplit(":", 1)
            assert _pull_error(anonymous, repository, tag)
            assert not client.images.list(name=pushed[0].ref)
        finally:
            anonymous.close()
            monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
        # the registry's own answer for that manifest: 401 without the login, 200 with it
        manifest = f"https://{addr}/v2/{docker_session.namespace}/rng/manifests/{tag}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(manifest, timeout=5, context=context)
        assert refused.value.code == 401
        request = urllib.request.Request(manifest, headers=_basic("dockercoins", password))
        request.add_header("Accept", "application/vnd.docker.distribution.manifest.v2+json")
        with urllib.request.urlopen(request, timeout=5, context=context) as answer:
            assert answer.status == 200
        for image in pushed:
            repository, tag = image.ref.rsplit(":", 1)
            for item in client.api.pull(repository, tag=tag, stream=True, decode=True):
                assert "error" not in item, item
            attrs = client.api.inspect_image(image.ref)
            assert f"{repository}@{image.digest}" in attrs["RepoDigests"]
            assert attrs["Id"] == built_images[image.service].image_id
    finally:
        client.close()


def test_push_to_a_stopped_registry_fails_with_one_line(
    docker_session: DockerSession,
    built_images: dict[str, images.BuiltImage],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    address = f"127.0.0.1:{free_port()}"
    registry.up(address, tmp_path / "gone")
    assert registry.down(tmp_path / "gone")
    ref = f"{address}/{docker_session.namespace}/rng:{docker_session.tag}"
    docker_session.extra_refs.append(ref)
    docker_session.client.api.tag(
        built_images["rng"].image_id, ref.rsplit(":", 1)[0], docker_session.tag
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dockercoins",
            "push",
            "rng",
            "--registry",
            address,
            "--namespace",
            docker_session.namespace,
            "--tag",
            docker_session.tag,
        ],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("dockercoins: error:")]
    assert len(errors) == 1, done.stderr
    assert f"pushing {ref} failed" in errors[0]
    assert "pushed in" not in done.stdout
