"""What the cloud's money operations share (corrections, refunds, swaps, moves): their
references, the cloud's own transfers, alarms raised from the ingest, and reading an edge's
verdict on a command.

An operation's reference is the id its command names (`ledger.signed.CommandKind`): 1-64 of
`[A-Za-z0-9_.:|*@-]`. The caller may give one (a retry then finds the first operation); else it
is derived from the request's content, so the same request twice is still one operation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping

from sqlalchemy.orm import Session

from cloud.db.models import Alarm, CommandStatus
from cloud.errors import Invalid
from cloud.ingest.checks import Outcome
from ledger.accounts import AccountId, unit_of
from ledger.transfers import Code, Kind, RefValue, TimeSource, Transfer

REFERENCE = re.compile(r"[A-Za-z0-9_.:|*@\-]{1,64}")
REFUSED = (CommandStatus.FAILED, CommandStatus.EXPIRED)


def reference(given: object, prefix: str, *content: object) -> str:
    """The operation's reference: `given`, checked, or one derived from `content`."""
    if given is None:
        digest = hashlib.sha256("\x1f".join(map(str, content)).encode()).hexdigest()
        return f"{prefix}-{digest[:30]}"
    if not isinstance(given, str) or not REFERENCE.fullmatch(given):
        raise Invalid(f"reference {given!r} must be 1-64 of A-Z a-z 0-9 _ . : | * @ -")
    return given


def whole(value: object, name: str, *, low: int, high: int) -> int:
    """An integer argument (never a float or a bool) within [low, high]."""
    if type(value) is not int:
        raise Invalid(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise Invalid(f"{name} must be between {low} and {high}, got {value}")
    return value


def cloud_transfer(  # noqa: PLR0917 (the fields of a cloud transfer)
    transfer_id: int,
    debit: AccountId,
    credit: AccountId,
    amount: int,
    code: Code,
    now: dt.datetime,
    *,
    kind: Kind = Kind.SINGLE,
    pending_id: int | None = None,
    refs: Mapping[str, RefValue] | None = None,
) -> Transfer:
    return Transfer(
        id=transfer_id,
        debit=debit,
        credit=credit,
        amount=amount,
        unit=unit_of(debit),
        code=code,
        time=now.isoformat(),
        time_source=TimeSource.NTP,
        kind=kind,
        pending_id=pending_id,
        refs=dict(refs or {}),
    )


def refused(outcome: Outcome) -> bool:
    """The edge will not apply the command (refused it, or it expired there)."""
    return outcome.status in REFUSED


def alarm(session: Session, node: str, kind: str, now: dt.datetime, detail: str) -> None:
    session.add(Alarm(node=node, kind=kind, detail=detail, time=now, cleared=False))
