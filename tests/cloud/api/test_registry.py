"""`/registry/…` and `/concentrators/{node}/config`: CRUD of every kind of registry row on both
databases, filters, pages and sorting, refusals that change nothing (unknown references, bad
values, duplicates, rows still referenced, roles), the operator log, and configuration pushed
as signed CONFIG commands whose version grows."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from cloud.db import registry as tables
from cloud.db.auth import OperatorLogEntry
from cloud.db.engine import session_factory
from cloud.db.models import Command
from cloud.payments.states import OrderState
from cloud.people import oplog
from cloud.people.auth import Role
from cloud.registry import holdings
from ledger.accounts import Pocket, System, pocket_id, system_id
from ledger.cloud_trust import public_hex
from ledger.signed import CommandKind, open_command, trusted
from ledger.transfers import Code
from ledger.wire import AckStatus
from tests.cloud.api.conftest import NODE, OTHER, Site, bearer, transfer
from tests.cloud.registry_world import make_registry

TABLES = (
    tables.Site, tables.Building, tables.Floor, tables.Shop, tables.Merchant, tables.AccountType,
    tables.Tariff, tables.Account, tables.Meter, tables.SubsidyPolicy, tables.AlarmRule,
    tables.ArrearsPolicy, tables.NodeConfig,
)  # fmt: skip
TOU = {
    "code": "tou",
    "kind": "tou",
    "prices": {"peak": 11000, "flat": 8365, "valley": 4000},
    "ranges": [
        ["08:00", "11:00", "peak"],
        ["11:00", "23:00", "flat"],
        ["23:00", "08:00", "valley"],
    ],
}


def ok(answer: Any, code: int = 200) -> Any:
    assert answer.status_code == code, answer.text
    return answer.json() if answer.content else None


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every registry row, the operator log and the commands: what a refusal must not touch."""
    with session_factory(engine)() as session:
        out = {
            t.__tablename__: sorted(map(tuple, session.execute(select(t.__table__)).all()), key=str)
            for t in TABLES
        }
        out["oplog"] = [(session.scalar(select(func.count()).select_from(OperatorLogEntry)),)]
        out["commands"] = [(session.scalar(select(func.count()).select_from(Command)),)]
        return out


def log_tail(engine: Engine, n: int) -> list[OperatorLogEntry]:
    with session_factory(engine)() as session:
        assert oplog.verify(session).ok
        rows = session.scalars(select(OperatorLogEntry).order_by(OperatorLogEntry.seq.desc()))
        return list(reversed(rows.fetchmany(n)))


@pytest.fixture
def reg(client: TestClient, engine: Engine) -> dict[str, Any]:
    """The registry of `tests.cloud.registry_world` over the `site` fixture's concentrators
    (written through the service in one transaction: fast; the endpoints are tested below)."""
    with session_factory(engine).begin() as session:
        return make_registry(session, register=False)


