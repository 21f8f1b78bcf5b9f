"""A registry to test with, written through the registry's own service (`cloud.registry.rows`) in
one transaction: site "Market" (default tariff `commercial`) with buildings B1/B2, shops S101
(food, 32.5 m²) and S102 (retail, 20 m²) on edge-0001 and S201 (retail) on edge-0002, merchant
Li Wei with accounts A0001, A0002 (tariff `tou`), A0101 (type office, tariff `steps`), four
meters (000000000001/2 and Modbus 3 on edge-0001, 000000000901 on edge-0002), a subsidy policy
(merchant 50 kWh, food 80 kWh, carry over up to 20 kWh), an alarm rule and an arrears policy;
and a site "Empty" with nothing in it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from cloud.ingest import concentrators
from cloud.people.oplog import Actor
from cloud.registry import entities
from cloud.registry import rows as registry
from ledger.chain import NodeKey
from tests.cloud.fake_edge import T0

NODE, OTHER = "edge-0001", "edge-0002"
ME = Actor("op-li", "operator")


def add(session: Session, entity: registry.Entity, **values: Any) -> Any:
    return registry.create(session, entity, values, ME, T0)


def vacant_shops(session: Session, shops: dict[str, str]) -> dict[str, int]:
    """Registry shops (number → node) on a site of their own, holding no account: where a
    tenant the registry does not know may move (`cloud.operations.moves`). Number → shop id."""
    site = add(session, entities.SITES, name="Vacant", time_zone="Asia/Shanghai",
               print_receipts=False, tariff=None)  # fmt: skip
    building = add(session, entities.BUILDINGS, site_id=site.id, name="V")
    floor = add(session, entities.FLOORS, building_id=building.id, name="1F")
    return {
        number: add(session, entities.SHOPS, floor_id=floor.id, number=number, node=node).id
        for number, node in shops.items()
    }


def make_registry(session: Session, *, register: bool = True) -> dict[str, Any]:
    """A site with two buildings, three shops on two concentrators, accounts, meters, tariffs
    and every policy."""
    if register:
        for node in (NODE, OTHER):
            concentrators.register(session, node, NodeKey.generate().public_key, now=T0)
    add(session, entities.TARIFFS, code="commercial", name="商业", kind="flat", price=8365)
    add(session, entities.TARIFFS, code="tou", kind="tou",
        prices={"peak": 11000, "flat": 8365, "valley": 4000},
        ranges=[["08:00", "11:00", "peak"], ["11:00", "23:00", "flat"],
                ["23:00", "08:00", "valley"]])  # fmt: skip
    add(session, entities.TARIFFS, code="steps", kind="tiered",
        tiers=[[100_000, 6000], [None, 9000]])  # fmt: skip
    add(session, entities.ACCOUNT_TYPES, code="merchant", name="商户")
    add(session, entities.ACCOUNT_TYPES, code="office", name="办公")
    site = add(session, entities.SITES, name="Market", time_zone="Asia/Shanghai",
               print_receipts=True, tariff="commercial")  # fmt: skip
    empty = add(session, entities.SITES, name="Empty", time_zone="Asia/Urumqi",
                print_receipts=False, tariff=None)  # fmt: skip
    b1 = add(session, entities.BUILDINGS, site_id=site.id, name="B1")
    b2 = add(session, entities.BUILDINGS, site_id=site.id, name="B2")
    f1 = add(session, entities.FLOORS, building_id=b1.id, name="1F")
    f2 = add(session, entities.FLOORS, building_id=b2.id, name="2F")
    shops = {
        "S101": add(session, entities.SHOPS, floor_id=f1.id, number="S101", category="food",
                    area_m2="32.5", node=NODE),
        "S102": add(session, entities.SHOPS, floor_id=f1.id, number="S102", category="retail",
                    area_m2=20, node=NODE),
        "S201": add(session, entities.SHOPS, floor_id=f2.id, number="S201", category="retail",
                    area_m2=None, node=OTHER),
    }  # fmt: skip
    li = add(session, entities.MERCHANTS, name="Li Wei", phone="13800000000",
             wechat_openid=None, id_number="110101199003071234")  # fmt: skip
    for account, shop, kind, tariff in (
        ("A0001", "S101", "merchant", None),
        ("A0002", "S102", "merchant", "tou"),
        ("A0101", "S201", "office", "steps"),
    ):
        add(session, entities.ACCOUNTS, id=account, merchant_id=li.id, shop_id=shops[shop].id,
            account_type=kind, tariff=tariff, credit_limit_fen=0, keep_power=False)  # fmt: skip
    meters = {}
    for address, protocol, bus, shop, node in (
        ("1", "dlt645", "rs485-1", "S101", NODE),
        ("000000000002", "dlt645", "rs485-1", "S101", NODE),
        ("3", "sdm120", "rs485-2", "S102", NODE),
        ("901", "dlt645", "rs485-1", "S201", OTHER),
    ):
        meters[address] = add(session, entities.METERS, address=address, protocol=protocol,
                              bus=bus, node=node, shop_id=shops[shop].id, multiplier=1)  # fmt: skip
    add(session, entities.SUBSIDY_POLICIES, site_id=site.id, by_type={"merchant": 50_000},
        by_category={"food": 80_000}, rule=None, issue_day=1, issue_at="00:00",
        month_end="carry_over", carry_cap_wh=20_000)  # fmt: skip
    add(session, entities.ALARM_RULES, site_id=site.id, alarm_at="09:00", below_fen=2000,
        below_days=3, overload_w=10_000, over_voltage_v=264,
        windows=[{"min_w": 1500, "max_w": 2500, "min_pf": 0.95, "max_pf": 1.0}])  # fmt: skip
    add(session, entities.ARREARS_POLICIES, site_id=site.id, mode="scheduled", cut_off="10:00",
        friendly_hours=[["20:00", "08:00"]], holidays=["2026-10-01"])  # fmt: skip
    return {"site": site.id, "empty": empty.id, "buildings": (b1.id, b2.id),
            "floors": (f1.id, f2.id), "shops": {k: s.id for k, s in shops.items()},
            "meters": {k: m.id for k, m in meters.items()}, "merchant": li.id}  # fmt: skip
