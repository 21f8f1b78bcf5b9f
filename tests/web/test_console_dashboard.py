"""The console's dashboard through FastAPI's TestClient on every backend (SQLite, PostgreSQL):
each figure equals what the API answers for the same data (the reports' totals, the alarm
counts, the read success, the concentrators), with use today, read rounds and a concentrator
offline added by the real ingest; only staff open it, the installer is refused."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.app import create_app
from cloud.db import registry as reg
from cloud.db.engine import session_factory
from cloud.db.models import Recharge
from cloud.operations.recharges import edge_recharge_id
from cloud.people import oplog
from cloud.people.auth import Role
from cloud.registry import entities, rows
from ledger.accounts import Pocket, System, Unit, pocket_id, system_id
from ledger.ids import derive_id
from ledger.transfers import Code, TimeSource, Transfer
from ledger.wire import AckStatus
from tests.cloud.api.conftest import M1, NODE, OTHER, bearer, issue_token, transfer
from tests.cloud.fake_edge import ms
from tests.web.console_world import STAFF_USERS, add_staff_and_readings, take_offline
from tests.web.test_console_pages import log_in
from tests.web.world import NOW, World

TODAY = "2026-11-24"  # NOW's day in Shanghai
TODAY_WH, TODAY_FEN = 3_250, 272  # 3.25 kWh at 0.8365 ¥/kWh, rounded down


def _use_today() -> Transfer:
    return Transfer(
        id=derive_id("dash-today", NODE, 1), debit=pocket_id("A0001", Pocket.PREPAID),
        credit=system_id(System.ENERGY_SALES), amount=TODAY_FEN, unit=Unit.FEN,
        code=Code.CONSUME, time=(NOW - dt.timedelta(hours=2)).isoformat(),
        time_source=TimeSource.NTP,
        refs={"meter": M1, "reg_from": 121_700, "reg_to": 121_700 + TODAY_WH,
              "energy_wh": TODAY_WH},
    )  # fmt: skip


def _book_desk_recharge(world: World, payment: str) -> int:
    """The edge books a desk recharge of the world (`/recharges` made it pending): the cloud
    posts it. Returns its fen."""
    with Session(world.engine) as session:
        row = session.scalars(select(Recharge).where(Recharge.payment == payment)).one()
        command, fen, account = row.command_id, row.fen, row.account
    world.site.ingest.mark_delivered([command])
    booked = transfer(900, system_id(System.CASH_IN_TRANSIT), pocket_id(account, Pocket.PREPAID),
                      fen, Code.RECHARGE, refs={"payment": payment, "command": command},
                      transfer_id=edge_recharge_id(payment))  # fmt: skip
    result = {"command": command, "status": "applied",
              "seqs": [world.site.edges[NODE].chain.seq + 1]}  # fmt: skip
    assert world.site.upload(NODE, [booked], results=[result]).status is AckStatus.OK
    return int(fen)


def _round(number: int, minutes_ago: int, *buses: tuple[str, int, int]) -> dict[str, Any]:
    detail = [{"bus": b, "attempted": a, "read": r, "failed": a - r} for b, a, r in buses]
    return {"id": number, "t": ms(NOW - dt.timedelta(minutes=minutes_ago)), "c": "event",
            "k": "read_round", "d": {"buses": detail}}  # fmt: skip


def _bus_down(number: int) -> dict[str, Any]:
    return {"id": number, "t": ms(NOW - dt.timedelta(minutes=5)), "c": "alarm", "k": "bus_down",
            "d": {"severity": "critical", "bus": "rs485-2", "message": "port missing"}}  # fmt: skip


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    add_staff_and_readings(world)
    ack = world.site.upload(NODE, events=[
        _round(10, 40, ("rs485-1", 2, 2), ("rs485-2", 1, 0)), _round(11, 25, ("rs485-1", 2, 1)),
        _bus_down(12),
    ])  # fmt: skip
    assert ack.status is AckStatus.OK, ack
    ack = world.site.upload(OTHER, events=[_round(10, 20, ("lora-1", 4, 3))])
    assert ack.status is AckStatus.OK, ack
    take_offline(world, OTHER)
    with TestClient(create_app(world.engine, world.key, lambda: NOW)) as test_client:
        yield test_client


def _figures(html: str, tile: str) -> tuple[list[int], list[int]]:
    """The Wh and the fen figures of one tile."""
    part = re.search(rf'<div class="tile" id="{tile}">.*?</div>', html, re.S)
    assert part, tile
    return ([int(v) for v in re.findall(r'data-wh="(-?\d+)"', part[0])],
            [int(v) for v in re.findall(r'data-fen="(-?\d+)"', part[0])])  # fmt: skip


def _text(html: str, element: str) -> str:
    found = re.search(rf'id="{element}">(.*?)</dd>', html, re.S)
    assert found, element
    return re.sub(r"<[^>]+>", "", found[1]).strip()


def _totals(client: TestClient, token: str, report: str, first: str) -> dict[str, int]:
    answer = client.get(f"/reports/{report}", params={"from": first, "to": TODAY},
                        headers=bearer(token))  # fmt: skip
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["totals"])


def test_every_figure_is_the_apis(client: TestClient, world: World) -> None:
    log_in(client, STAFF_USERS[Role.FINANCE])
    before = client.get("/console/dashboard").text
    ack = world.site.upload(NODE, [_use_today()])
    assert ack.status is AckStatus.OK, ack
    paid = _book_desk_recharge(world, "DESK-WEB-1")
    page = client.get("/console/dashboard")
    assert page.status_code == 200
    html = page.text
    token = issue_token(world.engine, STAFF_USERS[Role.FINANCE])
    for tile, first in (("today", TODAY), ("month", "2026-11-01")):
        energy = _totals(client, token, "consumption", first)
        deposits = _totals(client, token, "deposits", first)
        assert _figures(html, tile) == ([energy["wh"]], [energy["fen"], deposits["net_fen"]])
    for tile in ("today", "month"):  # the use and the recharge of today, nothing else, added
        (wh_then,), (fen_then, paid_then) = _figures(before, tile)
        (wh_now,), (fen_now, paid_now) = _figures(html, tile)
        assert (wh_now - wh_then, fen_now - fen_then, paid_now - paid_then) == (
            TODAY_WH, TODAY_FEN, paid)  # fmt: skip
    assert paid == 20_000
    nodes = client.get("/concentrators", headers=bearer(token)).json()["items"]
    offline = sum(1 for n in nodes if not n["online"])
    assert offline == 1 and _text(html, "offline") == f"{offline} / {len(nodes)}"
    buses = client.get("/alarms/read-success", headers=bearer(token)).json()
    read, attempted = sum(b["read"] for b in buses), sum(b["attempted"] for b in buses)
    assert (read, attempted) == (6, 9)
    assert _text(html, "read-success") == f"66.6% {read}/{attempted} 次"
    counts = client.get("/alarms/counts", params={"cleared": "false"},
                        headers=bearer(token)).json()  # fmt: skip
    shown = re.findall(r'data-kind="([^"]+)" data-severity="([^"]+)"><td>[^<]*</td><td>[^<]*'
                       r'</td><td class="num">(\d+)<', html)  # fmt: skip
    assert shown == [(g["kind"], g["severity"], str(g["count"])) for g in counts["groups"]]
    assert "bus_down" in {g["kind"] for g in counts["groups"]}
    sites = {
        name: dict(re.findall(r'data-(offline|nodes|read|attempted|alarms)="(\d+)"', row))
        for name, row in re.findall(r'<tr data-site="([^"]+)">(.*?)</tr>', html, re.S)
    }
    assert set(sites) == {"Market", "Empty"}  # the registry's sites
    for name, shown_site in sites.items():
        buses = client.get("/alarms/read-success", params={"site": name},
                           headers=bearer(token)).json()  # fmt: skip
        opened = client.get("/alarms/counts", params={"site": name, "cleared": "false"},
                            headers=bearer(token)).json()  # fmt: skip
        assert shown_site["read"] == str(sum(b["read"] for b in buses))
        assert shown_site["attempted"] == str(sum(b["attempted"] for b in buses))
        assert shown_site["alarms"] == str(opened["total"])
    # Both concentrators serve the market's shops; the empty site has none.
    assert (sites["Market"]["nodes"], sites["Market"]["offline"]) == (str(len(nodes)), "1")
    assert (sites["Market"]["attempted"], sites["Empty"]["nodes"]) == ("9", "0")
    month = {k: int(v) for k, v in zip(("wh", "fen", "paid"), [
        *_figures(html, "month")[0], *_figures(html, "month")[1]], strict=True)}  # fmt: skip
    assert _site_money(html)["Market"] == month and _site_money(html)["Empty"] == {
        "wh": 0, "fen": 0, "paid": 0}  # every account's shop is the market's  # fmt: skip
    arrears = client.get("/console/monitoring", params={"state": "arrears", "size": 100}).text
    accounts = set(re.findall(r'data-account="([^"]+)"', arrears))
    assert _text(html, "arrears") == str(len(accounts))


def _site_money(html: str) -> dict[str, dict[str, int]]:
    names = {"wh": "wh", "sales-fen": "fen", "recharge-fen": "paid"}
    return {
        name: {
            names[k]: int(v)
            for k, v in re.findall(r'data-(wh|sales-fen|recharge-fen)="(-?\d+)"', row)
        }
        for name, row in re.findall(r'<tr data-site="([^"]+)">(.*?)</tr>', html, re.S)
    }


def _move_to_the_empty_site(world: World, account: str) -> None:
    """`account`'s shop becomes one of the empty site's (a building, floor and shop added),
    as the registry's API would change it."""
    actor = oplog.Actor("op-li", Role.OPERATOR.value, "127.0.0.1")
    with session_factory(world.engine).begin() as session:
        site = session.scalar(select(reg.Site.id).where(reg.Site.name == "Empty"))
        building = rows.create(session, entities.BUILDINGS, {"site_id": site, "name": "E1"},
                               actor, NOW)  # fmt: skip
        floor = rows.create(session, entities.FLOORS, {"building_id": building.id,
                            "name": "1F"}, actor, NOW)  # fmt: skip
        shop = rows.create(session, entities.SHOPS, {
            "floor_id": floor.id, "number": "E101", "category": "food", "area_m2": None,
            "node": None}, actor, NOW)  # fmt: skip
        rows.update(session, entities.ACCOUNTS, account, {"shop_id": shop.id}, actor, NOW)


