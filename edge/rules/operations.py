"""The money of the cloud's operations commands (`ledger.signed.CommandKind`), as pure rules.

Each function takes the facts (the account's balances in the book, the pending transfer to
resolve, the time stamp) and returns the transfers to book, or raises `OperationRefused` with
the reason the command is refused. Ids come from the operation's reference
(`ledger.entry_ids`), so the cloud knows them in advance and a repeat books nothing:

    correction  sys:corrections_fen ↔ A:prepaid  single     entry_ids.correction(ref)
    refund      A:prepaid → sys:refunds_payable   pending    entry_ids.refund(ref)        ─┐
                sys:grace_issued → A:grace        single     entry_ids.grace(ref)         ◄┘
    grace end   A:grace → sys:grace_expired       single     entry_ids.grace_expire(ref)
    settle      the pending transfer's accounts   post|void  entry_ids.settle(hex, action) ─┐
     a refund's void, its grace still running:                                             │
                A:grace → sys:grace_expired       single     entry_ids.grace_end(ref)     ◄┘
    move out    A:prepaid → sys:moves_in_transit  pending    entry_ids.move_out(ref)      ─┐
                A:subsidy → sys:subsidy_expired   single     entry_ids.move_expire(ref)   ◄┤
     a grace of refund G still running:                                                    │
                A:grace → sys:grace_expired       single     entry_ids.grace_end(G)       ◄┘
    move in     sys:moves_in_transit → A:prepaid  single     entry_ids.move_in(ref)

(─┐ ◄┘: one linked chain, the transfers that are there.)

Amounts are the book's *available* balances (posted less pending debits): a refund or a move
takes what the account could still spend, never the subsidy (a refund) and never money that is
already reserved. A refund's grace allowance ends once: at its time (`grace-expire`, the billing
cycle), or before it, with the void of its refund or the tenant's move out (`grace-end`); both
clear what the grace pocket holds then. Every transfer carries the reference under its own key
(`correction`, `refund`, `move`, …) and `command`, the id of the command that booked it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from edge.rules.errors import RuleError
from ledger import entry_ids
from ledger.accounts import AccountId, Pocket, System, owner_of, pocket_id, system_id, unit_of
from ledger.book import Balance
from ledger.transfers import Code, Kind, RefValue, TimeSource, Transfer


class OperationRefused(RuleError):
    """The command cannot be carried out; the message says why (it becomes the result)."""


@dataclass(frozen=True, slots=True)
class Stamp:
    """When and by which command a transfer is booked."""

    time: str
    source: TimeSource
    command: str | None = None  # None: a rule's own decision (a grace running out)


def _transfer(
    stamp: Stamp,
    ident: int,
    route: tuple[AccountId, AccountId],
    amount: int,
    code: Code,
    *,
    refs: dict[str, RefValue],
    kind: Kind = Kind.SINGLE,
    pending_id: int | None = None,
    linked: bool = False,
) -> Transfer:
    """A transfer of `amount` from `route[0]` (debit) to `route[1]` (credit)."""
    debit, credit = route
    return Transfer(
        id=ident,
        debit=debit,
        credit=credit,
        amount=amount,
        unit=unit_of(debit),
        code=code,
        time=stamp.time,
        time_source=stamp.source,
        kind=kind,
        pending_id=pending_id,
        linked=linked,
        refs=refs if stamp.command is None else {**refs, "command": stamp.command},
    )


def correction(
    stamp: Stamp,
    *,
    account: str,
    fen: int,
    reference: str,
    original: str,
    reason: str,
    prepaid: Balance,
    floor: int,
) -> Transfer:
    """Credit (fen > 0) or debit (fen < 0) `account`'s prepaid pocket against
    sys:corrections_fen; a debit may not take the pocket below its `floor`."""
    if fen == 0:
        raise OperationRefused("a correction of 0 fen corrects nothing")
    if fen < 0 and prepaid.available + fen < floor:
        raise OperationRefused(
            f"a debit of {-fen} fen would take {account}:prepaid below its floor of {floor} fen "
            f"(available {prepaid.available} fen)"
        )
    pocket, fund = pocket_id(account, Pocket.PREPAID), system_id(System.CORRECTIONS_FEN)
    debit, credit = (fund, pocket) if fen > 0 else (pocket, fund)
    refs: dict[str, RefValue] = {"correction": reference, "original": original, "reason": reason}
    return _transfer(
        stamp,
        entry_ids.correction(reference),
        (debit, credit),
        abs(fen),
        Code.CORRECTION,
        refs=refs,
    )


def open_pendings(pendings: Iterable[Transfer], account: AccountId, code: Code) -> list[Transfer]:
    """The unresolved pending transfers of `code` debiting `account`."""
    return [t for t in pendings if t.code is code and t.debit == account]


def refund(
    stamp: Stamp,
    *,
    account: str,
    reference: str,
    grace_wh: int,
    grace_until: str,
    prepaid: Balance,
    pending: Iterable[Transfer],
) -> tuple[Transfer, ...]:
    """Refund the available prepaid balance (pending, to be posted once paid out), linked with
    a grace allowance of `grace_wh` (none if 0). `pending`: the book's unresolved pendings."""
    pocket = pocket_id(account, Pocket.PREPAID)
    waiting = open_pendings(pending, pocket, Code.REFUND)
    if waiting:
        names = ", ".join(str(t.refs.get("refund", f"{t.id:032x}")) for t in waiting)
        raise OperationRefused(f"a refund of {account} is already pending ({names})")
    if prepaid.available <= 0:
        raise OperationRefused(
            f"nothing to refund: {account}:prepaid has {prepaid.available} fen available"
        )
    refs: dict[str, RefValue] = {"refund": reference}
    held = _transfer(
        stamp,
        entry_ids.refund(reference),
        (pocket, system_id(System.REFUNDS_PAYABLE)),
        prepaid.available,
        Code.REFUND,
        refs=refs,
        kind=Kind.PENDING,
        linked=grace_wh > 0,
    )
    if grace_wh <= 0:
        return (held,)
    grace = _transfer(
        stamp,
        entry_ids.grace(reference),
        (system_id(System.GRACE_ISSUED), pocket_id(account, Pocket.GRACE)),
        grace_wh,
        Code.GRACE_ISSUE,
        refs={**refs, "grace_until": grace_until},
    )
    return held, grace


