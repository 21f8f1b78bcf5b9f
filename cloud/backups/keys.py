"""The key that seals SQLite backups: a key file (32 random bytes as 64 hex digits, made by
`voltbook-cloud backup key --out FILE`) or a passphrase from an environment variable.

Neither is ever written into the backup repository: `key_source` refuses a key file inside it,
so a stolen copy of the backups is ciphertext without the key. A passphrase is stretched with
scrypt and each file's salt (`cloud.backups.sealed`); a key file's 32 bytes are used as they are
(each file still gets its own key through HKDF with its salt).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cloud.backups import KeyRefused

KEY_BYTES = 32
MIN_PASSPHRASE = 12


@dataclass(frozen=True, slots=True)
class KeyFile:
    """32 secret bytes read from a key file."""

    secret: bytes


@dataclass(frozen=True, slots=True)
class Passphrase:
    """A passphrase; the key is derived per file with scrypt and the file's salt."""

    text: str


KeySource = KeyFile | Passphrase


def write_key_file(path: Path) -> None:
    """A new random key as 64 hex digits, mode 0600; refuses to overwrite an existing file."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyRefused(f"{path} exists already: a key is never overwritten") from None
    except OSError as exc:
        raise KeyRefused(f"cannot write the key file {path}: {exc.strerror or exc}") from exc
    with os.fdopen(descriptor, "w", encoding="ascii") as out:
        out.write(secrets.token_hex(KEY_BYTES) + "\n")


def read_key_file(path: Path) -> KeyFile:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise KeyRefused(f"the backup key file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyRefused(f"cannot read the backup key file {path}: {exc}") from exc
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != KEY_BYTES:
        raise KeyRefused(
            f"{path} is not a backup key: it must hold {KEY_BYTES * 2} hex digits "
            "(`voltbook-cloud backup key --out FILE` makes one)"
        )
    return KeyFile(secret)


def key_source(
    repository: Path, key_file: Path | None, passphrase_env: str, env: dict[str, str] | None = None
) -> KeySource:
    """The configured key: the key file if one is configured, else the passphrase in the
    environment variable `passphrase_env`. `KeyRefused` when neither is usable, or when the
    key file lies inside the backup repository."""
    environment = os.environ if env is None else env
    if key_file is not None:
        inside = key_file.resolve().is_relative_to(repository.resolve())
        if inside:
            raise KeyRefused(
                f"the backup key {key_file} is inside the backup repository {repository}: "
                "keep it elsewhere, or whoever copies the backups has the key too"
            )
        return read_key_file(key_file)
    text = environment.get(passphrase_env, "")
    if not text:
        raise KeyRefused(
            f"no backup key: set [backup] key_file, or the passphrase in ${passphrase_env}"
        )
    if len(text) < MIN_PASSPHRASE:
        raise KeyRefused(f"the passphrase in ${passphrase_env} is shorter than {MIN_PASSPHRASE}")
    return Passphrase(text)
