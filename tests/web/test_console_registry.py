"""The registry screens (`/console/registry/…`) through FastAPI's TestClient on every backend.

Each form is held to the API: what a person types is stored as the JSON API answers it back
(`GET /registry/{kind}/{key}`, the expected values written out here), with the same
operator-log entry; bad input is refused in words and changes no table (every row of every
table compared); a form without its CSRF token and a role that may not write are refused the
same way; a push issues the node's next version, shown pending until the node applies it.
"""

from __future__ import annotations

import html
import json
import re
import string
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud.app import create_app
from cloud.db import models
from cloud.db import registry as reg
from cloud.db.auth import OperatorLogEntry
from cloud.people.auth import Role
from cloud.registry import site_config
from cloud.web import catalogue
from ledger.chain import NodeKey
from tests.cloud.api.conftest import NODE, add_user, bearer, issue_token
from tests.cloud.api.test_authorization_matrix import fingerprint
from tests.web.console_world import STAFF_USERS
from tests.web.html import csrf_of
from tests.web.world import NOW, OPERATOR, PASSWORD, World

WRITERS = {Role.ADMIN, Role.OPERATOR}  # OPERATIONS: the registry's writers in the API
NODES = "/console/registry/nodes"


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    for role, name in STAFF_USERS.items():
        if role is not Role.OPERATOR:
            add_user(world.engine, name, role)
    with TestClient(create_app(world.engine, world.key, lambda: NOW)) as test_client:
        yield test_client


