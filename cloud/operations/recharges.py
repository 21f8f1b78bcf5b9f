"""Money entering at the cloud: recharges (operator desk, card, mobile payments) and, as the
operator's other lever on an account, remote relay trip/close.

A recharge is two-phase across the two chains (docs/architecture.md §10):

    cloud chain   PENDING  sys:payments_received → sys:cash_in_transit   id recharge-pending/P
    command       recharge {account, fen, payment, method} to the account's concentrator
    edge chain    SINGLE   sys:cash_in_transit → <account>:prepaid       id recharge/P
    cloud chain   POST     of the pending, when the edge's entry arrives id recharge-post/P
                  VOID     of the pending, when the edge refuses the     id recharge-void/P
                           command (or rejects it as expired)

(ids `derive_id(…, payment)`), so over the union of chains every unit sums to zero, and
`recharges` shows which payments are still in flight (pending), booked (posted) or refused
(voided: the row keeps the edge's reason, an alarm `recharge_refused` tells the operators, and
the payer is owed a refund). Every recharge source (desk, card, mobile payments) comes through
`recharge`, so every one is settled this way. Doing it twice with the same payment and content
returns the first recharge; the same payment with other content is a Conflict.

The POST is made by `cloud.ingest.handler`, the VOID by `on_verdicts`
(`cloud.operations.settlements`), both in the ingest's transaction under the node's row lock, each
only from `pending`: a batch seen again settles nothing twice. A refusal voids only if it is the
command's recorded verdict (an edge that reported the command applied is believed over a later
rejection of the same id).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.chains import commands
from cloud.chains import store as chain_store
from cloud.chains.alarms import raise_alarm
from cloud.chains.commands import REFUSED, CommandVerdict
from cloud.chains.locks import lock_active
from cloud.chains.projection import hex_id
from cloud.db.models import Command, Recharge, RechargeStatus, ReportedAccount
from cloud.errors import Conflict, Invalid, NotFound
from cloud.operations.receipts import Voucher
from cloud.operations.states import RECHARGE, RechargeEvent
from ledger import entry_ids
from ledger.accounts import System, Unit, system_id
from ledger.chain import NodeKey
from ledger.ids import derive_id
from ledger.signed import CommandKind, is_reference
from ledger.transfers import Code, Kind, RefValue, TimeSource, Transfer
from ledger.units import Fen

MAX_RECHARGE_FEN = 10_000_000  # 100 000 yuan
METHODS = ("cash", "card", "wechat", "alipay", "transfer")
MAX_REASON = 500  # characters of the edge's reason kept on a voided recharge


def pending_id(payment: str) -> int:
    return derive_id("recharge-pending", payment)


def post_id(payment: str) -> int:
    return derive_id("recharge-post", payment)


def void_id(payment: str) -> int:
    return derive_id("recharge-void", payment)


def edge_recharge_id(payment: str) -> int:
    """The id the concentrator gives its recharge entry (`edge.runtime.cycle`)."""
    return entry_ids.recharge(payment)


def get(session: Session, payment: str) -> Recharge:
    row = session.get(Recharge, payment)
    if row is None:
        raise NotFound(f"no recharge with payment {payment!r}")
    return row


def voucher(row: Recharge) -> Voucher:
    """What the recharge's receipt prints (the desk prints it when booking)."""
    return Voucher(
        kind="recharge", ref=row.payment, account=row.account, fen=row.fen, method=row.method,
        operator=row.operator, transfer=hex_id(edge_recharge_id(row.payment)),
        detail={"payment": row.payment},
    )  # fmt: skip


