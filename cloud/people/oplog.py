"""The operator log: every login, logout and operator action, append-only and hash-chained.

    hash(n) = SHA-256( b"voltbook/oplog/v1\\x00" | hash(n-1) | canonical JSON of row n )

where the JSON holds seq, time (ISO, UTC), user, role, action, target, before, after and the
client address. Row 1 chains from 32 zero bytes. `record` appends in the caller's transaction,
so an action and its log row commit together or not at all; it locks the single
`operator_log_head` row first, so concurrent writers get contiguous seqs. `verify` walks the
table and names the first row whose hash or seq does not follow (`voltbook-cloud oplog verify`),
and holds the log to the heads signed with the cloud's key (`cloud.people.oplog_heads`): those
catch a rewrite with recomputed hashes, a head moved back and a wiped log.

`before`/`after` are the values an action changed (JSON objects, `None` for a creation or a
removal); nothing in this module ever updates or deletes a row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from cloud.db.auth import OperatorLogEntry, OperatorLogHead
from cloud.errors import Invalid
from cloud.people import oplog_heads
from ledger.signed import OplogHead

TAG = b"voltbook/oplog/v1\x00"
GENESIS = bytes(32)
SYSTEM_USER = "system"
SORTS = ("seq", "-seq", "time", "-time")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it: a user and role (from the login), and the client address if known."""

    user: str
    role: str
    address: str = ""


SYSTEM = Actor(SYSTEM_USER, "system")


def _json(value: Any) -> Any:
    """A value as it will read back from a JSON column (tuples become lists, and so on)."""
    return None if value is None else json.loads(json.dumps(value, default=str))


def row_hash(prev: bytes, fields: Mapping[str, Any]) -> bytes:
    body = json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()
    return hashlib.sha256(TAG + prev + body).digest()


def _fields(entry: OperatorLogEntry) -> dict[str, Any]:
    when = entry.time.astimezone(dt.UTC).isoformat(timespec="microseconds")
    return {
        "seq": entry.seq,
        "time": when,
        "user": entry.user,
        "role": entry.role,
        "action": entry.action,
        "target": entry.target,
        "before": entry.before,
        "after": entry.after,
        "address": entry.address,
    }


def _head(session: Session) -> OperatorLogHead:
    statement = select(OperatorLogHead).where(OperatorLogHead.id == 1).with_for_update()
    head = session.scalars(statement).one_or_none()
    if head is None:
        head = OperatorLogHead(id=1, seq=0, hash=GENESIS)
        session.add(head)
        session.flush()
    return head


def record(  # noqa: PLR0917 (who, what, on what, and the change)
    session: Session,
    actor: Actor,
    action: str,
    target: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    now: dt.datetime,
) -> OperatorLogEntry:
    """Append one row in the session's transaction (call it after the action itself)."""
    head = _head(session)
    entry = OperatorLogEntry(
        seq=head.seq + 1,
        time=now.astimezone(dt.UTC),
        user=actor.user,
        role=actor.role,
        action=action,
        target=target[:200],
        before=_json(before),
        after=_json(after),
        address=actor.address[:64],
        prev_hash=head.hash,
    )
    entry.hash = row_hash(head.hash, _fields(entry))
    session.add(entry)
    head.seq, head.hash = entry.seq, entry.hash
    session.flush()
    return entry


@dataclass(frozen=True, slots=True)
class Verdict:
    rows: int
    head: bytes
    problem: str = ""  # empty when the chain holds

    @property
    def ok(self) -> bool:
        return not self.problem


def _rows(session: Session, batch: int = 5000) -> Iterator[OperatorLogEntry]:
    after = 0
    while True:
        rows = session.scalars(
            select(OperatorLogEntry)
            .where(OperatorLogEntry.seq > after)
            .order_by(OperatorLogEntry.seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].seq
        session.expunge_all()


def verify(
    session: Session,
    heads: Sequence[OplogHead] = (),
    keys: Mapping[str, Ed25519PublicKey] | None = None,
) -> Verdict:
    """Walk the whole log; the first break (a gap, an edited or reordered row, a head that does
    not match) is named in `problem`. Given signed `heads` (`cloud.people.oplog_heads`) and the
    cloud's public `keys`, the log must also reach and match every one of them."""
    prev, expected, count = GENESIS, 1, 0
    wanted = {h.seq for h in heads}
    hashes: dict[int, bytes] = {}
    for entry in _rows(session):
        if entry.seq != expected:
            return Verdict(count, prev, f"row {expected} is missing (next row is {entry.seq})")
        if entry.prev_hash != prev:
            return Verdict(count, prev, f"row {entry.seq} does not chain from row {entry.seq - 1}")
        if row_hash(prev, _fields(entry)) != entry.hash:
            return Verdict(count, prev, f"row {entry.seq} was altered (its hash does not match)")
        prev, expected, count = entry.hash, expected + 1, count + 1
        if entry.seq in wanted:
            hashes[entry.seq] = bytes(entry.hash)
    head = session.get(OperatorLogHead, 1)
    if head is None:
        if count:
            return Verdict(count, prev, f"the head row is missing ({count} rows in the log)")
    elif head.seq > count:
        return Verdict(
            count, prev, f"row {count + 1} is missing (the head says {head.seq} rows, the log "
            f"ends at row {count})"
        )  # fmt: skip
    elif head.seq < count:
        return Verdict(count, prev, f"row {head.seq + 1} was added behind the head's back")
    elif head.hash != prev:
        return Verdict(count, prev, f"row {count} does not match the head's hash")
    return Verdict(count, prev, oplog_heads.check(heads, hashes, count, keys or {}))


def entries(
    *,
    user: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    sort: str = "seq",
) -> Select[OperatorLogEntry]:
    """The rows matching every filter given, in `sort` order (one of `SORTS`; `-` for newest
    first). `action` ending in `*` matches a prefix (`user.*`); `since` is inclusive, `until`
    exclusive."""
    if sort not in SORTS:
        raise Invalid(f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
    query = select(OperatorLogEntry)
    if user is not None:
        query = query.where(OperatorLogEntry.user == user)
    if action is not None:
        if action.endswith("*"):
            prefix = action[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(OperatorLogEntry.action.like(f"{prefix}%", escape="\\"))
        else:
            query = query.where(OperatorLogEntry.action == action)
    if target is not None:
        query = query.where(OperatorLogEntry.target == target)
    if since is not None:
        query = query.where(OperatorLogEntry.time >= since.astimezone(dt.UTC))
    if until is not None:
        query = query.where(OperatorLogEntry.time < until.astimezone(dt.UTC))
    column = OperatorLogEntry.time if sort.lstrip("-") == "time" else OperatorLogEntry.seq
    if sort.startswith("-"):
        return query.order_by(column.desc(), OperatorLogEntry.seq.desc())
    return query.order_by(column, OperatorLogEntry.seq)
