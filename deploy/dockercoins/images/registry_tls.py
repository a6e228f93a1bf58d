"""The registry's TLS: a certificate authority of the tool's own and a server certificate for
the registry's addresses, made with the `cryptography` package (EC P-256 keys, SHA-256).

Kept in one folder (default <state>/registry/tls/):
    ca.crt        the CA certificate: what dockerd trusts (/etc/docker/certs.d/HOST:PORT/ca.crt
                  on every node, for the docker CLI too) and what a client verifies with
    ca.key        the CA's key, mode 0600, never leaves the folder
    registry.crt  the registry's certificate, its addresses as subject alternative names
                  (IP addresses as IP SANs, names as DNS SANs), signed by the CA
    registry.key  its key, mode 0600

The CA is made once and kept; the server certificate is made again when the addresses it
names differ from those asked for, or when it expires within RENEW_BEFORE.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dockercoins.errors import UserError

CA_NAME = "DockerCoins registry CA"
CA_LIFETIME = datetime.timedelta(days=3650)
CERT_LIFETIME = datetime.timedelta(days=397)  # what browsers still accept for a leaf
RENEW_BEFORE = datetime.timedelta(days=30)
CLOCK_SKEW = datetime.timedelta(minutes=5)  # not-before set a little in the past

PRIVATE = 0o600
PUBLIC = 0o644

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class TlsFiles:
    """Where the CA and the registry's certificate and key are."""

    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def cert(self) -> Path:
        return self.folder / "registry.crt"

    @property
    def key(self) -> Path:
        return self.folder / "registry.key"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` with `mode` from the start (a key is never readable by others,
    not even for a moment), replacing the file in one rename."""
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.replace(partial, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def split_hosts(hosts: Iterable[str]) -> tuple[list[Address], list[str]]:
    """IP addresses and DNS names among `hosts` (HOST or HOST:PORT; [v6]:PORT too), in
    order, without repeats. UserError for an empty one."""
    addresses: list[Address] = []
    names: list[str] = []
    for raw in hosts:
        host = raw.strip()
        if host.startswith("["):
            host = host[1:].split("]", 1)[0]
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        if not host:
            raise UserError(f"no host in registry address {raw!r}")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            if host.lower() not in names:
                names.append(host.lower())
        else:
            if address not in addresses:
                addresses.append(address)
    return addresses, names


def make_ca(name: str = CA_NAME) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new CA: a key and a self-signed certificate that may sign server certificates only
    (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    hosts: Iterable[str],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A key and a certificate for the registry at `hosts`, signed by the CA. UserError when
    `hosts` names nothing."""
    addresses, names = split_hosts(hosts)
    if not addresses and not names:
        raise UserError("a registry certificate needs at least one address")
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.IPAddress(address) for address in addresses]
    sans += [x509.DNSName(name) for name in names]
    common = str(addresses[0]) if addresses else names[0]
    now = _now()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + CERT_LIFETIME, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def cert_hosts(cert: x509.Certificate) -> tuple[set[Address], set[str]]:
    """The IP addresses and DNS names a certificate's subject alternative names hold."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    addresses = {
        address
        for address in sans.get_values_for_type(x509.IPAddress)
        if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address)
    }
    return addresses, {name.lower() for name in sans.get_values_for_type(x509.DNSName)}


def _load_ca(files: TlsFiles) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None:
    if not (files.ca_cert.exists() and files.ca_key.exists()):
        return None
    try:
        cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    except ValueError as error:
        raise UserError(
            f"the registry CA in {files.folder} cannot be read ({error}): remove the folder "
            "to make a new one (every node and docker CLI must then trust the new CA)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise UserError(f"the registry CA key in {files.ca_key} is not an EC key")
    return key, cert


def _current(files: TlsFiles, ca_cert: x509.Certificate, hosts: list[str]) -> bool:
    """The server certificate on disk is signed by this CA, names exactly `hosts` and is
    not about to expire."""
    if not (files.cert.exists() and files.key.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    except ValueError:
        return False
    addresses, names = split_hosts(hosts)
    return (
        cert.issuer == ca_cert.subject
        and cert_hosts(cert) == (set(addresses), set(names))
        and cert.not_valid_after_utc - _now() > RENEW_BEFORE
    )


def ensure_tls(folder: Path, hosts: Iterable[str]) -> TlsFiles:
    """The CA (made once) and a current server certificate for `hosts` in `folder` (mode
    0700); returns where they are."""
    wanted = list(hosts)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    files = TlsFiles(folder)
    loaded = _load_ca(files)
    if loaded is None:
        ca_key, ca_cert = make_ca()
        _write(files.ca_key, _key_pem(ca_key), PRIVATE)
        _write(files.ca_cert, _cert_pem(ca_cert), PUBLIC)
    else:
        ca_key, ca_cert = loaded
    if not _current(files, ca_cert, wanted):
        key, cert = make_server_cert(ca_key, ca_cert, wanted)
        _write(files.key, _key_pem(key), PRIVATE)
        _write(files.cert, _cert_pem(cert), PUBLIC)
    return files
