"""The node key's public half in a public file beside it (`node.pub` beside `node.key`).

The node key signs the box's checkpoints, snapshots and statuses; whatever only *verifies* them
(`voltbook-edge health`, which the updater runs as root after each switch; `ledger verify
--config`, `status`, `ledger export`, the status page) needs its public half alone. Read from
this file those commands need no key passphrase when the private key is encrypted at rest, so
the updater's unit holds none (docs/architecture.md §6.9).

    DIR/node.key   the private key (PEM, 0600, encrypted when a key passphrase is configured)
    DIR/node.pub   its public key (PEM SubjectPublicKeyInfo, 0644), what `ledger.chain.
                   load_public_key` and `voltbook-edge ledger verify --key` read

The name is the key file's with `.pub` for `.key` (appended when it has no `.key`). It holds
the public half of the node key that is there now: a verifier starts from any key on the
line of rotations the store records (`ledger.key_rotation.schedule_of` follows them forward
from the first key or backward from the last), so the key the chain started with would do as
well, but "node.key's public half" is what an operator can check and what the box can always
write again from node.key. It is written (`write_public`, atomically: temporary file, fsync,
rename) by `voltbook-edge provision` with the key, by `keys rotate` right after the new key
replaces node.key (cut short between the two, node.pub names the retired key, which is still on
the recorded line: verifying works, and the next run writes it again), by `keys encrypt` and by
the runtime at every start when it is missing or not node.key's (a box provisioned before
node.pub existed gets one at its next start).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.site.errors import SiteConfigError
from ledger import key_files
from ledger.chain import key_id, load_public_key, public_key_pem
from ledger.errors import DecodeError

MAX_BYTES = 4096  # a PEM Ed25519 key is 113 bytes; anything far larger is not one
# A problem with one of these words may be node.pub's rather than the store's.
SIGNATURE_WORDS = ("key", "signature", "signed")
REWRITE = "remove it: the runtime writes it again from the node key at its next start"


def public_path(node_key: Path) -> Path:
    """Where the public half of the node key in `node_key` is kept."""
    if node_key.suffix == ".key":
        return node_key.with_suffix(".pub")
    return node_key.with_name(f"{node_key.name}.pub")


def read_public(node_key: Path) -> Ed25519PublicKey | None:
    """The public key kept beside `node_key`, None when there is no such file;
    `SiteConfigError` naming the file when it cannot be read or is not an Ed25519 key."""
    path = public_path(node_key)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SiteConfigError(path, f"the node's public key cannot be read ({exc})") from None
    if len(data) > MAX_BYTES:
        raise SiteConfigError(path, f"the node's public key file is over {MAX_BYTES} bytes, "
                              f"not a key: {REWRITE}")  # fmt: skip
    try:
        return load_public_key(data)
    except DecodeError as exc:
        raise SiteConfigError(
            path, f"the node's public key file holds no usable key ({exc}): {REWRITE}"
        ) from None


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    """The node's public key a verifying command uses, and the file it came from (node.pub;
    None: the private key, or one given on the command line)."""

    key: Ed25519PublicKey
    file: Path | None = None

    def explain(self, problem: str) -> str:
        """`problem` (why the ledger does not verify with `key`), and, when it is about keys or
        signatures and `key` came from node.pub, that the file may hold another key (or the
        store is damaged: `problem` says that)."""
        if self.file is None or not any(word in problem for word in SIGNATURE_WORDS):
            return problem
        return (f"{problem} [checked with the key in {self.file}, {key_id(self.key)}: if "
                f"that is not this node's key, {REWRITE}]")  # fmt: skip


def write_public(node_key: Path, key: Ed25519PublicKey) -> Path:
    """Put `key` beside `node_key` (0644), replacing what is there atomically; its path."""
    path = public_path(node_key)
    key_files.replace_file(path, public_key_pem(key), 0o644)
    return path


def publish(node_key: Path, key: Ed25519PublicKey) -> bool:
    """`write_public` unless the file already holds `key`; whether it wrote."""
    try:
        if read_public(node_key) == key:
            return False
    except SiteConfigError:
        pass  # garbage is replaced by the key's own public half
    write_public(node_key, key)
    return True
