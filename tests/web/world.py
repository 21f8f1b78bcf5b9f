"""A market for the pages' tests, put in a migrated database by the real domain code: the
registry of `tests/cloud/registry_world.py` (A0001 of merchant Li Wei on the site's flat
tariff 0.8365 ¥/kWh, A0002 made merchant Wang Fang's, on time-of-use), the two concentrators
of the API tests with their inventory and the month's opening uploaded through the real
ingest, half a year of metered consumption for the chart, alarms for both accounts, a desk
recharge with its receipt for each, a power-off notice for each shop, and users: a merchant
for A0001, one for A0002, an operator. No mocks of our own code.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from cloud.db.engine import session_factory
from cloud.ingest import concentrators
from cloud.ingest.handler import Ingest
from cloud.notices import power_off
from cloud.notices.power_off import PowerOff, Reason
from cloud.operations import receipts, recharges, records
from cloud.people import oplog
from cloud.people.auth import Role
from cloud.registry import entities
from cloud.registry import rows as registry
from ledger.accounts import Pocket, System, Unit, pocket_id, system_id
from ledger.chain import NodeKey
from ledger.ids import derive_id
from ledger.transfers import Code, TimeSource, Transfer
from ledger.wire import AckStatus
from tests.cloud.api.conftest import (
    EDGE_KEYS,
    M1,
    M3,
    NODE,
    PASSWORD,
    Site,
    add_user,
    opening_transfers,
)
from tests.cloud.fake_edge import T0, FakeEdge, ms
from tests.cloud.registry_world import ME, make_registry

SH = dt.timezone(dt.timedelta(hours=8))
NOW = T0 + dt.timedelta(hours=1)  # 2026-11-24 17:00 in Shanghai: the flat price applies
SALES = system_id(System.ENERGY_SALES)
MERCHANT, OTHER_MERCHANT, OPERATOR = "shop-a1", "shop-a2", "op-1"
# Wh A0001 used per month (Jun … Nov), 0.8365 ¥/kWh each, booked on the edge's chain.
USE_WH = {6: 42_000, 7: 55_500, 8: 61_200, 9: 48_000, 10: 39_900, 11: 21_300}
__all__ = ["NOW", "PASSWORD", "World", "build_world"]


@dataclass
class World:
    engine: Engine
    key: NodeKey
    site: Site
    receipts: dict[str, str]  # account → the number of its desk recharge's receipt


def _use(month: int, wh: int) -> Transfer:
    fen = wh * 8365 // 100_000
    return Transfer(
        id=derive_id("web-use", NODE, month), debit=pocket_id("A0001", Pocket.PREPAID),
        credit=SALES, amount=fen, unit=Unit.FEN, code=Code.CONSUME,
        time=dt.datetime(2026, month, 10, 12, tzinfo=SH).isoformat(),
        time_source=TimeSource.NTP,
        refs={"meter": M1, "reg_from": 0, "reg_to": wh, "energy_wh": wh},
    )  # fmt: skip


def _june_recharge() -> Transfer:
    return Transfer(
        id=derive_id("web-recharge", NODE, 6), debit=system_id(System.CASH_IN_TRANSIT),
        credit=pocket_id("A0001", Pocket.PREPAID), amount=50_000, unit=Unit.FEN,
        code=Code.RECHARGE, time=dt.datetime(2026, 6, 1, 9, tzinfo=SH).isoformat(),
        time_source=TimeSource.NTP, refs={"payment": "DESK-JUNE"},
    )  # fmt: skip


def _alarm(number: int, kind: str, account: str, meter: str, when: dt.datetime) -> dict[str, Any]:
    return {"id": number, "t": ms(when), "c": "alarm", "k": kind, "m": meter, "a": account,
            "d": {"fen": 1500}}  # fmt: skip


def _desk_recharge(engine: Engine, key: NodeKey, account: str, fen: int, payment: str) -> str:
    """A cash recharge at the desk, as `POST /recharges` makes it, with its receipt."""
    actor = oplog.Actor(OPERATOR, Role.OPERATOR.value, "127.0.0.1")
    with session_factory(engine).begin() as session:
        row = recharges.recharge(session, account=account, fen=fen, method="cash",
                                 operator=OPERATOR, payment=payment, key=key, now=NOW)  # fmt: skip
        session.flush()
        records.record(session, actor, "recharge.create", f"account:{account}", NOW, new=True,
                       voucher=recharges.voucher(row),
                       after=lambda _r: {"payment": payment})  # fmt: skip
        found = receipts.find(session, "recharge", payment)
        assert found is not None
        return found.number


def build_world(engine: Engine, key: NodeKey) -> World:
    """The market (see the module docstring) in `engine`, already migrated."""
    with session_factory(engine).begin() as session:
        for node, edge_key in EDGE_KEYS.items():
            concentrators.register(session, node, edge_key.public_key, name=f"Site {node}", now=T0)
        make_registry(session, register=False)
        # A0002 is another merchant's (the registry world gives Li Wei all three accounts).
        wang = registry.create(session, entities.MERCHANTS, {"name": "Wang Fang",
                               "phone": "13900000000", "wechat_openid": None,
                               "id_number": None}, ME, T0)  # fmt: skip
        registry.update(session, entities.ACCOUNTS, "A0002", {"merchant_id": wang.id}, ME, T0)
    edges = {node: FakeEdge(node, edge_key) for node, edge_key in EDGE_KEYS.items()}
    site = Site(engine, Ingest(engine, key, lambda: NOW), key, edges)
    for node in EDGE_KEYS:
        site.status(node)
    events = [
        _alarm(1, "low_balance", "A0001", M1, T0 - dt.timedelta(hours=3)),
        _alarm(2, "malicious_load", "A0002", M3, T0 - dt.timedelta(hours=2)),
    ]
    transfers = [*opening_transfers(NODE), _june_recharge(),
                 *(_use(m, wh) for m, wh in USE_WH.items())]  # fmt: skip
    ack = site.upload(NODE, transfers, events=events)
    assert ack.status is AckStatus.OK, ack
    numbers = {
        "A0001": _desk_recharge(engine, key, "A0001", 20_000, "DESK-WEB-1"),
        "A0002": _desk_recharge(engine, key, "A0002", 5_000, "DESK-WEB-2"),
    }
    actor = oplog.Actor(OPERATOR, Role.OPERATOR.value, "127.0.0.1")
    with session_factory(engine).begin() as session:
        for shop, reason, note in (("S101", Reason.MAINTENANCE, "更换配电柜"),
                                   ("S102", Reason.VIOLATION, "违规使用电热器具")):  # fmt: skip
            order = PowerOff(reason, note, (shop,), NOW + dt.timedelta(days=1, hours=1),
                             NOW + dt.timedelta(days=1, hours=3))  # fmt: skip
            power_off.issue(session, order, actor, NOW - dt.timedelta(minutes=30))
    add_user(engine, MERCHANT, Role.MERCHANT, "A0001")
    add_user(engine, OTHER_MERCHANT, Role.MERCHANT, "A0002")
    add_user(engine, OPERATOR, Role.OPERATOR)
    return World(engine, key, site, numbers)
