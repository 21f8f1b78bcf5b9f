"""A small X.509 PKI for MQTT over TLS: one CA, a broker certificate, one client certificate
per device.

The broker authenticates every concentrator by its client certificate and uses the subject CN
as the MQTT username (`use_identity_as_username`), so the CN *is* the device name the ACLs are
written against: node id `edge-0001` may only publish under `vb/edge-0001/…`; the cloud's
certificate is named `cloud`. Keys are EC P-256; private keys are written with mode 0600, the
CA's encrypted with the key passphrase when one is configured (`ledger.key_files`). The leaf
keys stay plain: Mosquitto reads its key without a passphrase prompt, and they are issued anew
at every start.

The certificates follow RFC 5280 closely enough for OpenSSL's strict verification (critical
basic constraints and key usage, subject and authority key identifiers), so a client that
turns on `VERIFY_X509_STRICT` accepts them too.

    ca = create_ca(pki_dir)                                # or load_or_create_ca
    broker_files = issue_server_cert(ca, pki_dir)          # SAN localhost, 127.0.0.1
    edge_files = issue_client_cert(ca, pki_dir, "edge-0001")
    pem = sign_client_key(ca, "edge-0002", csr.public_key())  # a key made on the device

`sign_client_key` certifies a public key the device made itself (from its CSR, checked by the
caller): the private key never leaves the device, and nothing is written here.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger import key_files

ENCRYPT_HINT = "voltbook-cloud keys encrypt --config cloud.toml"
CA_VALID_DAYS = 3650
LEAF_VALID_DAYS = 825
# Certificates start a little in the past so a peer whose clock lags ours still accepts them.
CLOCK_SKEW = datetime.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class CaFiles:
    """The CA's certificate and private key (PEM)."""

    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """What one TLS endpoint needs: the CA to trust, its own certificate and its key (PEM)."""

    ca: Path
    cert: Path
    key: Path


def create_ca(
    directory: Path,
    name: str = "Voltbook CA",
    *,
    valid_days: int = CA_VALID_DAYS,
    stem: str = "ca",
) -> CaFiles:
    """Create a self-signed CA (`<stem>.crt`, `<stem>.key`) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    files = CaFiles(cert=directory / f"{stem}.crt", key=directory / f"{stem}.key")
    _write_cert(files.cert, cert)
    key_files.write_private_key(files.key, key_files.private_pem(key, key_files.passphrase()))
    return files


def load_or_create_ca(directory: Path, name: str = "Voltbook CA") -> CaFiles:
    """The CA in `directory`, created there if it has none (an existing one is never
    replaced: every certificate it issued would stop being trusted)."""
    files = CaFiles(cert=directory / "ca.crt", key=directory / "ca.key")
    if files.cert.exists() or files.key.exists():
        if not (files.cert.is_file() and files.key.is_file()):
            raise ValueError(f"{directory} holds half a CA: ca.crt and ca.key go together")
        return files
    return create_ca(directory, name)


def issue_server_cert(
    ca: CaFiles,
    directory: Path,
    name: str = "localhost",
    *,
    dns_names: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = ("127.0.0.1",),
    valid_days: int = LEAF_VALID_DAYS,
) -> TlsFiles:
    """Issue a broker certificate (`<name>.crt`, `<name>.key`) valid for the given names."""
    san: list[x509.GeneralName] = [x509.DNSName(dns) for dns in dns_names]
    san += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    return _issue(
        ca,
        directory,
        name,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        san=x509.SubjectAlternativeName(san),
        valid_days=valid_days,
    )


def issue_client_cert(
    ca: CaFiles, directory: Path, device: str, *, valid_days: int = LEAF_VALID_DAYS
) -> TlsFiles:
    """Issue a client certificate whose subject CN is `device` (a node id, or `cloud`)."""
    _check_device_name(device)
    return _issue(
        ca,
        directory,
        device,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        san=None,
        valid_days=valid_days,
    )


# The public keys a device may bring (`sign_client_key`); the caller checks curve and size.
DeviceKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey


def sign_client_key(
    ca: CaFiles, device: str, public_key: DeviceKey, *, valid_days: int = LEAF_VALID_DAYS
) -> x509.Certificate:
    """A client certificate (CN = `device`) for a key the device made: the same extensions as
    `issue_client_cert`, whatever the request asked for."""
    _check_device_name(device)
    ca_cert, ca_key = _load_ca(ca)
    return _certificate(
        ca_cert,
        ca_key,
        device,
        public_key,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        san=None,
        valid_days=valid_days,
    )


def _check_device_name(device: str) -> None:
    if not device or any(ch in device for ch in "/+#"):
        # The CN becomes the MQTT username and is substituted into topic patterns.
        raise ValueError(f"device name {device!r} must be non-empty and contain no '/', '+', '#'")


def _load_ca(ca: CaFiles) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert = load_certificate(ca.cert)
    ca_key = key_files.load_private_key(ca.key, key_files.passphrase(), encrypt_hint=ENCRYPT_HINT)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca.key} is not an EC private key")
    return ca_cert, ca_key


def load_certificate(path: Path) -> x509.Certificate:
    """Read a PEM certificate."""
    return x509.load_pem_x509_certificate(path.read_bytes())


def _issue(
    ca: CaFiles,
    directory: Path,
    common_name: str,
    *,
    usage: x509.ObjectIdentifier,
    san: x509.SubjectAlternativeName | None,
    valid_days: int,
) -> TlsFiles:
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = _load_ca(ca)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(
        ca_cert, ca_key, common_name, key.public_key(), usage=usage, san=san, valid_days=valid_days
    )
    files = TlsFiles(
        ca=ca.cert, cert=directory / f"{common_name}.crt", key=directory / f"{common_name}.key"
    )
    _write_cert(files.cert, cert)
    _write_key(files.key, key)
    return files


def _certificate(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    public_key: DeviceKey,
    *,
    usage: x509.ObjectIdentifier,
    san: x509.SubjectAlternativeName | None,
    valid_days: int,
) -> x509.Certificate:
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created 0600 from the start (no window where the key is world-readable); an existing
    # file is truncated and its mode tightened.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, pem)
    finally:
        os.close(fd)