def test_create_read_list_change_delete_every_kind(
    client: TestClient, engine: Engine, reg: dict[str, Any]
) -> None:
    b1, f1 = reg["buildings"][0], reg["floors"][0]
    kinds = [
        ("sites", {"name": "Annex"}, {"print_receipts": True, "time_zone": "Asia/Harbin"}),
        ("buildings", {"site_id": reg["site"], "name": "B9"}, {"name": "B9a"}),
        ("floors", {"building_id": b1, "name": "9F"}, {"name": "9Fa"}),
        ("shops", {"floor_id": f1, "number": "S199", "area_m2": "10.5"},
         {"category": "food", "area_m2": 12}),
        ("merchants", {"name": "Wang Fang"}, {"phone": "13900000000", "wechat_openid": "oX1"}),
        ("account-types", {"code": "school", "name": "学校"}, {"name": "School"}),
        ("tariffs", {"code": "night", "kind": "flat", "price": 5000},
         {"kind": "tiered", "tiers": [[100_000, 6000], [None, 9000]]}),
        ("accounts", {"id": "A0999", "merchant_id": reg["merchant"], "account_type": "merchant"},
         {"credit_limit_fen": 500, "keep_power": True, "tariff": "tou"}),
        ("meters", {"address": "000000000077", "protocol": "dlt645", "bus": "rs485-1", "node": NODE,
                    "shop_id": reg["shops"]["S102"]}, {"multiplier": 80, "node": OTHER}),
        ("subsidy-policies", {"site_id": reg["empty"]},
         {"month_end": "carry_over", "carry_cap_wh": 10_000, "rule": "per_m2",
          "rule_params": {"wh_per_m2": 500}}),
        ("alarm-rules", {"site_id": reg["empty"], "below_days": 3}, {"below_fen": 100}),
        ("arrears-policies", {"site_id": reg["empty"]},
         {"mode": "scheduled", "holidays": ["2027-02-17", "2027-02-16"]}),
    ]  # fmt: skip
    for kind, body, change in kinds:
        created = ok(client.post(f"/registry/{kind}", json=body), 201)
        key = created.get("code") if kind in ("tariffs", "account-types") else created["id"]
        assert {k: created[k] for k in body if k != "area_m2"} == {
            k: v for k, v in body.items() if k != "area_m2"
        }
        assert ok(client.get(f"/registry/{kind}/{key}")) == created
        listed = ok(client.get(f"/registry/{kind}", params={"limit": 1000}))["items"]
        assert created in listed or kind == "merchants"  # merchants are listed masked
        changed = ok(client.patch(f"/registry/{kind}/{key}", json=change))
        assert changed == ok(client.get(f"/registry/{kind}/{key}"))
        for name, value in change.items():
            if name == "holidays":
                assert changed[name] == sorted(value)
            elif name == "area_m2":
                assert changed[name] == "12"
            else:
                assert changed[name] == value, (kind, name)
        assert ok(client.delete(f"/registry/{kind}/{key}"), 204) is None
        assert client.get(f"/registry/{kind}/{key}").status_code == 404
        created_row, updated_row, deleted_row = log_tail(engine, 3)
        entity = created_row.target.split(":")[0]
        assert [r.action for r in (created_row, updated_row, deleted_row)] == [
            f"{entity}.create", f"{entity}.update", f"{entity}.delete"
        ]  # fmt: skip
        assert created_row.before is None and deleted_row.after is None
        assert updated_row.before == created_row.after and updated_row.after == deleted_row.before
        assert updated_row.before != updated_row.after
        assert {r.user for r in (created_row, updated_row, deleted_row)} == {"admin-1"}


def test_the_tariff_shapes_are_the_edges(client: TestClient, reg: dict[str, Any]) -> None:
    assert ok(client.get("/registry/tariffs/tou")) == {**TOU, "name": "", "price": None,
                                                       "tiers": None}  # fmt: skip
    flat = ok(client.get("/registry/tariffs/commercial"))
    assert (flat["kind"], flat["price"], flat["prices"]) == ("flat", 8365, None)


def test_lists_filter_page_and_sort(client: TestClient, reg: dict[str, Any]) -> None:
    def numbers(path: str, **params: Any) -> list[Any]:
        page = ok(client.get(f"/registry/{path}", params=params))
        key = {"shops": "number", "meters": "address"}.get(path, "id")
        return [row[key] for row in page["items"]]

    b1, b2 = reg["buildings"]
    f1, _ = reg["floors"]
    assert numbers("shops", site=reg["site"]) == ["S101", "S102", "S201"]
    assert numbers("shops", site=reg["empty"]) == []
    assert numbers("shops", building=b2) == ["S201"]
    assert numbers("shops", floor=f1, sort="-number") == ["S102", "S101"]
    assert numbers("shops", category="retail") == ["S102", "S201"]
    assert numbers("shops", node=OTHER) == ["S201"]
    page = ok(client.get("/registry/shops", params={"sort": "number", "limit": 1, "offset": 1}))
    assert (page["total"], page["limit"], page["offset"]) == (3, 1, 1)
    assert [s["number"] for s in page["items"]] == ["S102"]
    assert numbers("accounts", merchant=reg["merchant"], sort="-id") == ["A0101", "A0002", "A0001"]
    assert numbers("accounts", node=NODE) == ["A0001", "A0002"]
    assert numbers("accounts", category="food") == ["A0001"]
    assert numbers("accounts", building=b1) == ["A0001", "A0002"]
    assert numbers("meters", node=NODE, sort="address") == ["000000000001", "000000000002", "3"]
    assert numbers("meters", building=b2) == ["000000000901"]
    assert numbers("meters", shop=reg["shops"]["S101"], sort="-address") == [
        "000000000002", "000000000001"
    ]  # fmt: skip
    assert numbers("floors", site=reg["site"]) == list(reg["floors"])
    assert numbers("buildings", site=reg["empty"]) == []
    assert numbers("subsidy-policies", site=reg["site"]) != []
    assert client.get("/registry/shops", params={"sort": "area_m2"}).status_code == 422
    assert client.get("/registry/shops", params={"merchant": 1}).status_code in (200, 422)


