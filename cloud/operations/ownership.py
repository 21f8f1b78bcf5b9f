"""Who owns which account and meter: the cloud's live view (`accounts`, `meters`), kept from the
registry and the commands the cloud sent, never from what a concentrator claims
(docs/architecture.md §7).

The view routes money (a recharge, correction, refund or move goes to `accounts.node`) and
relay orders (`meters.node`), and gives reports an account's shop, building and floor. It
changes only on what the cloud itself decided:

    a `config` the node applied   its accounts are the documents' (save one an open move
                                  takes elsewhere: the move decides), in their shops; its
                                  meters are the documents', at their accounts
    a `meter_swap` it applied     the new meter is the account's, the old one nobody's
    a move arrived (the           the account is the destination's, in its new shop; its
    destination booked move_in)   meters at the source are nobody's
    a move on one concentrator    the account's shop

A concentrator's inventory (its signed status, re-sent whenever it changes) is a *claim*,
checked by `claim`: what agrees with the view, or fills it where the cloud has decided nothing,
is taken — an account nobody owns yet that the registry places on that node, or, with no
registry for it (the embedded demo), the first node to claim it (`ON CONFLICT DO NOTHING`:
nobody can take it after); the shop, building and floor of an account the node owns; a meter
of an account it owns that no other node holds (one it no longer lists is nobody's). What
disagrees (an account or meter another node owns, one the registry puts elsewhere) raises an
`inventory_mismatch` alarm and changes nothing. A claim on an account an open move is bringing
to the node is expected and waits for the move.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from cloud.chains.alarms import raise_alarm
from cloud.chains.commands import CommandVerdict
from cloud.db import registry as tables
from cloud.db.models import Command, CommandStatus, MeterState, ReportedAccount
from cloud.db.operations import Move
from cloud.db.sql import upsert
from cloud.operations.states import MoveStatus
from ledger.signed import CommandKind

log = logging.getLogger(__name__)

MISMATCH = "inventory_mismatch"
# A move that has not brought the money to the destination yet: the source still owns it.
_ON_THE_WAY = (MoveStatus.REQUESTED.value, MoveStatus.IN_TRANSIT.value)


@dataclass(frozen=True, slots=True)
class Place:
    """An account's shop, building and floor, as the view shows them."""

    shop: str = ""
    building: str = ""
    floor: str = ""

    @classmethod
    def of(cls, info: Mapping[str, Any]) -> Place:
        return cls(
            _text(info.get("shop"), 64), _text(info.get("building"), 64),
            _text(info.get("floor"), 32),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Claimed:
    """One account of an inventory: its place and its meters (address → protocol)."""

    account: str
    place: Place
    meters: Mapping[str, str]


def _text(value: object, width: int) -> str:
    return value[:width] if isinstance(value, str) else ""


# -- the view's writes -----------------------------------------------------------------------------
def _own(session: Session, node: str, account: str, place: Place) -> None:
    """The account is `node`'s, at `place` (the cloud decided it)."""
    statement = upsert(session, ReportedAccount.__table__)
    values = {"node": node, "shop": place.shop, "building": place.building, "floor": place.floor}
    session.execute(
        statement.values(account=account, **values).on_conflict_do_update(
            index_elements=["account"], set_=values
        )
    )


def _first_claim(session: Session, node: str, account: str, place: Place) -> str:
    """Register `account` as `node`'s unless someone owns it; the owner afterwards."""
    session.execute(
        upsert(session, ReportedAccount.__table__)
        .values(account=account, node=node, shop=place.shop, building=place.building,
                floor=place.floor)
        .on_conflict_do_nothing()
    )  # fmt: skip
    owner = session.scalar(select(ReportedAccount.node).where(ReportedAccount.account == account))
    assert owner is not None
    return owner


def _meter(session: Session, node: str, address: str, account: str, protocol: str) -> None:
    statement = upsert(session, MeterState.__table__)
    session.execute(
        statement.values(node=node, address=address, account=account, protocol=protocol)
        .on_conflict_do_update(
            index_elements=["node", "address"], set_={"account": account, "protocol": protocol}
        )
    )  # fmt: skip


def _release(session: Session, *where: Any) -> None:
    """The meters `where` selects belong to no account any more."""
    session.execute(update(MeterState).where(*where).values(account=""))


# -- what the cloud decided ------------------------------------------------------------------------
def on_verdicts(
    session: Session, node: str, outcomes: Sequence[CommandVerdict], now: dt.datetime
) -> None:
    """A `config` `node` applied: its accounts and meters are the documents' (see the table)."""
    applied = [o.command_id for o in outcomes if o.status is CommandStatus.APPLIED]
    if not applied:
        return
    configs = session.scalars(
        select(Command)
        .where(
            Command.id.in_(applied),
            Command.node == node,
            # a takeover carries the configuration the new box runs (cloud.operations.takeovers)
            Command.kind.in_((CommandKind.CONFIG.value, CommandKind.TAKEOVER.value)),
            Command.status == CommandStatus.APPLIED.value,
        )
        .order_by(Command.seq)
    ).all()
    for command in configs:
        _configured(session, node, command.args.get("documents") or {})
        log.info("node %s: the view follows configuration %s", node, command.args.get("version"))


def _configured(session: Session, node: str, documents: Mapping[str, Any]) -> None:
    shops = {s["id"]: s for s in documents.get("shops", ())}
    meters = documents.get("meters", ())
    shop_of = {m["account"]: m["shop"] for m in meters}
    for doc in documents.get("accounts", ()):
        account = doc["id"]
        shop = shops.get(shop_of.get(account), {})
        place = Place.of({"shop": shop.get("id"), **shop})
        owner = session.get(ReportedAccount, account)
        if owner is not None and owner.node != node and _moving(session, account):
            continue  # the move decides when the account changes node
        _own(session, node, account, place)
    addresses = [m["id"] for m in meters]
    _release(session, MeterState.node == node, MeterState.address.not_in(addresses))
    _release(session, MeterState.node != node, MeterState.address.in_(addresses))
    for m in meters:
        _meter(session, node, m["id"], m["account"], _text(m.get("protocol"), 32))


def swapped(  # noqa: PLR0917 (the swap's fields)
    session: Session, node: str, old: str, new: str, account: str, protocol: str
) -> None:
    """`node` applied a meter swap: `new` is the account's meter, `old` nobody's."""
    _release(session, MeterState.node == node, MeterState.address == old)
    _meter(session, node, new, account, protocol)


def moved(session: Session, row: Move) -> None:
    """The tenant of `row` is in its new shop (on another node: the money arrived there)."""
    place = _registry_place(session, row.to_shop, row.to_node) or Place(row.to_shop)
    if row.to_node != row.from_node:
        _release(session, MeterState.node == row.from_node, MeterState.account == row.account)
    _own(session, row.to_node, row.account, place)


def _registry_place(session: Session, number: str, node: str) -> Place | None:
    found = session.execute(
        select(tables.Building.name, tables.Floor.name)
        .join(tables.Floor, tables.Floor.building_id == tables.Building.id)
        .join(tables.Shop, tables.Shop.floor_id == tables.Floor.id)
        .where(
            tables.Shop.number == number,
            or_(
                tables.Shop.node == node,
                tables.Shop.id.in_(select(tables.Meter.shop_id).where(tables.Meter.node == node)),
            ),
        )
    ).first()
    return None if found is None else Place(number, found[0], found[1])


def _moving(session: Session, account: str, to_node: str | None = None) -> bool:
    """Whether an open move of `account` (to `to_node`, if given) has not arrived yet."""
    query = select(Move.id).where(Move.account == account, Move.status.in_(_ON_THE_WAY))
    if to_node is not None:
        query = query.where(Move.to_node == to_node)
    return session.scalars(query.limit(1)).first() is not None


# -- what a concentrator claims --------------------------------------------------------------------
def parse(node: str, inventory: object) -> list[Claimed]:
    """The well-formed accounts of a status's inventory (the rest is logged and left out)."""
    if not isinstance(inventory, dict):
        log.warning("node %s: inventory is not an object; ignored", node)
        return []
    claims = []
    for account, info in sorted(inventory.items()):
        if not isinstance(info, dict) or not 0 < len(account) <= 64:
            log.warning("node %s: inventory entry %r malformed; ignored", node, account[:80])
            continue
        meters = {}
        listed = info.get("meters")
        for meter in listed if isinstance(listed, list) else ():
            address = meter.get("address") if isinstance(meter, dict) else None
            if isinstance(address, str) and 0 < len(address) <= 32:
                meters[address] = _text(meter.get("protocol"), 32)
        claims.append(Claimed(account, Place.of(info), meters))
    return claims


def claim(session: Session, node: str, inventory: object, now: dt.datetime) -> None:
    """Check a concentrator's signed inventory against the view (see the module's docstring)."""
    for claimed in parse(node, inventory):
        if _account_claim(session, node, claimed, now):
            _meter_claims(session, node, claimed, now)


def _account_claim(session: Session, node: str, claimed: Claimed, now: dt.datetime) -> bool:
    """Take or check the account's claim; whether `node` owns it now."""
    account = claimed.account
    owner = session.get(ReportedAccount, account)
    if owner is None:
        placed = _registry_nodes(session, account)
        if placed is not None and node not in placed:
            where = f"on {', '.join(sorted(placed))}" if placed else "in no shop"
            _mismatch(session, node, now, f"account {account}, which the registry has {where}")
            return False
        owner_node = _first_claim(session, node, account, claimed.place)
        if owner_node != node:  # another node claimed it meanwhile
            _mismatch(session, node, now, f"account {account}, which {owner_node} owns")
            return False
        log.info("node %s: account %s registered", node, account)
        return True
    if owner.node == node:
        if (owner.shop, owner.building, owner.floor) != (
            claimed.place.shop, claimed.place.building, claimed.place.floor,
        ):  # fmt: skip
            _own(session, node, account, claimed.place)
        return True
    if not _moving(session, account, node):
        _mismatch(session, node, now, f"account {account}, which {owner.node} owns")
    return False


def _meter_claims(session: Session, node: str, claimed: Claimed, now: dt.datetime) -> None:
    """The meters of an account `node` owns: those it lists (and nobody else holds) are the
    account's, those it no longer lists (swapped out) are nobody's."""
    addresses = sorted(claimed.meters)
    _release(session, MeterState.node == node, MeterState.account == claimed.account,
             MeterState.address.not_in(addresses))  # fmt: skip
    if not addresses:
        return
    held = dict(
        session.execute(
            select(MeterState.address, MeterState.node).where(
                MeterState.address.in_(addresses), MeterState.node != node,
                MeterState.account != "",
            )
        ).all()
    )  # fmt: skip
    registered = dict(
        session.execute(
            select(tables.Meter.address, tables.Meter.node).where(
                tables.Meter.address.in_(addresses), tables.Meter.node.is_not(None),
                tables.Meter.node != node,
            )
        ).all()
    )  # fmt: skip
    for address in addresses:
        elsewhere = held.get(address) or registered.get(address)
        if elsewhere is not None:
            _mismatch(session, node, now, f"meter {address} (for {claimed.account}), which is "
                      f"{elsewhere}'s")  # fmt: skip
            continue
        _meter(session, node, address, claimed.account, claimed.meters[address])


def _registry_nodes(session: Session, account: str) -> set[str] | None:
    """The nodes the registry puts `account` on (its shop's node, or its meters' nodes); None
    when the registry does not know the account."""
    known = session.get(tables.Account, account)
    if known is None:
        return None
    if known.shop_id is None:
        return set()
    shop = session.get(tables.Shop, known.shop_id)
    if shop is not None and shop.node is not None:
        return {shop.node}
    return set(
        session.scalars(
            select(tables.Meter.node).where(
                tables.Meter.shop_id == known.shop_id, tables.Meter.node.is_not(None)
            )
        )
    )


def _mismatch(session: Session, node: str, now: dt.datetime, what: str) -> None:
    detail = f"{node} claims {what}; nothing changed"
    log.warning("node %s: %s", node, detail)
    raise_alarm(session, node, MISMATCH, now, detail)
