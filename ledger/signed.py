"""Signed messages between the cloud and a concentrator: commands down, acknowledgements down,
statuses up.

A signed message is a JSON object. Its signature is Ed25519 over a domain tag (one per message
type, so a signature can never be replayed as another type) followed by the canonical JSON
(`ledger.encoding.canonical_json`) of the object *without* its `sig` member; `sig` is the
signature in lower-case hex and `key_id` names the key (`ledger.chain.key_id`).

Command (cloud → edge, topic `vb/{node}/cmd`):

    {"id": "<32 hex>", "seq": 7, "target": "edge-0001", "kind": "recharge",
     "args": {"account": "A0001", "fen": 5000, "payment": "P123", "method": "cash"},
     "issued": "2026-11-24T08:00:00+00:00", "expires": "2026-11-27T08:00:00+00:00",
     "key_id": "…", "sig": "…"}

`seq` counts the commands issued to one target (1, 2, …): a reconnecting concentrator reports
the highest seq it applied and the cloud resends the ones after it. The id makes applying
exactly-once (the edge's inbox); seq only orders and resumes.

Acknowledgement (cloud → edge, topic `vb/{node}/ack`): see `ledger.wire.Ack`. Status (edge →
cloud, topic `vb/{node}/status`, signed with the node's key): see `ledger.wire.Status`.

Operator-log head (the cloud's, `cloud.people.oplog`; in the cloud's heads file and in every
ack, `OplogHead`): the cloud's key vouches that its operator log's rows 1..seq chain to hash.

    {"seq": 812, "hash": "<64 hex>", "time": "2026-11-24T08:00:00+00:00", "key_id": "…",
     "sig": "…"}
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeGuard

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.chain import NodeKey, key_id
from ledger.encoding import canonical_json
from ledger.errors import DecodeError, LedgerError
from ledger.untrusted import load_json

COMMAND_TAG = b"voltbook/sync/command/v1\x00"
ACK_TAG = b"voltbook/sync/ack/v1\x00"
STATUS_TAG = b"voltbook/sync/status/v1\x00"
OPLOG_HEAD_TAG = b"voltbook/oplog/head/v1\x00"
_HEX128 = re.compile(r"[0-9a-f]{32}")
_SIG = re.compile(r"[0-9a-f]{128}")
_HASH = re.compile(r"[0-9a-f]{64}")
MAX_SEQ = 2**63 - 1  # stored as an SQLite INTEGER


class Rejected(LedgerError):
    """A signed message that must not be acted on; `reason` is a short machine word."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def sign(tag: bytes, fields: Mapping[str, Any], key: NodeKey) -> bytes:
    """The payload: `fields` plus `key_id` and `sig`, as canonical JSON."""
    body = {k: v for k, v in fields.items() if k not in ("sig", "key_id")}
    body["key_id"] = key.key_id
    signature = key.private_key.sign(tag + canonical_json(body))
    return canonical_json({**body, "sig": signature.hex()})


def open_signed(tag: bytes, payload: bytes, keys: Mapping[str, Ed25519PublicKey]) -> dict[str, Any]:
    """The fields of a signed payload whose signature verifies by one of `keys` (by key id).

    Raises `Rejected` with reason `malformed` (also for a payload `ledger.untrusted.load_json`
    refuses: too big, too deep, out-of-range numbers, lone surrogates), `unknown_key` or
    `bad_signature`; never anything else, whatever the bytes.
    """
    try:
        fields = load_json(payload)
    except DecodeError as exc:
        raise Rejected("malformed", str(exc)) from exc
    if not isinstance(fields, dict):
        raise Rejected("malformed", "not a JSON object")
    sig, kid = fields.pop("sig", None), fields.get("key_id")
    if not isinstance(sig, str) or not _SIG.fullmatch(sig) or not isinstance(kid, str):
        raise Rejected("malformed", "missing or malformed sig/key_id")
    public = keys.get(kid)
    if public is None:
        raise Rejected("unknown_key", f"signed by key {kid:.64}, which is not trusted here")
    try:
        public.verify(bytes.fromhex(sig), tag + canonical_json(fields))
    except InvalidSignature:
        raise Rejected("bad_signature", f"signature by {kid:.64} does not verify") from None
    return fields