def test_merchant_id_numbers_are_masked_in_lists(client: TestClient, reg: dict[str, Any]) -> None:
    listed = ok(client.get("/registry/merchants"))["items"]
    assert [m["id_number"] for m in listed] == ["**************1234"]
    one = ok(client.get(f"/registry/merchants/{reg['merchant']}"))
    assert one["id_number"] == "110101199003071234"
    ok(
        client.patch(
            f"/registry/merchants/{reg['merchant']}", json={"id_number": "11010119900307999X"}
        )
    )
    logged = log_tail(client.app.state.engine, 1)[0]
    assert logged.action == "merchant.update"  # the log keeps the change, not the number
    assert (logged.before["id_number"], logged.after["id_number"]) == (
        "**************1234", "**************999X"
    )  # fmt: skip


def test_unknown_references_are_404_and_store_nothing(
    client: TestClient, engine: Engine, reg: dict[str, Any]
) -> None:
    before = snapshot(engine)
    f1 = reg["floors"][0]
    refused = [
        ("post", "shops", {"floor_id": 99_999, "number": "S900"}),
        ("post", "shops", {"floor_id": f1, "number": "S900", "node": "edge-9999"}),
        ("post", "shops", {"floor_id": f1, "number": "S900", "node": "cloud"}),
        ("post", "accounts", {"id": "A0900", "merchant_id": reg["merchant"],
                              "account_type": "merchant", "tariff": "nope"}),
        ("post", "accounts", {"id": "A0900", "merchant_id": 99_999, "account_type": "merchant"}),
        ("post", "accounts", {"id": "A0900", "merchant_id": reg["merchant"],
                              "account_type": "nope"}),
        ("post", "meters", {"address": "9", "protocol": "dlt645", "bus": "b", "shop_id": 99_999}),
        ("post", "buildings", {"site_id": 99_999, "name": "B9"}),
        ("post", "subsidy-policies", {"site_id": 99_999}),
        ("patch", "accounts/A0001", {"shop_id": 99_999}),
        ("patch", "sites/" + str(reg["site"]), {"tariff": "nope"}),
        ("patch", "shops/99999", {"category": "food"}),
        ("delete", "tariffs/nope", None),
    ]  # fmt: skip
    for method, path, body in refused:
        answer = client.request(method, f"/registry/{path}", json=body)
        assert answer.status_code == 404, (path, body, answer.text)
        assert answer.json()["error"] == "not_found"
    assert snapshot(engine) == before


