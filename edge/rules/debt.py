"""Debt: pay back what an account owes for energy it used with no money left
(docs/architecture.md §5).

The consumption rule books such energy to the account's debt pocket (`<A>:debt`, fen, only
ever negative). Money that arrives later pays the debt first: each billing cycle, before it
bills anything new, moves what the prepaid pocket can spend (down to its floor) to the debt
pocket, up to the debt:

    debit          credit         unit  amount
    <A>:prepaid    <A>:debt       fen   min(debt, spendable prepaid)

The id is `entry_ids.debt_repay(owner, repaid_before)`, `repaid_before` being all the debt
pocket has been paid back so far (its posted credits): a cycle run again after a crash derives
the same id, and each later repayment a new one.
"""

from __future__ import annotations

import datetime as dt

from edge.rules.pockets import Pockets
from edge.rules.times import require_aware, stamp
from ledger import entry_ids
from ledger.accounts import Pocket, Unit, pocket_id
from ledger.transfers import Code, TimeSource, Transfer


def repay(
    now: dt.datetime, owner: str, pockets: Pockets, repaid_before: int, *, source: TimeSource
) -> Transfer | None:
    """The transfer paying back `owner`'s debt from its prepaid pocket, or None: no debt, or
    no money to pay it with."""
    require_aware(now)
    fen = min(pockets.debt_fen, pockets.spendable_fen)
    if fen <= 0:
        return None
    return Transfer(
        id=entry_ids.debt_repay(owner, repaid_before),
        debit=pocket_id(owner, Pocket.PREPAID),
        credit=pocket_id(owner, Pocket.DEBT),
        amount=fen,
        unit=Unit.FEN,
        code=Code.DEBT_REPAY,
        time=stamp(now),
        time_source=source,
        refs={"owed": pockets.debt_fen},
    )
