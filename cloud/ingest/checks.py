"""Pure checks of an uplink batch (`ledger.wire.Batch`) before anything touches the database.

`verify_ledger` recomputes every entry hash from the batch's `prev` (so an edited body cannot
hide), follows the node key's rotations (`ledger.key_rotation`: those stored and those the batch
carries; one that cannot be followed is `Refused`, nothing stored), checks the one checkpoint
signature over the last head with the node's key for that seq, and decodes every body
canonically. Whatever fails there was signed — or claims to be signed —
by the node, so it is grounds for quarantine (`Quarantined` with reason `wrong_key`,
`bad_signature`, `tampered` or `malformed_entry`), not a mere refusal.

`prepare_contents` turns readings (`ledger.readings.ReadingRow`, `extra` a JSON value that
becomes text here, for the `readings.extra` column), events and command results into rows,
refusing (`Refused`) values the database could not hold: a batch is stored whole or not at all.
Whether the ledger part continues the cloud's copy (gap, fork, overlap) needs the stored head
and is decided by `cloud.ingest.handler` under the node's row lock.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cloud.chains.commands import CommandVerdict
from cloud.chains.projection import VerifiedEntry
from cloud.db.models import CommandStatus
from cloud.errors import Quarantined, Refused
from ledger.chain import Checkpoint, entry_hash
from ledger.encoding import GENESIS_HASH, decode_transfer
from ledger.errors import DecodeError
from ledger.key_rotation import KeyRotation, KeySchedule, schedule_of
from ledger.readings import ReadingRow
from ledger.wire import Batch, LedgerPart

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_SEQ = 2**63 - 1
REJECTED_EVENT = "command_rejected"
# Column widths of cloud.db.models: longer values are refused, never truncated.
WIDTHS = {"meter": 32, "tariff_wh": 80, "status": 80, "kind": 64, "category": 16, "shop": 64,
          "account": 64}  # fmt: skip


@dataclass(slots=True)
class Contents:
    readings: list[tuple[Any, ...]] = field(default_factory=list)  # in `readings` column order
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)  # meter -> newest state
    events: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[CommandVerdict] = field(default_factory=list)
    rotations: list[KeyRotation] = field(default_factory=list)  # new node key rotations


def verify_ledger(
    node: str,
    part: LedgerPart,
    public_key: Ed25519PublicKey,
    rotations: Sequence[KeyRotation] = (),
    stored_head: Callable[[int], bytes | None] = lambda seq: None,
) -> tuple[list[VerifiedEntry], list[KeyRotation]]:
    """The batch's entries, verified, and the key rotations it carries that are new to the
    cloud (`rotations`: those stored; `public_key`: the node's registered, current key;
    `stored_head`: the stored chain's hash at a seq). Raises `Quarantined` naming what is wrong
    with the entries or their checkpoint, `Refused` for a rotation that cannot be followed."""
    if part.last_seq > MAX_SEQ:
        raise Quarantined(node, "malformed_entry", f"seq {part.last_seq} out of range")
    if part.from_seq == 1 and part.prev != GENESIS_HASH:
        raise Quarantined(node, "tampered", "entry 1 does not start from the genesis hash")
    hashes = []
    prev = part.prev
    for offset, body in enumerate(part.bodies):
        digest = entry_hash(node, part.from_seq + offset, prev, body)
        hashes.append((prev, digest))
        prev = digest
    fresh = _new_rotations(part, rotations)
    schedule = _schedule(node, part, public_key, (rotations, fresh), hashes, stored_head)
    key = schedule.key_for(part.key_id, part.last_seq)
    if key is None:
        why = schedule.why_not(part.key_id, part.last_seq)
        raise Quarantined(node, "wrong_key", f"the batch's checkpoint is {why}")
    checkpoint = Checkpoint(node, part.last_seq, prev, part.key_id, part.signature)
    if not checkpoint.verify(key):
        raise Quarantined(
            node,
            "bad_signature",
            f"the checkpoint of seq {part.from_seq}..{part.last_seq} does not verify: "
            "an entry was altered or the signature forged",
        )
    entries = []
    for offset, (body, (prev_hash, digest)) in enumerate(zip(part.bodies, hashes, strict=True)):
        seq = part.from_seq + offset
        try:
            transfer = decode_transfer(body)
        except DecodeError as exc:
            raise Quarantined(node, "malformed_entry", f"signed entry {seq}: {exc}") from exc
        entries.append(VerifiedEntry(seq, prev_hash, digest, body, transfer))
    return entries, fresh


def _new_rotations(part: LedgerPart, stored: Sequence[KeyRotation]) -> list[KeyRotation]:
    known = {r.payload for r in stored}
    return [r for r in part.rotations if r.payload not in known]


def _schedule(  # noqa: PLR0917 (a private step of verify_ledger)
    node: str,
    part: LedgerPart,
    public_key: Ed25519PublicKey,
    rotations: tuple[Sequence[KeyRotation], list[KeyRotation]],
    hashes: list[tuple[bytes, bytes]],
    stored_head: Callable[[int], bytes | None],
) -> KeySchedule:
    """The node's key schedule with the batch's new rotations followed. A rotation's head is
    checked where the cloud holds its entry: in this batch, or stored (for a new one); one
    beyond both is checked by the batch that brings its entry."""
    stored, fresh = rotations
    heads = {part.from_seq - 1: part.prev}
    heads.update((part.from_seq + i, digest) for i, (_, digest) in enumerate(hashes))
    for rotation in fresh:
        if rotation.seq not in heads:
            found = stored_head(rotation.seq)
            if found is not None:
                heads[rotation.seq] = found
    schedule, refused = schedule_of(node, [*stored, *fresh], [public_key], heads.get)
    if refused:
        rotation, why = refused[0]
        raise Refused(f"key rotation at seq {rotation.seq} refused ({why.reason}): {why.detail}")
    return schedule


def from_ms(ms: object, what: str) -> dt.datetime:
    if type(ms) is not int:
        raise Refused(f"{what} must be integer milliseconds, got {ms!r}")
    try:
        return EPOCH + dt.timedelta(milliseconds=ms)
    except OverflowError as exc:
        raise Refused(f"{what} {ms} ms is out of range") from exc


def _text(value: object, name: str, *, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if type(value) is int:
        value = str(value)
    if not isinstance(value, str):
        raise Refused(f"{name} must be a string, got {value!r}")
    limit = WIDTHS.get(name)
    if limit is not None and len(value) > limit:
        raise Refused(f"{name} {value[:20]!r}… is longer than {limit} characters")
    return value


_FLOAT_TYPES = (float, int)
# `extra` as the `readings.extra` column holds it: compact, non-ASCII escaped (one encoder for
# all rows: `json.dumps` with options builds a new one per call).
_extra_text = json.JSONEncoder(separators=(",", ":")).encode


def _readings(node: str, rows: Sequence[ReadingRow], contents: Contents) -> None:
    """Rows in `readings` column order (node, meter, time, energy_wh, tariff_wh, voltage,
    current, power, pf, relay, status, extra), and each meter's newest state."""
    out, latest = contents.readings, contents.latest
    for row in rows:
        meter, energy, relay = row.meter, row.energy_wh, row.relay
        if type(meter) is not str or not 0 < len(meter) <= WIDTHS["meter"]:
            raise Refused(f"meter address {meter!r} must be 1-{WIDTHS['meter']} characters")
        time = from_ms(row.time, "reading time")
        if (energy is not None and type(energy) is not int) or (
            relay is not None and type(relay) is not int
        ):
            raise Refused(f"meter {meter}: energy_wh and relay must be integers")
        voltage, current, power, pf = row.voltage, row.current, row.power, row.pf
        for value in (voltage, current, power, pf):
            if value is not None and type(value) not in _FLOAT_TYPES:
                raise Refused(f"meter {meter}: {value!r} is not a number")
        extra = None if row.extra is None else _extra_text(row.extra)
        out.append((node, meter, time, energy, _text(row.tariff_wh, "tariff_wh"),
                    None if voltage is None else float(voltage),
                    None if current is None else float(current),
                    None if power is None else float(power),
                    None if pf is None else float(pf),
                    relay, _text(row.status, "status"), extra))  # fmt: skip
        state = latest.get(meter)
        if state is None:
            latest[meter] = {"node": node, "address": meter, "account": "", "protocol": "",
                             "relay": relay, "energy_wh": energy, "last_reading": time}  # fmt: skip
        elif state["last_reading"] <= time:
            state["last_reading"] = time
            if relay is not None:
                state["relay"] = relay
            if energy is not None:
                state["energy_wh"] = energy


def _first(item: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in item:
            return item[name]
    return None


def _event(node: str, item: Mapping[str, Any]) -> dict[str, Any]:
    """An event in the edge's uplink form (`edge.store.records.event_payload`: id, t, c, k, m,
    shop, a, d) or spelled out (id, time, category, kind, meter, shop, account, detail)."""
    event_id = item.get("id")
    if type(event_id) is not int or not 1 <= event_id <= MAX_SEQ:
        raise Refused(f"event id must be an integer in 1..{MAX_SEQ}, got {event_id!r:.30}")
    when = _first(item, "t", "time")
    if isinstance(when, str):
        try:
            time = dt.datetime.fromisoformat(when)
            time = time if time.tzinfo else time.replace(tzinfo=dt.UTC)
            time.astimezone(dt.UTC)  # an instant outside years 1..9999 cannot be stored
        except (ValueError, OverflowError) as exc:
            problem = f"event {event_id} time {when[:40]!r} is not an ISO 8601 instant"
            raise Refused(problem) from exc
    else:
        time = from_ms(when, f"event {event_id} time")
    detail = _first(item, "d", "detail")
    detail = {} if detail is None else detail
    if not isinstance(detail, dict):
        raise Refused(f"event {event_id} detail must be an object")
    return {
        "node": node,
        "event_id": event_id,
        "kind": _text(_first(item, "k", "kind"), "kind", optional=False),
        "category": _text(_first(item, "c", "category") or "event", "category"),
        "meter": _text(_first(item, "m", "meter"), "meter"),
        "shop": _text(item.get("shop"), "shop"),
        "account": _text(_first(item, "a", "account"), "account"),
        "time": time,
        "detail": detail,
    }


def _result(item: Mapping[str, Any]) -> CommandVerdict:
    """A command result (`edge.store.records.CommandResult.to_json`: command, status, seqs,
    outcomes)."""
    command_id = _first(item, "command", "command_id")
    if not isinstance(command_id, str) or not command_id:
        raise Refused(f"command result without a command id: {dict(item)!r}")
    applied = item.get("status") == "applied"
    status = CommandStatus.APPLIED if applied else CommandStatus.FAILED
    return CommandVerdict(command_id, status, dict(item))


def _rejection(event: Mapping[str, Any]) -> CommandVerdict | None:
    detail = event["detail"]
    command_id = _first(detail, "command_id", "command")
    if not isinstance(command_id, str) or not command_id:
        return None
    expired = detail.get("reason") == "expired"
    status = CommandStatus.EXPIRED if expired else CommandStatus.FAILED
    return CommandVerdict(command_id, status, {"rejected": detail.get("reason"), **detail})


def prepare_contents(node: str, batch: Batch) -> Contents:
    """Rows for readings, events and command outcomes; raises Refused on a bad value."""
    contents = Contents()
    _readings(node, batch.readings, contents)
    # Results first: an edge's result is the authority, a rejection (e.g. a late redelivery
    # of a command it already applied, refused as expired) must not override it.
    contents.verdicts.extend(_result(item) for item in batch.results)
    for item in batch.events:
        event = _event(node, item)
        contents.events.append(event)
        if event["kind"] == REJECTED_EVENT:
            outcome = _rejection(event)
            if outcome is not None:
                contents.verdicts.append(outcome)
    return contents
