"""What the cloud does when a concentrator's entries or command results arrive, for the money
operations that span both chains (recharges, corrections, refunds, moves, swaps): post or void
the cloud's pending transfers and advance the operations' states. The follow-up commands this
makes due (a move's `move_in` once the source booked its `move_out`, a `settle` once the
destination booked the arrival) are issued after the ingest commits
(`cloud.operations.moves.issue_due`). A recharge's receipt is printed at the desk
(`POST /recharges`), not here. Modules below are in `cloud.operations` unless named in full.

    edge entry (its `ledger.entry_ids` id)  cloud reaction
    recharge/P                           POST recharge-pending/P        (cloud.ingest.handler)
    correction/C                         POST correction-pending/C      (corrections)
    refund/R (pending)                   refund reserved, amount known  (refunds)
    settle/<pending>/<action>            refund settled / move settled
    move-out/M at the source             move_in to the destination due (moves)
    move-in/M at the destination         settle post to the source due
    refused command                      VOID a recharge (voided, alarm recharge_refused:
                                         the payer is owed a refund; recharges), VOID a
                                         correction, fail a refund or move, void a move's
                                         pending, fail a swap (meter_swaps), a
                                         takeover refused (alarm takeover_refused)
    applied or refused takeover          the takeover's state (cloud.operations.takeovers)
    applied config or meter_swap,        the view of who owns which account and meter
    move-in/M at the destination         follows (ownership)

Called by the ingest inside its transaction, under the node's row lock, after the batch's
entries are stored; returns the transfers to append to the cloud chain (the ingest appends and
projects them with the batch).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.chains.alarms import raise_alarm
from cloud.chains.commands import CommandVerdict
from cloud.chains.projection import VerifiedEntry, hex_id
from cloud.db.models import Command
from cloud.db.operations import Takeover
from cloud.operations import corrections, meter_swaps, moves, ownership, recharges, refunds
from cloud.operations.states import TAKEOVER, TakeoverEvent, TakeoverStatus
from ledger.signed import CommandKind
from ledger.transfers import Code, Kind, Transfer

_OPERATION_CODES = (Code.CORRECTION, Code.REFUND, Code.MOVE)


def on_entries(
    session: Session,
    node: str,
    entries: Sequence[VerifiedEntry],
    now: dt.datetime,
) -> list[Transfer]:
    """React to `node`'s new chain entries; the cloud transfers this makes."""
    booked = {
        hex_id(e.transfer.id): e
        for e in entries
        if e.transfer.code in _OPERATION_CODES or e.transfer.kind in (Kind.POST, Kind.VOID)
    }
    if not booked:
        return []
    posts = corrections.on_entries(
        session,
        node,
        {k: e for k, e in booked.items() if e.transfer.code is Code.CORRECTION},
        now,
    )
    refunds.on_entries(session, node, booked, now)
    moves.on_entries(session, node, booked, now)
    return posts


def on_verdicts(
    session: Session,
    node: str,
    outcomes: Sequence[CommandVerdict],
    now: dt.datetime,
) -> list[Transfer]:
    """React to `node`'s command results (a refused recharge or correction voids its
    pending, …)."""
    if not outcomes:
        return []
    voids = recharges.on_verdicts(session, node, outcomes, now)
    voids += corrections.on_verdicts(session, outcomes, now)
    refunds.on_verdicts(session, node, outcomes, now)
    moves.on_verdicts(session, outcomes, now)
    meter_swaps.on_verdicts(session, outcomes, now)
    ownership.on_verdicts(session, node, outcomes, now)
    _takeovers(session, node, outcomes, now)
    return voids


def _takeovers(
    session: Session, node: str, outcomes: Sequence[CommandVerdict], now: dt.datetime
) -> None:
    """The new box's verdicts on `takeover` commands (`cloud.operations.takeovers`): applied (by
    any command the takeover sent: one expired may be applied late) or refused (its last). A
    refusal is an alarm: the old node's pockets are closed in the cloud chain and nobody bills
    them until an operator acts (issues it again)."""
    verdicts = {o.command_id: o for o in outcomes}
    rows = session.scalars(
        select(Takeover).where(
            Takeover.new_node == node,
            Takeover.status.in_((TakeoverStatus.ISSUED.value, TakeoverStatus.REFUSED.value)),
        )
    )
    for row in rows:
        mine = [verdicts[c] for c in row.commands or [row.command_id] if c in verdicts]
        last = verdicts.get(row.command_id or "")
        if any(not o.refused for o in mine):
            TAKEOVER.fire(row, TakeoverEvent.APPLIED)
            row.resolved = now
        elif last is not None and row.status == TakeoverStatus.ISSUED.value:
            TAKEOVER.fire(row, TakeoverEvent.REFUSED)
    refused = [o for o in outcomes if o.refused]
    if not refused:
        return
    query = select(Command.id, Command.kind).where(Command.id.in_([o.command_id for o in refused]))
    kinds = {command_id: kind for command_id, kind in session.execute(query)}
    for outcome in refused:
        if kinds.get(outcome.command_id) == CommandKind.TAKEOVER.value:
            raise_alarm(session, node, "takeover_refused", now,
                        f"takeover command {outcome.command_id} {outcome.status.value}: "
                        f"{outcome.result.get('reason', '')}")  # fmt: skip