def trusted(*public_keys: Ed25519PublicKey) -> dict[str, Ed25519PublicKey]:
    """A key ring: key id → public key."""
    return {key_id(k): k for k in public_keys}


# An operation's reference: the payment, correction, refund, swap or move id a command names.
REFERENCE_PATTERN = r"[A-Za-z0-9_.:|*@-]{1,64}"
_REFERENCE = re.compile(REFERENCE_PATTERN)


def is_reference(value: object) -> TypeGuard[str]:
    """True if `value` is an operation reference (`REFERENCE_PATTERN`)."""
    return isinstance(value, str) and _REFERENCE.fullmatch(value) is not None


class CommandKind(StrEnum):
    """What a command asks of a concentrator, and its `args`.

    Transfer ids are `ledger.ids.derive_id(<tag>, <reference>)`, so the cloud knows the id of
    the entry the edge will write and a repeated command can never book twice. Amounts are
    integer fen / Wh. Every money command names the operation's reference (payment, correction,
    refund, swap, move id: `REFERENCE_PATTERN`).
    """

    RECHARGE = "recharge"  # account, fen, payment, method
    RELAY = "relay"  # meters (list), action ("trip" | "close")
    TIME = "time"  # none; `issued` is the cloud's time
    # The node's whole configuration (the documents of `edge.site.documents`: meters, shops,
    # accounts, rules, tariffs) as the cloud's registry has it; `version` only grows.
    #   args: version (int ≥ 1), documents {kind: [document, …]}; optional cloud_keys and
    #   retired_cloud_keys, the cloud keys the box trusts from then on (`ledger.cloud_trust`)
    CONFIG = "config"
    # Compensate an operator's mistake on a prepaid pocket: fen > 0 credits the account
    # (sys:corrections_fen → A:prepaid), fen < 0 debits it (refused below the pocket's floor).
    #   args: account, fen (≠ 0), correction, original (hex id of the transfer corrected), reason
    #   edge entry id: entry_ids.correction(correction), code correction
    CORRECTION = "correction"
    # Refund the whole *prepaid* balance (never subsidy): a PENDING A:prepaid →
    # sys:refunds_payable of the available prepaid fen, linked with a grace allowance
    # sys:grace_issued → A:grace of grace_wh that keeps power on until grace_until; what is
    # left of it then is cleared (A:grace → sys:grace_expired). Refused when nothing is
    # refundable or a refund of the account is pending.
    #   args: account, refund, grace_wh (≥ 0), grace_until (ISO time)
    #   edge entry ids: entry_ids.refund(refund) code refund; entry_ids.grace(refund);
    #   at grace_until: entry_ids.grace_expire(refund) code grace_expire; or, if the grace
    #   ends before (its refund voided, the tenant moving out): entry_ids.grace_end(refund)
    #   code grace_expire. A later refund's grace replaces a running one.
    REFUND = "refund"
    # Resolve a pending transfer this node holds (a refund or a move out): post or void it. A
    # void of a refund whose grace allowance still runs ends that grace: what the grace pocket
    # holds is cleared (A:grace → sys:grace_expired) in the same linked chain; a post leaves
    # the grace running until grace_until.
    #   args: pending (hex id, 32 lower-case digits), action ("post" | "void"), reference (the
    #   refund/move id)
    #   edge entry ids: entry_ids.settle(pending hex, action); with a refund's void, if its
    #   grace still runs: entry_ids.grace_end(refund) code grace_expire
    SETTLE = "settle"
    # Replace a meter: bill the old meter up to final_wh (code meter_settle; refused if below
    # the last register billed), then the new meter (a meters document) starts at initial_wh.
    # The account's balance is untouched: it belongs to the account, not the meter.
    #   args: swap, old (address), final_wh, meter (document of the new meter), initial_wh
    #   (registers as billed, i.e. after the meter's multiplier; the new meter inherits the old
    #   one's shop and account)
    #   edge entry ids: entry_ids.meter_settle(swap, leg), leg "subsidy" | "prepaid" |
    #   "grace" | "credit" (the consumption legs), refs swap, meter, reg_from, reg_to, energy_wh
    METER_SWAP = "meter_swap"
    # A tenant leaving this concentrator: PENDING A:prepaid → sys:moves_in_transit of the
    # available prepaid fen (code move); the subsidy left is cleared (code subsidy_expire), and
    # so is a refund's grace allowance still running (code grace_expire): one linked chain.
    #   args: account, move, to_node
    #   edge entry ids: entry_ids.move_out(move), entry_ids.move_expire(move),
    #   entry_ids.grace_end(refund) (the refund whose grace was running)
    MOVE_OUT = "move_out"
    # The same tenant arriving: sys:moves_in_transit → A:prepaid of fen (code move). The
    # account must already be in this node's configuration (a config command first).
    # subsidy_periods (optional, default none): the periods ("2026-11") the account was
    # issued a subsidy on any concentrator; this one issues none of them again. fen 0 (a move
    # with nothing to carry) books nothing and still brings the periods; either way it ends the
    # subsidy's hold of an account whose configuration says it is `arriving` by this move.
    #   args: account, move, fen, from_node[, subsidy_periods]
    #   edge entry id: entry_ids.move_in(move) (none for fen 0)
    MOVE_IN = "move_in"
    # Offer the node a signed runtime bundle (docs/architecture.md §6.8): the edge records it and
    # hands it to its updater, which downloads it, checks size and SHA-256, then the bundle's own
    # release signature, installs it beside the running version, switches and runs a health check,
    # switching back by itself when that fails. Books nothing. A version not above the installed
    # one, or one that already failed here, is refused by the updater (reported, not retried).
    #   args: rollout (REFERENCE_PATTERN), version (int ≥ 1), url (http or https), sha256 (64
    #   lower-case hex), size (bytes, ≥ 1)
    UPDATE = "update"
    # A dead concentrator replaced (`ledger.takeover`): this box takes over `from_node`'s
    # accounts as the cloud's verified copy of its chain has them up to its acknowledged head
    # (head_seq, head_hash). In one transaction: the configuration (version, documents, as
    # `config`), one opening transfer per pocket (sys:takeover_<unit> ↔ pocket, code takeover),
    # each meter's billing baseline (the register its last billed leg reached: its next reading
    # bills from there) and each account's cumulative exact cost and subsidy periods (issued,
    # closed), so nothing is billed or issued twice. Refused if this box already bills any of
    # those meters or holds anything in those pockets.
    #   args: takeover (reference), from_node, head_seq (int ≥ 0), head_hash (64 hex), version,
    #   documents, openings [{pocket, amount (signed: the posted balance)}], meters [{meter,
    #   reg}], accounts [{account, cost_cum, subsidy_issued, subsidy_closed, water_issued,
    #   water_closed}]
    #   edge entry ids: entry_ids.takeover_open(takeover, pocket)
    TAKEOVER = "takeover"


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    seq: int
    target: str
    kind: CommandKind
    issued: dt.datetime
    expires: dt.datetime
    args: Mapping[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seq": self.seq,
            "target": self.target,
            "kind": self.kind.value,
            "args": dict(self.args),
            "issued": self.issued.isoformat(),
            "expires": self.expires.isoformat(),
        }

    def sign(self, key: NodeKey) -> bytes:
        return sign(COMMAND_TAG, self.fields(), key)