def test_each_sites_money_is_the_apis_for_that_site(client: TestClient, world: World) -> None:
    ack = world.site.upload(NODE, [_use_today()])
    assert ack.status is AckStatus.OK, ack
    _book_desk_recharge(world, "DESK-WEB-1")
    _book_desk_recharge(world, "DESK-WEB-2")
    _move_to_the_empty_site(world, "A0001")  # its use and recharge go with it
    log_in(client, STAFF_USERS[Role.FINANCE])
    html = client.get("/console/dashboard").text
    shown = _site_money(html)
    token = issue_token(world.engine, STAFF_USERS[Role.FINANCE])
    for name in ("Market", "Empty"):
        params = {"from": "2026-11-01", "to": TODAY, "site": name}
        energy = client.get("/reports/consumption", params=params, headers=bearer(token))
        paid = client.get("/reports/deposits", params=params, headers=bearer(token))
        assert energy.status_code == paid.status_code == 200, (energy.text, paid.text)
        assert shown[name] == {"wh": energy.json()["totals"]["wh"],
                               "fen": energy.json()["totals"]["fen"],
                               "paid": paid.json()["totals"]["net_fen"]}, name  # fmt: skip
        accounts = {row["account"] for row in paid.json()["items"]}
        assert accounts == ({"A0001"} if name == "Empty" else {"A0002"}), name
    # the two sites split the whole: A0001's use and recharge are the empty site's now, A0002's
    # recharge the market's (A0002 used nothing this month)
    ((month_wh,), (month_fen, month_paid)) = _figures(html, "month")
    assert shown["Empty"] == {"wh": month_wh, "fen": month_fen, "paid": 20_000} and month_wh > 0
    assert shown["Market"] == {"wh": 0, "fen": 0, "paid": 5_000}
    assert shown["Empty"]["paid"] + shown["Market"]["paid"] == month_paid
    nowhere = client.get("/reports/consumption", params={"site": "Nowhere"},
                         headers=bearer(token))  # fmt: skip
    assert nowhere.status_code == 200 and nowhere.json()["totals"]["wh"] == 0
    too_long = client.get("/reports/deposits", params={"site": "x" * 201}, headers=bearer(token))
    assert too_long.status_code == 422 and too_long.json()["error"] == "invalid"


