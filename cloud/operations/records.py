"""What a money operation leaves besides its transfers and commands: the receipt the desk prints
(recharges, corrections, refund payouts, meter swaps) and the operator-log row saying who did it.

Every router that books, pays, cancels or prints an operation calls `record` once, after the
operation, in the same transaction: the receipt first (its number is part of what is logged),
then the log row. A repeat of the request (the same reference again) prints the same receipt
and logs nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from sqlalchemy.orm import Session

from cloud.db.operations import Receipt
from cloud.operations import receipts
from cloud.operations.receipts import Voucher
from cloud.people import oplog


class KeepsReceipt(Protocol):
    """A row that stores its receipt's number (a recharge's is looked up instead)."""

    receipt: str | None


def record(
    session: Session,
    actor: oplog.Actor,
    action: str,
    target: str,
    now: dt.datetime,
    *,
    after: Callable[[Receipt | None], Mapping[str, Any]],
    new: bool,
    voucher: Voucher | None = None,
    row: KeepsReceipt | None = None,
) -> Receipt | None:
    """Issue the operation's receipt when it has one (`voucher`; `row` keeps its number), then,
    when the operation is `new` (booked or changed by this request), log `action` on `target`
    with what it holds now (`after`, given the receipt). The receipt, if any."""
    receipt = None if voucher is None else receipts.issue(session, voucher, now)
    if receipt is not None and row is not None and row.receipt != receipt.number:
        row.receipt = receipt.number
    if new:
        oplog.record(session, actor, action, target, None, after(receipt), now)
    return receipt