def _clear_grace(
    stamp: Stamp, ident: int, account: str, grace: Balance, refs: dict[str, RefValue]
) -> Transfer | None:
    if grace.available <= 0:
        return None
    return _transfer(
        stamp,
        ident,
        (pocket_id(account, Pocket.GRACE), system_id(System.GRACE_EXPIRED)),
        grace.available,
        Code.GRACE_EXPIRE,
        refs=refs,
    )


def grace_expiry(stamp: Stamp, *, account: str, reference: str, grace: Balance) -> Transfer | None:
    """Clear what is left of the grace allowance of refund `reference` (None: nothing left)."""
    ident = entry_ids.grace_expire(reference)
    return _clear_grace(stamp, ident, account, grace, {"refund": reference})


def grace_end(
    stamp: Stamp,
    *,
    account: str,
    reference: str,
    grace: Balance,
    refs: dict[str, RefValue] | None = None,
) -> Transfer | None:
    """End the grace allowance of refund `reference` before its time (the refund voided, the
    tenant moving out): clear what the grace pocket holds, as its expiry would (None: nothing
    left). `refs`: what ended it, besides the refund."""
    ident = entry_ids.grace_end(reference)
    return _clear_grace(stamp, ident, account, grace, {**(refs or {}), "refund": reference})


def _chain(transfers: Iterable[Transfer | None]) -> tuple[Transfer, ...]:
    """The transfers that are there, as one linked chain."""
    out = [t for t in transfers if t is not None]
    return tuple(dataclasses.replace(t, linked=i < len(out) - 1) for i, t in enumerate(out))


SETTLED_CODES = {Code.REFUND: "refund", Code.MOVE: "move"}  # pending codes a settle resolves