def test_bad_values_are_422_and_change_nothing(
    client: TestClient, engine: Engine, reg: dict[str, Any]
) -> None:
    before = snapshot(engine)
    f1, site = reg["floors"][0], reg["site"]
    s101 = reg["shops"]["S101"]
    gap = {**TOU, "code": "gap", "ranges": [["08:00", "11:00", "peak"], ["12:00", "08:00", "flat"]]}
    refused = [
        ("post", "tariffs", gap),
        ("post", "tariffs", {"code": "x", "kind": "flat", "price": 0}),
        ("post", "tariffs", {"code": "x", "kind": "flat", "price": 8365.0}),
        ("post", "tariffs", {"code": "x", "kind": "flat", "price": 1, "tiers": [[None, 1]]}),
        ("post", "tariffs", {"code": "x", "kind": "tiered", "tiers": [[5, 1], [4, 2], [None, 3]]}),
        ("post", "tariffs", {"code": "x", "kind": "tou", "prices": {"peak": 1},
                             "ranges": [["00:00", "00:00", "flat"]]}),
        ("post", "meters", {"address": "300", "protocol": "sdm120", "bus": "b", "shop_id": s101}),
        ("post", "meters", {"address": "1", "protocol": "modbus", "bus": "b", "shop_id": s101}),
        ("post", "meters", {"address": "5", "protocol": "dlt645", "bus": "b", "shop_id": s101,
                            "kind": "water"}),
        ("post", "meters", {"address": "5", "protocol": "dlt645", "bus": "b", "shop_id": s101,
                            "multiplier": 0}),
        ("post", "shops", {"floor_id": f1, "number": "S9", "area_m2": 32.5}),
        ("post", "shops", {"floor_id": f1, "number": "S9", "area_m2": "1.234"}),
        ("post", "shops", {"floor_id": f1, "number": "S 9"}),
        ("post", "shops", {"floor_id": f1, "number": "S9", "colour": "red"}),
        ("post", "sites", {"name": "Mars", "time_zone": "Mars/Olympus"}),
        ("post", "accounts", {"id": "bad id!", "merchant_id": reg["merchant"],
                              "account_type": "merchant"}),
        ("post", "accounts", {"id": "A0900", "merchant_id": reg["merchant"],
                              "account_type": "merchant", "credit_limit_fen": -1}),
        ("post", "merchants", {"name": "\x00"}),
        ("post", "subsidy-policies", {"site_id": reg["empty"], "carry_cap_wh": 5}),
        ("post", "subsidy-policies", {"site_id": reg["empty"], "rule": "nope"}),
        ("post", "subsidy-policies", {"site_id": reg["empty"], "issue_day": 32}),
        ("post", "subsidy-policies", {"site_id": reg["empty"], "by_type": {"merchant": -1}}),
        ("post", "alarm-rules", {"site_id": reg["empty"], "windows": [
            {"min_w": 2500, "max_w": 1500, "min_pf": 0.9, "max_pf": 1}]}),
        ("post", "alarm-rules", {"site_id": reg["empty"], "windows": [
            {"min_w": 1, "max_w": 2, "min_pf": 0.9, "max_pf": 1.5}]}),
        ("post", "arrears-policies", {"site_id": reg["empty"], "holidays": ["2026-02-30"]}),
        ("post", "arrears-policies", {"site_id": reg["empty"], "cut_off": "24:00"}),
        ("post", "arrears-policies", {"site_id": reg["empty"], "mode": "never"}),
        ("patch", f"sites/{site}", {"name": None}),
        ("patch", "accounts/A0001", {"id": "A0009"}),
        ("patch", "accounts/A0001", {"keep_power": "yes"}),
        ("patch", "tariffs/tou", {"kind": "flat"}),
        ("patch", f"shops/{s101}", {"area_m2": "-1"}),
        ("patch", f"meters/{reg['meters']['3']}", {"protocol": "cjt188"}),
    ]  # fmt: skip
    for method, path, body in refused:
        answer = client.request(method, f"/registry/{path}", json=body)
        assert answer.status_code == 422, (path, body, answer.text)
    assert snapshot(engine) == before


def test_duplicates_are_409(client: TestClient, engine: Engine, reg: dict[str, Any]) -> None:
    before = snapshot(engine)
    f2 = reg["floors"][1]
    refused = [
        ("post", "shops", {"floor_id": f2, "number": "S101"}),  # same site, other floor
        ("post", "accounts", {"id": "A0900", "merchant_id": reg["merchant"],
                              "account_type": "merchant", "shop_id": reg["shops"]["S101"]}),
        ("post", "accounts", {"id": "A0001", "merchant_id": reg["merchant"],
                              "account_type": "merchant"}),
        ("post", "meters", {"address": "1", "protocol": "dlt645", "bus": "rs485-9", "node": NODE,
                            "shop_id": reg["shops"]["S102"]}),
        ("post", "tariffs", {"code": "tou", "kind": "flat", "price": 1}),
        ("post", "subsidy-policies", {"site_id": reg["site"]}),
        ("post", "sites", {"name": "Market"}),
        ("post", "buildings", {"site_id": reg["site"], "name": "B1"}),
        ("patch", "accounts/A0002", {"shop_id": reg["shops"]["S101"]}),
        ("patch", f"meters/{reg['meters']['3']}", {"protocol": "dlt645", "address": "2"}),
    ]  # fmt: skip
    for method, path, body in refused:
        answer = client.request(method, f"/registry/{path}", json=body)
        assert answer.status_code == 409, (path, body, answer.text)
    assert snapshot(engine) == before


