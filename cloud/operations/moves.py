"""Tenant moves: an account changing shop. On the same concentrator no money moves (the shop
mapping reaches the edge with its next configuration; the move is recorded, `settled`). To a
shop on another concentrator the prepaid balance travels as a two-phase transfer across the
two edge chains, driven by the cloud as each side's entries arrive:

    cloud   command move_out {account, move: M, to_node} → source         status requested
    source  PENDING A:prepaid → sys:moves_in_transit, all available fen   id move-out/M
            (subsidy left is cleared there: id move-expire/M)
    cloud   on that entry: command move_in {account, move, fen, from_node,
            subsidy_periods} → destination (the periods the tenant was
            issued: none is issued again there)                           status in_transit
    dest.   SINGLE sys:moves_in_transit → A:prepaid of fen                id move-in/M
    cloud   on that entry: command settle {pending: move-out/M, action: post, reference: M}
            → source                                                      status arrived
    source  POST of its pending                                           status settled

Refusals: move_out refused → `failed` (nothing moved); move_in refused → settle `void` at the
source, so the money returns to the account there (`voided`). A move_out applied with nothing
to carry (no entry) still sends a move_in of 0 fen (the subsidy periods, and the end of the
destination's subsidy hold, below); the destination books nothing, and its applied verdict
settles the move (a refusal voids it, with nothing to settle at the source). One open move per
account.

**Subsidy once per period.** The destination's configuration names the account `arriving` by
the move while the move is requested or in transit (`cloud.registry.site_config`), and the
destination issues it no subsidy until that move_in is applied: a configuration pushed before
the move_in cannot let its billing cycle issue a period the source issued.

The ingest of one node only advances the move's state; the command to the *other* node (the
move_in, a settle) is due from then on and issued by `issue_due` in a transaction of its own,
right after that ingest commits (`made_due`) and by the worker's dispatcher every minute (so a
crash in between loses nothing). Issuing it inside the ingest would lock the other node's row
under this one's: two nodes' ingests could deadlock, and a quarantined destination would stop
the source's uplink.

**The registry follows the tenant.** When the registry knows the account (a `registry_accounts`
row), the move names a registry shop: the shop numbered `to_shop` on `to_node` (its node, or
meters of it on that node; 404 when there is none) that holds no other account (409). The
account's `shop_id` then becomes that shop, through `cloud.registry.rows.update` (the nodes of the
old and the new shop are marked changed, one `account.update` row in the operator log), and both
concentrators are marked changed:

- on the same concentrator at once (the move is `settled` when recorded);
- across concentrators *when the move is requested*, not when it arrives or settles: the
  destination refuses a move_in for an account its configuration does not hold, so its
  configuration must carry the tenant before the move_in reaches it, and the registry is what
  that configuration is built from. So before `issue_due` issues the move_in it pushes the
  destination's configuration (as the system, in the same transaction, when the registry
  changed since the last push), and the config command precedes the move_in in the node's
  command order; while that configuration is not usable the move_in waits and the money stays
  pending at the source, as it does for a quarantined destination. A push to the source while
  the move is open drops an account that still holds money there, and the source refuses it;
  so when the move settles the source is marked changed again, and its next push (the tenant
  gone, nothing left there) is accepted.
- A move that fails or is voided puts the account back in shop `from_shop` on `from_node` (both
  nodes marked, logged as the system's `account.update`); when that shop is gone or holds
  another account by then, it stays where it is and a `move_registry` alarm says so.

An account the registry does not know is only recorded, and no configuration is pushed before
its move_in; its destination must still be a registry shop on `to_node` that neither the
registry nor the node's reported inventory shows holding another account.

**Money follows the tenant** (`cloud.operations.ownership.moved`): once the destination booked
the move_in, the cloud's view has the account on the destination, so the next recharge,
correction or refund goes there; until then it stays with the source, which holds the money.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.chains import commands
from cloud.chains.alarms import raise_alarm
from cloud.chains.commands import CommandVerdict
from cloud.chains.locks import lock_active
from cloud.chains.projection import VerifiedEntry, hex_id
from cloud.db import registry as tables
from cloud.db.models import Concentrator, LedgerEntry, ReportedAccount
from cloud.db.operations import Move
from cloud.errors import Conflict, Invalid, NotFound, Quarantined
from cloud.operations import ownership
from cloud.operations.arguments import reference
from cloud.operations.refunds import open_refund, settle_id
from cloud.operations.states import MOVE, MoveEvent, MoveStatus
from cloud.people import oplog
from cloud.registry import entities, site_config
from cloud.registry import rows as registry
from ledger import entry_ids
from ledger.accounts import Pocket, System, pocket_id, system_id
from ledger.chain import NodeKey
from ledger.signed import CommandKind
from ledger.transfers import Code, Kind

OPEN = tuple(s.value for s in MoveStatus if s not in MOVE.terminal)  # one per account at a time

log = logging.getLogger("cloud.operations.moves")


def out_id(move: str) -> int:
    return entry_ids.move_out(move)


def in_id(move: str) -> int:
    return entry_ids.move_in(move)


def get(session: Session, move: str) -> Move:
    row = session.get(Move, move)
    if row is None:
        raise NotFound(f"no move {move!r}")
    return row


def request(
    session: Session,
    *,
    account: str,
    to_shop: str,
    to_node: str,
    actor: oplog.Actor,
    move: str | None,
    key: NodeKey,
    now: dt.datetime,
) -> tuple[Move, bool]:
    """Record the move and, across concentrators, start it; the registry follows the tenant at
    once (see the module's docstring); `(row, created)`."""
    if not isinstance(to_shop, str) or not to_shop:
        raise Invalid("to_shop must name the shop the tenant moves to")
    owner = session.get(ReportedAccount, account)
    if owner is None:
        raise NotFound(f"account {account!r} is not known")
    if session.get(Concentrator, to_node) is None:
        raise NotFound(f"concentrator {to_node!r} is not registered")
    ref = reference(move, "m", account, owner.node, to_node, to_shop, now.isoformat())
    for node in sorted({owner.node, to_node}):  # lock order: nodes sorted by id
        lock_active(session, node)
    existing = session.get(Move, ref, populate_existing=True)
    if existing is not None:
        if (existing.account, existing.to_node, existing.to_shop) != (account, to_node, to_shop):
            raise Conflict(f"move {ref} exists with other content")
        return existing, False
    busy = session.scalars(
        select(Move).where(Move.account == account, Move.status.in_(OPEN)).limit(1)
    ).first()
    if busy is not None:
        raise Conflict(f"{account} is already moving ({busy.id}, {busy.status})")
    if to_node == owner.node and to_shop == owner.shop:
        raise Invalid(f"{account} is already in shop {to_shop}")
    refund = open_refund(session, account)
    if refund is not None:
        raise Conflict(f"{account} has refund {refund.id} open: settle it before moving")
    target = _target(session, account, to_shop, to_node)  # checked before anything changes
    operator = actor.user
    row = Move(
        id=ref, account=account, from_node=owner.node, from_shop=owner.shop, to_node=to_node,
        to_shop=to_shop, fen=None, out_transfer=None, in_transfer=None,
        out_command_id=None, in_command_id=None, settle_command_id=None, operator=operator,
        created=now, updated=now,
        status=MOVE.start(MoveStatus.SETTLED if to_node == owner.node else MoveStatus.REQUESTED),
    )  # fmt: skip
    if to_node != owner.node:
        command = commands.issue(
            session, owner.node, CommandKind.MOVE_OUT,
            {"account": account, "move": ref, "to_node": to_node},
            key=key, now=now, operator=operator,
        )  # fmt: skip
        row.out_command_id = command.id
        row.out_transfer, row.in_transfer = hex_id(out_id(ref)), hex_id(in_id(ref))
    session.add(row)
    session.flush()
    if to_node == owner.node:
        ownership.moved(session, row)
    if target is not None:
        _follow(session, row, target, actor, now)
    return row, True


def on_entries(
    session: Session, node: str, booked: Mapping[str, VerifiedEntry], now: dt.datetime
) -> None:
    """Advance the moves whose source or destination entries are in `booked`; the commands
    this makes due are issued by `issue_due`."""
    if not booked:
        return
    ids = list(booked)
    transit = system_id(System.MOVES_IN_TRANSIT)
    for row in session.scalars(
        select(Move)
        .where(
            Move.out_transfer.in_(ids),
            Move.from_node == node,
            Move.status == MoveStatus.REQUESTED.value,
        )
        .order_by(Move.created, Move.id)
    ):
        entry = booked[row.out_transfer or ""]
        t = entry.transfer
        if (t.debit, t.credit, t.kind) != (pocket_id(row.account, Pocket.PREPAID), transit,
                                           Kind.PENDING):  # fmt: skip
            raise_alarm(session, node, "move_mismatch", now,
                  f"move {row.id}: source entry at seq {entry.seq} is {t.kind.value} "
                  f"{t.debit} → {t.credit}")  # fmt: skip
            continue
        MOVE.fire(row, MoveEvent.OUT_BOOKED)  # move_in due
        row.fen, row.updated = t.amount, now
        _made_due(session)
    for row in session.scalars(
        select(Move)
        .where(
            Move.in_transfer.in_(ids),
            Move.to_node == node,
            Move.status == MoveStatus.IN_TRANSIT.value,
        )
        .order_by(Move.created, Move.id)
    ):
        MOVE.fire(row, MoveEvent.IN_BOOKED)  # settle post due
        row.updated = now
        ownership.moved(session, row)  # the money is there: so is the account
        _made_due(session)
    if any(e.transfer.kind is Kind.POST for e in booked.values()):
        settles = {hex_id(settle_id(h, "post")): h for h in _out_transfers(session, node)}
        arrived = [settles[i] for i in ids if i in settles]
        for row in session.scalars(select(Move).where(Move.out_transfer.in_(arrived))):
            MOVE.fire(row, MoveEvent.SETTLE_BOOKED)
            row.updated = now
            _left(session, row, now)


def _out_transfers(session: Session, node: str) -> list[str]:
    """The pendings of this node's moves waiting for their settle post."""
    return [
        h
        for h in session.scalars(
            select(Move.out_transfer).where(
                Move.from_node == node, Move.status == MoveStatus.ARRIVED.value
            )
        )
        if h
    ]


def on_verdicts(session: Session, outcomes: Sequence[CommandVerdict], now: dt.datetime) -> None:
    """Refusals fail or void a move; a move_out applied with nothing to carry settles."""
    verdicts = {o.command_id: o for o in outcomes}
    if not verdicts:
        return
    for row in session.scalars(
        select(Move).where(
            Move.out_command_id.in_(list(verdicts)), Move.status == MoveStatus.REQUESTED.value
        )
    ):
        outcome = verdicts[row.out_command_id or ""]
        if outcome.refused:
            MOVE.fire(row, MoveEvent.OUT_REFUSED)
            row.updated = now
            _back(session, row, now)
        elif outcome.status.value == "applied":
            MOVE.fire(row, MoveEvent.OUT_EMPTY)  # a move_in of 0 fen due
            row.fen, row.updated = 0, now  # no prepaid to carry
            _made_due(session)
    for row in session.scalars(
        select(Move).where(
            Move.in_command_id.in_(list(verdicts)), Move.status == MoveStatus.IN_TRANSIT.value
        )
    ):
        outcome = verdicts[row.in_command_id or ""]
        if outcome.refused:
            MOVE.fire(row, MoveEvent.IN_REFUSED)  # settle void due (none for 0 fen)
            row.updated = now
            _made_due(session)
            _back(session, row, now)
        elif outcome.status.value == "applied" and row.fen == 0:
            MOVE.fire(row, MoveEvent.IN_EMPTY)  # booked nothing: nothing to settle
            row.updated = now
            ownership.moved(session, row)
            _left(session, row, now)


# -- the registry follows the tenant ---------------------------------------------------------------
def _shop(session: Session, number: str, node: str) -> tables.Shop | None:
    """The registry shop numbered `number` that `node` serves (its node, or a meter of it there
    when the shop names no node); Conflict when several do (shops of two sites on one node)."""
    metered = select(tables.Meter.shop_id).where(tables.Meter.node == node)
    shops = session.scalars(
        select(tables.Shop)
        .where(
            tables.Shop.number == number,
            or_(tables.Shop.node == node,
                and_(tables.Shop.node.is_(None), tables.Shop.id.in_(metered))),
        )
        .order_by(tables.Shop.id)
    ).all()  # fmt: skip
    if len(shops) > 1:
        raise Conflict(f"the registry has {len(shops)} shops numbered {number!r} on {node}")
    return shops[0] if shops else None


def _holder(session: Session, shop: tables.Shop) -> str | None:
    return session.scalars(
        select(tables.Account.id).where(tables.Account.shop_id == shop.id)
    ).first()


def _target(session: Session, account: str, to_shop: str, to_node: str) -> tables.Shop | None:
    """The registry shop the tenant moves into; None when the registry does not know the account
    (the move is only recorded). Either way the shop must be one the registry has on `to_node`
    (404) and no other account may be in it, in the registry or in the node's inventory
    (409): a move never puts two tenants in one shop, nor one in a shop nobody declared."""
    reported = session.scalars(
        select(ReportedAccount.account).where(
            ReportedAccount.node == to_node,
            ReportedAccount.shop == to_shop,
            ReportedAccount.account != account,
        )
    ).first()
    if reported is not None:
        raise Conflict(f"shop {to_shop} on {to_node} holds account {reported}")
    shop = _shop(session, to_shop, to_node)
    if shop is None:
        raise NotFound(f"the registry has no shop {to_shop!r} on {to_node}")
    holder = _holder(session, shop)
    if holder is not None and holder != account:
        raise Conflict(f"shop {to_shop} on {to_node} holds account {holder} in the registry")
    return shop if session.get(tables.Account, account) is not None else None


def _follow(
    session: Session, row: Move, shop: tables.Shop, actor: oplog.Actor, now: dt.datetime
) -> None:
    """Put the account in `shop` (already there: nothing changes) and mark both nodes."""
    known = session.get(tables.Account, row.account)
    if known is None or known.shop_id == shop.id:
        return
    registry.update(session, entities.ACCOUNTS, row.account, {"shop_id": shop.id}, actor, now)
    registry.mark(session, {row.from_node, row.to_node}, now)


def _moved(session: Session, row: Move) -> bool:
    """Whether the registry has the account in the move's destination shop."""
    known = session.get(tables.Account, row.account)
    if known is None or known.shop_id is None:
        return False
    try:
        shop = _shop(session, row.to_shop, row.to_node)
    except Conflict:
        return False
    return shop is not None and shop.id == known.shop_id


def _left(session: Session, row: Move, now: dt.datetime) -> None:
    """A cross-node move settled: the source holds nothing of the tenant any more, so its next
    configuration (which drops the account) is due, even if one was pushed, and refused,
    meanwhile."""
    if row.from_node != row.to_node and _moved(session, row):
        registry.mark(session, {row.from_node}, now)


def _back(session: Session, row: Move, now: dt.datetime) -> None:
    """A move failed or voided: the account goes back to its old shop in the registry."""
    if not _moved(session, row):
        return
    try:
        shop = _shop(session, row.from_shop, row.from_node)
    except Conflict:
        shop = None
    holder = None if shop is None else _holder(session, shop)
    if shop is None or holder not in (None, row.account):
        why = "is gone" if shop is None else f"holds {holder} now"
        raise_alarm(session, row.from_node, "move_registry", now,
              f"move {row.id} {row.status}: {row.account} stays in shop {row.to_shop} on "
              f"{row.to_node} in the registry, its old shop {row.from_shop} on {row.from_node} "
              f"{why}; put the account in its shop by hand")  # fmt: skip
        return
    _follow(session, row, shop, oplog.SYSTEM, now)


def _awaits_config(session: Session, row: Move) -> bool:
    """Whether the move_in waits for the destination's configuration: the registry knows the
    account, and the destination's configuration changed since it was last pushed (it may not
    carry the tenant yet, and the destination refuses a move_in for an account it does not
    hold)."""
    if session.get(tables.Account, row.account) is None:
        return False
    state = session.get(tables.NodeConfig, row.to_node)
    return state is None or state.dirty


# -- the commands a move's progress made due -------------------------------------------------------
_MADE_DUE = "moves_made_due"  # a `Session.info` key: this transaction made a move's command due


def _made_due(session: Session) -> None:
    session.info[_MADE_DUE] = True


def made_due(session: Session) -> bool:
    """Whether this session's transaction made a move's command due (the ingest then calls
    `issue_due` after committing it; other batches cost no extra query)."""
    return bool(session.info.get(_MADE_DUE))


def issued_periods(session: Session, account: str) -> list[str]:
    """The subsidy periods `account` was issued on any concentrator (the union of the chains)."""
    pocket = pocket_id(account, Pocket.SUBSIDY)
    found = session.scalars(
        select(LedgerEntry.refs).where(
            LedgerEntry.credit == pocket, LedgerEntry.code == Code.SUBSIDY_ISSUE.value
        )
    )
    return sorted({str(refs["period"]) for refs in found if refs and refs.get("period")})


def _due(session: Session, row: Move) -> tuple[str, CommandKind, dict[str, Any]] | None:
    """(target node, kind, args) of the command `row` waits for, if one is due. A move_in
    carries the subsidy periods the tenant was issued (the source's chain is in up to its
    move_out), so the destination issues none of them again."""
    if row.status == MoveStatus.IN_TRANSIT and row.in_command_id is None:
        args: dict[str, Any] = {"account": row.account, "move": row.id, "fen": row.fen,
                                "from_node": row.from_node}  # fmt: skip
        periods = issued_periods(session, row.account)
        if periods:
            args["subsidy_periods"] = periods
        return row.to_node, CommandKind.MOVE_IN, args
    if (
        row.status in (MoveStatus.ARRIVED, MoveStatus.VOIDED)
        and row.settle_command_id is None
        and row.out_transfer
        and row.fen  # a move of 0 fen left no pending at the source
    ):
        action = "post" if row.status == MoveStatus.ARRIVED else "void"
        args = {"pending": row.out_transfer, "action": action, "reference": row.id}
        return row.from_node, CommandKind.SETTLE, args
    return None


_DUE = or_(
    and_(Move.status == MoveStatus.IN_TRANSIT.value, Move.in_command_id.is_(None)),
    and_(Move.status.in_((MoveStatus.ARRIVED.value, MoveStatus.VOIDED.value)),
         Move.settle_command_id.is_(None), Move.out_transfer.is_not(None), Move.fen > 0),
)  # fmt: skip


def issue_due(sessions: sessionmaker[Session], *, key: NodeKey, now: dt.datetime) -> int:
    """Issue every command a move waits for, one move per transaction: the target node's row is
    locked first, then the move's, and the move is read again (another caller may have issued
    it meanwhile). A quarantined or unknown target leaves its move due. How many were issued."""
    with sessions() as session:
        waiting = session.scalars(select(Move.id).where(_DUE).order_by(Move.created)).all()
    issued = 0
    for move in waiting:
        with sessions.begin() as session:
            row = session.get(Move, move)
            due = None if row is None else _due(session, row)
            if due is None:
                continue
            target, kind, args = due
            try:
                lock_active(session, target)
            except (NotFound, Quarantined) as exc:
                log.warning("move %s: %s to %s not issued yet: %s", move, kind.value, target, exc)
                continue
            row = session.get(Move, move, with_for_update=True, populate_existing=True)
            if row is None or _due(session, row) != due:
                continue
            if kind is CommandKind.MOVE_IN and _awaits_config(session, row):
                try:  # the destination's configuration first: it must hold the tenant
                    site_config.push(session, target, key=key, now=now, actor=oplog.SYSTEM)
                except Invalid as exc:
                    log.warning("move %s: move_in to %s waits: %s", move, target, exc)
                    continue
            command = commands.issue(session, target, kind, args, key=key, now=now,
                                     operator=row.operator)  # fmt: skip
            if kind is CommandKind.MOVE_IN:
                row.in_command_id = command.id
            else:
                row.settle_command_id = command.id
            row.updated = now
            issued += 1
            log.info("move %s: %s issued to %s (command %s)", move, kind.value, target, command.id)
    return issued
