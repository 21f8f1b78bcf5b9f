"""The cloud's money commands on this concentrator's accounts: correction, refund, settle, move
out and move in (`ledger.signed.CommandKind`; the transfers are `edge.rules.operations`).

Each handler reads the book and the runtime's states, lets the pure rule decide (or refuse),
books through the inbox and, on the first applied delivery only, stages what the runtime must
remember in the same transaction:

- refund: the grace allowance's end (`AccountRuntime.grace`), cleared by the billing cycle
  once the clock passes it; a void of the refund (settle) ends the grace it issued at once, if
  that grace is still the one running (a post leaves it running until its time);
- move out: `AccountRuntime.moved_out`: the account is no longer billed, issued a subsidy or
  judged for arrears here, its meters' relays are held open (vacant) until a configuration
  gives them a new account, and commands on it are refused; a grace still running ends with
  the move (the shop is left: nothing would ever clear it). A void of the move (settle) or a
  move in of the same account makes it a tenant here again (the grace does not come back);
- move in: the subsidy periods the account was issued elsewhere (`subsidy_periods`) join its
  subsidy state, so none of them is issued again here; the move is `AccountRuntime.arrived`,
  which ends the subsidy's hold of an account its configuration names as arriving by that move.
  A move in of 0 fen (nothing to carry) books nothing and still brings the periods.
"""

from __future__ import annotations

import dataclasses
import logging

from edge.rules import operations
from edge.rules.pockets import Pockets
from edge.runtime.state import GraceHold
from edge.sync.command_context import (
    Applied,
    CommandContext,
    Refusal,
    aware_time,
    choice,
    hex_id,
    integer,
    long_text,
    periods,
    reference,
    text,
    took_effect,
)
from ledger.accounts import Pocket, owner_of, pocket_id
from ledger.book import Balance
from ledger.transfers import Code, Kind

log = logging.getLogger("edge.sync")


def correction(d: CommandContext) -> Applied:
    account = d.account()
    fen = integer(d.args, "fen")
    ref = reference(d.args, "correction")
    book = d.runtime.store.book
    pocket = pocket_id(account, Pocket.PREPAID)
    known = book.account(pocket)
    floor = -d.runtime.site.accounts[account].credit_limit_fen
    if known is not None and known.floor is not None:
        floor = known.floor
    transfer = operations.correction(
        d.stamp,
        account=account,
        fen=fen,
        reference=ref,
        original=hex_id(d.args, "original"),
        reason=long_text(d.args, "reason"),
        prepaid=book.balance(pocket),
        floor=floor,
    )
    result = d.apply([transfer])
    if took_effect(result):
        d.event(account=account, correction=ref, fen=fen)
    return result, [], f"{account} {fen:+d} fen (correction {ref})"


def _refuse_while_owing(d: CommandContext, account: str, what: str) -> None:
    """Money leaves an account only once its debt is paid (`edge.rules.debt`)."""
    owed = Pockets.from_book(d.runtime.store.book, account).debt_fen
    if owed:
        raise Refusal(
            f"{account} owes {owed} fen for energy used with no money left: the next billing "
            f"cycle pays it from the balance; retry the {what} after it, or recharge first"
        )


def refund(d: CommandContext) -> Applied:
    account = d.account()
    _refuse_while_owing(d, account, "refund")
    ref = reference(d.args, "refund")
    grace_wh = integer(d.args, "grace_wh", low=0)
    until = aware_time(d.args, "grace_until")
    book = d.runtime.store.book
    transfers = operations.refund(
        d.stamp,
        account=account,
        reference=ref,
        grace_wh=grace_wh,
        grace_until=until.isoformat(),
        prepaid=book.balance(pocket_id(account, Pocket.PREPAID)),
        pending=book.unresolved(),
    )
    result = d.apply(transfers)
    fen = transfers[0].amount
    if took_effect(result):
        if grace_wh:
            # A grace still running from an earlier refund is replaced: the new end clears
            # whatever the grace pocket holds then.
            state = d.runtime.account_state(account)
            hold = GraceHold(ref, until.astimezone(d.runtime.site.zone))
            d.runtime.stage_account(d.tx, account, dataclasses.replace(state, grace=hold))
        d.event(account=account, refund=ref, fen=fen, grace_wh=grace_wh, until=until.isoformat())
    return result, [], f"{account} {fen} fen pending, grace {grace_wh} Wh until {until:%F %R}"


def _running_grace(d: CommandContext, owner: str) -> tuple[str, Balance] | None:
    """The refund whose grace allowance `owner` runs now, and its grace pocket (None: none)."""
    if owner not in d.runtime.site.accounts:
        return None
    hold = d.runtime.account_state(owner).grace
    if hold is None:
        return None
    return hold.refund, d.runtime.store.book.balance(pocket_id(owner, Pocket.GRACE))


