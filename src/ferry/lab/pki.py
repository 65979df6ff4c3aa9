"""The lab's small PKI: one CA, and certificates it signs (Python `cryptography`).

Nothing hand-rolled: keys are ECDSA P-256 from `cryptography`, certificates
X.509 v3 with the extensions TLS peers check (basic constraints, key usage,
extended key usage server/client, subject alternative names with the DNS
name and the IP address a peer dials).  The CA's key never leaves the lab
directory; every private key is written 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ferry.lab.run import write_private

VALID_DAYS = 365


@dataclass(frozen=True)
class Pair:
    """A certificate and its private key, PEM-encoded."""

    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class Authority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ferry lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def new_authority(cn: str = "Ferry lab CA") -> Authority:
    """A self-signed CA that may sign end-entity certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return Authority(cert, key)


def issue(ca: Authority, cn: str, *, dns: tuple[str, ...] = (), ips: tuple[str, ...] = (),
          server: bool = False, client: bool = False) -> Pair:
    """A certificate for `cn` signed by `ca`, valid as a TLS server (for `dns` and
    `ips`) and/or a TLS client."""
    if not (server or client):
        raise ValueError("a certificate is for a server, a client or both")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
        ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    b = (x509.CertificateBuilder()
         .subject_name(_name(cn)).issuer_name(ca.cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         # key encipherment: libvirt refuses a certificate without it, whatever the key
         .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                      key_cert_sign=False, crl_sign=False,
                                      content_commitment=False, data_encipherment=False,
                                      key_agreement=False, encipher_only=False,
                                      decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
             ca.key.public_key()), critical=False))
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = b.sign(ca.key, hashes.SHA256())
    return Pair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def load_authority(directory: Path) -> Authority:
    """The CA `write_authority` wrote to `directory`."""
    cert = x509.load_pem_x509_certificate((directory / "ca-cert.pem").read_bytes())
    key = serialization.load_pem_private_key((directory / "ca-key.pem").read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{directory / 'ca-key.pem'} is not the lab CA's key")
    return Authority(cert, key)


def write_authority(ca: Authority, directory: Path) -> tuple[Path, Path]:
    """ca-cert.pem (readable) and ca-key.pem (0600) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "ca-cert.pem", directory / "ca-key.pem"
    cert.write_bytes(ca.cert_pem)
    write_private(key, _key_pem(ca.key).decode())
    return cert, key


def write_pair(pair: Pair, cert: Path, key: Path) -> None:
    """The certificate (readable) and its key (0600), creating their directories."""
    cert.parent.mkdir(parents=True, exist_ok=True)
    key.parent.mkdir(parents=True, exist_ok=True)
    cert.write_bytes(pair.cert_pem)
    write_private(key, pair.key_pem.decode())
