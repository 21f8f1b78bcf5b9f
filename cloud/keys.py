"""The cloud's own Ed25519 node key: it signs commands, acknowledgements and the checkpoints of
the cloud's chain (node id `cloud`).

The key lives in a PEM file (PKCS#8, unencrypted, mode 0600). `load_or_create` makes one on
first start; the file is written to a temporary name and renamed, so a crash never leaves half a
key behind, and an existing file is never overwritten.
"""

from __future__ import annotations

import os
from pathlib import Path

from cloud.errors import Invalid
from ledger.chain import NodeKey
from ledger.errors import DecodeError

CLOUD_NODE = "cloud"


def load(path: Path) -> NodeKey:
    try:
        return NodeKey.from_pem(Path(path).read_bytes())
    except (ValueError, TypeError, DecodeError) as exc:
        raise Invalid(f"{path} does not hold an Ed25519 private key in PEM: {exc}") from exc


def load_or_create(path: Path | str) -> NodeKey:
    """The key in `path`, created (0600) if the file does not exist."""
    path = Path(path)
    if path.exists():
        return load(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = NodeKey.generate()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(key.private_pem())
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temporary, path)  # fails if another process created it meanwhile
        except FileExistsError:
            return load(path)
    finally:
        temporary.unlink(missing_ok=True)
    return key
