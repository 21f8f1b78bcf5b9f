"""Corrections: compensating an operator's mistake on a prepaid balance (a new transfer, never
an edit: docs/architecture.md §5). Two-phase across the two chains, like a recharge:

    cloud chain  PENDING  sys:payments_received → sys:corrections_fen   (fen > 0)
                          sys:corrections_fen → sys:payments_received   (fen < 0)
                                                             id correction-pending/C
    command      correction {account, fen, correction: C, original, reason}
    edge chain   SINGLE   sys:corrections_fen → A:prepaid     (fen > 0)
                          A:prepaid → sys:corrections_fen     (fen < 0)  id correction/C
    cloud chain  POST     when the edge's entry arrives      id correction-post/C
                 VOID     when the edge refuses the command  id correction-void/C

so `sys:corrections_fen` nets to zero and the account's change shows against
`sys:payments_received`. The original (a recharge's payment id or a ledger transfer's hex id)
must be the account's; a negative correction beyond the account's prepaid balance is refused
before anything is booked.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.chains import commands, projection
from cloud.chains import store as chain_store
from cloud.chains.alarms import raise_alarm
from cloud.chains.commands import CommandVerdict
from cloud.chains.locks import lock_active
from cloud.chains.projection import VerifiedEntry, hex_id
from cloud.chains.store import cloud_transfer
from cloud.db.models import LedgerEntry, Recharge, ReportedAccount
from cloud.db.operations import Correction
from cloud.errors import Conflict, Invalid, NotFound
from cloud.operations.arguments import reference, whole
from cloud.operations.receipts import Voucher
from cloud.operations.recharges import MAX_RECHARGE_FEN, edge_recharge_id
from cloud.operations.states import CORRECTION, CorrectionEvent, CorrectionStatus
from ledger import entry_ids
from ledger.accounts import AccountId, Pocket, System, owner_of, pocket_id, system_id
from ledger.chain import NodeKey
from ledger.ids import derive_id
from ledger.signed import CommandKind
from ledger.transfers import Code, Kind, Transfer

MIN_REASON, MAX_REASON = 4, 500
_HEX_ID = re.compile(r"[0-9a-f]{32}")


def edge_id(correction: str) -> int:
    return entry_ids.correction(correction)


def pending_id(correction: str) -> int:
    return derive_id("correction-pending", correction)


def _legs(fen: int) -> tuple[AccountId, AccountId]:
    received, corrections = system_id(System.PAYMENTS_RECEIVED), system_id(System.CORRECTIONS_FEN)
    return (received, corrections) if fen > 0 else (corrections, received)


def _original_transfer(session: Session, account: str, original: str) -> str:
    """The hex id of the transfer `original` names, if it is `account`'s; else NotFound."""
    if _HEX_ID.fullmatch(original):
        for debit, credit in session.execute(
            select(LedgerEntry.debit, LedgerEntry.credit)
            .where(LedgerEntry.transfer_id == original)
            .limit(4)
        ):
            if account in (owner_of(AccountId(debit)), owner_of(AccountId(credit))):
                return original
    recharge = session.get(Recharge, original)
    if recharge is not None and recharge.account == account:
        return hex_id(edge_recharge_id(original))
    raise NotFound(f"no recharge or ledger transfer {original!r} of account {account}")


def _check_reason(reason: object) -> str:
    if not isinstance(reason, str) or len(reason.strip()) < MIN_REASON:
        raise Invalid(f"a correction needs a reason of at least {MIN_REASON} characters")
    if len(reason) > MAX_REASON:
        raise Invalid(f"a reason has at most {MAX_REASON} characters")
    return reason.strip()