@dataclass(frozen=True, slots=True)
class OplogHead:
    """The cloud's operator-log head, signed: rows 1..`seq` chain to `hash` (`GENESIS`-like 32
    zero bytes when `seq` is 0) as of `time`. `signature` is over `OPLOG_HEAD_TAG` and the
    canonical JSON of `fields()` without `sig`, by the key `key_id` names."""

    seq: int
    hash: bytes
    time: str
    key_id: str
    signature: bytes

    @classmethod
    def sign(cls, seq: int, hash: bytes, time: str, key: NodeKey) -> OplogHead:
        unsigned = cls(seq, bytes(hash), time, key.key_id, b"")
        signature = key.private_key.sign(OPLOG_HEAD_TAG + canonical_json(unsigned.fields()))
        return cls(seq, bytes(hash), time, key.key_id, signature)

    def fields(self) -> dict[str, Any]:
        body: dict[str, Any] = {"seq": self.seq, "hash": self.hash.hex(), "time": self.time,
                                "key_id": self.key_id}  # fmt: skip
        if self.signature:
            body["sig"] = self.signature.hex()
        return body

    def encode(self) -> bytes:
        return canonical_json(self.fields())

    @classmethod
    def from_fields(cls, fields: object) -> OplogHead:
        """Parse (not verify: `verify`); `Rejected("malformed")` for anything else."""
        if not isinstance(fields, dict):
            raise Rejected("malformed", "an operator-log head is a JSON object")
        seq, digest, time = fields.get("seq"), fields.get("hash"), fields.get("time")
        kid, sig = fields.get("key_id"), fields.get("sig")
        if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
            raise Rejected("malformed", f"operator-log head seq must be an integer in 0..{MAX_SEQ}")
        if not isinstance(digest, str) or not _HASH.fullmatch(digest):
            raise Rejected("malformed", "operator-log head hash must be 64 hex digits")
        if not isinstance(sig, str) or not _SIG.fullmatch(sig) or not isinstance(kid, str):
            raise Rejected("malformed", "operator-log head: missing or malformed sig/key_id")
        _aware(time, "operator-log head time")
        return cls(seq, bytes.fromhex(digest), str(time), kid, bytes.fromhex(sig))

    def verify(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        """Raises `Rejected` (`unknown_key`, `bad_signature`) unless one of `keys` signed it."""
        open_signed(OPLOG_HEAD_TAG, self.encode(), keys)


def _aware(value: object, what: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
        if when is not None and when.tzinfo is not None:
            when.astimezone(dt.UTC)  # an offset past the calendar's ends cannot be compared
    except (ValueError, OverflowError):
        when = None
    if when is None:
        raise Rejected("malformed", f"{what} {value!r:.80} is not an ISO time")
    if when.tzinfo is None:
        raise Rejected("malformed", f"{what} {value!r:.80} has no zone")
    return when


def open_command(
    payload: bytes, keys: Mapping[str, Ed25519PublicKey], node: str, now: dt.datetime
) -> Command:
    """A command this node may apply now. Raises `Rejected` with reason `malformed`,
    `unknown_key`, `bad_signature`, `wrong_target` or `expired`."""
    fields = open_signed(COMMAND_TAG, payload, keys)
    try:
        command = Command(
            id=str(fields["id"]),
            seq=fields["seq"],
            target=str(fields["target"]),
            kind=CommandKind(fields["kind"]),
            issued=_aware(fields["issued"], "issued"),
            expires=_aware(fields["expires"], "expires"),
            args=fields["args"],
        )
    except (KeyError, ValueError) as exc:
        raise Rejected("malformed", f"command fields: {exc!s:.200}") from None
    seq_ok = type(command.seq) is int and 1 <= command.seq <= MAX_SEQ
    if not _HEX128.fullmatch(command.id) or not seq_ok:
        raise Rejected("malformed", f"id must be 32 hex digits and seq an integer in 1..{MAX_SEQ}")
    if not isinstance(command.args, dict):
        raise Rejected("malformed", "args must be an object")
    if command.target != node:
        raise Rejected("wrong_target", f"command {command.id} is for {command.target}, not {node}")
    if now >= command.expires:
        raise Rejected("expired", f"command {command.id} expired at {command.expires.isoformat()}")
    return command


__all__ = [
    "ACK_TAG",
    "COMMAND_TAG",
    "OPLOG_HEAD_TAG",
    "STATUS_TAG",
    "Command",
    "CommandKind",
    "OplogHead",
    "Rejected",
    "open_command",
    "open_signed",
    "sign",
    "trusted",
]
