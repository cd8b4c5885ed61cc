"""A throwaway test CA and a server certificate signed by it, for SIP over TLS on loopback.

Made with the ``cryptography`` package (already in the venv: aiortc needs it), so no ``openssl``
binary is needed. EC P-256 keys: quick to make, and accepted by Python's ssl, kamailio 5.6's tls
module (OpenSSL 3) and baresip 1.0 (libre, OpenSSL 3).

``certs = make_certs(tmp_path / "tls")`` writes PEM files and returns their paths:
``certs.ca_cert`` (give it to the client as its CA list), ``certs.cert`` + ``certs.key`` (the server's),
``certs.chain`` (server cert followed by the CA, for servers that want the chain in one file) and
``certs.bundle`` (key + cert in one file, which baresip's ``sip_certificate`` wants).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class TlsCerts:
    """PEM files of a test CA and of one server certificate it signed."""

    ca_cert: Path
    ca_key: Path
    cert: Path  # the server certificate alone
    key: Path  # its private key (unencrypted PKCS#8)
    chain: Path  # server certificate, then the CA certificate
    bundle: Path  # private key, then the server certificate (baresip's sip_certificate)
    hosts: tuple[str, ...]

    def __iter__(self) -> Iterator[Path]:
        """``ca_cert, cert, key = make_certs(...)``."""
        return iter((self.ca_cert, self.cert, self.key))

    def server_context(self) -> ssl.SSLContext:
        """An ssl context for a Python TLS server presenting this certificate."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.chain, self.key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """An ssl context for a Python TLS client trusting only this CA (host name checked)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.ca_cert)
        return ctx


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sipbridge tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def make_certs(
    directory: Path,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    *,
    days: int = 7,
    ca_name: str = "sipbridge test CA",
) -> TlsCerts:
    """Write a new CA and a server certificate for `hosts` (IP addresses and DNS names, as SANs; the
    first is also the common name) into `directory`; return the paths.

    Every call makes new keys: two calls give two CAs that do not trust each other (handy for a
    "wrong CA" test). Valid from an hour ago (clock skew) for `days` days.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    not_before, not_after = now - dt.timedelta(hours=1), now + dt.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = _name(ca_name)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_subject)
        .issuer_name(ca_subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
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
        )  # fmt: skip
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = _pem_key(key)
    out = TlsCerts(
        ca_cert=directory / "ca.pem",
        ca_key=directory / "ca.key",
        cert=directory / "server.pem",
        key=directory / "server.key",
        chain=directory / "server-chain.pem",
        bundle=directory / "server-bundle.pem",
        hosts=tuple(hosts),
    )
    out.ca_cert.write_bytes(ca_pem)
    out.ca_key.write_bytes(_pem_key(ca_key))
    out.cert.write_bytes(cert_pem)
    out.key.write_bytes(key_pem)
    out.chain.write_bytes(cert_pem + ca_pem)
    out.bundle.write_bytes(key_pem + cert_pem)
    for private in (out.ca_key, out.key, out.bundle):
        private.chmod(0o600)
    return out
