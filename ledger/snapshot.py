"""A signed balance snapshot: a node's book at one head of its chain, so a holder can resume
from there instead of replaying the whole chain (issue 18, item 3).

    snapshot body (canonical JSON, sorted keys, compact):
      {"balances": [[account, debits_pending, debits_posted, credits_pending, credits_posted], …],
       "count": n, "head": hex, "node": id,
       "pendings": [hex of the canonical transfer (`ledger.encoding`), …],
       "resolved": [[pending id hex, "post" | "void"], …], "seq": n, "v": 1}
    signed message: SNAPSHOT_TAG ‖ SHA-256(body), Ed25519 with the node's key

The body binds the balances to (node, seq, head): a snapshot that verifies says "this node's
chain up to this head leaves exactly these balances", and the head ties it to the chain's
entries, so a verifier can start from (seq, head, balances) as from a trusted anchor and check
only what follows. Nothing in a snapshot is trusted before its signature verifies.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.accounts import AccountId, unit_of
from ledger.book import BookState
from ledger.chain import NodeKey
from ledger.encoding import canonical_json, decode_transfer, encode_transfer
from ledger.errors import DecodeError, InvalidValue
from ledger.transfers import Kind

SNAPSHOT_TAG = b"voltbook/ledger/snapshot/v1\x00"
VERSION = 1
_RESOLUTIONS = {Kind.POST.value: Kind.POST, Kind.VOID.value: Kind.VOID}


@dataclass(frozen=True, slots=True)
class BalanceSnapshot:
    node: str
    seq: int
    head: bytes
    state: BookState

    def encode(self) -> bytes:
        return canonical_json(
            {
                "balances": [list(row) for row in self.state.balances],
                "count": self.state.count,
                "head": self.head.hex(),
                "node": self.node,
                "pendings": [encode_transfer(t).hex() for t in self.state.pendings],
                "resolved": [[f"{i:032x}", kind.value] for i, kind in self.state.resolved],
                "seq": self.seq,
                "v": VERSION,
            }
        )

    def sign(self, key: NodeKey) -> SignedSnapshot:
        body = self.encode()
        signature = key.private_key.sign(_message(body))
        return SignedSnapshot(body, key.key_id, signature)


@dataclass(frozen=True, slots=True)
class SignedSnapshot:
    """A snapshot's canonical body and the node's signature over it."""

    body: bytes
    key_id: str
    signature: bytes

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        try:
            public_key.verify(self.signature, _message(self.body))
        except InvalidSignature:
            return False
        return True

    @property
    def snapshot(self) -> BalanceSnapshot:
        """The body decoded (`DecodeError` if it is not a canonical snapshot)."""
        return decode_snapshot(self.body)


def _message(body: bytes) -> bytes:
    return SNAPSHOT_TAG + hashlib.sha256(body).digest()


def _int(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise DecodeError(f"snapshot {what} must be an integer ≥ 0, not {value!r}")
    return value


def decode_snapshot(data: bytes) -> BalanceSnapshot:
    """A snapshot from its canonical body; any other bytes raise `DecodeError`."""
    try:
        fields = json.loads(data)
        if not isinstance(fields, dict) or fields.get("v") != VERSION:
            raise DecodeError("not a version-1 balance snapshot")
        balances = []
        for row in fields["balances"]:
            account, *totals = row
            if not isinstance(account, str) or len(totals) != 4:
                raise DecodeError(f"malformed balance row {row!r}")
            unit_of(AccountId(account))  # an id of a known shape
            balances.append((AccountId(account), *(_int(t, "total") for t in totals)))
        pendings = tuple(decode_transfer(bytes.fromhex(p)) for p in fields["pendings"])
        resolved = []
        for pending_id, kind in fields["resolved"]:
            if kind not in _RESOLUTIONS or len(pending_id) != 32:
                raise DecodeError(f"malformed resolution {pending_id!r} {kind!r}")
            resolved.append((int(pending_id, 16), _RESOLUTIONS[kind]))
        head = bytes.fromhex(fields["head"])
        if len(head) != 32 or not isinstance(fields["node"], str):
            raise DecodeError("snapshot head or node malformed")
        snapshot = BalanceSnapshot(
            fields["node"],
            _int(fields["seq"], "seq"),
            head,
            BookState(
                tuple(balances),  # type: ignore[arg-type]  # rows checked above
                pendings,
                tuple(resolved),
                _int(fields["count"], "count"),
            ),
        )
    except DecodeError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, InvalidValue) as exc:
        raise DecodeError(f"not a balance snapshot: {exc}") from exc
    if snapshot.encode() != data:
        raise DecodeError("the snapshot is not in canonical form")
    return snapshot