def log_in(client: TestClient, user: str = OPERATOR) -> None:
    token = csrf_of(client.get("/console/login").text)
    answer = client.post("/console/login", data={"csrf": token, "user": user,
                         "password": PASSWORD}, follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303, answer.text


def ids(world: World) -> dict[str, int]:
    with Session(world.engine) as session:
        sites = dict(session.execute(select(reg.Site.name, reg.Site.id)).all())
        floor = session.scalars(select(reg.Floor.id).order_by(reg.Floor.id)).first()
        building = session.scalars(select(reg.Building.id).order_by(reg.Building.id)).first()
        shop = session.scalar(select(reg.Shop.id).where(reg.Shop.number == "S102"))
        merchant = session.scalar(select(reg.Merchant.id).where(reg.Merchant.name == "Li Wei"))
    assert floor and building and shop and merchant
    return {"market": sites["Market"], "empty": sites["Empty"], "floor": floor,
            "building": building, "shop": shop, "merchant": merchant}  # fmt: skip


def post_form(client: TestClient, path: str, fields: dict[str, str], form: str = "") -> Any:
    """POST `fields` with the CSRF token of the page `form` (default: `path` itself)."""
    token = csrf_of(client.get(form or path).text)
    return client.post(path, data={"csrf": token, **fields}, follow_redirects=False)


def api_view(client: TestClient, world: World, kind: str, key: str) -> dict[str, Any]:
    """The row as the JSON API answers it (a bearer token, on the same app)."""
    token = issue_token(world.engine, OPERATOR)
    answer = client.get(f"/registry/{kind}/{key}", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def log_rows(world: World) -> list[tuple[str, str, str]]:
    with Session(world.engine) as session:
        found = session.execute(
            select(OperatorLogEntry.user, OperatorLogEntry.action, OperatorLogEntry.target)
            .order_by(OperatorLogEntry.seq)
        )  # fmt: skip
        return [tuple(r) for r in found]  # type: ignore[misc]


# A long holiday list (over 600 characters: a text area may be longer than a form's field).
HOLIDAYS = [f"2027-{m:02d}-{d:02d}" for m in (10, 5, 2, 1) for d in range(1, 16)]
# (kind, form fields (with {market}, {empty}, {floor}, {building} filled in), what the API
# answers for the stored row).
GOOD = [
    ("sites", {"name": "东区市场", "time_zone": "Asia/Shanghai", "tariff": "tou",
               "print_receipts": "on"},
     {"name": "东区市场", "time_zone": "Asia/Shanghai", "tariff": "tou", "print_receipts": True}),
    ("buildings", {"site_id": "{market}", "name": "B3"}, {"site_id": "{market}", "name": "B3"}),
    ("floors", {"building_id": "{building}", "name": "3F"},
     {"building_id": "{building}", "name": "3F"}),
    ("shops", {"floor_id": "{floor}", "number": "S150", "category": "food", "area_m2": "18.25",
               "node": NODE},
     {"floor_id": "{floor}", "number": "S150", "category": "food", "area_m2": "18.25",
      "node": NODE, "site_id": "{market}"}),
    ("merchants", {"name": "张三", "phone": "13900000000", "wechat_openid": "",
                   "id_number": "110101199001011234"},
     {"name": "张三", "phone": "13900000000", "wechat_openid": None,
      "id_number": "110101199001011234"}),
    ("account-types", {"code": "canteen", "name": "食堂"}, {"code": "canteen", "name": "食堂"}),
    ("tariffs", {"code": "flat-2027", "name": "2027", "kind": "flat", "price": "0.9125",
                 "price_peak": "1.2"},  # another kind's price is not sent
     {"code": "flat-2027", "name": "2027", "kind": "flat", "price": 9125, "prices": None,
      "ranges": None, "tiers": None}),
    ("tariffs", {"code": "tou-2027", "kind": "tou", "price_peak": "1.1", "price_flat": "0.8365",
                 "price_valley": "0.4", "ranges": "8:00-11:00 峰\n11:00-23:00 flat\n"
                 "23:00-08:00 valley", "tiers": "", "price": ""},
     {"code": "tou-2027", "name": "", "kind": "tou", "price": None, "tiers": None,
      "prices": {"peak": 11000, "flat": 8365, "valley": 4000},
      "ranges": [["08:00", "11:00", "peak"], ["11:00", "23:00", "flat"],
                 ["23:00", "08:00", "valley"]]}),
    ("tariffs", {"code": "steps-2027", "kind": "tiered", "tiers": "100 0.6\n250.5 0.75\n- 0.9"},
     {"code": "steps-2027", "name": "", "kind": "tiered", "price": None, "prices": None,
      "ranges": None, "tiers": [[100_000, 6000], [250_500, 7500], [None, 9000]]}),
    ("subsidy-policies", {"site_id": "{empty}", "by_type": "merchant = 50\noffice=12.5",
                          "by_category": "food = 80", "rule": "per_m2",
                          "rule_params": "wh_per_m2 = 1000", "issue_day": "3",
                          "issue_at": "06:30", "month_end": "carry_over",
                          "carry_cap_wh": "20"},
     {"site_id": "{empty}", "by_type": {"merchant": 50_000, "office": 12_500},
      "by_category": {"food": 80_000}, "rule": "per_m2", "rule_params": {"wh_per_m2": 1000},
      "issue_day": 3, "issue_at": "06:30", "month_end": "carry_over", "carry_cap_wh": 20_000}),
    ("alarm-rules", {"site_id": "{empty}", "alarm_at": "08:30", "below_fen": "20.5",
                     "below_days": "3", "overload_w": "9000", "over_voltage_v": "",
                     "windows": "1500 2500 0.95 1"},
     {"site_id": "{empty}", "alarm_at": "08:30", "below_fen": 2050, "below_days": 3,
      "overload_w": 9000, "over_voltage_v": None,
      "windows": [{"min_w": 1500, "max_w": 2500, "min_pf": 0.95, "max_pf": 1.0}]}),
    ("arrears-policies", {"site_id": "{empty}", "mode": "scheduled", "cut_off": "10:30",
                          "friendly_hours": "20:00-08:00\n12:00 - 13:30",
                          "holidays": "2026-10-02, 2026-10-01\n" + "\n".join(HOLIDAYS)},
     {"site_id": "{empty}", "mode": "scheduled", "cut_off": "10:30",
      "friendly_hours": [["20:00", "08:00"], ["12:00", "13:30"]],
      "holidays": ["2026-10-01", "2026-10-02", *sorted(HOLIDAYS)]}),
    ("meters", {"address": "77", "protocol": "dlt645", "bus": "rs485-3", "node": NODE,
                "shop_id": "{shop}", "multiplier": "40"},
     {"address": "000000000077", "protocol": "dlt645", "kind": "electricity", "bus": "rs485-3",
      "node": NODE, "shop_id": "{shop}", "multiplier": 40}),
    ("accounts", {"id": "A0200", "merchant_id": "{merchant}", "shop_id": "",
                  "account_type": "office", "tariff": "tou", "credit_limit_fen": "50.5",
                  "keep_power": "on"},
     {"id": "A0200", "merchant_id": "{merchant}", "shop_id": None, "account_type": "office",
      "tariff": "tou", "credit_limit_fen": 5050, "keep_power": True}),
]  # fmt: skip


ENTITY = {"account-types": "account_type", "subsidy-policies": "subsidy_policy",
          "alarm-rules": "alarm_rule", "arrears-policies": "arrears_policy"}  # fmt: skip


def _filled(value: Any, known: dict[str, int], as_int: bool) -> Any:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return known[value[1:-1]] if as_int else str(known[value[1:-1]])
    return value


def test_each_good_form_is_stored_as_the_api_stores_it_and_logged(
    client: TestClient, world: World
) -> None:
    known = ids(world)
    log_in(client)
    for kind, form, stored in GOOD:
        before = log_rows(world)
        fields = {k: _filled(v, known, as_int=False) for k, v in form.items()}
        answer = post_form(client, f"/console/registry/{kind}/new", fields)
        assert answer.status_code == 303, answer.text
        location = answer.headers["location"]
        assert location.startswith(f"/console/registry/{kind}/") and location.endswith("?saved=1")
        key = location.rsplit("/", 1)[1].removesuffix("?saved=1")
        view = api_view(client, world, kind, key)
        expected = {k: _filled(v, known, as_int=True) for k, v in stored.items()}
        assert {k: view[k] for k in stored} == expected, kind
        entity = ENTITY.get(kind, kind.removesuffix("s"))
        assert log_rows(world)[len(before) :] == [(OPERATOR, f"{entity}.create", f"{entity}:{key}")]
        shown = client.get(location)
        assert shown.status_code == 200 and 'id="saved"' in shown.text
        assert "<script>" not in shown.text


# (kind, form, where the words go: a field's name or "problem", words the page must show)
BAD = [
    ("sites", {"name": "Market", "time_zone": "Asia/Shanghai"}, "problem", "已有相同的记录"),
    ("sites", {"name": "新站", "time_zone": "Mars/Base"}, "problem", "time_zone must be"),
    ("sites", {"name": " ", "time_zone": "Asia/Shanghai"}, "name", "请填写此项"),
    ("buildings", {"site_id": "abc", "name": "B9"}, "site_id", "请从列表中选择"),
    ("buildings", {"site_id": "999999", "name": "B9"}, "problem", "引用的记录不存在"),
    ("shops", {"floor_id": "{floor}", "number": "S1 01", "category": "food"}, "number",
     "格式不对：字母、数字、- _ ."),
    ("floors", {"building_id": "{building}", "name": "楼" * 33}, "name", "最多 32 个字"),
    ("shops", {"floor_id": "{floor}", "number": "S199", "category": "food", "area_m2": "-3"},
     "area_m2", "请填写面积"),
    ("merchants", {"name": "王五", "id_number": "12"}, "id_number", "6–32 位字母或数字"),
    ("shops", {"floor_id": "{floor}", "number": "S199", "category": "food", "area_m2": "1",
               "node": "edge-9999"}, "problem", "引用的记录不存在"),
    ("tariffs", {"code": "t1", "kind": "flat", "price": "abc"}, "price", "请填写大于 0 的价格"),
    ("tariffs", {"code": "t1", "kind": "flat", "price": "0"}, "price", "请填写大于 0 的价格"),
    ("tariffs", {"code": "t1", "kind": "tou", "price_peak": "1", "price_flat": "0.5",
                 "ranges": "08:00-11:00 peak\n12:00-08:00 flat"}, "problem", "a gap at 11:00"),
    ("tariffs", {"code": "t1", "kind": "tou", "price_peak": "1", "ranges": "8点到11点 峰"},
     "ranges", "第 1 行看不懂"),
    ("tariffs", {"code": "t1", "kind": "tiered", "tiers": "100 0.6\n50 0.7\n- 0.9"}, "problem",
     "strictly ascending"),
    ("tariffs", {"code": "commercial", "kind": "flat", "price": "1"}, "problem", "已有相同的记录"),
    ("subsidy-policies", {"site_id": "{empty}", "by_type": "merchant 50", "issue_day": "1",
                          "issue_at": "00:00", "month_end": "clear"}, "by_type", "第 1 行看不懂"),
    ("subsidy-policies", {"site_id": "{empty}", "issue_day": "32", "issue_at": "00:00",
                          "month_end": "clear"}, "issue_day", "1 到 31 之间的整数"),
    ("subsidy-policies", {"site_id": "{empty}", "issue_day": "1", "issue_at": "00:00",
                          "month_end": "clear", "carry_cap_wh": "5"}, "problem",
     "carry_cap_wh needs month_end carry_over"),
    ("subsidy-policies", {"site_id": "{market}", "issue_day": "1", "issue_at": "00:00",
                          "month_end": "clear"}, "problem", "已有相同的记录"),
    ("alarm-rules", {"site_id": "{empty}", "alarm_at": "9:00"}, "alarm_at", "请填写时间"),
    ("alarm-rules", {"site_id": "{empty}", "alarm_at": "09:00", "below_fen": "1.234"},
     "below_fen", "最多2位小数"),
    ("alarm-rules", {"site_id": "{empty}", "alarm_at": "09:00", "windows": "1500 2500 0.95"},
     "windows", "第 1 行看不懂"),
    ("arrears-policies", {"site_id": "{empty}", "mode": "at_zero", "cut_off": "10:00",
                          "holidays": "2026-13-45"}, "problem", "holidays must be a date"),
    ("arrears-policies", {"site_id": "{empty}", "mode": "sometimes", "cut_off": "10:00"}, "mode",
     "请从列表中选择"),
    ("arrears-policies", {"site_id": "{empty}", "mode": "at_zero", "cut_off": "10:00",
                          "friendly_hours": "20:00"}, "friendly_hours", "第 1 行看不懂"),
    ("meters", {"address": "12ab", "protocol": "dlt645", "bus": "rs485-1", "shop_id": "{shop}",
                "multiplier": "1"}, "address", "格式不对：表上印的通信地址"),
    ("meters", {"address": "1", "protocol": "dlt645", "bus": "rs485-1", "node": NODE,
                "shop_id": "{shop}", "multiplier": "1"}, "problem", "已有相同的记录"),
    ("meters", {"address": "5", "protocol": "modbus9", "bus": "rs485-1", "shop_id": "{shop}",
                "multiplier": "1"}, "protocol", "请从列表中选择"),
    ("meters", {"address": "5", "protocol": "dlt645", "bus": "rs485-1", "shop_id": "{shop}",
                "multiplier": "0"}, "multiplier", "1 到 100000 之间的整数"),
    ("accounts", {"id": "A0001", "merchant_id": "{merchant}", "account_type": "office"},
     "problem", "已有相同的记录"),
    ("accounts", {"id": "A 9", "merchant_id": "{merchant}", "account_type": "office"}, "id",
     "格式不对：如 A0001"),
    ("accounts", {"id": "A0009", "merchant_id": "{merchant}", "account_type": "office",
                  "credit_limit_fen": "abc"}, "credit_limit_fen", "元"),
    ("accounts", {"id": "A0009", "merchant_id": "{merchant}", "account_type": "nobody"},
     "problem", "引用的记录不存在"),
]  # fmt: skip


def test_bad_input_is_refused_in_words_and_changes_nothing(
    client: TestClient, world: World
) -> None:
    known = ids(world)
    log_in(client)
    before = fingerprint(world.engine)
    for kind, form, where, words in BAD:
        fields = {k: _filled(v, known, as_int=False) for k, v in form.items()}
        answer = post_form(client, f"/console/registry/{kind}/new", fields)
        assert answer.status_code == 422, (kind, form)
        page = answer.text
        if where == "problem":
            problem = page.split('id="problem">')[1].split("</p>")[0]
            assert words in problem, (problem, words)
        else:
            error = page.split(f'data-error="{where}">')
            assert len(error) == 2, (kind, form, page)
            assert words in error[1].split("</small>")[0], (kind, form)
        for name in ("name", "code", "number", "address"):  # what was typed is shown again
            if fields.get(name, "").strip():
                assert f'name="{name}" id="f-{name}" value="{fields[name]}"' in page
    assert fingerprint(world.engine) == before


def test_the_form_needs_its_csrf_token(client: TestClient, world: World) -> None:
    log_in(client)
    before = fingerprint(world.engine)
    for token in (None, "forged"):
        data = {"name": "B9", "site_id": str(ids(world)["market"])}
        if token:
            data["csrf"] = token
        answer = client.post("/console/registry/buildings/new", data=data)
        assert answer.status_code == 403 and "页面已过期" in answer.text
    assert fingerprint(world.engine) == before


def test_a_role_that_may_not_write_sees_the_rows_but_is_refused(
    client: TestClient, world: World
) -> None:
    for role in (Role.FINANCE, Role.AUDITOR, Role.INSTALLER):
        client.cookies.clear()
        log_in(client, STAFF_USERS[role])
        before = fingerprint(world.engine)
        listed = client.get("/console/registry/tariffs")
        assert listed.status_code == 200 and "commercial" in listed.text
        assert 'id="new-row"' not in listed.text
        form = client.get("/console/registry/tariffs/commercial")
        assert form.status_code == 200 and 'id="save"' not in form.text
        assert "您的角色只能查看" in form.text
        token = csrf_of(form.text)
        for path, data in (
            ("/console/registry/tariffs/new", {"code": "x1", "kind": "flat", "price": "1"}),
            ("/console/registry/tariffs/commercial", {"kind": "flat", "price": "1"}),
        ):
            answer = client.post(path, data={"csrf": token, **data})
            assert answer.status_code == 403 and 'id="refused"' in answer.text, role
        assert fingerprint(world.engine) == before


def test_every_staff_role_sees_the_site_tree_and_writers_their_buttons(
    client: TestClient,
) -> None:
    for role, user in STAFF_USERS.items():
        client.cookies.clear()
        log_in(client, user)
        tree = client.get("/console/registry")
        assert tree.status_code == 200
        for name in ("Market", "Empty", "B1", "B2", "1F", "2F"):
            assert f">{name}<" in tree.text
        assert ("/console/registry/sites/new" in tree.text) is (role in WRITERS), role
        assert 'href="/console/registry"' in tree.text  # the menu's row


def test_editing_a_tariff_changes_it_marks_its_nodes_and_is_logged(
    client: TestClient, world: World
) -> None:
    log_in(client)
    page = client.get("/console/registry/tariffs/tou")
    assert 'value="1.1000"' in page.text and "08:00-11:00 峰\n11:00-23:00 平" in page.text
    english = client.get("/console/registry/tariffs/tou?lang=en")
    assert "08:00-11:00 peak\n11:00-23:00 flat" in english.text
    client.get("/console/registry/tariffs/tou?lang=zh")
    assert "data-day-chart=" in page.text
    fields = {"name": "分时", "kind": "tou", "price_peak": "1.2", "price_flat": "0.8365",
              "price_valley": "0.4", "ranges": "08:00-11:00 peak\n11:00-23:00 flat\n"
              "23:00-08:00 valley"}  # fmt: skip
    answer = post_form(client, "/console/registry/tariffs/tou", fields)
    assert answer.headers["location"] == "/console/registry/tariffs/tou?saved=1"
    assert api_view(client, world, "tariffs", "tou")["prices"] == {"peak": 12000, "flat": 8365,
                                                            "valley": 4000}  # fmt: skip
    assert log_rows(world)[-1] == (OPERATOR, "tariff.update", "tariff:tou")
    with Session(world.engine) as session:
        assert session.get(reg.NodeConfig, NODE).dirty  # A0002 on edge-0001 is billed by it
    # A new version starts from a copy under the next free code.
    copy = client.get("/console/registry/tariffs/new?from=tou")
    assert 'value="tou-v2"' in copy.text and "23:00-08:00 谷" in copy.text


def test_the_day_chart_has_each_periods_price_and_hours(client: TestClient) -> None:
    log_in(client)
    page = client.get("/console/registry/tariffs/tou")
    found = page.text.split('data-day-chart="')[1].split('"')[0]
    chart = json.loads(html.unescape(found))
    spans = {p["price"]: p["spans"] for p in chart["periods"]}
    assert spans == {"1.1000": [[8, 11]], "0.8365": [[11, 23]], "0.4000": [[0, 8], [23, 24]]}


def test_a_push_issues_the_next_version_pending_until_the_node_applies_it(
    client: TestClient, world: World
) -> None:
    log_in(client)
    nodes = client.get("/console/registry/nodes")
    row = nodes.text.split(f'data-node="{NODE}"')[1].split("</tr>")[0]
    assert 'data-delivery="never"' in row
    answer = post_form(client, f"/console/registry/nodes/{NODE}/push", {}, NODES)
    assert answer.status_code == 303
    shown = client.get(answer.headers["location"])
    row = shown.text.split(f'data-node="{NODE}"')[1].split("</tr>")[0]
    assert 'data-delivery="pending"' in row and ">1</td>" in row and "待确认" in row
    with Session(world.engine) as session:
        record = session.get(reg.NodeConfig, NODE)
        assert record and (record.version, record.dirty) == (1, False)
        command = session.get(models.Command, record.command_id)
        assert command and command.kind == "config" and command.args["version"] == 1
    assert log_rows(world)[-1] == (OPERATOR, "config.push", f"node:{NODE}")
    with Session(world.engine) as session, session.begin():
        session.execute(update(models.Command).where(models.Command.id == record.command_id)
                        .values(status="applied"))  # fmt: skip
    row = client.get("/console/registry/nodes").text.split(f'data-node="{NODE}"')[1]
    assert 'data-delivery="acknowledged"' in row.split("</tr>")[0]


def test_push_all_changed_and_who_may_push(client: TestClient, world: World) -> None:
    log_in(client, STAFF_USERS[Role.FINANCE])
    before = fingerprint(world.engine)
    token = csrf_of(client.get("/console/registry/nodes").text)
    refused = client.post(f"/console/registry/nodes/{NODE}/push", data={"csrf": token})
    assert refused.status_code == 403 and 'id="refused"' in refused.text
    assert fingerprint(world.engine) == before
    client.cookies.clear()
    log_in(client, STAFF_USERS[Role.INSTALLER])  # field work: installers push
    with Session(world.engine) as session:
        marked = set(session.scalars(select(reg.NodeConfig.node).where(reg.NodeConfig.dirty)))
    assert NODE in marked
    done = post_form(client, "/console/registry/nodes/push", {}, NODES)
    assert done.status_code == 200 and 'id="pushed"' in done.text
    told = done.text.split('id="pushed">')[1].split("</p>")[0]
    with Session(world.engine) as session:
        versions = {r.node: (r.version, r.dirty) for r in session.scalars(select(reg.NodeConfig))}
    for node in marked:  # each marked node pushed, or named with its problem
        pushed = versions[node] == (1, False)
        assert (f"{node} v1" in told) is pushed and (pushed or f"{node}:" in told)
    assert log_rows(world)[-1][:2] == (STAFF_USERS[Role.INSTALLER], "config.push")


def _cells(html: str) -> list[list[str]]:
    """The cells of each listed row."""
    return [re.findall(r"<td>(.*?)</td>", row, re.S)
            for row in re.findall(r"<tr data-key=.*?</tr>", html, re.S)]  # fmt: skip


def test_the_meters_list_shows_each_meters_shop_and_links_to_monitoring(
    client: TestClient, world: World
) -> None:
    log_in(client)
    rows = {cells[0]: cells for cells in _cells(client.get("/console/registry/meters").text)}
    assert rows["000000000001"][1] == "S101" and rows["000000000901"][1] == "S201"
    assert 'href="/console/meters/000000000001"' in rows["000000000001"][-1]
    meter = _meter_id(world, "000000000001")
    assert f'href="/console/registry/meters/{meter}"' in rows["000000000001"][-1]
    page = client.get("/console/registry/meters")  # meters are registered here (FIELD)
    assert 'href="/console/registry/meters/new"' in page.text
    form = client.get("/console/registry/meters/new")
    assert form.status_code == 200 and 'name="address"' in form.text
    assert '<option value="dlt645">' in form.text and ">S102 · Market / B1 / 1F<" in form.text
    empty = client.get(f"/console/registry/meters?site={ids(world)['empty']}")
    assert _cells(empty.text) == [] and "没有记录" in empty.text


def test_the_shops_of_a_floor_as_the_trees_link_lists_them(
    client: TestClient, world: World
) -> None:
    log_in(client)
    with Session(world.engine) as session:
        floors = dict(session.execute(select(reg.Shop.number, reg.Shop.floor_id)).all())
    floor = floors["S101"]
    tree = client.get("/console/registry")
    assert f'href="/console/registry/shops?floor={floor}"' in tree.text
    listed = _cells(client.get(f"/console/registry/shops?floor={floor}").text)
    assert sorted(cells[0] for cells in listed) == sorted(
        number for number, f in floors.items() if f == floor
    )


def test_the_subsidy_page_shows_what_the_category_and_area_rule_give_each_account(
    client: TestClient, world: World
) -> None:
    """Market's policy: merchant 50 kWh, food 80 kWh (S101 food 32.5 m², S102 retail 20 m²,
    S201 retail without an area, of type office); then the per-m² rule at 1 kWh per m²."""
    log_in(client)
    with Session(world.engine) as session:
        policy = session.scalars(select(reg.SubsidyPolicy.id)).one()

    def amounts() -> dict[str, str]:
        page = client.get(f"/console/registry/subsidy-policies/{policy}").text
        preview = page.split('id="subsidy-preview"')[1]
        return dict(re.findall(r'data-account="([^"]+)">.*?data-wh="(\d+)"', preview, re.S))

    assert amounts() == {"A0001": "80000", "A0002": "50000", "A0101": "0"}
    fields = {"site_id": str(ids(world)["market"]), "by_type": "merchant = 50",
              "by_category": "food = 80", "rule": "per_m2", "rule_params": "wh_per_m2 = 1000",
              "issue_day": "1", "issue_at": "00:00", "month_end": "clear"}  # fmt: skip
    path = f"/console/registry/subsidy-policies/{policy}"
    assert post_form(client, path, fields).status_code == 303
    assert amounts() == {"A0001": "32500", "A0002": "20000", "A0101": "0"}


def _meter_id(world: World, address: str) -> int:
    with Session(world.engine) as session:
        found = session.scalar(select(reg.Meter.id).where(reg.Meter.address == address))
    assert found is not None
    return int(found)


def test_a_delete_is_confirmed_then_done_as_the_api_does_it(
    client: TestClient, world: World
) -> None:
    log_in(client)
    meter = _meter_id(world, "000000000002")
    form = client.get(f"/console/registry/meters/{meter}")
    assert f'href="/console/registry/meters/{meter}/delete"' in form.text
    asked = client.get(f"/console/registry/meters/{meter}/delete")
    assert asked.status_code == 200 and 'id="confirm-delete"' in asked.text
    assert "000000000002" in asked.text and "rs485-1" in asked.text
    # without its token: refused, nothing deleted
    before = fingerprint(world.engine)
    refused = client.post(f"/console/registry/meters/{meter}/delete", data={"csrf": "forged"})
    assert refused.status_code == 403 and fingerprint(world.engine) == before
    done = post_form(client, f"/console/registry/meters/{meter}/delete", {})
    assert done.status_code == 303
    assert done.headers["location"] == f"/console/registry/meters?deleted={meter}"
    token = issue_token(world.engine, OPERATOR)
    assert client.get(f"/registry/meters/{meter}", headers=bearer(token)).status_code == 404
    assert log_rows(world)[-1] == (OPERATOR, "meter.delete", f"meter:{meter}")
    listed = client.get(done.headers["location"])
    assert listed.status_code == 200 and 'id="deleted"' in listed.text
    gone = client.get(f"/console/registry/meters/{meter}/delete")
    assert gone.status_code == 404 and "找不到这条记录" in gone.text


def test_a_row_still_named_is_not_deleted_and_the_page_says_why(
    client: TestClient, world: World
) -> None:
    log_in(client)
    before = fingerprint(world.engine)
    # the tariff `tou` is A0002's; the account type `office` is A0101's; S102 has a meter
    shop = str(ids(world)["shop"])
    for kind, key in (("tariffs", "tou"), ("account-types", "office"), ("shops", shop)):
        answer = post_form(client, f"/console/registry/{kind}/{key}/delete", {})
        assert answer.status_code == 409, (kind, answer.text)
        problem = answer.text.split('id="problem">')[1].split("</p>")[0]
        assert "没有删除：还有其他记录引用它" in problem, problem
    assert fingerprint(world.engine) == before


def test_an_account_with_money_is_not_deleted_and_one_without_history_is(
    client: TestClient, world: World
) -> None:
    log_in(client)
    before = fingerprint(world.engine)
    answer = post_form(client, "/console/registry/accounts/A0002/delete", {})
    assert answer.status_code == 409, answer.text
    problem = html.unescape(answer.text.split('id="problem">')[1].split("</p>")[0])
    assert "没有删除：这个账户还有余额或账目" in problem, problem
    assert "account 'A0002' still holds subsidy 50000 Wh, grace 2000 Wh" in problem
    assert "has 1 recharge(s) or payment(s) not yet settled" in problem  # the desk's ¥50
    assert fingerprint(world.engine) == before
    # A0101 (the other node's) was never booked to: it is deleted as the API deletes it
    done = post_form(client, "/console/registry/accounts/A0101/delete", {})
    assert done.status_code == 303, done.text
    assert log_rows(world)[-1] == (OPERATOR, "account.delete", "account:A0101")


def test_a_role_that_may_not_write_may_not_delete(client: TestClient, world: World) -> None:
    log_in(client, STAFF_USERS[Role.FINANCE])
    asked = client.get("/console/registry/tariffs/steps/delete")
    assert asked.status_code == 200 and 'id="confirm-delete"' not in asked.text
    before = fingerprint(world.engine)
    answer = post_form(client, "/console/registry/tariffs/steps/delete", {},
                       form="/console/registry/tariffs")  # fmt: skip
    assert answer.status_code == 403 and 'id="refused"' in answer.text
    assert fingerprint(world.engine) == before


def test_a_concentrator_is_registered_by_the_apis_route(client: TestClient, world: World) -> None:
    log_in(client)
    page = client.get(NODES)
    assert 'id="register-node"' in page.text
    public = NodeKey.from_seed(b"9" * 32).public_key.public_bytes_raw().hex()
    answer = post_form(client, f"{NODES}/register",
                       {"node": "edge-0042", "name": "北区", "public_key": public},
                       form=NODES)  # fmt: skip
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"{NODES}?registered=edge-0042"
    token = issue_token(world.engine, OPERATOR)
    view = client.get("/concentrators/edge-0042", headers=bearer(token)).json()
    assert (view["name"], view["public_key"], view["status"]) == ("北区", public, "active")
    assert log_rows(world)[-1] == (OPERATOR, "concentrator.register", "node:edge-0042")
    shown = client.get(answer.headers["location"])
    assert 'id="registered"' in shown.text and 'data-node="edge-0042"' in shown.text
    # refused: a key that is no key, a bad id, another key for a known node
    before = fingerprint(world.engine)
    other = NodeKey.from_seed(b"8" * 32).public_key.public_bytes_raw().hex()
    for fields, status, where, words in (
        ({"node": "edge-0043", "public_key": "ab" * 32 + "zz"}, 422, "problem", "public_key"),
        ({"node": "edge 43", "public_key": public}, 422, "node", "格式不对"),
        ({"node": "edge-0042", "public_key": other}, 409, "problem", "已用另一个公钥登记"),
    ):
        answer = post_form(client, f"{NODES}/register", fields, form=NODES)
        assert answer.status_code == status, (fields, answer.text)
        if where == "problem":
            assert words in answer.text.split('id="register-problem">')[1].split("</p>")[0]
        else:
            assert words in answer.text.split(f'data-error="{where}">')[1].split("</small>")[0]
        assert f'value="{fields["node"]}"' in answer.text
    assert fingerprint(world.engine) == before
    # an installer registers concentrators too (FIELD); finance may not
    client.cookies.clear()
    log_in(client, STAFF_USERS[Role.FINANCE])
    assert 'id="register-node"' not in client.get(NODES).text
    before = fingerprint(world.engine)
    refused = post_form(client, f"{NODES}/register", {"node": "edge-0044", "public_key": other},
                        form=NODES)  # fmt: skip
    assert refused.status_code == 403 and fingerprint(world.engine) == before


def _state_of(page: str, node: str) -> tuple[str, str]:
    """(the node's state, its claim's state) as the concentrators list shows them."""
    row = page.split(f'data-node="{node}"')[1].split("</tr>", maxsplit=1)[0]
    state = re.search(r'data-state="(\w+)"', row)
    claim = re.search(r'data-claim="(\w*)"', row)
    assert state and claim, row
    return state[1], claim[1]


def test_a_node_is_preassigned_by_the_apis_route(client: TestClient, world: World) -> None:
    log_in(client)
    market = str(ids(world)["market"])
    page = client.get(NODES)
    assert 'id="preassign-node"' in page.text and f'<option value="{market}">Market' in page.text
    assert _state_of(page.text, NODE) == ("active", "")
    sent = {"site": market, "node": "edge-0050", "name": "东区"}
    answer = post_form(client, f"{NODES}/preassign", sent, form=NODES)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"{NODES}?preassigned=edge-0050"
    token = issue_token(world.engine, OPERATOR)
    view = client.get("/concentrators/edge-0050", headers=bearer(token)).json()
    assert (view["name"], view["status"], view["public_key"]) == ("东区", "reserved", "")
    assert log_rows(world)[-1] == (OPERATOR, "concentrator.preassign", "node:edge-0050")
    shown = client.get(answer.headers["location"])
    assert 'id="preassigned"' in shown.text and "已预留集中器编号 edge-0050" in shown.text
    assert _state_of(shown.text, "edge-0050") == ("reserved", "")
    assert "未发放" in shown.text.split('data-node="edge-0050"')[1].split("</tr>", maxsplit=1)[0]
    # a claim bound to it (the installers' route, as voltbook-fw calls it): shown open
    claim = client.post("/claims", json={"site": int(market), "node": "edge-0050", "valid_s": 3600},
                        headers=bearer(token))  # fmt: skip
    assert claim.status_code == 201, claim.text
    assert _state_of(client.get(NODES).text, "edge-0050") == ("reserved", "open")
    # refused, nothing changed: a bad id, a node that exists, a site that does not
    before = fingerprint(world.engine)
    for fields, status, where, words in (
        ({"site": market, "node": "edge 51"}, 422, "node", "格式不对"),
        ({"site": market, "node": NODE}, 409, "problem", NODE),
        ({"site": "999999", "node": "edge-0051"}, 404, "problem", "999999"),
    ):
        answer = post_form(client, f"{NODES}/preassign", fields, form=NODES)
        assert answer.status_code == status, (fields, answer.text)
        if where == "problem":
            assert words in answer.text.split('id="preassign-problem">')[1].split("</p>")[0]
        else:
            assert words in answer.text.split(f'data-error="{where}">')[1].split("</small>")[0]
        assert f'value="{fields["node"]}"' in answer.text
    assert fingerprint(world.engine) == before
    # operators and admins pre-assign (as the API); an installer may not
    client.cookies.clear()
    log_in(client, STAFF_USERS[Role.INSTALLER])
    assert 'id="preassign-node"' not in client.get(NODES).text
    before = fingerprint(world.engine)
    refused = post_form(client, f"{NODES}/preassign", {"site": market, "node": "edge-0052"},
                        form=NODES)  # fmt: skip
    assert refused.status_code == 403 and fingerprint(world.engine) == before


def _problems_of(page: str, node: str) -> str:
    row = page.split(f'data-node="{node}"')[1].split("</tr>", maxsplit=1)[0]
    return row.split('class="problems">')[1].split("</td>")[0]


def test_a_nodes_configuration_problems_are_said_in_the_pages_language(
    client: TestClient, world: World
) -> None:
    """A node without meters: its problem is the catalogue's words, Chinese by default and
    English when switched, in the list and when its push is refused (nothing is issued)."""
    log_in(client)
    public = NodeKey.from_seed(b"7" * 32).public_key.public_bytes_raw().hex()
    answer = post_form(client, f"{NODES}/register", {"node": "edge-0045", "public_key": public},
                       form=NODES)  # fmt: skip
    assert answer.status_code == 303, answer.text
    zh = "<small>edge-0045 上没有电表：没有可抄读、可计费的表</small><br>"
    assert _problems_of(client.get(NODES).text, "edge-0045") == zh
    before = fingerprint(world.engine)
    refused = post_form(client, f"{NODES}/edge-0045/push", {}, NODES)
    assert refused.status_code == 422
    said = refused.text.split('id="problem">')[1].split("</p>")[0]
    assert said == "没有下发：edge-0045 上没有电表：没有可抄读、可计费的表"
    assert fingerprint(world.engine) == before
    en = "<small>No meter is on edge-0045: nothing to read or bill</small><br>"
    assert _problems_of(client.get(f"{NODES}?lang=en").text, "edge-0045") == en


def test_every_configuration_problem_has_words_in_both_languages() -> None:
    def names(words: str) -> list[str]:
        return [name for _, name, _, _ in string.Formatter().parse(words) if name]

    for code, english in site_config.PROBLEM_WORDS.items():
        zh, en = catalogue.MESSAGES[f"cfg_problem_{code}"]
        assert sorted(names(zh)) == sorted(names(en)) == sorted(names(english)), code