def test_deleting_a_row_still_referenced_is_409(
    client: TestClient, engine: Engine, reg: dict[str, Any]
) -> None:
    before = snapshot(engine)
    for path in (
        f"sites/{reg['site']}", f"buildings/{reg['buildings'][0]}", f"floors/{reg['floors'][0]}",
        f"shops/{reg['shops']['S101']}", f"merchants/{reg['merchant']}", "account-types/merchant",
        "tariffs/commercial", "tariffs/tou",
    ):  # fmt: skip
        answer = client.delete(f"/registry/{path}")
        assert answer.status_code == 409, (path, answer.text)
        assert "still used by" in answer.json()["detail"]
    assert snapshot(engine) == before
    # Once nothing names it, it goes.
    ok(client.patch("/registry/accounts/A0002", json={"tariff": None}))
    ok(client.delete("/registry/tariffs/tou"), 204)


def test_an_account_with_money_or_history_is_not_deleted(
    client: TestClient, engine: Engine, site: Site, reg: dict[str, Any]
) -> None:
    # the site's opening: A0001 has ¥100 in, ¥8.37 spent, ¥10 pending out, 48,800 Wh subsidy
    before = snapshot(engine)
    a1 = client.delete("/registry/accounts/A0001")
    assert a1.status_code == 409, a1.text
    assert a1.json()["detail"] == (
        "account 'A0001' still holds subsidy 48800 Wh, prepaid ¥91.63, prepaid ¥10.00 pending "
        "out; has 5 ledger entries; refund it or move it out first (an account with history "
        "is kept, not deleted)"
    )
    a2 = client.delete("/registry/accounts/A0002")  # Wh only: subsidy and grace
    assert a2.status_code == 409 and "still holds subsidy 50000 Wh, grace 2000 Wh" in a2.text
    assert snapshot(engine) == before
    # money in, then all of it out: no balance left, but the books name the account
    new = {"id": "A0003", "merchant_id": reg["merchant"], "account_type": "merchant"}
    ok(client.post("/registry/accounts", json=new), 201)
    prepaid = pocket_id("A0003", Pocket.PREPAID)
    cash, refunds = system_id(System.CASH_IN_TRANSIT), system_id(System.REFUNDS_PAYABLE)
    booked = [transfer(100, cash, prepaid, 500, Code.RECHARGE),
              transfer(101, prepaid, refunds, 500, Code.REFUND)]  # fmt: skip
    assert site.upload(NODE, booked).status is AckStatus.OK
    kept = client.delete("/registry/accounts/A0003")
    assert kept.status_code == 409 and kept.json()["detail"].startswith(
        "account 'A0003' has 2 ledger entries: an account with history is kept"
    )
    assert ok(client.get("/registry/accounts/A0003"))["id"] == "A0003"
    # nothing ever booked: it goes
    ok(client.post("/registry/accounts", json={**new, "id": "A0004"}), 201)
    ok(client.delete("/registry/accounts/A0004"), 204)
    assert client.get("/registry/accounts/A0004").status_code == 404
    assert set(holdings.ORDERS_IN_FLIGHT) <= {s.value for s in OrderState}  # named as stored


def test_roles(client: TestClient, engine: Engine, tokens: dict[Role, str], reg: dict[str, Any]):
    before = snapshot(engine)
    shop = {"floor_id": reg["floors"][0], "number": "S777"}
    tariff = {"code": "t2", "kind": "flat", "price": 1}
    as_ = {role: bearer(token) for role, token in tokens.items()}
    assert client.get("/registry/shops", headers=as_[Role.MERCHANT]).status_code == 403
    assert client.post("/registry/shops", json=shop, headers=as_[Role.MERCHANT]).status_code == 403
    assert (
        client.post("/registry/tariffs", json=tariff, headers=as_[Role.MERCHANT]).status_code == 403
    )
    assert client.delete("/registry/tariffs/tou", headers=as_[Role.MERCHANT]).status_code == 403
    assert client.patch("/registry/accounts/A0001", json={"keep_power": True},
                        headers=as_[Role.MERCHANT]).status_code == 403  # fmt: skip
    assert (
        client.get(f"/concentrators/{NODE}/config", headers=as_[Role.MERCHANT]).status_code == 403
    )
    assert (
        client.post(f"/concentrators/{NODE}/config", headers=as_[Role.MERCHANT]).status_code == 403
    )
    assert client.post("/registry/push", headers=as_[Role.AUDITOR]).status_code == 403
    assert (
        client.post("/registry/tariffs", json=tariff, headers=as_[Role.AUDITOR]).status_code == 403
    )
    assert (
        client.post("/registry/tariffs", json=tariff, headers=as_[Role.FINANCE]).status_code == 403
    )
    assert (
        client.post("/registry/tariffs", json=tariff, headers=as_[Role.INSTALLER]).status_code
        == 403
    )
    assert client.get("/registry/tariffs", headers={"Authorization": ""}).status_code == 401
    assert snapshot(engine) == before
    for role in (Role.AUDITOR, Role.FINANCE, Role.INSTALLER, Role.OPERATOR):
        assert client.get("/registry/tariffs", headers=as_[role]).status_code == 200
    assert (
        client.post("/registry/shops", json=shop, headers=as_[Role.INSTALLER]).status_code == 403
    )  # installers map meters; shops are the property manager's
    ok(client.post("/registry/shops", json=shop, headers=as_[Role.OPERATOR]), 201)
    ok(client.post("/registry/tariffs", json=tariff, headers=as_[Role.OPERATOR]), 201)
    assert [(r.user, r.action) for r in log_tail(engine, 2)] == [
        ("operator-1", "shop.create"), ("operator-1", "tariff.create")
    ]  # fmt: skip


