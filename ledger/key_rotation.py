"""A node's own signing key, rotated in its chain (docs/architecture.md §8.5).

A concentrator signs its checkpoints, snapshots and statuses with its Ed25519 node key. To
replace that key it signs, with the key it is retiring, a **key rotation** bound to its chain's
head at that moment:

    {"node": "edge-0001", "seq": 41, "head": "<64 hex: entry 41's hash>",
     "old_key": "<64 hex: raw public key>", "new_key": "<64 hex>",
     "key_id": "<old key's id>", "sig": "<128 hex>"}

signed as `ledger.signed.sign` signs (Ed25519 over `ROTATION_TAG` and the canonical JSON
without `sig`); seq 0 with the genesis hash rotates a key before any entry. The rule every
verifier follows (`KeySchedule`): **a key signs the seqs up to the one it was retired at**; the
current key signs any seq (a batch resent after a rotation is re-signed with it). So the old
key still verifies what it signed before, and a signature by it for a later seq is refused.

A rotation is followed only if it is signed by a key that is current at that point (not
retired), no earlier in the chain than the rotation before it, of the same node, and its head is
the chain's entry at its seq where the verifier holds that entry (`schedule_of`). The rotations
of one chain thus form a line of keys; a verifier trusts that line when any key on it is one it
trusts: the cloud the key it registered for the node, the box its current `node.key`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.chain import NodeKey, key_id
from ledger.encoding import GENESIS_HASH, canonical_json
from ledger.errors import DecodeError
from ledger.signed import MAX_SEQ, Rejected, open_signed, sign
from ledger.untrusted import load_json

ROTATION_TAG = b"voltbook/ledger/key-rotation/v1\x00"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_SIG = re.compile(r"[0-9a-f]{128}")
_FIELDS = {"node", "seq", "head", "old_key", "new_key", "key_id", "sig"}
MAX_NODE = 64
_NODE = re.compile(rf"[!-~]{{1,{MAX_NODE}}}")


@dataclass(frozen=True, slots=True)
class KeyRotation:
    """A verified-by-itself rotation: `old_key` signed it (whether `old_key` was the node's
    key at `seq` is the schedule's to judge)."""

    node: str
    seq: int
    head: bytes
    old_key: Ed25519PublicKey
    new_key: Ed25519PublicKey
    payload: bytes  # the signed canonical JSON, as stored and sent

    @classmethod
    def sign(
        cls, old: NodeKey, node: str, seq: int, head: bytes, new_key: Ed25519PublicKey
    ) -> KeyRotation:
        fields = {"node": node, "seq": seq, "head": head.hex(),
                  "old_key": old.public_key.public_bytes_raw().hex(),
                  "new_key": new_key.public_bytes_raw().hex()}  # fmt: skip
        return cls.decode(sign(ROTATION_TAG, fields, old))

    @classmethod
    def decode(cls, payload: bytes) -> KeyRotation:
        """The rotation in `payload`; `Rejected` (`malformed`, `bad_signature`) for any bytes
        that are not one signed by the `old_key` it names."""
        try:
            fields = load_json(payload)
        except DecodeError as exc:
            raise Rejected("malformed", f"a key rotation is not JSON: {exc}") from None
        return cls.from_fields(fields)

    @classmethod
    def from_fields(cls, fields: object) -> KeyRotation:
        """`decode` of parsed JSON (an export line, a batch member)."""
        if not isinstance(fields, dict) or fields.keys() != _FIELDS:
            raise Rejected("malformed", f"a key rotation is an object of {sorted(_FIELDS)}")
        node, seq = fields["node"], fields["seq"]
        if not isinstance(node, str) or not _NODE.fullmatch(node):
            raise Rejected("malformed", f"key rotation node must be 1-{MAX_NODE} printable ASCII")
        if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
            raise Rejected("malformed", f"key rotation seq must be an integer in 0..{MAX_SEQ}")
        if not isinstance(fields["key_id"], str) or not _KEY_ID.fullmatch(fields["key_id"]):
            raise Rejected("malformed", "key rotation key_id must be 16 lower-case hex")
        if not isinstance(fields["sig"], str) or not _SIG.fullmatch(fields["sig"]):
            raise Rejected("malformed", "key rotation sig must be 128 lower-case hex")
        raw = {}
        for name in ("head", "old_key", "new_key"):
            value = fields[name]
            if not isinstance(value, str) or not _HEX64.fullmatch(value):
                raise Rejected("malformed", f"key rotation {name} must be 64 lower-case hex")
            raw[name] = bytes.fromhex(value)
        try:
            old = Ed25519PublicKey.from_public_bytes(raw["old_key"])
            new = Ed25519PublicKey.from_public_bytes(raw["new_key"])
        except ValueError as exc:
            raise Rejected("malformed", f"key rotation key: {exc}") from None
        if key_id(old) == key_id(new):
            raise Rejected("malformed", "a key rotation must name a new key")
        payload = canonical_json(fields)
        open_signed(ROTATION_TAG, payload, {key_id(old): old})
        return cls(node, seq, raw["head"], old, new, payload)

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = load_json(self.payload)
        return fields

    @property
    def old_key_id(self) -> str:
        return key_id(self.old_key)

    @property
    def new_key_id(self) -> str:
        return key_id(self.new_key)


@dataclass(frozen=True, slots=True)
class KeySchedule:
    """Which key may sign which seq: key id → (key, the last seq it may sign, None while it is
    current). `since` is the seq of the last rotation followed (0 when none)."""

    node: str
    keys: Mapping[str, tuple[Ed25519PublicKey, int | None]]
    since: int = 0

    @classmethod
    def starting(cls, node: str, *keys: Ed25519PublicKey) -> KeySchedule:
        return cls(node, {key_id(k): (k, None) for k in keys})

    @property
    def current(self) -> dict[str, Ed25519PublicKey]:
        return {kid: key for kid, (key, until) in self.keys.items() if until is None}

    def key_for(self, signer: str, seq: int) -> Ed25519PublicKey | None:
        """The key `signer` names if it may sign `seq`, else None."""
        found = self.keys.get(signer)
        if found is None or (found[1] is not None and seq > found[1]):
            return None
        return found[0]

    def why_not(self, signer: str, seq: int) -> str:
        """Why `key_for(signer, seq)` is None, for a finding or an error."""
        found = self.keys.get(signer)
        if found is None:
            return f"signed by unknown key {signer:.64}"
        return f"signed by key {signer} at seq {seq}, but that key was retired at seq {found[1]}"

    def follow(self, rotation: KeyRotation, head: bytes | None) -> KeySchedule:
        """The schedule after `rotation`; `head` is the chain's entry hash at its seq as the
        caller holds it (None: not held, e.g. pruned, or not yet received). `Rejected`
        (`wrong_node`, `not_current`, `out_of_order`, `wrong_head`) when it may not be followed."""
        if rotation.node != self.node:
            raise Rejected("wrong_node", f"a key rotation of node {rotation.node!r:.80}")
        if rotation.old_key_id not in self.current:
            raise Rejected(
                "not_current",
                f"the key rotation at seq {rotation.seq} is signed by {rotation.old_key_id}, "
                f"not by the node's current key ({', '.join(sorted(self.current))})",
            )
        if rotation.seq < self.since:
            raise Rejected(
                "out_of_order",
                f"the key rotation at seq {rotation.seq} comes before the last one, "
                f"at seq {self.since}",
            )
        expected = GENESIS_HASH if rotation.seq == 0 else head
        if expected is not None and rotation.head != expected:
            raise Rejected(
                "wrong_head", f"the key rotation's head is not the chain's entry {rotation.seq}"
            )
        keys: dict[str, tuple[Ed25519PublicKey, int | None]] = {
            kid: (k, rotation.seq if until is None else until)
            for kid, (k, until) in self.keys.items()
        }
        keys[rotation.new_key_id] = (rotation.new_key, None)
        return replace(self, keys=keys, since=rotation.seq)


def schedule_of(
    node: str,
    rotations: Iterable[KeyRotation],
    trusted: Iterable[Ed25519PublicKey],
    head_at: Callable[[int], bytes | None],
) -> tuple[KeySchedule, list[tuple[KeyRotation, Rejected]]]:
    """A chain's schedule: its rotations in seq order (stable), each followed from the one
    before, and those that cannot be followed (skipped) with why. Without rotations it is
    `trusted` (every key signing every seq). With some, the line starts at the trusted keys
    (a verifier that knows the node's first key: the cloud) or at the first rotation's old key
    (one that knows its last: the box), whichever follows more of them while holding a trusted
    key: a line that reaches no trusted key is refused from its first rotation on."""
    ordered = sorted(rotations, key=lambda r: r.seq)
    trusted_keys = {key_id(k): k for k in trusted}
    forward = _follow(KeySchedule.starting(node, *trusted_keys.values()), ordered, head_at)
    if not ordered or not forward[1]:
        return forward
    backward = _follow(KeySchedule.starting(node, ordered[0].old_key), ordered, head_at)
    if backward[0].keys.keys() & trusted_keys.keys() and len(backward[1]) <= len(forward[1]):
        return backward
    return forward


def signing_keys(
    node: str, rotations: Iterable[KeyRotation], trusted: Iterable[Ed25519PublicKey]
) -> dict[str, Ed25519PublicKey]:
    """The keys that may sign a message of `node` now (a status, which is no chain: no head
    to check): `trusted`, and the current key of `rotations` when they follow from it."""
    trusted = list(trusted)
    keys = {key_id(k): k for k in trusted}
    schedule, refused = schedule_of(node, rotations, trusted, lambda seq: None)
    return keys if refused else {**keys, **schedule.current}


def _follow(
    schedule: KeySchedule,
    ordered: list[KeyRotation],
    head_at: Callable[[int], bytes | None],
) -> tuple[KeySchedule, list[tuple[KeyRotation, Rejected]]]:
    problems: list[tuple[KeyRotation, Rejected]] = []
    for rotation in ordered:
        try:
            schedule = schedule.follow(rotation, head_at(rotation.seq))
        except Rejected as exc:
            problems.append((rotation, exc))
            if exc.reason == "wrong_head":  # refused all the same; the line of keys goes on
                schedule = schedule.follow(rotation, None)
    return schedule, problems
