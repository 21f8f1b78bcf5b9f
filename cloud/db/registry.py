"""The registry: sites, buildings, floors, shops, merchants, account types, tariffs,
subsidy and alarm policies, and each concentrator's configuration version.

These tables are what operators *declare*; `accounts` and `meters` in `cloud.db.models` are the
live view of who owns what, which follows them and the commands sent
(`cloud.operations.ownership`). The registry's own accounts and meters
are therefore `registry_accounts` and `registry_meters`; `cloud.registry.site_config` turns the
registry into the configuration documents each concentrator runs on.

- `registry_sites` → `registry_buildings` → `registry_floors` → `registry_shops` (a shop's
  number is unique per site; `site_id` is copied from its floor so the database enforces it).
- `registry_accounts`: a merchant's account (id like `A0001`) in at most one shop each.
- `registry_meters`: a meter on a concentrator's bus, in a shop; unique per (node, address).
- `registry_tariffs`: `definition` is the tariff document's shape without `id` and `kind`
  (flat: `price`; tou: `prices`, `ranges`; tiered: `tiers`), prices in 0.0001 CNY/kWh.
- `registry_subsidy_policies`, `registry_alarm_rules`, `registry_arrears_policies`: one per
  site at most.
- `registry_nodes`: per concentrator, the last configuration `version` issued (only grows) and
  whether the registry changed since (`dirty`).

Areas are decimal text (`"32.5"`), never floats; money integer fen, energy integer Wh.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base


class Site(Base):
    __tablename__ = "registry_sites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    time_zone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    print_receipts: Mapped[bool] = mapped_column(Boolean, default=False)
    tariff: Mapped[str | None] = mapped_column(ForeignKey("registry_tariffs.code"))  # default


class Building(Base):
    __tablename__ = "registry_buildings"
    __table_args__ = (UniqueConstraint("site_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("registry_sites.id"))
    name: Mapped[str] = mapped_column(String(64))


class Floor(Base):
    __tablename__ = "registry_floors"
    __table_args__ = (UniqueConstraint("building_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    building_id: Mapped[int] = mapped_column(ForeignKey("registry_buildings.id"))
    name: Mapped[str] = mapped_column(String(32))


class Shop(Base):
    __tablename__ = "registry_shops"
    __table_args__ = (UniqueConstraint("site_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("registry_sites.id"))
    floor_id: Mapped[int] = mapped_column(ForeignKey("registry_floors.id"))
    number: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(64), default="general")
    area_m2: Mapped[str | None] = mapped_column(String(20))
    node: Mapped[str | None] = mapped_column(ForeignKey("concentrators.node"))


class Merchant(Base):
    __tablename__ = "registry_merchants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(32))
    wechat_openid: Mapped[str | None] = mapped_column(String(64))
    id_number: Mapped[str | None] = mapped_column(String(32))


class AccountType(Base):
    __tablename__ = "registry_account_types"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Tariff(Base):
    __tablename__ = "registry_tariffs"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(16))  # flat | tou | tiered
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)


class Account(Base):
    __tablename__ = "registry_accounts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("registry_merchants.id"))
    shop_id: Mapped[int | None] = mapped_column(ForeignKey("registry_shops.id"), unique=True)
    account_type: Mapped[str] = mapped_column(ForeignKey("registry_account_types.code"))
    tariff: Mapped[str | None] = mapped_column(ForeignKey("registry_tariffs.code"))
    credit_limit_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    keep_power: Mapped[bool] = mapped_column(Boolean, default=False)


class Meter(Base):
    __tablename__ = "registry_meters"
    __table_args__ = (UniqueConstraint("node", "address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    address: Mapped[str] = mapped_column(String(32))
    protocol: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))  # electricity | water
    bus: Mapped[str] = mapped_column(String(64))
    node: Mapped[str | None] = mapped_column(ForeignKey("concentrators.node"))
    shop_id: Mapped[int] = mapped_column(ForeignKey("registry_shops.id"))
    multiplier: Mapped[int] = mapped_column(Integer, default=1)


class SubsidyPolicy(Base):
    __tablename__ = "registry_subsidy_policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("registry_sites.id"), unique=True)
    by_type: Mapped[dict[str, Any]] = mapped_column(JSON)  # account type → Wh
    by_category: Mapped[dict[str, Any]] = mapped_column(JSON)  # shop category → Wh
    rule: Mapped[str | None] = mapped_column(String(64))  # a registered subsidy rule
    rule_params: Mapped[dict[str, Any]] = mapped_column(JSON)
    issue_day: Mapped[int] = mapped_column(Integer, default=1)
    issue_at: Mapped[str] = mapped_column(String(5), default="00:00")
    month_end: Mapped[str] = mapped_column(String(16), default="clear")  # clear | carry_over
    carry_cap_wh: Mapped[int | None] = mapped_column(BigInteger)


class AlarmRule(Base):
    __tablename__ = "registry_alarm_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("registry_sites.id"), unique=True)
    alarm_at: Mapped[str] = mapped_column(String(5), default="09:00")
    below_fen: Mapped[int | None] = mapped_column(BigInteger)
    below_days: Mapped[int | None] = mapped_column(Integer)
    windows: Mapped[list[Any]] = mapped_column(JSON)  # malicious-load windows
    overload_w: Mapped[int | None] = mapped_column(Integer)
    over_voltage_v: Mapped[int | None] = mapped_column(Integer)


class ArrearsPolicy(Base):
    __tablename__ = "registry_arrears_policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("registry_sites.id"), unique=True)
    mode: Mapped[str] = mapped_column(String(16), default="at_zero")  # at_zero | scheduled
    cut_off: Mapped[str] = mapped_column(String(5), default="10:00")
    friendly_hours: Mapped[list[Any]] = mapped_column(JSON)  # [["20:00", "08:00"], …]
    holidays: Mapped[list[Any]] = mapped_column(JSON)  # ["2026-10-01", …]


class NodeConfig(Base):
    __tablename__ = "registry_nodes"

    node: Mapped[str] = mapped_column(ForeignKey("concentrators.node"), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)  # the last version issued
    dirty: Mapped[bool] = mapped_column(Boolean, default=True)  # changed since that version
    changed: Mapped[dt.datetime | None]
    pushed: Mapped[dt.datetime | None]
    command_id: Mapped[str | None] = mapped_column(String(32))