def _commands(engine: Engine, node: str) -> list[Command]:
    with session_factory(engine)() as session:
        return list(
            session.scalars(
                select(Command)
                .where(Command.node == node, Command.kind == CommandKind.CONFIG.value)
                .order_by(Command.seq)
            )
        )


def _opened(site: Site, command: Command, node: str) -> dict[str, Any]:
    opened = open_command(command.payload, trusted(site.key.public_key), node, command.issued)
    assert opened.kind is CommandKind.CONFIG
    return dict(opened.args)


def _subsidy(args: dict[str, Any]) -> dict[str, int]:
    return next(r for r in args["documents"]["rules"] if r["id"] == "subsidy")["by_account"]


def test_config_preview_and_push(
    client: TestClient, engine: Engine, site: Site, reg: dict[str, Any]
) -> None:
    preview = ok(client.get(f"/concentrators/{NODE}/config"))
    assert (preview["version"], preview["changed_since"], preview["problems"]) == (0, True, [])
    assert [m["id"] for m in preview["documents"]["meters"]] == [
        "000000000001", "000000000002", "3"
    ]  # fmt: skip
    assert _subsidy(preview) == {"A0001": 80_000, "A0002": 50_000}
    first = ok(client.post(f"/concentrators/{NODE}/config"), 201)
    second = ok(client.post(f"/concentrators/{NODE}/config"), 201)
    assert (first["version"], second["version"]) == (1, 2)
    after = ok(client.get(f"/concentrators/{NODE}/config"))
    assert (after["version"], after["changed_since"], after["command_id"]) == (
        2, False, second["command_id"]
    )  # fmt: skip
    sent = _commands(engine, NODE)
    assert [c.id for c in sent] == [first["command_id"], second["command_id"]]
    args = _opened(site, sent[-1], NODE)
    assert args == {  # and the cloud keys the box is to trust: the one signing, none retired
        "version": 2, "documents": preview["documents"],
        "cloud_keys": [public_hex(site.key.public_key)], "retired_cloud_keys": [],
    }  # fmt: skip
    pushes = log_tail(engine, 2)
    assert [(r.action, r.target, r.before, r.after) for r in pushes] == [
        ("config.push", f"node:{NODE}", {"version": 0}, {"version": 1, "command": sent[0].id}),
        ("config.push", f"node:{NODE}", {"version": 1}, {"version": 2, "command": sent[1].id}),
    ]
    assert client.get("/concentrators/edge-9999/config").status_code == 404
    assert client.post("/concentrators/edge-9999/config").status_code == 404


def test_a_vacant_shops_meters_are_left_out(
    client: TestClient, engine: Engine, reg: dict[str, Any]
) -> None:
    # S102 is vacant now: A0002 is moved out (it has history, so it is kept, not deleted)
    ok(client.patch("/registry/accounts/A0002", json={"shop_id": None}))
    preview = ok(client.get(f"/concentrators/{NODE}/config"))
    assert preview["problems"] == []
    documents = preview["documents"]
    assert "3" not in {m["id"] for m in documents["meters"]}  # S102's meter: nobody pays it
    assert "S102" in {s["id"] for s in documents["shops"]}
    assert "A0002" not in {a["id"] for a in documents["accounts"]}
    pushed = ok(client.post(f"/concentrators/{NODE}/config"), 201)
    (sent,) = _commands(engine, NODE)
    assert sent.id == pushed["command_id"] and sent.args["documents"] == documents


