"""Private keys at rest: PKCS#8 PEM files, encrypted with a passphrase when one is configured.

The edge and the cloud keep their private keys (the cloud's command key and CA key, a node's
Ed25519 key and TLS key) in files. With a passphrase configured they are written encrypted
(`BestAvailableEncryption`: PBES2, AES-256-CBC, a salted KDF) and need it to be read again; an
unencrypted key still loads, with a warning naming the command that encrypts it, so a box or
server installed before this keeps working.

The passphrase comes from the first of (`passphrase`):

    $CREDENTIALS_DIRECTORY/voltbook-key-passphrase   a systemd credential (LoadCredentialEncrypted=)
    $VOLTBOOK_KEY_PASSPHRASE_FILE                    a file holding it (one line)
    $VOLTBOOK_KEY_PASSPHRASE                         the passphrase itself

An encrypted key and no passphrase, or a wrong one, is a `KeyFileError` that says which of
these to set: the service then refuses to start before it has started anything.

`write_private_key` replaces a file atomically (`replace_file`: a temporary file in the same
folder, written 0600 and fsynced, renamed over the old one, the folder fsynced), so a crash
leaves the old key or the new one, never half of either. This sits in `ledger` because both the
edge and the cloud use it and `ledger` is what they share; it imports nothing of theirs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from ledger.chain import NodeKey
from ledger.errors import LedgerError

log = logging.getLogger(__name__)

CREDENTIAL = "voltbook-key-passphrase"
PASSPHRASE_ENV = "VOLTBOOK_KEY_PASSPHRASE"
PASSPHRASE_FILE_ENV = "VOLTBOOK_KEY_PASSPHRASE_FILE"
MAX_PASSPHRASE = 1024
WHERE = (
    f"the systemd credential {CREDENTIAL} (LoadCredentialEncrypted=), "
    f"${PASSPHRASE_FILE_ENV} (a file holding it) or ${PASSPHRASE_ENV}"
)
ENCRYPTED_MARKERS = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")


_warned: set[Path] = set()


class KeyFileError(LedgerError):
    """A private key file cannot be read or written as configured; the message says what to
    set or fix."""


def passphrase(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The configured passphrase (see the module docstring), or None when none is."""
    env = os.environ if environ is None else environ
    sources: list[tuple[str, Path]] = []
    credentials = env.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL).exists():
        sources.append((f"the systemd credential {CREDENTIAL}", Path(credentials) / CREDENTIAL))
    if env.get(PASSPHRASE_FILE_ENV):
        sources.append((f"${PASSPHRASE_FILE_ENV}", Path(env[PASSPHRASE_FILE_ENV])))
    for name, path in sources:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"{name}: {path} cannot be read ({exc.strerror})") from None
        return _checked(raw.rstrip(b"\r\n"), f"{name} ({path})")
    if PASSPHRASE_ENV in env:
        return _checked(env[PASSPHRASE_ENV].encode("utf-8"), f"${PASSPHRASE_ENV}")
    return None


def _checked(secret: bytes, where: str) -> bytes:
    if not secret.strip():
        raise KeyFileError(f"{where} is empty: a key passphrase cannot be empty")
    if len(secret) > MAX_PASSPHRASE:
        raise KeyFileError(f"{where} is longer than {MAX_PASSPHRASE} bytes")
    return secret


def is_encrypted(pem: bytes) -> bool:
    return any(marker in pem for marker in ENCRYPTED_MARKERS)


def load_private_key(path: Path, secret: bytes | None, *, encrypt_hint: str) -> PrivateKeyTypes:
    """The private key in `path`. An encrypted one needs `secret`; an unencrypted one loads with
    a warning that names `encrypt_hint` (the command that encrypts it) when a passphrase is
    configured or not. `KeyFileError` for a missing passphrase, a wrong one or not a key."""
    pem = Path(path).read_bytes()
    encrypted = is_encrypted(pem)
    if encrypted and secret is None:
        raise KeyFileError(f"{path} is encrypted and no key passphrase is configured: set {WHERE}")
    try:
        key = serialization.load_pem_private_key(pem, password=secret if encrypted else None)
    except (ValueError, TypeError) as exc:
        if encrypted:
            raise KeyFileError(
                f"{path} cannot be decrypted: the key passphrase is wrong (set by {WHERE})"
            ) from None
        raise KeyFileError(f"{path} does not hold a PEM private key ({exc})") from None
    if not encrypted and encrypt_hint and Path(path) not in _warned:
        _warned.add(Path(path))  # once per file and process: the CA key is read at every issue
        log.warning("%s is stored unencrypted: configure a key passphrase and run `%s`",
                    path, encrypt_hint)  # fmt: skip
    return key


def load_node_key(path: Path, secret: bytes | None, *, encrypt_hint: str) -> NodeKey:
    """The Ed25519 node key in `path` (`load_private_key`, and of that kind)."""
    key = load_private_key(path, secret, encrypt_hint=encrypt_hint)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a private key, but not an Ed25519 one")
    return NodeKey(key)


def private_pem(key: PrivateKeyTypes, secret: bytes | None) -> bytes:
    """`key` as PKCS#8 PEM: encrypted with `secret`, or plain when it is None."""
    protection: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if secret is None
        else serialization.BestAvailableEncryption(secret)
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, protection
    )


def write_private_key(path: Path, pem: bytes) -> None:
    """Put `pem` in `path` (0600), replacing what is there atomically."""
    replace_file(path, pem, 0o600)


def replace_file(path: Path, data: bytes, mode: int) -> None:
    """Put `data` in `path` with `mode`, replacing what is there atomically (a temporary
    file fsynced, renamed over it, the folder fsynced): a crash leaves the old or the new."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(descriptor, mode)  # whatever the umask or a leftover file said
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def encrypt_in_place(path: Path, secret: bytes) -> bool:
    """Encrypt the key in `path` with `secret`, in place; False when it already was (and the
    passphrase opens it). `KeyFileError` when it cannot be read."""
    pem = Path(path).read_bytes()
    if is_encrypted(pem):
        load_private_key(path, secret, encrypt_hint="")  # the passphrase must open it
        return False
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} does not hold a PEM private key ({exc})") from None
    write_private_key(path, private_pem(key, secret))
    return True