def test_the_charts_carry_the_same_numbers(client: TestClient, world: World) -> None:
    log_in(client, STAFF_USERS[Role.AUDITOR])
    html = client.get("/console/dashboard").text
    charts = [json.loads(unescape(c)) for c in re.findall(r'data-chart="([^"]+)"', html)]
    days, alarms, reads = charts
    token = issue_token(world.engine, STAFF_USERS[Role.AUDITOR])
    by_day = client.get("/reports/consumption", params={
        "from": "2026-11-01", "to": TODAY, "group": "day", "sort": "day"},
        headers=bearer(token)).json()["items"]  # fmt: skip
    assert days["labels"] == [f"11-{n:02d}" for n in range(1, 25)]  # every day to today
    used = {d["day"][5:]: d for d in by_day}
    assert len(used) == 2  # the 10th and today
    energy, sales = days["series"]
    for label, kwh, yuan in zip(days["labels"], energy["values"], sales["values"], strict=True):
        wh, fen = (used[label]["wh"], used[label]["fen"]) if label in used else (0, 0)
        assert (kwh, yuan) == (f"{wh // 1000}.{wh % 1000 // 100}", f"{fen // 100}.{fen % 100:02d}")
    counts = client.get("/alarms/counts", params={"cleared": "false"}, headers=bearer(token))
    assert sum(alarms["series"][0]["values"]) == counts.json()["total"]
    assert len(reads["labels"]) == 3  # rs485-1, rs485-2, lora-1
    assert "<script>" not in html


def test_staff_land_on_it_and_the_installer_on_monitoring(client: TestClient) -> None:
    for role, name in STAFF_USERS.items():
        client.cookies.clear()
        log_in(client, name)
        home = client.get("/console/", follow_redirects=False).headers["location"]
        wanted = "/console/monitoring" if role is Role.INSTALLER else "/console/dashboard"
        assert home == wanted, role
        status = client.get("/console/dashboard").status_code
        assert status == (403 if role is Role.INSTALLER else 200), role