def settle(d: CommandContext) -> Applied:
    pending_hex = hex_id(d.args, "pending")
    action = Kind(choice(d.args, "action", (Kind.POST.value, Kind.VOID.value)))
    ref = reference(d.args, "reference")
    book = d.runtime.store.book
    pending_id = int(pending_hex, 16)
    pending = book.get(pending_id)
    grace = None  # the grace pocket, if this refund's grace still runs (a later one replaces it)
    if action is Kind.VOID and pending is not None and pending.code is Code.REFUND:
        running = _running_grace(d, owner_of(pending.debit))
        grace = running[1] if running is not None and running[0] == ref else None
    transfers = operations.settle(
        d.stamp,
        pending=pending,
        pending_hex=pending_hex,
        action=action,
        reference=ref,
        resolved=book.resolution(pending_id),
        grace=grace,
    )
    transfer = transfers[0]
    owner = owner_of(transfer.debit)
    result = d.apply(transfers)
    ended = sum(t.amount for t in transfers[1:])  # the grace cleared, Wh
    if took_effect(result):
        if owner in d.runtime.site.accounts:
            state = before = d.runtime.account_state(owner)
            if grace is not None:  # the refund's grace ends with it
                state = dataclasses.replace(state, grace=None)
            if action is Kind.VOID and transfer.code is Code.MOVE and state.moved_out == ref:
                state = dataclasses.replace(state, moved_out=None)  # called off: a tenant again
            if state != before:
                d.runtime.stage_account(d.tx, owner, state)
        d.event(
            account=owner,
            pending=pending_hex,
            action=action.value,
            code=transfer.code.value,
            reference=ref,
            fen=transfer.amount,
            grace_cleared_wh=None if grace is None else ended,
        )
    note = "" if grace is None else f", grace ended ({ended} Wh cleared)"
    return result, [], f"{action.value} {transfer.code.value} {ref} of {owner}{note}"


def move_out(d: CommandContext) -> Applied:
    account = d.account()
    move = reference(d.args, "move")
    to_node = text(d.args, "to_node")
    runtime = d.runtime
    book = runtime.store.book
    _refuse_while_owing(d, account, "move")
    grace = _running_grace(d, account)  # ends with the move: the shop is left
    transfers = operations.move_out(
        d.stamp,
        account=account,
        reference=move,
        to_node=to_node,
        prepaid=book.balance(pocket_id(account, Pocket.PREPAID)),
        subsidy=book.balance(pocket_id(account, Pocket.SUBSIDY)),
        grace=grace,
    )
    result = d.apply(transfers)
    fen = sum(t.amount for t in transfers if t.code is Code.MOVE)
    if took_effect(result):
        state = runtime.account_state(account)
        state = dataclasses.replace(state, moved_out=move, grace=None)
        runtime.stage_account(d.tx, account, state)
        meters = [m.address for m in runtime.site.meters_of(account)]
        ended = sum(t.amount for t in transfers if t.code is Code.GRACE_EXPIRE)
        d.event(
            account=account,
            move=move,
            to_node=to_node,
            fen=fen,
            vacant=meters,
            grace_ended=None if grace is None else grace[0],  # the refund whose grace it was
            grace_cleared_wh=ended,
        )
        log.info("account %s moved out (move %s): meters %s now vacant", account, move, meters)
    return result, [], f"{account} {fen} fen pending to {to_node}"


def move_in(d: CommandContext) -> Applied:
    account = text(d.args, "account")
    if account not in d.runtime.site.accounts:
        raise Refusal(
            f"account {account!r} is not in this concentrator's configuration (a config "
            "command first)"
        )
    move = reference(d.args, "move")
    fen = integer(d.args, "fen", low=0)  # 0: nothing to carry, the subsidy periods still come
    from_node = text(d.args, "from_node")
    issued = periods(d.args, "subsidy_periods")
    transfers = []
    if fen:
        transfers.append(
            operations.move_in(
                d.stamp, account=account, reference=move, fen=fen, from_node=from_node
            )
        )
    result = d.apply(transfers)
    if took_effect(result):
        before = d.runtime.account_state(account)
        # the tenant comes back (billed here again) with the subsidy periods it was issued, and
        # the subsidy held while it was arriving by this move is issued again
        state = dataclasses.replace(
            before,
            moved_out=None,
            subsidy=before.subsidy.issued_elsewhere(issued),
            arrived=move,
        )
        if state != before:
            d.runtime.stage_account(d.tx, account, state)
        d.event(account=account, move=move, from_node=from_node, fen=fen,
                subsidy_periods=sorted(issued))  # fmt: skip
    return result, [], f"{account} {fen} fen from {from_node}"
