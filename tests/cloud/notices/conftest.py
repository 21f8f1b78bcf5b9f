"""The notices under test: a small registry written through the registry's own service, the
providers played by the stand-ins on loopback (`cloud.notices.wechat_oa_standin`,
`cloud.notices.sms_standin`) and the real senders talking HTTP to them.

The world: site Market (Asia/Shanghai) with shops S1, S2, S3, S4; merchant Wang (openid oWang,
phone 13900000001) holds A1 in S1 and A4 in S4, Zhao (phone only) A2 in S2, Sun (openid only)
A3 in S3. An alarm rule says low below 20.00 yuan or 3 days; arrears are cut at 10:00.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cloud.config import NOTICE_KINDS, NoticesSettings
from cloud.db.engine import session_factory
from cloud.db.models import Balance
from cloud.notices.channels import HttpSmsSender
from cloud.notices.service import Channels, NoticeService
from cloud.notices.sms_standin import SmsStandin
from cloud.notices.wechat_oa import OaAccount, TemplateSender
from cloud.notices.wechat_oa_standin import OaStandin
from cloud.people.oplog import Actor
from cloud.registry import entities
from cloud.registry import rows as registry
from ledger.accounts import Pocket, pocket_id
from tests.cloud.conftest import Clock

ME = Actor("op-li", "operator")
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
# 2026-12-07 09:30 in Shanghai: after the 09:00 round, before the 10:00 cut-off
MORNING = dt.datetime(2026, 12, 7, 1, 30, tzinfo=dt.UTC)
TEMPLATES = {kind: f"T-{kind}" for kind in NOTICE_KINDS}


def add(session: Session, entity: registry.Entity, **values: Any) -> Any:
    return registry.create(session, entity, values, ME, MORNING)


@dataclass
class World:
    site: int
    shops: dict[str, int]
    merchants: dict[str, int]


def make_world(session: Session) -> World:
    add(session, entities.ACCOUNT_TYPES, code="merchant", name="商户")
    site = add(session, entities.SITES, name="Market", time_zone="Asia/Shanghai",
               print_receipts=False, tariff=None)  # fmt: skip
    building = add(session, entities.BUILDINGS, site_id=site.id, name="B1")
    floor = add(session, entities.FLOORS, building_id=building.id, name="1F")
    shops = {n: add(session, entities.SHOPS, floor_id=floor.id, number=n, node=None).id
             for n in ("S1", "S2", "S3", "S4", "S9")}  # fmt: skip
    merchants = {
        "wang": add(session, entities.MERCHANTS, name="Wang", phone="13900000001",
                    wechat_openid="oWang", id_number=None).id,
        "zhao": add(session, entities.MERCHANTS, name="Zhao", phone="13900000002",
                    wechat_openid=None, id_number=None).id,
        "sun": add(session, entities.MERCHANTS, name="Sun", phone=None,
                   wechat_openid="oSun", id_number=None).id,
    }  # fmt: skip
    for account, shop, merchant in (("A1", "S1", "wang"), ("A2", "S2", "zhao"),
                                    ("A3", "S3", "sun"), ("A4", "S4", "wang")):  # fmt: skip
        add(session, entities.ACCOUNTS, id=account, merchant_id=merchants[merchant],
            shop_id=shops[shop], account_type="merchant", tariff=None, credit_limit_fen=0,
            keep_power=False)  # fmt: skip
    add(session, entities.ALARM_RULES, site_id=site.id, alarm_at="09:00", below_fen=2000,
        below_days=3, overload_w=None, over_voltage_v=None, windows=[])  # fmt: skip
    add(session, entities.ARREARS_POLICIES, site_id=site.id, mode="scheduled", cut_off="10:00",
        friendly_hours=[["20:00", "08:00"]], holidays=[])  # fmt: skip
    return World(site.id, shops, merchants)


def set_prepaid(session: Session, account: str, fen: int) -> None:
    """The `balances` projection of an account's prepaid pocket, as if the ledger booked it."""
    pocket = pocket_id(account, Pocket.PREPAID)
    row = session.get(Balance, pocket) or Balance(account=pocket, unit="fen", debits_pending=0,
                                                  debits_posted=0, credits_pending=0,
                                                  credits_posted=0)  # fmt: skip
    row.credits_posted, row.debits_posted = max(fen, 0), max(-fen, 0)
    session.add(row)


@pytest.fixture
def world(sessions: sessionmaker[Session]) -> World:
    with sessions.begin() as session:
        return make_world(session)


@pytest.fixture
def oa() -> Iterator[OaStandin]:
    with OaStandin(templates=set(TEMPLATES.values())) as standin:
        yield standin


@pytest.fixture
def sms() -> Iterator[SmsStandin]:
    with SmsStandin() as standin:
        yield standin


def channels_for(oa: OaStandin, sms: SmsStandin | None) -> Channels:
    wechat = TemplateSender(OaAccount(oa.url, oa.appid, lambda: oa.secret))
    return Channels(wechat=wechat, templates=dict(TEMPLATES), page_url="https://pay.example/m/",
                    sms=None if sms is None else HttpSmsSender(sms.url))  # fmt: skip


@pytest.fixture
def clock() -> Clock:
    return Clock(MORNING)


@pytest.fixture
def service(
    engine: Engine, sessions: sessionmaker[Session], oa: OaStandin, sms: SmsStandin, clock: Clock
) -> Iterator[NoticeService]:
    """As the server makes it: the planner reads in read-only sessions."""
    channels = channels_for(oa, sms)
    readers = session_factory(engine, read_only=True)
    yield NoticeService(sessions, NoticesSettings(), channels, clock, readers=readers)
    channels.close()
