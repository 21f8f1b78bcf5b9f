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
must be the account's, a fen transfer, and, for a recharge, booked (posted); a negative
correction beyond the account's prepaid balance is refused before anything is booked.

**Bounded by what it corrects** (`bound_problem`, pure): no correction is larger than the
original's amount, the original's net after every open or posted correction of it stays between
0 and twice its amount (a 1 000 fen recharge is never corrected by +50 000, nor taken back
twice), and the same amount twice against the same original needs a second, different reason
(two −1 000 with one reason are one mistake booked twice).

**Four eyes above an amount.** A correction of more than `approve_above` fen (`[operations]
approve_corrections_above_fen` of cloud.toml, default `APPROVE_ABOVE_FEN`) is stored `held`:
nothing booked, no command. A second user — finance or admin, never the one who asked —
approves it (`approve`: then it is booked as above) or rejects it (`reject`; both are
`cloud.operations.four_eyes`); both steps are in the operator log (`correction.create`,
`correction.approve` / `correction.reject`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.chains import commands, projection
from cloud.chains import store as chain_store
from cloud.chains.alarms import raise_alarm
from cloud.chains.commands import CommandVerdict
from cloud.chains.locks import lock_active
from cloud.chains.projection import VerifiedEntry, hex_id
from cloud.chains.store import cloud_transfer
from cloud.config import APPROVE_ABOVE_FEN
from cloud.db.models import LedgerEntry, Recharge, RechargeStatus, ReportedAccount
from cloud.db.operations import Correction
from cloud.errors import Conflict, Invalid, NotFound
from cloud.operations.arguments import reference, whole
from cloud.operations.four_eyes import FourEyes
from cloud.operations.receipts import Voucher
from cloud.operations.recharges import MAX_RECHARGE_FEN, edge_recharge_id
from cloud.operations.states import CORRECTION, CorrectionEvent, CorrectionStatus
from ledger import entry_ids
from ledger.accounts import AccountId, Pocket, System, Unit, owner_of, pocket_id, system_id
from ledger.chain import NodeKey
from ledger.ids import derive_id
from ledger.signed import CommandKind
from ledger.transfers import Code, Kind, RefValue, Transfer

MIN_REASON, MAX_REASON = 4, 500
OPEN = (CorrectionStatus.HELD.value, CorrectionStatus.PENDING.value, CorrectionStatus.POSTED.value)
_HEX_ID = re.compile(r"[0-9a-f]{32}")


def edge_id(correction: str) -> int:
    return entry_ids.correction(correction)


def pending_id(correction: str) -> int:
    return derive_id("correction-pending", correction)


def _legs(fen: int) -> tuple[AccountId, AccountId]:
    received, corrections = system_id(System.PAYMENTS_RECEIVED), system_id(System.CORRECTIONS_FEN)
    return (received, corrections) if fen > 0 else (corrections, received)


@dataclass(frozen=True, slots=True)
class Original:
    """What a correction corrects: the transfer (hex id), its fen, and its payment if it is a
    recharge."""

    transfer: str
    fen: int
    payment: str | None


def _recharge(session: Session, account: str, payment: str) -> Original | None:
    recharge = session.get(Recharge, payment)
    if recharge is None or recharge.account != account:
        return None
    if recharge.status != RechargeStatus.POSTED.value:
        raise Conflict(f"recharge {payment} is {recharge.status}: only a booked recharge is "
                       "corrected")  # fmt: skip
    return Original(hex_id(edge_recharge_id(payment)), recharge.fen, payment)


def _original(session: Session, account: str, original: str) -> Original:
    """The transfer `original` names, if it is `account`'s; else NotFound."""
    if _HEX_ID.fullmatch(original):
        for debit, credit, amount, unit, code, refs in session.execute(
            select(LedgerEntry.debit, LedgerEntry.credit, LedgerEntry.amount, LedgerEntry.unit,
                   LedgerEntry.code, LedgerEntry.refs)
            .where(LedgerEntry.transfer_id == original)
            .limit(4)
        ):  # fmt: skip
            if account not in (owner_of(AccountId(debit)), owner_of(AccountId(credit))):
                continue
            payment = (refs or {}).get("payment")
            if code == Code.RECHARGE.value and isinstance(payment, str):
                found = _recharge(session, account, payment)
                if found is not None:
                    return found
            if unit != Unit.FEN.value:
                raise Invalid(f"transfer {original} moves {unit}: a correction corrects fen")
            return Original(original, amount, None)
    found = _recharge(session, account, original)
    if found is not None:
        return found
    raise NotFound(f"no recharge or ledger transfer {original!r} of account {account}")


def _same(reason: str) -> str:
    return " ".join(reason.split()).casefold()


def bound_problem(
    original: int, earlier: Sequence[tuple[str, int, str]], fen: int, reason: str
) -> str | None:
    """Why a correction of `fen` (with `reason`) of an original of `original` fen cannot be
    booked, given the `earlier` corrections of it still standing (id, fen, reason); None if
    it can."""
    if abs(fen) > original:
        return f"a correction of {fen:+d} fen is more than the original's {original} fen"
    net = original + sum(f for _, f, _ in earlier) + fen
    if not 0 <= net <= 2 * original:
        return (f"after it the original's {original} fen would stand at {net} fen "
                f"(corrections keep it between 0 and {2 * original})")  # fmt: skip
    for ref, earlier_fen, earlier_reason in earlier:
        if earlier_fen == fen and _same(earlier_reason) == _same(reason):
            return (f"correction {ref} already corrected it by {fen:+d} fen for the same "
                    "reason: a second one needs its own reason")  # fmt: skip
    return None


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
    approve_above: int = APPROVE_ABOVE_FEN,
) -> tuple[Correction, bool]:
    """Book a correction (pending + command), or hold it for a second user's approval when it
    is above `approve_above` fen; `(row, created)`. The same correction id (or, without one,
    the same request) again returns the first row."""
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
    lock_active(session, owner.node)
    existing = session.get(Correction, ref, populate_existing=True)
    if existing is not None:
        if (existing.account, existing.fen, existing.original) != (account, fen, original):
            raise Conflict(f"correction {ref} exists with other content")
        return existing, False
    target = _original(session, account, original)
    earlier = session.execute(
        select(Correction.id, Correction.fen, Correction.reason).where(
            Correction.original_transfer == target.transfer, Correction.status.in_(OPEN)
        )
    ).all()
    problem = bound_problem(target.fen, [(e.id, e.fen, e.reason) for e in earlier], fen, reason)
    if problem is not None:
        raise Invalid(f"correction of {original}: {problem}")
    held = abs(fen) > approve_above
    row = Correction(
        id=ref, account=account, node=owner.node, shop=owner.shop, fen=fen, original=original,
        original_transfer=target.transfer, payment=target.payment, reason=reason,
        operator=operator,
        status=CORRECTION.start(CorrectionStatus.HELD if held else CorrectionStatus.PENDING),
        pending_transfer=hex_id(pending_id(ref)), edge_transfer=hex_id(edge_id(ref)),
        command_id=None, approved_by=None, receipt=None, created=now, resolved=None,
    )  # fmt: skip
    if not held:
        _book(session, row, key=key, now=now)
    session.add(row)
    session.flush()
    return row, True


