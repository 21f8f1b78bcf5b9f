"""The per-node hash chain, node keys and signed checkpoints (docs/architecture.md §5.3).

Every node (each concentrator, and the cloud) appends its accepted transfers to its own chain:
entry `seq` n carries `prev_hash` (the hash of entry n−1, or 32 zero bytes for n = 1) and `hash`
(SHA-256 over a domain tag, node id, seq, prev hash and the canonical transfer body, version 1
or 2; see `ledger.encoding`). A checkpoint (node, seq, head hash) signed with the node's Ed25519
key vouches for every entry up to `seq`. The key id is the first 8 bytes of SHA-256 of the raw
public key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.encoding import (
    GENESIS_HASH,
    checkpoint_message,
    encode_body,
    entry_prefix,
    entry_preimage,
)
from ledger.encoding_v2 import FORMAT_V2
from ledger.errors import DecodeError, InvalidValue
from ledger.transfers import Transfer

_V2 = bytes((FORMAT_V2,))


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


def load_public_key(data: bytes) -> Ed25519PublicKey:
    """A public key from PEM (SubjectPublicKeyInfo) or 64 hex digits of the raw key."""
    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(text)
            if not isinstance(key, Ed25519PublicKey):
                raise DecodeError("the PEM key is not an Ed25519 public key")
            return key
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.decode("ascii")))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"not an Ed25519 public key (PEM or 64 hex digits): {exc}") from exc


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True, slots=True)
class NodeKey:
    """A node's signing key. The private key never leaves the node."""

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> NodeKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> NodeKey:
        """A key from a 32-byte seed (tests and frozen vectors only)."""
        if len(seed) != 32:
            raise InvalidValue("an Ed25519 seed is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_pem(cls, data: bytes, password: bytes | None = None) -> NodeKey:
        """The key in PEM `data` (PKCS#8; encrypted ones need `password`)."""
        key = serialization.load_pem_private_key(data, password=password)
        if not isinstance(key, Ed25519PrivateKey):
            raise DecodeError("the PEM key is not an Ed25519 private key")
        return cls(key)

    def private_pem(self, password: bytes | None = None) -> bytes:
        """PKCS#8 PEM, encrypted with `password` when given (`ledger.key_files`)."""
        protection: serialization.KeySerializationEncryption = (
            serialization.NoEncryption()
            if password is None
            else serialization.BestAvailableEncryption(password)
        )
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, protection
        )

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)


@dataclass(frozen=True, slots=True)
class Entry:
    node: str
    seq: int
    prev_hash: bytes
    hash: bytes
    transfer: Transfer
    version: int = 1  # the body's format (`ledger.encoding.encode_body`)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    node: str
    seq: int
    head: bytes
    key_id: str
    signature: bytes

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        try:
            public_key.verify(self.signature, checkpoint_message(self.node, self.seq, self.head))
        except InvalidSignature:
            return False
        return True


def entry_hash(node: str, seq: int, prev_hash: bytes, body: bytes) -> bytes:
    return hashlib.sha256(entry_preimage(node, seq, prev_hash, body)).digest()


def entry_hasher(node: str) -> Callable[[int, bytes, bytes], bytes]:
    """`entry_hash` for one node's entries (seq, prev_hash, body), its prefixes made once: what
    a verifier runs on every entry of a chain."""
    v1, v2 = entry_prefix(node, b"{"), entry_prefix(node, _V2)
    sha256, join = hashlib.sha256, b"".join

    def digest(seq: int, prev_hash: bytes, body: bytes) -> bytes:
        prefix = v2 if body[:1] == _V2 else v1
        return sha256(join((prefix, seq.to_bytes(8, "big"), prev_hash, body))).digest()

    return digest


def make_entry(
    node: str, seq: int, prev_hash: bytes, transfer: Transfer, version: int = 1
) -> Entry:
    digest = entry_hash(node, seq, prev_hash, encode_body(transfer, version))
    return Entry(node, seq, prev_hash, digest, transfer, version)


def sign_checkpoint(key: NodeKey, node: str, seq: int, head: bytes) -> Checkpoint:
    signature = key.private_key.sign(checkpoint_message(node, seq, head))
    return Checkpoint(node, seq, head, key.key_id, signature)


class Chain:
    """An append-only chain in memory: the head and how to extend it.

    Durable storage is the caller's (the edge keeps entries in SQLite); `Chain.resume` continues
    from a stored head. `version` is the body format of the entries it appends from now on.
    """

    def __init__(
        self, node: str, seq: int = 0, head: bytes = GENESIS_HASH, *, version: int = 1
    ) -> None:
        self.node = node
        self.seq = seq
        self.head = head
        self.version = version

    @classmethod
    def resume(cls, node: str, last: Entry | None) -> Chain:
        return cls(node) if last is None else cls(node, last.seq, last.hash)

    def append(self, transfer: Transfer) -> Entry:
        entry = make_entry(self.node, self.seq + 1, self.head, transfer, self.version)
        self.seq, self.head = entry.seq, entry.hash
        return entry

    def checkpoint(self, key: NodeKey) -> Checkpoint:
        if self.seq == 0:
            raise InvalidValue("an empty chain has nothing to checkpoint")
        return sign_checkpoint(key, self.node, self.seq, self.head)