def create(
    session: Session,
    *,
    account: str,
    fen: int,
    original: str,
    reason: str,
    operator: str,
    correction: str | None,
    key: NodeKey,
    now: dt.datetime,
) -> tuple[Correction, bool]:
    """Book a correction (pending + command); `(row, created)`. The same correction
    id (or, without one, the same request) again returns the first row."""
    whole(fen, "fen", low=-MAX_RECHARGE_FEN, high=MAX_RECHARGE_FEN)
    if fen == 0:
        raise Invalid("a correction of 0 fen corrects nothing")
    reason = _check_reason(reason)
    if not isinstance(original, str) or not original:
        raise Invalid("original must name the recharge (payment id) or transfer (hex id)")
    ref = reference(correction, "c", account, fen, original, reason)
    owner = session.get(ReportedAccount, account)
    if owner is None:
        raise NotFound(f"account {account!r} is not known")
    target = _original_transfer(session, account, original)
    lock_active(session, owner.node)
    existing = session.get(Correction, ref, populate_existing=True)
    if existing is not None:
        if (existing.account, existing.fen, existing.original) != (account, fen, original):
            raise Conflict(f"correction {ref} exists with other content")
        return existing, False
    if fen < 0:
        available = projection.prepaid_balance(session, account) or 0
        if -fen > available:
            raise Invalid(f"{account} has {available} fen prepaid: cannot take back {-fen}")
    command = commands.issue(
        session,
        owner.node,
        CommandKind.CORRECTION,
        {"account": account, "fen": fen, "correction": ref, "original": target, "reason": reason},
        key=key,
        now=now,
        operator=operator,
    )
    debit, credit = _legs(fen)
    pending = cloud_transfer(
        pending_id(ref), debit, credit, abs(fen), Code.CORRECTION, now, kind=Kind.PENDING,
        refs={"correction": ref, "account": account, "original": target, "operator": operator},
    )  # fmt: skip
    chain_store.append(session, [pending], key=key, now=now)
    row = Correction(
        id=ref, account=account, node=owner.node, shop=owner.shop, fen=fen, original=original,
        original_transfer=target, reason=reason, operator=operator,
        status=CORRECTION.start(CorrectionStatus.PENDING),
        pending_transfer=hex_id(pending.id), edge_transfer=hex_id(edge_id(ref)),
        command_id=command.id, receipt=None, created=now, resolved=None,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row, True


def voucher(row: Correction) -> Voucher:
    """What the correction's receipt prints."""
    return Voucher(
        kind="correction", ref=row.id, account=row.account, fen=row.fen, method="",
        operator=row.operator, transfer=row.edge_transfer,
        detail={"original": row.original_transfer, "reason": row.reason},
    )  # fmt: skip


def _resolution(row: Correction, kind: Kind, amount: int, now: dt.datetime) -> Transfer:
    debit, credit = _legs(row.fen)
    return cloud_transfer(
        derive_id(f"correction-{kind.value}", row.id), debit, credit, amount, Code.CORRECTION,
        now, kind=kind, pending_id=int(row.pending_transfer, 16), refs={"correction": row.id},
    )  # fmt: skip


def on_entries(
    session: Session, node: str, booked: Mapping[str, VerifiedEntry], now: dt.datetime
) -> list[Transfer]:
    """POST the pending of every correction whose edge entry is in `booked` (hex id → entry)."""
    if not booked:
        return []
    rows = session.scalars(
        select(Correction)
        .where(
            Correction.edge_transfer.in_(list(booked)),
            Correction.status == CorrectionStatus.PENDING.value,
        )
        .order_by(Correction.created, Correction.id)
    ).all()
    posts = []
    for row in rows:
        entry = booked[row.edge_transfer]
        amount = entry.transfer.amount
        prepaid = pocket_id(row.account, Pocket.PREPAID)
        side = entry.transfer.credit if row.fen > 0 else entry.transfer.debit
        if amount > abs(row.fen) or side != prepaid:
            raise_alarm(session, node, "correction_mismatch", now,
                  f"correction {row.id}: edge booked {amount} fen ({entry.transfer.debit} → "
                  f"{entry.transfer.credit}) at seq {entry.seq}, cloud has {row.fen}")  # fmt: skip
            amount = min(amount, abs(row.fen))
        posts.append(_resolution(row, Kind.POST, amount, now))
        CORRECTION.fire(row, CorrectionEvent.BOOKED)
        row.resolved = now
    return posts


def on_verdicts(
    session: Session, outcomes: Sequence[CommandVerdict], now: dt.datetime
) -> list[Transfer]:
    """VOID the pending of every pending correction whose command the edge refused."""
    failed = [o.command_id for o in outcomes if o.refused]
    if not failed:
        return []
    rows = session.scalars(
        select(Correction)
        .where(
            Correction.command_id.in_(failed), Correction.status == CorrectionStatus.PENDING.value
        )
        .order_by(Correction.created, Correction.id)
    ).all()
    voids = []
    for row in rows:
        voids.append(_resolution(row, Kind.VOID, abs(row.fen), now))
        CORRECTION.fire(row, CorrectionEvent.REFUSED)
        row.resolved = now
    return voids