def settle(
    stamp: Stamp,
    *,
    pending: Transfer | None,
    pending_hex: str,
    action: Kind,
    reference: str,
    resolved: Kind | None,
    grace: Balance | None = None,
) -> tuple[Transfer, ...]:
    """Post or void `pending` (a refund or a move out this node holds) in full.

    `grace`: the grace pocket, if the grace allowance this refund issued is still running. A
    void then ends it, in the same chain (`grace_end`); a post leaves it running until its
    time: the tenant was paid out and keeps power for the grace period."""
    if pending is None or pending.kind is not Kind.PENDING:
        raise OperationRefused(f"no pending transfer {pending_hex} on this concentrator")
    ref_key = SETTLED_CODES.get(pending.code)
    if ref_key is None:
        raise OperationRefused(
            f"pending transfer {pending_hex} is a {pending.code.value}, not a refund or a move"
        )
    if pending.refs.get(ref_key) != reference:
        raise OperationRefused(
            f"pending transfer {pending_hex} is {ref_key} {pending.refs.get(ref_key)!r}, "
            f"not {reference!r}"
        )
    if resolved is not None:
        done = "posted" if resolved is Kind.POST else "voided"
        raise OperationRefused(f"pending transfer {pending_hex} was already {done}")
    settled = _transfer(
        stamp,
        entry_ids.settle(pending_hex, action.value),
        (pending.debit, pending.credit),
        pending.amount,
        pending.code,
        refs={ref_key: reference, "pending": pending_hex},
        kind=action,
        pending_id=pending.id,
    )
    if action is not Kind.VOID or pending.code is not Code.REFUND or grace is None:
        return (settled,)
    owner = owner_of(pending.debit)
    ended = grace_end(stamp, account=owner, reference=reference, grace=grace)
    return _chain((settled, ended))


def move_out(
    stamp: Stamp,
    *,
    account: str,
    reference: str,
    to_node: str,
    prepaid: Balance,
    subsidy: Balance,
    grace: tuple[str, Balance] | None = None,
) -> tuple[Transfer, ...]:
    """The tenant leaves: its available prepaid goes pending into transit, its subsidy left is
    cleared and so is a grace allowance still running (`grace`: the refund that issued it and
    the grace pocket), all in one linked chain. A debt (available below zero) does not move:
    refused."""
    if prepaid.available < 0:
        raise OperationRefused(
            f"{account} owes {-prepaid.available} fen: settle the debt before it moves out"
        )
    refs: dict[str, RefValue] = {"move": reference, "to_node": to_node}
    out: list[Transfer | None] = []
    if prepaid.available > 0:
        out.append(
            _transfer(
                stamp,
                entry_ids.move_out(reference),
                (pocket_id(account, Pocket.PREPAID), system_id(System.MOVES_IN_TRANSIT)),
                prepaid.available,
                Code.MOVE,
                refs=refs,
                kind=Kind.PENDING,
            )
        )
    if subsidy.available > 0:
        out.append(
            _transfer(
                stamp,
                entry_ids.move_expire(reference),
                (pocket_id(account, Pocket.SUBSIDY), system_id(System.SUBSIDY_EXPIRED)),
                subsidy.available,
                Code.SUBSIDY_EXPIRE,
                refs=refs,
            )
        )
    if grace is not None:
        refund, left = grace
        out.append(grace_end(stamp, account=account, reference=refund, grace=left, refs=refs))
    return _chain(out)


def move_in(stamp: Stamp, *, account: str, reference: str, fen: int, from_node: str) -> Transfer:
    """The tenant arrives with `fen` from another concentrator."""
    if fen <= 0:
        raise OperationRefused(f"fen must be positive, got {fen}")
    return _transfer(
        stamp,
        entry_ids.move_in(reference),
        (system_id(System.MOVES_IN_TRANSIT), pocket_id(account, Pocket.PREPAID)),
        fen,
        Code.MOVE,
        refs={"move": reference, "from_node": from_node},
    )
