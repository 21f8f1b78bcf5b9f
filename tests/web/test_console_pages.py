"""The operator console through FastAPI's TestClient on every backend (SQLite, PostgreSQL):
`/docs` without a CDN, who may open the console, its session cookie and CSRF, and the
monitoring table's filters, paging and numbers held to the tables they come from."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from cloud.app import create_app
from cloud.db import models
from cloud.db.rollups import ConsumptionMonthly
from cloud.notices import sources
from cloud.people.auth import Role
from cloud.web import catalogue, console, monitoring
from cloud.web.monitoring import MeterFilters
from cloud.web.static import FILES
from ledger.accounts import Pocket, pocket_id
from tests.cloud.api.conftest import M1, M2, M3, NODE, OTHER
from tests.web.console_world import STAFF_USERS, add_staff_and_readings, take_offline
from tests.web.html import csrf_of as _csrf
from tests.web.world import MERCHANT, NOW, PASSWORD, World

VENDORED = ("vendor/swagger-ui-bundle.js", "vendor/swagger-ui.css", "vendor/favicon-32x32.png",
            "vendor/htmx.min.js", "vendor/echarts.min.js")  # fmt: skip


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    add_staff_and_readings(world)
    with TestClient(create_app(world.engine, world.key, lambda: NOW)) as test_client:
        yield test_client


def log_in(client: TestClient, user: str, password: str = PASSWORD) -> str:
    """Log in through the console's form; where it sends the browser."""
    token = _csrf(client.get("/console/login").text)
    answer = client.post("/console/login", data={"csrf": token, "user": user,
                         "password": password}, follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"])


def _meters(html: str) -> list[str]:
    return re.findall(r'data-meter="([^"]+)"', html)


def _keys(html: str) -> set[tuple[str, str]]:
    """(node, meter) of each row."""
    return {(n, m) for m, n in re.findall(r'data-meter="([^"]+)" data-node="([^"]+)"', html)}


def _stored(world: World) -> list[str]:
    with Session(world.engine) as session:
        return sorted(session.scalars(select(models.MeterState.address)))


def test_docs_loads_only_from_our_own_origin(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    urls = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert len(urls) == 3 and all(u.startswith("/static/vendor/") for u in urls), urls
    assert "http" not in docs.text.replace("http-equiv", "")
    policy = docs.headers["content-security-policy"]
    assert "script-src 'self' 'sha256-" in policy and "http" not in policy
    for url in urls:
        served = client.get(url)
        assert served.status_code == 200 and len(served.content) > 500
        assert "immutable" in served.headers["cache-control"]
    assert client.get("/redoc").status_code == 404
    assert set(VENDORED) <= set(FILES)


def test_no_login_is_sent_to_the_login_page_and_a_dead_session_is_told(
    client: TestClient,
) -> None:
    answer = client.get("/console/monitoring", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/console/login")
    client.cookies.set("vb_session", "not-a-token")
    answer = client.get("/console/monitoring", follow_redirects=False)
    assert answer.headers["location"] == "/console/login?expired=1"
    told = client.get("/console/login?expired=1")
    assert "登录已过期" in told.text


@pytest.mark.parametrize("role", list(STAFF_USERS))
def test_each_staff_role_sees_monitoring_and_only_its_menu(
    client: TestClient, world: World, role: Role
) -> None:
    assert log_in(client, STAFF_USERS[role]) == "/console/"
    own = [href for _, href, roles in console.MENU if role in roles]
    home = client.get("/console/", follow_redirects=False)
    assert home.headers["location"] == own[0]
    page = client.get("/console/monitoring")
    assert page.status_code == 200
    menu = re.search(r'<nav class="menu".*?</nav>', page.text, re.S)
    assert menu and re.findall(r'href="([^"]+)"', menu[0]) == own
    assert "/console/monitoring" in own
    assert sorted(_meters(page.text)) == _stored(world)
    # Installers see meters, not balances (as `/accounts` refuses them).
    assert ("余额(元)" in page.text) is (role is not Role.INSTALLER)
    assert "script-src 'self';" in page.headers["content-security-policy"]
    assert "<script>" not in page.text  # no inline script anywhere


def test_a_merchant_is_sent_to_its_phone_page(client: TestClient) -> None:
    assert log_in(client, MERCHANT) == "/m/"
    answer = client.get("/console/monitoring", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/m/")


def test_the_session_cookie_is_strict_and_forms_need_their_token(client: TestClient) -> None:
    token = _csrf(client.get("/console/login").text)
    refused = client.post("/console/login", data={"user": "op-1", "password": PASSWORD})
    assert refused.status_code == 403
    answer = client.post("/console/login", data={"csrf": token, "user": "op-1",
                         "password": PASSWORD}, follow_redirects=False)  # fmt: skip
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("vb_session"))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = client.get("/console/monitoring")
    assert client.post("/console/logout", data={"csrf": "forged"}).status_code == 403
    assert client.get("/console/monitoring", follow_redirects=False).status_code == 200
    out = client.post("/console/logout", data={"csrf": _csrf(page.text)},
                      follow_redirects=False)  # fmt: skip
    assert out.headers["location"] == "/console/login"
    client.cookies.set("vb_session", cookie.split(";")[0].split("=", 1)[1])
    gone = client.get("/console/monitoring", follow_redirects=False)
    assert gone.headers["location"] == "/console/login?expired=1"  # the token was revoked


def test_filters_and_paging_return_the_right_rows(client: TestClient, world: World) -> None:
    log_in(client, "op-1")
    with Session(world.engine) as session:
        places = {
            (node, meter): (floor, building)
            for node, meter, floor, building in session.execute(
                select(models.MeterState.node, models.MeterState.address,
                       models.ReportedAccount.floor,
                       models.ReportedAccount.building)
                .join(models.ReportedAccount,
                      models.ReportedAccount.account == models.MeterState.account)
            )
        }  # fmt: skip
    floor, building = places[NODE, M1]
    page = client.get("/console/monitoring", params={"building": building, "floor": floor})
    assert _keys(page.text) == {k for k, p in places.items() if p == (floor, building)}
    assert _meters(client.get("/console/monitoring?q=wang").text) == [M3]  # the merchant
    assert set(_meters(client.get("/console/monitoring?q=S101").text)) >= {M1, M2}  # the shop
    assert _meters(client.get(f"/console/monitoring?q={M2}").text) == [M2]  # the meter
    stored = _stored(world)
    pages = [client.get(f"/console/monitoring?size=2&offset={n}") for n in range(0, 6, 2)]
    assert [len(_meters(p.text)) for p in pages] == [len(stored[n : n + 2]) for n in (0, 2, 4)]
    assert sorted(m for p in pages for m in _meters(p.text)) == stored  # each once
    assert 'id="page-next"' in pages[0].text and 'id="page-previous"' in pages[1].text
    # htmx asks for the table alone
    part = client.get("/console/monitoring?q=wang", headers={"HX-Request": "true"})
    assert part.text.startswith('<div id="meters"') and "<html" not in part.text
    take_offline(world, OTHER)
    with Session(world.engine) as session:
        every = set(session.execute(select(models.MeterState.node, models.MeterState.address)))
    on_other = {(node, meter) for node, meter in every if node == OTHER}
    assert (OTHER, M3) in on_other
    assert _keys(client.get("/console/monitoring?state=offline").text) == on_other
    assert _keys(client.get("/console/monitoring?state=online").text) == every - on_other
    assert client.get("/console/monitoring?state=bogus").status_code == 422


def test_numbers_equal_the_projection_and_the_rollup(world: World) -> None:
    add_staff_and_readings(world)
    with Session(world.engine) as session:
        found = monitoring.meter_page(session, MeterFilters(), NOW)
        assert found.total == len(found.rows) >= 3
        rows = {(r.node, r.address): r for r in found.rows}
        for row in rows.values():
            if not row.account:  # a meter no account holds: no balance, no use
                assert row.balance_fen is None and row.months_wh == (0, 0, 0)
                continue
            balance = session.get(models.Balance, pocket_id(row.account, Pocket.PREPAID))
            assert row.balance_fen == (None if balance is None else sources.available(balance))
            this_month = session.scalar(
                select(func.coalesce(func.sum(ConsumptionMonthly.wh), 0)).where(
                    ConsumptionMonthly.account == row.account,
                    ConsumptionMonthly.meter == row.address,
                    ConsumptionMonthly.month == NOW.date().replace(day=1),
                )
            )
            assert row.months_wh[0] == this_month
        m1 = rows[NODE, M1]
        assert m1.energy_wh == 121_700 and m1.relay == 1
        assert (m1.voltage, m1.power, m1.pf) == (220.1, 330.0, 0.98)
        assert rows[OTHER, M3].relay == 0
        # The arrears filter (SQL) agrees with the planner's `in_arrears` on every row.
        arrears = monitoring.meter_page(session, MeterFilters(state="arrears"), NOW)
        assert {(r.node, r.address) for r in arrears.rows} == {
            k for k, r in rows.items() if r.in_arrears
        }


def test_a_meters_detail_carries_its_daily_use_for_the_chart(client: TestClient) -> None:
    log_in(client, "op-1")
    page = client.get(f"/console/meters/{M1}")
    assert page.status_code == 200 and "data-chart=" in page.text
    assert "vendor/echarts.min.js" in page.text and "console.js" in page.text
    assert client.get("/console/meters/999999999999").status_code == 404
    assert client.get("/console/meters/..%2Fetc").status_code in {404, 422}


def test_english_is_switchable(client: TestClient) -> None:
    log_in(client, "op-1")
    english = client.get("/console/monitoring?lang=en")
    assert "Monitoring" in english.text and "Balance (¥)" in english.text
    assert "Monitoring" in client.get("/console/monitoring").text  # remembered


def test_ten_thousand_meters_are_paged_in_sql_and_no_page_is_over_a_megabyte(
    client: TestClient, world: World
) -> None:
    with Session(world.engine) as session, session.begin():
        session.execute(insert(models.MeterState), [
            {"node": NODE, "address": f"9{n:011d}", "account": "", "protocol": "dlt645",
             "relay": 1, "energy_wh": n * 10}
            for n in range(10_000)
        ])  # fmt: skip
    total = len(_stored(world))
    log_in(client, "op-1")
    page = client.get(f"/console/monitoring?size={monitoring.MAX_SIZE}&offset=5000")
    assert len(_meters(page.text)) == monitoring.MAX_SIZE
    assert f"共 {total} 条" in page.text and len(page.content) < 1_000_000
    assert client.get("/console/monitoring?size=101").status_code == 422


def test_the_menu_roles_and_states_have_their_words() -> None:
    keys = {key for key, _, _ in console.MENU} | {f"role_{role.value}" for role in Role}
    keys |= {f"state_{state}" for state in monitoring.STATES}
    assert keys - set(catalogue.MESSAGES) == set()