def _check(fen: object, method: str, payment: str | None) -> None:
    if type(fen) is not int:
        raise Invalid(f"fen must be an integer number of fen, got {type(fen).__name__} {fen!r}")
    if not 0 < fen <= MAX_RECHARGE_FEN:
        raise Invalid(f"fen must be between 1 and {MAX_RECHARGE_FEN}, got {fen}")
    if method not in METHODS:
        raise Invalid(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if payment is not None and not is_reference(payment):
        raise Invalid(f"payment id {payment!r} must be 1-64 of A-Z a-z 0-9 _ . : | * @ -")


def recharge(
    session: Session,
    *,
    account: str,
    fen: Fen | int,
    method: str,
    operator: str,
    payment: str | None,
    key: NodeKey,
    now: dt.datetime,
) -> Recharge:
    """Book a recharge: a pending cloud transfer and a `recharge` command to the account's
    concentrator, in the session's transaction. Idempotent per payment id."""
    _check(fen, method, payment)
    owner = session.get(ReportedAccount, account)
    if owner is None:
        raise NotFound(f"account {account!r} is not known (no concentrator reported it)")
    payment = payment or secrets.token_hex(16)
    lock_active(session, owner.node)  # serialises recharges of one node's accounts
    row = Recharge(
        payment=payment,
        account=account,
        fen=fen,
        method=method,
        operator=operator,
        status=RECHARGE.start(RechargeStatus.PENDING),
        pending_transfer=hex_id(pending_id(payment)),
        command_id=None,
        created=now,
        posted=None,
        voided=None,
        reason="",
    )
    try:
        # The payment id is the primary key: claiming it first makes a concurrent duplicate
        # (say, for an account on another node) wait for us and then see our row.
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        existing = session.get(Recharge, payment, populate_existing=True)
        assert existing is not None
        if (existing.account, existing.fen, existing.method) != (account, fen, method):
            raise Conflict(
                f"payment {payment} was already booked as {existing.fen} fen "
                f"({existing.method}) for {existing.account}"
            ) from None
        return existing
    command = commands.issue(
        session,
        owner.node,
        CommandKind.RECHARGE,
        {"account": account, "fen": fen, "payment": payment, "method": method},
        key=key,
        now=now,
        operator=operator,
    )
    refs = {"payment": payment, "method": method, "account": account}
    if operator:
        refs["operator"] = operator
    transfer = Transfer(
        id=pending_id(payment),
        debit=system_id(System.PAYMENTS_RECEIVED),
        credit=system_id(System.CASH_IN_TRANSIT),
        amount=fen,
        unit=Unit.FEN,
        code=Code.RECHARGE,
        time=now.isoformat(),
        time_source=TimeSource.NTP,
        kind=Kind.PENDING,
        refs=refs,
    )
    chain_store.append(session, [transfer], key=key, now=now)  # cloud row after the node's
    row.command_id = command.id
    session.flush()
    return row


def post_transfer(
    recharge_row: Recharge, amount: int, *, node: str, seq: int, now: dt.datetime
) -> Transfer:
    """The POST that settles a recharge's pending transfer once the edge booked it."""
    refs: dict[str, RefValue] = {"payment": recharge_row.payment, "node": node, "seq": seq}
    return _settlement(recharge_row, Kind.POST, post_id(recharge_row.payment), amount, refs, now)


def void_transfer(recharge_row: Recharge, *, node: str, now: dt.datetime) -> Transfer:
    """The VOID that releases a recharge's pending transfer (all of it) once the edge refused
    its command."""
    refs = {"payment": recharge_row.payment, "node": node, "command": recharge_row.command_id or ""}
    return _settlement(
        recharge_row, Kind.VOID, void_id(recharge_row.payment), recharge_row.fen, refs, now
    )


def _settlement(  # noqa: PLR0917 (the fields that differ between a post and a void)
    recharge_row: Recharge,
    kind: Kind,
    transfer_id: int,
    amount: int,
    refs: Mapping[str, RefValue],
    now: dt.datetime,
) -> Transfer:
    return Transfer(
        id=transfer_id,
        debit=system_id(System.PAYMENTS_RECEIVED),
        credit=system_id(System.CASH_IN_TRANSIT),
        amount=amount,
        unit=Unit.FEN,
        code=Code.RECHARGE,
        time=now.isoformat(),
        time_source=TimeSource.NTP,
        kind=kind,
        pending_id=int(recharge_row.pending_transfer, 16),
        refs=dict(refs),
    )


def on_verdicts(
    session: Session, node: str, outcomes: Sequence[CommandVerdict], now: dt.datetime
) -> list[Transfer]:
    """VOID the pending of every pending recharge of `node` whose command the edge refused (or
    rejected as expired), and mark it voided with the edge's reason; the transfers to append.
    Only a refusal that is the command's recorded verdict counts (`commands.record_outcome`
    stores the first final one, before this runs)."""
    failed = sorted({o.command_id for o in outcomes if o.refused})
    if not failed:
        return []
    found = session.execute(
        select(Recharge, Command.result)
        .join(Command, Command.id == Recharge.command_id)
        .where(
            Recharge.command_id.in_(failed),
            Recharge.status == RechargeStatus.PENDING.value,
            Command.node == node,
            Command.status.in_([s.value for s in REFUSED]),
        )
        .order_by(Recharge.created, Recharge.payment)
    ).all()
    voids = []
    for row, result in found:
        voids.append(void_transfer(row, node=node, now=now))
        RECHARGE.fire(row, RechargeEvent.REFUSED)
        row.voided, row.reason = now, _why(result)
        raise_alarm(session, node, "recharge_refused", now,
              f"recharge {row.payment}: {row.fen} fen ({row.method}) for {row.account} refused "
              f"by the concentrator ({row.reason}); its pending is voided, the payer is owed "
              f"a refund")  # fmt: skip
    return voids


def _why(result: Mapping[str, Any] | None) -> str:
    """The edge's reason, from a command result (`reason`) or a rejection (`reason`, `message`)."""
    result = result or {}
    reason = str(result.get("reason") or result.get("rejected") or "refused")
    message = result.get("message")
    if message and message != reason:
        reason = f"{reason}: {message}"
    return reason[:MAX_REASON]
