"""Accounts: merchant pockets and the system accounts money and energy flow through.

An account id is a short string `"<owner>:<pocket>"`. A merchant account `A0001` has the pockets
`A0001:subsidy` (Wh, never refundable), `A0001:prepaid` (fen, refundable), `A0001:grace` (Wh,
the allowance that keeps power on after a refund) and `A0001:debt` (fen: energy or water delivered
with no money left to pay it, a receivable; it only goes negative, and a top-up pays it back
first). An account with a water meter also has `A0001:water_subsidy` (litres, the free water of
a month); its water is paid from the same prepaid pocket (money is money) and owed to the same
debt pocket. System accounts have the owner `sys`.

Every account has one unit. Balance = credits − debits (merchant pockets are liabilities of the
operator, so a recharge credits `prepaid`). A merchant pocket may not go below its floor: zero,
or `-credit_limit` for a prepaid pocket with an overdraft allowance. System accounts and the
debt pocket have no floor (the debt pocket's ceiling, zero, is `ledger.invariants`' to check).
Because every transfer debits one account and credits another of the same unit, the balances
of each unit always sum to zero.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import NewType

from ledger.errors import InvalidValue
from ledger.units import require_int

AccountId = NewType("AccountId", str)

_OWNER = re.compile(r"^[A-Za-z0-9_.\-]{1,40}$")


class Unit(StrEnum):
    WH = "Wh"
    FEN = "fen"
    L = "L"  # litres of water


class Pocket(StrEnum):
    SUBSIDY = "subsidy"
    PREPAID = "prepaid"
    GRACE = "grace"
    DEBT = "debt"
    WATER_SUBSIDY = "water_subsidy"


POCKET_UNIT: dict[Pocket, Unit] = {
    Pocket.SUBSIDY: Unit.WH,
    Pocket.PREPAID: Unit.FEN,
    Pocket.GRACE: Unit.WH,
    Pocket.DEBT: Unit.FEN,
    Pocket.WATER_SUBSIDY: Unit.L,
}


class System(StrEnum):
    """System accounts. Their balances are the operator's view of where value went."""

    PAYMENTS_RECEIVED = "payments_received"  # fen: money paid in (cloud side, by any method)
    CASH_IN_TRANSIT = "cash_in_transit"  # fen: money received, owed to merchants as credit
    ENERGY_SALES = "energy_sales"  # fen: consumption paid from prepaid
    REFUNDS_PAYABLE = "refunds_payable"  # fen: prepaid refunded, to be paid out
    CORRECTIONS_FEN = "corrections_fen"  # fen: compensating transfers for mistakes
    SUBSIDY_ISSUED = "subsidy_issued"  # Wh: free energy granted
    SUBSIDY_USED = "subsidy_used"  # Wh: free energy consumed
    SUBSIDY_EXPIRED = "subsidy_expired"  # Wh: free energy cleared at period end
    GRACE_ISSUED = "grace_issued"  # Wh
    GRACE_USED = "grace_used"  # Wh
    GRACE_EXPIRED = "grace_expired"  # Wh: grace left when its time ran out
    CORRECTIONS_WH = "corrections_wh"  # Wh
    MOVES_IN_TRANSIT = "moves_in_transit"  # fen: balance moving between concentrators
    WATER_SALES = "water_sales"  # fen: water paid from prepaid (or booked as debt)
    WATER_SUBSIDY_ISSUED = "water_subsidy_issued"  # L: free water granted
    WATER_SUBSIDY_USED = "water_subsidy_used"  # L: free water consumed
    WATER_SUBSIDY_EXPIRED = "water_subsidy_expired"  # L: free water cleared at period end
    # A dead concentrator's balances handed to the box that replaced it (`ledger.takeover`):
    # the cloud closes the old node's pockets into them, the new box opens its pockets from them.
    TAKEOVER_FEN = "takeover_fen"
    TAKEOVER_WH = "takeover_wh"
    TAKEOVER_L = "takeover_l"


SYSTEM_UNIT: dict[System, Unit] = {
    System.PAYMENTS_RECEIVED: Unit.FEN,
    System.CASH_IN_TRANSIT: Unit.FEN,
    System.ENERGY_SALES: Unit.FEN,
    System.REFUNDS_PAYABLE: Unit.FEN,
    System.CORRECTIONS_FEN: Unit.FEN,
    System.MOVES_IN_TRANSIT: Unit.FEN,
    System.SUBSIDY_ISSUED: Unit.WH,
    System.SUBSIDY_USED: Unit.WH,
    System.SUBSIDY_EXPIRED: Unit.WH,
    System.GRACE_ISSUED: Unit.WH,
    System.GRACE_USED: Unit.WH,
    System.GRACE_EXPIRED: Unit.WH,
    System.CORRECTIONS_WH: Unit.WH,
    System.WATER_SALES: Unit.FEN,
    System.WATER_SUBSIDY_ISSUED: Unit.L,
    System.WATER_SUBSIDY_USED: Unit.L,
    System.WATER_SUBSIDY_EXPIRED: Unit.L,
    System.TAKEOVER_FEN: Unit.FEN,
    System.TAKEOVER_WH: Unit.WH,
    System.TAKEOVER_L: Unit.L,
}

SYSTEM_OWNER = "sys"


def pocket_id(owner: str, pocket: Pocket) -> AccountId:
    """The id of a merchant account's pocket, e.g. `pocket_id("A0001", Pocket.PREPAID)`."""
    if owner == SYSTEM_OWNER or not _OWNER.match(owner):
        raise InvalidValue(f"bad account owner {owner!r}: 1-40 of A-Z a-z 0-9 _ . -, not 'sys'")
    return AccountId(f"{owner}:{pocket.value}")


def system_id(account: System) -> AccountId:
    return AccountId(f"{SYSTEM_OWNER}:{account.value}")


@functools.lru_cache(maxsize=65536)
def unit_of(account: AccountId) -> Unit:
    """The unit an account id implies; raises InvalidValue for an id of no known shape."""
    owner, _, name = account.partition(":")
    try:
        if owner == SYSTEM_OWNER:
            return SYSTEM_UNIT[System(name)]
        if _OWNER.match(owner):
            return POCKET_UNIT[Pocket(name)]
    except ValueError:
        pass
    raise InvalidValue(f"unknown account {account!r}")


def owner_of(account: AccountId) -> str:
    return account.partition(":")[0]


def is_system(account: AccountId) -> bool:
    return owner_of(account) == SYSTEM_OWNER


@dataclass(frozen=True, slots=True)
class Account:
    """An account and its balance rule. `floor` None means unbounded (system accounts)."""

    id: AccountId
    unit: Unit
    floor: int | None

    @classmethod
    def for_id(cls, account: AccountId, credit_limit: int = 0) -> Account:
        """The standard account for an id: merchant pockets floored at 0 (or -credit_limit)."""
        unit = unit_of(account)
        if is_system(account) or account.endswith(":" + Pocket.DEBT.value):
            return cls(account, unit, None)
        require_int(credit_limit, "credit limit")
        if credit_limit < 0:
            raise InvalidValue(f"credit limit must be >= 0, got {credit_limit}")
        if credit_limit and not account.endswith(":" + Pocket.PREPAID.value):
            raise InvalidValue("only a prepaid pocket can have a credit limit")
        return cls(account, unit, -credit_limit)
