"""The cloud's own Ed25519 node key: it signs commands, acknowledgements and the checkpoints of
the cloud's chain (node id `cloud`).

The key lives in a PEM file (PKCS#8, mode 0600), encrypted with the key passphrase when one is
configured (`ledger.key_files`: a systemd credential, `$VOLTBOOK_KEY_PASSPHRASE_FILE` or
`$VOLTBOOK_KEY_PASSPHRASE`). `load_or_create` makes one on first start; the file is written to a
temporary name and linked into place, so a crash never leaves half a key behind, and an
existing file is never overwritten. An unencrypted key still loads, with a warning naming
`voltbook-cloud keys encrypt`.
"""

from __future__ import annotations

import os
from pathlib import Path

from cloud.errors import Invalid
from ledger import key_files
from ledger.chain import NodeKey

CLOUD_NODE = "cloud"
ENCRYPT_HINT = "voltbook-cloud keys encrypt --config cloud.toml"


def passphrase() -> bytes | None:
    """The configured key passphrase (`ledger.key_files.passphrase`), `Invalid` if unusable."""
    try:
        return key_files.passphrase()
    except key_files.KeyFileError as exc:
        raise Invalid(str(exc)) from exc


def load(path: Path) -> NodeKey:
    try:
        return key_files.load_node_key(Path(path), passphrase(), encrypt_hint=ENCRYPT_HINT)
    except OSError as exc:
        raise Invalid(f"the cloud key {path} cannot be read ({exc.strerror})") from exc
    except key_files.KeyFileError as exc:
        raise Invalid(f"the cloud key: {exc}") from exc


def load_or_create(path: Path | str) -> NodeKey:
    """The key in `path`, created (0600, encrypted when a passphrase is configured) if the file
    does not exist."""
    path = Path(path)
    if path.exists():
        return load(path)
    secret = passphrase()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = NodeKey.generate()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(key.private_pem(secret))
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temporary, path)  # fails if another process created it meanwhile
        except FileExistsError:
            return load(path)
    finally:
        temporary.unlink(missing_ok=True)
    return key
