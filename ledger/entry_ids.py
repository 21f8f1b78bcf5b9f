"""The ids of the entries a concentrator books, as functions: the contract by which the cloud
knows, before the edge answers, which transfer each command or rule will write.

Every id is `ledger.ids.derive_id(tag, …facts)`: the same facts give the same id, so a repeated
command or a rule run again after a crash books nothing twice, and the cloud can find the
edge's entry by id when it arrives. The tags are part of the frozen format — changing one
changes every id derived from it.

    entry                           tag             facts                    booked by
    a recharge                      recharge        payment                  `recharge` command
    consumption (one leg)           consume         meter, reg_from, reg_to, leg   billing cycle
    a swapped meter's last bill     meter-settle    swap, leg                `meter_swap`
    a correction                    correction      correction               `correction`
    a refund (pending)              refund          refund                   `refund`
    its grace allowance             grace           refund                   `refund`
    the grace running out           grace-expire    refund                   billing cycle
    the grace ended early           grace-end       refund                   `settle`, `move_out`
    a pending resolved              settle          pending hex, action      `settle`
    a move out (pending)            move-out        move                     `move_out`
    the subsidy cleared on leaving  move-expire     move                     `move_out`
    a move in                       move-in         move                     `move_in`
    a debt paid back                debt-repay      owner, repaid before     billing cycle
    a taken-over pocket opened      takeover-open   takeover, pocket         `takeover`
    a dead node's pocket closed     takeover-close  takeover, pocket         the cloud (its chain)

Subsidy entries are `derive_id(code, owner, period)` (`edge.rules.subsidy`), their code's
value being the tag; a water subsidy's are `derive_id(code, owner, period, "water")`. A water
meter's consumption legs are `consume(meter, reg_from, reg_to, leg)` like an electricity
meter's (registers in litres; legs `water_subsidy`, `prepaid`, `credit`, `debt`).

`derived_id(code, refs, index)` is the id an entry could have been given from what its own
refs say (a consumption leg: one per leg name in `LEGS`); the uplink sends an entry whose id is
one of them as that index (`derivation_of`), not as 16 bytes of hash (`ledger.wire_entries`),
and the receiver derives it again. The order of `LEGS` is part of the wire format: append only.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from ledger.ids import derive_id
from ledger.transfers import Code, RefValue


class EntryTag(StrEnum):
    """The first part of an entry id: which kind of entry it is."""

    RECHARGE = "recharge"
    CONSUME = "consume"
    METER_SETTLE = "meter-settle"
    CORRECTION = "correction"
    REFUND = "refund"
    GRACE = "grace"
    GRACE_EXPIRE = "grace-expire"
    GRACE_END = "grace-end"
    SETTLE = "settle"
    MOVE_OUT = "move-out"
    MOVE_EXPIRE = "move-expire"
    MOVE_IN = "move-in"
    DEBT_REPAY = "debt-repay"
    TAKEOVER_OPEN = "takeover-open"
    TAKEOVER_CLOSE = "takeover-close"


def recharge(payment: str) -> int:
    return derive_id(EntryTag.RECHARGE, payment)


def consume(meter: str, reg_from: int, reg_to: int, leg: str) -> int:
    return derive_id(EntryTag.CONSUME, meter, reg_from, reg_to, leg)


def meter_settle(swap: str, leg: str) -> int:
    return derive_id(EntryTag.METER_SETTLE, swap, leg)


def correction(reference: str) -> int:
    return derive_id(EntryTag.CORRECTION, reference)


def refund(reference: str) -> int:
    return derive_id(EntryTag.REFUND, reference)


def grace(refund_reference: str) -> int:
    return derive_id(EntryTag.GRACE, refund_reference)


def grace_expire(refund_reference: str) -> int:
    return derive_id(EntryTag.GRACE_EXPIRE, refund_reference)


def grace_end(refund_reference: str) -> int:
    return derive_id(EntryTag.GRACE_END, refund_reference)


def settle(pending_hex: str, action: str) -> int:
    return derive_id(EntryTag.SETTLE, pending_hex, action)


def move_out(move: str) -> int:
    return derive_id(EntryTag.MOVE_OUT, move)


def move_expire(move: str) -> int:
    return derive_id(EntryTag.MOVE_EXPIRE, move)


def move_in(move: str) -> int:
    return derive_id(EntryTag.MOVE_IN, move)


def debt_repay(owner: str, repaid_before: int) -> int:
    """`repaid_before`: fen the debt pocket had been paid back in all before this repayment
    (it only grows, so each repayment of an account has its own id)."""
    return derive_id(EntryTag.DEBT_REPAY, owner, repaid_before)


def takeover_open(takeover: str, pocket: str) -> int:
    """The new box's opening of one pocket it took over (`ledger.takeover`)."""
    return derive_id(EntryTag.TAKEOVER_OPEN, takeover, pocket)


def takeover_close(takeover: str, pocket: str) -> int:
    """The cloud's closing of the dead node's pocket (`ledger.takeover`)."""
    return derive_id(EntryTag.TAKEOVER_CLOSE, takeover, pocket)


# The pay legs of `edge.rules.commodities` (energy and water), in a frozen order.
LEGS = ("subsidy", "prepaid", "grace", "credit", "debt", "water_subsidy")


def derived_id(code: Code, refs: Mapping[str, RefValue], index: int) -> int | None:
    """The `index`-th id an entry of `code` with `refs` gets when one of the rules above booked
    it (a consumption leg: the leg `LEGS[index]`); None when its refs do not say or there is
    no such index."""
    if code is Code.CONSUME and 0 <= index < len(LEGS):
        meter, reg_from, reg_to = refs.get("meter"), refs.get("reg_from"), refs.get("reg_to")
        if isinstance(meter, str) and type(reg_from) is int and type(reg_to) is int:
            return consume(meter, reg_from, reg_to, LEGS[index])
    elif code is Code.METER_SETTLE and 0 <= index < len(LEGS):
        swap = refs.get("swap")
        if isinstance(swap, str):
            return meter_settle(swap, LEGS[index])
    elif code is Code.RECHARGE and index == 0:
        payment = refs.get("payment")
        if isinstance(payment, str):
            return recharge(payment)
    return None


def derivation_of(
    code: Code, refs: Mapping[str, RefValue], ident: int, *, likely: str = ""
) -> int | None:
    """The index for which `derived_id` gives `ident`, or None. The leg named `likely` (the
    debited pocket: most legs are named after it) is tried first, to hash once, not up to six
    times."""
    for index in _TRY_ORDER.get(likely, _IN_ORDER):
        if derived_id(code, refs, index) == ident:
            return index
    return None


_IN_ORDER = tuple(range(len(LEGS)))
_TRY_ORDER = {leg: (k, *(i for i in _IN_ORDER if i != k)) for k, leg in enumerate(LEGS)}