def test_an_unusable_configuration_is_not_pushed(
    client: TestClient, engine: Engine, reg: dict[str, Any]
) -> None:
    body = {"address": "000000000078", "protocol": "dlt645", "bus": "rs485-1", "node": NODE,
            "shop_id": reg["shops"]["S201"]}  # fmt: skip
    ok(client.post("/registry/meters", json=body), 201)  # S201 is served by OTHER
    before = snapshot(engine)
    preview = ok(client.get(f"/concentrators/{NODE}/config"))
    assert preview["problems"] == [f"a meter of shop S201 is on {NODE}, the shop on {OTHER}"]
    answer = client.post(f"/concentrators/{NODE}/config")
    assert answer.status_code == 422
    assert "S201" in answer.json()["detail"]
    assert snapshot(engine) == before
    pushed = ok(client.post("/registry/push"))
    assert [p["node"] for p in pushed["pushed"]] == [OTHER]
    assert [s["node"] for s in pushed["skipped"]] == [NODE]


def test_a_shop_category_change_resends_its_nodes_subsidy(
    client: TestClient, engine: Engine, site: Site, reg: dict[str, Any]
) -> None:
    pushed = ok(client.post("/registry/push"))["pushed"]
    assert [(p["node"], p["version"]) for p in pushed] == [(NODE, 1), (OTHER, 1)]
    assert ok(client.post("/registry/push")) == {"pushed": [], "skipped": []}
    assert _subsidy(_opened(site, _commands(engine, NODE)[-1], NODE))["A0001"] == 80_000

    ok(client.patch(f"/registry/shops/{reg['shops']['S101']}", json={"category": "retail"}))
    assert ok(client.get(f"/concentrators/{NODE}/config"))["changed_since"] is True
    assert ok(client.get(f"/concentrators/{OTHER}/config"))["changed_since"] is False
    pushed = ok(client.post("/registry/push"))["pushed"]
    assert [(p["node"], p["version"]) for p in pushed] == [(NODE, 2)]
    args = _opened(site, _commands(engine, NODE)[-1], NODE)
    assert args["version"] == 2
    assert _subsidy(args) == {"A0001": 50_000, "A0002": 50_000}  # by type now
    shops = {s["id"]: s for s in args["documents"]["shops"]}
    assert shops["S101"]["category"] == "retail"

    # A rule by area: the area changes, the subsidy follows.
    policy = ok(client.get("/registry/subsidy-policies"))["items"][0]["id"]
    ok(client.patch(f"/registry/subsidy-policies/{policy}",
                    json={"rule": "per_m2", "rule_params": {"wh_per_m2": 2000}}))  # fmt: skip
    ok(client.post("/registry/push"))
    ok(client.patch(f"/registry/shops/{reg['shops']['S102']}", json={"area_m2": "21.5"}))
    assert [p["node"] for p in ok(client.post("/registry/push"))["pushed"]] == [NODE]
    args = _opened(site, _commands(engine, NODE)[-1], NODE)
    assert (args["version"], _subsidy(args)) == (4, {"A0001": 65_000, "A0002": 43_000})


def test_a_meter_moved_between_nodes_pushes_both(
    client: TestClient, engine: Engine, site: Site, reg: dict[str, Any]
) -> None:
    ok(client.patch(f"/registry/shops/{reg['shops']['S102']}", json={"node": None}))
    ok(client.post("/registry/push"))
    meter = reg["meters"]["3"]
    ok(client.patch(f"/registry/meters/{meter}", json={"node": OTHER}))
    pushed = ok(client.post("/registry/push"))["pushed"]
    assert [(p["node"], p["version"]) for p in pushed] == [(NODE, 2), (OTHER, 2)]
    here = _opened(site, _commands(engine, NODE)[-1], NODE)["documents"]
    there = _opened(site, _commands(engine, OTHER)[-1], OTHER)["documents"]
    assert [m["id"] for m in here["meters"]] == ["000000000001", "000000000002"]
    assert [a["id"] for a in here["accounts"]] == ["A0001"]
    assert [m["id"] for m in there["meters"]] == ["000000000901", "3"]
    assert [a["id"] for a in there["accounts"]] == ["A0002", "A0101"]
    assert {t["id"] for t in there["tariffs"]} == {"commercial", "steps", "tou"}
