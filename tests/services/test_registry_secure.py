"""The registry over TLS with a login: the real `docker-registry serve` on a loopback port
with the config, CA, certificate and htpasswd file the tool makes. Over HTTPS with the CA:
/v2/ without a login or with a wrong password is 401, with the right one 200; plain HTTP,
a client without the CA and a name the certificate does not hold are refused."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from dockercoins.host import ports
from dockercoins.images import registry_auth, registry_tls

from tests.support.servers import LOOPBACK, free_port, stop_process, wait_for


@dataclass
class SecureRegistry:
    addr: str
    tls: registry_tls.TlsFiles
    credentials: registry_auth.Credentials
    log: Path

    @property
    def url(self) -> str:
        return f"https://{self.addr}/v2/"

    def client(self, **kwargs: object) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        return httpx.Client(verify=context, timeout=5, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def secure_registry(tmp_path: Path) -> Iterator[SecureRegistry]:
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is not installed (scripts/install.sh installs it)"
    addr = f"{LOOPBACK}:{free_port()}"
    tls = registry_tls.ensure_tls(tmp_path / "tls", [addr])
    credentials = registry_auth.ensure_credentials(tmp_path / "auth")
    config = registry_auth.secure_config(addr, tmp_path / "storage", tls, credentials)
    config_path = tmp_path / "config.yml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    log = tmp_path / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [binary, "serve", str(config_path)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        host, port = addr.split(":")
        wait_for(lambda: proc.poll() is None and ports.accepts(host, int(port), 0.2))
        yield SecureRegistry(addr, tls, credentials, log)
    finally:
        stop_process(proc, timeout=10)


def test_the_registry_wants_the_login(secure_registry: SecureRegistry) -> None:
    credentials = secure_registry.credentials
    with secure_registry.client() as client:
        anonymous = client.get(secure_registry.url)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"].startswith("Basic realm=")
        wrong = client.get(secure_registry.url, auth=(credentials.user, "not-the-password"))
        assert wrong.status_code == 401
        other_user = client.get(secure_registry.url, auth=("admin", credentials.password))
        assert other_user.status_code == 401
        right = client.get(secure_registry.url, auth=(credentials.user, credentials.password))
        assert right.status_code == 200
        assert right.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
        catalog = client.get(
            f"https://{secure_registry.addr}/v2/_catalog",
            auth=(credentials.user, credentials.password),
        )
        assert catalog.json() == {"repositories": []}
    assert credentials.password not in secure_registry.log.read_text()


def test_plain_http_and_untrusted_clients_are_refused(secure_registry: SecureRegistry) -> None:
    credentials = secure_registry.credentials
    plain = httpx.get(
        f"http://{secure_registry.addr}/v2/", auth=(credentials.user, credentials.password)
    )
    assert plain.status_code == 400  # Go's answer to HTTP on an HTTPS port
    assert "HTTPS" in plain.text
    assert "Docker-Distribution-Api-Version" not in plain.headers
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(secure_registry.url, verify=True, timeout=5)  # the system's CAs only
    port = secure_registry.addr.split(":")[1]
    with (
        secure_registry.client() as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get(f"https://localhost:{port}/v2/")  # a name the certificate does not hold


def test_certificate_and_files(tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    files = registry_tls.ensure_tls(folder, ["10.77.0.1:5000", "127.0.0.1:5000", "registry"])
    assert folder.stat().st_mode & 0o777 == 0o700
    assert files.ca_key.stat().st_mode & 0o777 == 0o600
    assert files.key.stat().st_mode & 0o777 == 0o600
    assert files.ca_cert.stat().st_mode & 0o777 == 0o644
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    addresses, names = registry_tls.cert_hosts(cert)
    assert sorted(str(address) for address in addresses) == ["10.77.0.1", "127.0.0.1"]
    assert names == {"registry"}
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    # the same addresses again: nothing is made anew; other addresses: a new certificate
    # from the same CA
    ca_pem, cert_pem = files.ca_cert.read_bytes(), files.cert.read_bytes()
    registry_tls.ensure_tls(folder, ["10.77.0.1:5000", "127.0.0.1:5000", "registry"])
    assert (files.ca_cert.read_bytes(), files.cert.read_bytes()) == (ca_pem, cert_pem)
    registry_tls.ensure_tls(folder, ["10.77.0.2:5000"])
    assert files.ca_cert.read_bytes() == ca_pem
    moved = x509.load_pem_x509_certificate(files.cert.read_bytes())
    assert [str(a) for a in registry_tls.cert_hosts(moved)[0]] == ["10.77.0.2"]
    moved.verify_directly_issued_by(ca)


def test_credentials_are_kept_private_and_stable(tmp_path: Path) -> None:
    folder = tmp_path / "auth"
    first = registry_auth.ensure_credentials(folder)
    assert first.user == registry_auth.USER
    assert len(first.password) >= 32
    assert first.password not in repr(first)
    for path in (first.password_file, first.htpasswd):
        assert path.stat().st_mode & 0o777 == 0o600
    assert first.password_file.read_text() == first.password + "\n"
    entry = first.htpasswd.read_text()
    assert entry.startswith(f"{first.user}:$2b$")
    assert first.password not in entry
    assert registry_auth.check_htpasswd(first.htpasswd, first.user, first.password)
    assert not registry_auth.check_htpasswd(first.htpasswd, first.user, "guess")
    again = registry_auth.ensure_credentials(folder)
    assert again.password == first.password
    assert again.htpasswd.read_text() == entry  # not hashed again
    hint = first.login_hint("10.77.0.1:5000")
    assert hint == (
        f"docker login 10.77.0.1:5000 -u dockercoins --password-stdin < {first.password_file}"
    )