def _book(session: Session, row: Correction, *, key: NodeKey, now: dt.datetime) -> None:
    """The cloud chain's pending and the command to the account's concentrator."""
    if row.fen < 0:
        available = projection.prepaid_balance(session, row.account) or 0
        if -row.fen > available:
            raise Invalid(f"{row.account} has {available} fen prepaid: cannot take back "
                          f"{-row.fen}")  # fmt: skip
    command = commands.issue(
        session,
        row.node,
        CommandKind.CORRECTION,
        {"account": row.account, "fen": row.fen, "correction": row.id,
         "original": row.original_transfer, "reason": row.reason},
        key=key,
        now=now,
        operator=row.approved_by or row.operator,
    )  # fmt: skip
    debit, credit = _legs(row.fen)
    refs: dict[str, RefValue] = {
        "correction": row.id,
        "account": row.account,
        "original": row.original_transfer,
        "operator": row.operator,
    }
    if row.approved_by:
        refs["approved_by"] = row.approved_by
    pending = cloud_transfer(
        pending_id(row.id), debit, credit, abs(row.fen), Code.CORRECTION, now,
        kind=Kind.PENDING, refs=refs,
    )  # fmt: skip
    chain_store.append(session, [pending], key=key, now=now)
    row.command_id = command.id


HELD = FourEyes(
    Correction, CORRECTION, CorrectionEvent.APPROVED, CorrectionEvent.REJECTED,
    CorrectionStatus.REJECTED, noun="correction", second="decides it", approved="approved",
    issue=_book,
)  # fmt: skip


# A second user approves a held correction (it is booked) or rejects it (nothing is booked);
# each gives `(row, changed)`.
get, approve, reject = HELD.get, HELD.approve, HELD.reject


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
