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

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

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


# -- rotation of the command key ---------------------------------------------------------------
# The boxes trust a small set of cloud keys (`[cloud] cloud_public_key` may list several), so
# the key is rotated in three steps, old and new accepted in between (README "TLS and key
# rotation"): `stage` makes the next key beside the current one; once every box trusts it,
# `switch` makes it the key the cloud signs with (the old private key is destroyed, its public
# key kept in the retired file, which verifies what it signed: the operator log's heads); the
# boxes then drop the old key from their lists.


def next_path(path: Path) -> Path:
    """Where the staged next key lives: `cloud-key.next.pem` beside `cloud-key.pem`."""
    return path.with_name(f"{path.stem}.next{path.suffix}")


def retired_path(path: Path) -> Path:
    """The public keys the cloud signed with before (hex, one a line): `cloud-key.retired`."""
    return path.with_name(f"{path.stem}.retired")


def stage_next(path: Path) -> NodeKey:
    """Make the next command key (or return the one staged already)."""
    if not Path(path).exists():
        raise Invalid(
            f"no cloud key at {path} to rotate: `voltbook-cloud init` or `serve` makes it"
        )
    load(path)  # the current key must open with the passphrase the next one gets
    return load_or_create(next_path(Path(path)))


def switch(path: Path) -> tuple[NodeKey, NodeKey]:
    """Make the staged next key the cloud's key: (the old key, the new one). The old public
    key is appended to the retired file first, so nothing it signed stops verifying."""
    path = Path(path)
    staged = next_path(path)
    if not staged.exists():
        raise Invalid(f"no next key staged at {staged}: run `keys rotate-command-key` first")
    old, new = load(path), load(staged)
    line = old.public_key.public_bytes_raw().hex() + "\n"
    retired = retired_path(path)
    known = retired.read_text(encoding="ascii").splitlines() if retired.exists() else []
    if line.strip() not in known:
        with retired.open("a", encoding="ascii") as out:
            out.write(line)
            out.flush()
            os.fsync(out.fileno())
    os.replace(staged, path)  # one rename: the cloud's key is the old one or the new one
    return old, new


def retired_keys(path: Path) -> tuple[Ed25519PublicKey, ...]:
    """The public keys the cloud signed with before its current one (`switch`)."""
    retired = retired_path(Path(path))
    if not retired.exists():
        return ()
    try:
        return tuple(
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(line.strip()))
            for line in retired.read_text(encoding="ascii").splitlines()
            if line.strip()
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"{retired} holds something else than hex Ed25519 public keys") from exc
