"""The money operations end to end: the API books the cloud's side, a concentrator that keeps
the command contract (`contract_edge`) books its side and uploads it through the real ingest,
and the cloud reacts (`cloud.operations.settlements`). Balances over all chains sum to zero per unit
after every step; refusals change nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from cloud.db import registry as tables
from cloud.db.auth import OperatorLogEntry
from cloud.db.engine import session_factory
from cloud.db.models import Alarm, Balance, Command, Concentrator, LedgerEntry
from cloud.db.operations import Correction, IrReading, MeterSwap, Move, Receipt, Refund
from cloud.keys import CLOUD_NODE
from cloud.people.auth import Role
from cloud.registry import entities, site_config
from cloud.reports import books
from ledger.accounts import Pocket, System, pocket_id, system_id
from ledger.ids import derive_id
from tests.cloud.api.conftest import M1, M2, M3, NODE, OTHER, Site, bearer
from tests.cloud.api.contract_edge import ContractEdge
from tests.cloud.fake_edge import T0
from tests.cloud.registry_world import ME, add, make_registry, vacant_shops

A1, A2 = "A0001", "A0002"
OPENING_T3 = f"{derive_id('test', NODE, 3):032x}"  # the fixture's desk recharge of A0001
MODELS = (Correction, Refund, MeterSwap, Move, Receipt, IrReading, Command, LedgerEntry,
          OperatorLogEntry)  # fmt: skip


def balances(site: Site) -> dict[str, tuple[int, int]]:
    """account → (posted balance, pending balance), credits minus debits."""
    with session_factory(site.engine)() as session:
        return {
            b.account: (b.credits_posted - b.debits_posted, b.credits_pending - b.debits_pending)
            for b in session.scalars(select(Balance))
        }


def assert_books_balance(site: Site) -> None:
    with session_factory(site.engine)() as session:
        rows = session.execute(
            select(Balance.unit, func.sum(Balance.credits_posted - Balance.debits_posted),
                   func.sum(Balance.credits_pending - Balance.debits_pending))
            .group_by(Balance.unit)
        ).all()  # fmt: skip
        assert rows and all(posted == 0 and pending == 0 for _, posted, pending in rows), rows
        refund_subsidy = session.scalar(
            select(func.count()).where(
                LedgerEntry.code == "refund",
                LedgerEntry.debit.like("%:subsidy") | LedgerEntry.credit.like("%:subsidy"),
            )
        )
        assert refund_subsidy == 0


def counts(site: Site) -> dict[str, int]:
    with session_factory(site.engine)() as session:
        return {
            m.__tablename__: session.scalar(select(func.count()).select_from(m)) or 0
            for m in MODELS
        }


def cloud_entry(site: Site, tag: str, *parts: str) -> LedgerEntry | None:
    with session_factory(site.engine)() as session:
        return session.scalars(
            select(LedgerEntry).where(
                LedgerEntry.node == CLOUD_NODE,
                LedgerEntry.transfer_id == f"{derive_id(tag, *parts):032x}",
            )
        ).one_or_none()


def command(site: Site, command_id: str) -> Command:
    with session_factory(site.engine)() as session:
        found = session.get(Command, command_id)
        assert found is not None
        return found


@pytest.fixture
def edge(site: Site) -> ContractEdge:
    return ContractEdge(site)


# -- corrections ---------------------------------------------------------------------------


def test_correction_books_once_and_posts_when_the_edge_books_it(
    client: TestClient, site: Site, edge: ContractEdge
) -> None:
    body = {"account": A1, "fen": 500, "original": OPENING_T3, "reason": "keyed 50 for 55"}
    first = client.post("/corrections", json=body)
    assert first.status_code == 201, first.text
    row = first.json()
    assert (row["status"], row["original_transfer"], row["shop"]) == ("pending", OPENING_T3, "S101")
    before = counts(site)
    again = client.post("/corrections", json=body)
    assert (again.status_code, again.json()["id"]) == (200, row["id"])
    assert counts(site) == before  # one row, one command, one pending, one log line
    sent = command(site, row["command_id"])
    assert (sent.kind, sent.node) == ("correction", NODE)
    assert sent.args == {"account": A1, "fen": 500, "correction": row["id"],
                         "original": OPENING_T3, "reason": "keyed 50 for 55"}  # fmt: skip
    pending = cloud_entry(site, "correction-pending", row["id"])
    assert pending is not None and (pending.kind, pending.debit, pending.credit) == (
        "pending",
        system_id(System.PAYMENTS_RECEIVED),
        system_id(System.CORRECTIONS_FEN),
    )
    prepaid = balances(site)[pocket_id(A1, Pocket.PREPAID)][0]
    edge.sync(NODE)
    assert client.get(f"/corrections/{row['id']}").json()["status"] == "posted"
    assert cloud_entry(site, "correction-post", row["id"]) is not None
    after = balances(site)
    assert after[pocket_id(A1, Pocket.PREPAID)][0] == prepaid + 500
    assert after[system_id(System.CORRECTIONS_FEN)] == (0, 0)
    assert_books_balance(site)
    receipt = client.get(f"/receipts/{row['receipt']}").json()
    assert (receipt["kind"], receipt["fen"], receipt["yuan"], receipt["capital"]) == (
        "correction",
        500,
        "5.00",
        "伍元整",
    )
    assert receipt["operator"] == "admin-1"
    assert receipt["print"] is False  # no registered site: its setting is in test_receipts.py


def test_a_refused_correction_is_voided(client: TestClient, site: Site, edge: ContractEdge) -> None:
    answer = client.post("/corrections", json={
        "account": A1, "fen": -300, "original": OPENING_T3, "reason": "double booked",
        "correction": "C-1"})  # fmt: skip
    assert answer.status_code == 201, answer.text
    edge.refuse.add(answer.json()["command_id"])
    edge.sync(NODE)
    row = client.get("/corrections/C-1").json()
    assert row["status"] == "failed"
    void = cloud_entry(site, "correction-void", "C-1")
    assert void is not None and void.kind == "void"
    assert balances(site)[system_id(System.CORRECTIONS_FEN)] == (0, 0)
    assert_books_balance(site)


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"account": "A9999"}, 404),
        ({"original": "no-such-payment"}, 404),
        ({"original": f"{derive_id('test', NODE, 2):032x}"}, 404),  # A0002's subsidy
        ({"fen": 0}, 422),
        ({"fen": 1.5}, 422),
        ({"fen": True}, 422),
        ({"fen": "500"}, 422),
        ({"fen": -9_000}, 422),  # more than A0001's 8 163 fen prepaid
        ({"reason": "oops"[:3]}, 422),
        ({"reason": None}, 422),
        ({"operator": "someone"}, 422),  # the operator is the login, not a field
    ],
)
def test_bad_corrections_change_nothing(
    client: TestClient, site: Site, change: dict[str, Any], status: int
) -> None:
    body = {"account": A1, "fen": 500, "original": OPENING_T3, "reason": "keyed wrong"} | change
    body = {k: v for k, v in body.items() if v is not None}
    before, money = counts(site), balances(site)
    answer = client.post("/corrections", json=body)
    assert answer.status_code == status, answer.text
    assert (counts(site), balances(site)) == (before, money)


def test_only_operations_correct(client: TestClient, tokens: dict[Role, str]) -> None:
    body = {"account": A1, "fen": 500, "original": OPENING_T3, "reason": "keyed wrong"}
    for role in (Role.FINANCE, Role.AUDITOR, Role.INSTALLER, Role.MERCHANT):
        answer = client.post("/corrections", json=body, headers=bearer(tokens[role]))
        assert answer.status_code == 403, role


# -- refunds -------------------------------------------------------------------------------


def test_refund_reserved_then_paid_with_a_receipt(
    client: TestClient, site: Site, edge: ContractEdge, tokens: dict[Role, str]
) -> None:
    subsidy = balances(site)[pocket_id(A1, Pocket.SUBSIDY)]
    body = {"account": A1, "method": "cash", "grace_wh": 2_000, "grace_hours": 48, "refund": "R1"}
    first = client.post("/refunds", json=body)
    assert first.status_code == 201, first.text
    assert client.post("/refunds", json=body).status_code == 200
    other = client.post("/refunds", json=body | {"refund": "R2"})
    assert other.status_code == 409, other.text
    assert client.post("/refunds/R1/pay").status_code == 409  # nothing reserved yet
    edge.sync(NODE)
    row = client.get("/refunds/R1").json()
    assert (row["status"], row["fen"]) == ("reserved", 8_163)
    operator = bearer(tokens[Role.OPERATOR])
    assert client.post("/refunds/R1/pay", headers=operator).status_code == 403
    paid = client.post("/refunds/R1/pay", headers=bearer(tokens[Role.FINANCE]))
    assert paid.status_code == 200, paid.text
    assert (paid.json()["status"], paid.json()["paid_by"]) == ("paid", "finance-1")
    assert client.post("/refunds/R1/pay").json()["receipt"] == paid.json()["receipt"]
    settle = command(site, paid.json()["settle_command_id"])
    assert (settle.kind, settle.args) == (
        "settle",
        {"pending": f"{derive_id('refund', 'R1'):032x}", "action": "post", "reference": "R1"},
    )
    payout = cloud_entry(site, "refund-payout", "R1")
    assert payout is not None and (payout.debit, payout.amount) == (
        system_id(System.REFUNDS_PAYABLE),
        8_163,
    )
    edge.sync(NODE)
    assert client.get("/refunds/R1").json()["settled"] is not None
    after = balances(site)
    assert after[pocket_id(A1, Pocket.PREPAID)] == (1_000, -1_000)  # the fixture's pending
    assert after[pocket_id(A1, Pocket.SUBSIDY)] == subsidy  # never refunded
    assert after[pocket_id(A1, Pocket.GRACE)][0] == 2_000
    assert_books_balance(site)
    text = client.get(f"/receipts/{paid.json()['receipt']}", params={"format": "txt"})
    assert text.headers["content-type"].startswith("text/plain")
    assert "收据" in text.text and "金额: ¥81.63" in text.text and "退费" in text.text


def test_refund_to_the_original_payments_newest_first(
    client: TestClient, site: Site, edge: ContractEdge
) -> None:
    for payment, fen in (("P1", 3_000), ("P2", 2_000)):
        answer = client.post("/recharges", json={"account": A2, "fen": fen, "method": "wechat",
                                                 "payment": payment})  # fmt: skip
        assert answer.status_code == 201, answer.text
    edge.sync(NODE)
    with session_factory(site.engine)() as session:
        printed = session.scalars(select(Receipt.ref).where(Receipt.kind == "recharge")).all()
    assert sorted(printed) == ["P1", "P2"]  # every posted recharge got its receipt
    edge.models[NODE].prepaid[A2] -= 1_000  # it spent 10 yuan since (not uploaded: only model)
    client.post("/refunds", json={"account": A2, "method": "original", "grace_wh": 0,
                                  "grace_hours": 0, "refund": "R-O"})  # fmt: skip
    edge.sync(NODE)
    row = client.get("/refunds/R-O").json()
    assert row["fen"] == 4_000
    assert [(s["payment"], s["fen"]) for s in row["sources"]] == [("P2", 2_000), ("P1", 2_000)]
    assert_books_balance(site)


def test_refund_cancelled_and_refused(client: TestClient, site: Site, edge: ContractEdge) -> None:
    body = {"account": A1, "method": "card", "grace_wh": 0, "grace_hours": 0}
    first = client.post("/refunds", json=body | {"refund": "R-C"})
    cancelled = client.post("/refunds/R-C/cancel")
    assert cancelled.json()["status"] == "cancelled"
    assert command(site, cancelled.json()["settle_command_id"]).args["action"] == "void"
    assert first.status_code == 201
    edge.sync(NODE)  # reserves, then voids: the balance stays A0001's
    assert balances(site)[pocket_id(A1, Pocket.PREPAID)] == (9_163, -1_000)
    assert client.post("/refunds/R-C/pay").status_code == 409
    second = client.post("/refunds", json=body | {"refund": "R-F"})
    assert second.status_code == 201, second.text
    edge.refuse.add(second.json()["command_id"])
    edge.sync(NODE)
    assert client.get("/refunds/R-F").json()["status"] == "failed"
    listed = client.get("/refunds", params={"method": "card", "sort": "-time"}).json()
    assert [r["id"] for r in listed["items"]] == ["R-F", "R-C"]
    assert_books_balance(site)


def test_bad_refunds_change_nothing(client: TestClient, site: Site) -> None:
    before = counts(site)
    good = {"account": A1, "method": "cash", "grace_wh": 0, "grace_hours": 1}
    for change, status in (({"account": "A9999"}, 404), ({"method": "gold"}, 422),
                           ({"grace_wh": -1}, 422), ({"grace_wh": 1.0}, 422),
                           ({"grace_hours": False}, 422)):  # fmt: skip
        assert client.post("/refunds", json=good | change).status_code == status, change
    assert client.post("/refunds/nope/pay").status_code == 404
    assert counts(site) == before


# -- meter swaps ---------------------------------------------------------------------------

SWAP = {"old": M1, "final_wh": 101_500, "new": {"address": "000000000777",
        "protocol": "dlt645", "multiplier": 1}, "initial_wh": 0}  # fmt: skip


def test_meter_swap(client: TestClient, site: Site, edge: ContractEdge) -> None:
    before = counts(site)
    for change, status in (({"final_wh": 101_000}, 422), ({"old": "999999999999"}, 404),
                           ({"ir_reading": 1}, 422), ({"final_wh": 1.5}, 422),
                           ({"new": {"address": M3, "protocol": "dlt645"}}, 409)):  # fmt: skip
        answer = client.post("/meter-swaps", json=SWAP | change)
        assert answer.status_code == status, (change, answer.text)
    assert counts(site) == before
    first = client.post("/meter-swaps", json=SWAP)
    assert first.status_code == 201, first.text
    assert client.post("/meter-swaps", json=SWAP).status_code == 200
    row = first.json()
    sent = command(site, row["command_id"])
    assert sent.kind == "meter_swap" and sent.args == {
        "swap": row["id"], "old": M1, "final_wh": 101_500, "initial_wh": 0,
        "meter": {"id": "000000000777", "protocol": "dlt645", "multiplier": 1,
                  "account": A1, "shop": "S101"}}  # fmt: skip
    edge.sync(NODE)
    assert client.get(f"/meter-swaps/{row['id']}").json()["status"] == "applied"
    text = client.get(f"/receipts/{row['receipt']}", params={"format": "txt"}).text
    assert "换表" in text and "旧表末次读数: 101.500 kWh" in text


def test_a_swapped_in_meter_is_its_accounts_in_the_cloud_view_within_one_sync(
    client: TestClient, site: Site, edge: ContractEdge
) -> None:
    """Issue 13: the cloud's view of meters came from the inventory sent at boot, so a
    swapped-in meter had no account (nor shop) until the concentrator restarted."""
    row = client.post("/meter-swaps", json=SWAP).json()
    edge.sync(NODE)  # the swap applied: its verdict is the one sync
    meters = client.get("/meters", params={"account": A1}).json()["items"]
    assert {(m["address"], m["node"]) for m in meters} == {("000000000777", NODE), (M2, NODE)}
    assert client.get(f"/accounts/{A1}").json()["shop"] == "S101"
    relay = client.post("/relays", json={"meters": ["000000000777"], "action": "trip"})
    assert relay.status_code == 202, relay.text
    assert [c["node"] for c in relay.json()["commands"]] == [NODE]
    again = client.post("/meter-swaps", json=SWAP | {"old": "000000000777", "final_wh": 10,
                                                      "new": {"address": "000000000778",
                                                              "protocol": "dlt645"}})  # fmt: skip
    assert again.status_code == 201, again.text
    assert again.json()["account"] == A1 and row["account"] == A1


IR_FILE = """# voltbook IR export v1
address,read_at,energy_kwh
000000000001,2026-11-24T09:30:00+08:00,101.60
000000000002,2026-11-24T09:31:00+08:00,5.01
"""


def test_ir_import_then_swap_by_ir_reading(client: TestClient, site: Site) -> None:
    bad = client.post("/meter-swaps/ir-import", json={"source": "h1", "csv": IR_FILE + "x,y\n"})
    assert bad.status_code == 422 and "line 5" in bad.json()["detail"]
    assert counts(site)["ir_readings"] == 0
    answer = client.post("/meter-swaps/ir-import", json={"source": "h1/a.csv", "csv": IR_FILE})
    assert answer.status_code == 200, answer.text
    readings = answer.json()["readings"]
    assert [(r["address"], r["energy_wh"]) for r in readings] == [(M1, 101_600), (M2, 5_010)]
    again = client.post(
        "/meter-swaps/ir-import",
        json={
            "source": "h1/a.csv",
            "readings": [
                {"address": M1, "read_at": "2026-11-24T01:30:00+00:00", "energy_wh": 101_600}
            ],
        },
    )
    assert again.json()["new"] == 0, again.text
    clash = client.post(
        "/meter-swaps/ir-import",
        json={
            "source": "h1",
            "readings": [
                {"address": M1, "read_at": "2026-11-24T01:30:00+00:00", "energy_wh": 101_610}
            ],
        },
    )
    assert clash.status_code == 409
    swap = {k: v for k, v in SWAP.items() if k != "final_wh"} | {"ir_reading": readings[0]["id"]}
    done = client.post("/meter-swaps", json=swap)
    assert done.status_code == 201, done.text
    assert (done.json()["final_wh"], done.json()["ir_reading"]) == (101_600, readings[0]["id"])
    wrong = swap | {"old": "000000000002", "ir_reading": readings[0]["id"]}
    assert client.post("/meter-swaps", json=wrong).status_code == 422


# -- moves ---------------------------------------------------------------------------------


@pytest.fixture
def vacant(site: Site) -> dict[str, int]:
    """Empty registry shops S103 (edge-0001) and S202 (edge-0002); the registry knows no
    account, so a move is only recorded, but it must name a shop that exists and is free."""
    with session_factory(site.engine).begin() as session:
        return vacant_shops(session, {"S103": NODE, "S202": OTHER})


def test_move_in_the_same_building_moves_no_money(
    client: TestClient, site: Site, vacant: dict[str, int]
) -> None:
    before = counts(site)
    answer = client.post("/moves", json={"account": A1, "to_shop": "S103", "to_node": NODE})
    assert answer.status_code == 201, answer.text
    assert (answer.json()["status"], answer.json()["out_command_id"]) == ("settled", None)
    assert counts(site)["commands"] == before["commands"]


def test_move_to_another_concentrator(
    client: TestClient, site: Site, edge: ContractEdge, vacant: dict[str, int]
) -> None:
    answer = client.post("/moves", json={"account": A1, "to_shop": "S202", "to_node": OTHER,
                                         "move": "M1"})  # fmt: skip
    assert answer.status_code == 201, answer.text
    assert client.post("/moves", json={"account": A1, "to_shop": "S202",
                                       "to_node": OTHER}).status_code == 409  # fmt: skip
    assert client.post("/refunds", json={"account": A1, "method": "cash", "grace_wh": 0,
                                         "grace_hours": 0}).status_code == 409  # fmt: skip
    total = balances(site)[pocket_id(A1, Pocket.PREPAID)]
    edge.sync(NODE)
    row = client.get("/moves/M1").json()
    assert (row["status"], row["fen"]) == ("in_transit", 8_163)
    move_in = command(site, row["in_command_id"])
    assert (move_in.node, move_in.kind, move_in.args) == (
        OTHER,
        "move_in",
        {"account": A1, "move": "M1", "fen": 8_163, "from_node": NODE,
         "subsidy_periods": ["2026-11"]},  # issued at the source: never again at OTHER
    )  # fmt: skip
    edge.sync(OTHER)
    row = client.get("/moves/M1").json()
    assert row["status"] == "arrived"
    assert command(site, row["settle_command_id"]).args == {
        "pending": f"{derive_id('move-out', 'M1'):032x}",
        "action": "post",
        "reference": "M1",
    }
    edge.sync(NODE)
    assert client.get("/moves/M1").json()["status"] == "settled"
    after = balances(site)
    assert after[system_id(System.MOVES_IN_TRANSIT)] == (0, 0)
    assert after[pocket_id(A1, Pocket.PREPAID)] == total  # the same money, now at OTHER
    assert_books_balance(site)


def test_after_a_move_across_concentrators_the_next_recharge_goes_to_the_new_one(
    client: TestClient, site: Site, edge: ContractEdge, vacant: dict[str, int]
) -> None:
    """Issue 13: money was routed by the accounts the concentrators listed at boot, so after a
    move the next recharge went to the old concentrator, was refused and voided. The account
    changes concentrator when its money does: when the destination booked the move_in."""
    client.post("/moves", json={"account": A1, "to_shop": "S202", "to_node": OTHER,
                                "move": "M1"})  # fmt: skip
    edge.sync(NODE)  # the money left the source, it is not at the destination yet

    def recharge(payment: str) -> Command:
        answer = client.post("/recharges", json={"account": A1, "fen": 300, "method": "cash",
                                                 "payment": payment})  # fmt: skip
        assert answer.status_code == 201, answer.text
        return command(site, answer.json()["command_id"])

    assert recharge("P-during").node == NODE
    edge.sync(OTHER)
    assert client.get("/moves/M1").json()["status"] == "arrived"
    assert recharge("P-after").node == OTHER
    assert (client.get(f"/accounts/{A1}").json()["node"],
            client.get(f"/accounts/{A1}").json()["shop"]) == (OTHER, "S202")  # fmt: skip
    edge.sync_all()
    assert client.get("/moves/M1").json()["status"] == "settled"
    for payment in ("P-during", "P-after"):
        assert client.get(f"/recharges/{payment}").json()["status"] == "posted"
    assert edge.models[OTHER].prepaid[A1] == 8_163 + 300
    site.status(NODE)  # the source still lists the tenant (its configuration is not pushed)
    assert client.get(f"/accounts/{A1}").json()["node"] == OTHER
    assert recharge("P-later").node == OTHER
    assert_books_balance(site)


def test_a_refused_move_in_returns_the_money(
    client: TestClient, site: Site, edge: ContractEdge, vacant: dict[str, int]
) -> None:
    client.post("/moves", json={"account": A1, "to_shop": "S202", "to_node": OTHER,
                                "move": "M2"})  # fmt: skip
    edge.sync(NODE)
    edge.refuse.add(client.get("/moves/M2").json()["in_command_id"])
    edge.sync(OTHER)
    row = client.get("/moves/M2").json()
    assert row["status"] == "voided"
    assert command(site, row["settle_command_id"]).args["action"] == "void"
    edge.sync(NODE)
    assert balances(site)[pocket_id(A1, Pocket.PREPAID)] == (9_163, -1_000)
    assert_books_balance(site)


def test_a_quarantined_destination_holds_the_move_not_the_source(
    client: TestClient, site: Site, edge: ContractEdge, vacant: dict[str, int]
) -> None:
    """The source's ingest only makes the move_in due; it is issued in a transaction of its
    own, so a quarantined destination neither fails the source's batch nor loses the move."""
    client.post("/moves", json={"account": A1, "to_shop": "S202", "to_node": OTHER,
                                "move": "M3"})  # fmt: skip
    with session_factory(site.engine).begin() as session:
        other = session.get(Concentrator, OTHER)
        assert other is not None
        other.status, other.quarantine_reason = "quarantined", "test: forked chain"
    edge.sync(NODE)  # the source's batch is acknowledged (edge.sync asserts an OK ack)
    row = client.get("/moves/M3").json()
    assert (row["status"], row["fen"], row["in_command_id"]) == ("in_transit", 8_163, None)
    assert site.ingest.issue_due() == 0  # still quarantined: still due
    assert client.post(f"/concentrators/{OTHER}/clear-quarantine").status_code == 200
    assert site.ingest.issue_due() == 1
    assert site.ingest.issue_due() == 0  # issued once
    row = client.get("/moves/M3").json()
    assert command(site, row["in_command_id"]).args["move"] == "M3"
    edge.sync_all()
    assert client.get("/moves/M3").json()["status"] == "settled"
    assert balances(site)[system_id(System.MOVES_IN_TRANSIT)] == (0, 0)
    assert_books_balance(site)


def test_bad_moves_change_nothing(client: TestClient, site: Site) -> None:
    before = counts(site)
    for body, status in (({"account": "A9999", "to_shop": "S1", "to_node": NODE}, 404),
                         ({"account": A1, "to_shop": "S1", "to_node": "edge-9"}, 404),
                         ({"account": A1, "to_shop": "S101", "to_node": NODE}, 422),
                         ({"account": A1, "to_shop": "", "to_node": NODE}, 422)):  # fmt: skip
        assert client.post("/moves", json=body).status_code == status, body
    assert counts(site) == before


# -- moves and the registry ------------------------------------------------------------------

REGISTRY = (tables.Shop, tables.Account, tables.Meter, tables.NodeConfig)


@pytest.fixture
def reg(site: Site) -> dict[str, Any]:
    """The registry of `tests.cloud.registry_world` over the site's concentrators (A0001 in
    S101 and A0002 in S102 on edge-0001, A0101 in S201 on edge-0002), an empty shop on each
    (S103, S202: no meter yet, as a vacant shop's meters have no account to be billed to), every
    node pushed."""
    with session_factory(site.engine).begin() as session:
        data = make_registry(session, register=False)
        for number, floor, node in (("S103", data["floors"][0], NODE),
                                    ("S202", data["floors"][1], OTHER)):  # fmt: skip
            shop = add(session, entities.SHOPS, floor_id=floor, number=number, node=node)
            data["shops"][number] = shop.id
        for node in (NODE, OTHER):
            site_config.push(session, node, key=site.key, now=T0, actor=ME)
        assert site_config.marked(session) == []
    return data


def install_meter(site: Site, reg: dict[str, Any], shop: str, node: str, address: str) -> None:
    with session_factory(site.engine).begin() as session:
        add(session, entities.METERS, address=address, protocol="dlt645", bus="rs485-1",
            node=node, shop_id=reg["shops"][shop], multiplier=1)  # fmt: skip


def shop_of(site: Site, account: str) -> int | None:
    """The registry shop id the account is in."""
    with session_factory(site.engine)() as session:
        row = session.get(tables.Account, account)
        assert row is not None
        return row.shop_id


def marked(site: Site) -> list[str]:
    with session_factory(site.engine)() as session:
        return site_config.marked(session)


def built(site: Site, node: str) -> site_config.Built:
    with session_factory(site.engine)() as session:
        return site_config.build(session, node)


def meter_map(documents: Any) -> dict[str, tuple[str, str]]:
    """meter → (shop, account), as the configuration tells the concentrator."""
    return {m["id"]: (m["shop"], m["account"]) for m in documents["meters"]}


def registry_rows(site: Site) -> dict[str, list[tuple[Any, ...]]]:
    with session_factory(site.engine)() as session:
        return {
            t.__tablename__: sorted(map(tuple, session.execute(select(t.__table__)).all()), key=str)
            for t in REGISTRY
        }


def log_rows(site: Site, n: int) -> list[tuple[str, str, str, Any, Any]]:
    """The last n operator-log rows: (user, action, target, before, after)."""
    with session_factory(site.engine)() as session:
        rows = session.scalars(select(OperatorLogEntry).order_by(OperatorLogEntry.seq.desc()))
        return [(r.user, r.action, r.target, r.before, r.after) for r in rows.fetchmany(n)][::-1]


def shop_change(reg: dict[str, Any], before: str, after: str) -> tuple[Any, Any]:
    """The (before, after) an account.update of A0001 logs for a change of shop."""
    row = {"id": A1, "merchant_id": reg["merchant"], "account_type": "merchant", "tariff": None,
           "credit_limit_fen": 0, "keep_power": False}  # fmt: skip
    return row | {"shop_id": reg["shops"][before]}, row | {"shop_id": reg["shops"][after]}


def test_a_move_on_the_same_concentrator_moves_the_registry_account(
    client: TestClient, site: Site, reg: dict[str, Any]
) -> None:
    answer = client.post("/moves", json={"account": A1, "to_shop": "S103", "to_node": NODE})
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "settled"
    assert shop_of(site, A1) == reg["shops"]["S103"]
    assert marked(site) == [NODE]
    update, request = log_rows(site, 2)
    change = shop_change(reg, "S101", "S103")
    assert update == ("admin-1", "account.update", f"account:{A1}", *change)
    assert request[:3] == ("admin-1", "move.request", f"account:{A1}")
    install_meter(site, reg, "S103", NODE, "000000000004")
    documents = built(site, NODE)
    assert meter_map(documents.documents) == {"3": ("S102", "A0002"),
                                              "000000000004": ("S103", A1)}  # fmt: skip
    assert [a["id"] for a in documents.documents["accounts"]] == [A1, "A0002"]
    # S101 is vacant now: its meters are left out, nobody pays for them
    assert documents.problems == ()


def test_a_move_to_another_concentrator_moves_the_registry_account_first(
    client: TestClient, site: Site, edge: ContractEdge, reg: dict[str, Any]
) -> None:
    """The destination refuses a move_in for an account its configuration does not hold: the
    registry moves the account when the move is requested, and the destination's configuration
    (with the tenant) is pushed just before the move_in."""
    body = {"account": A1, "to_shop": "S202", "to_node": OTHER, "move": "M1"}
    answer = client.post("/moves", json=body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "requested"
    assert shop_of(site, A1) == reg["shops"]["S202"]
    assert marked(site) == [NODE, OTHER]
    assert [r[1] for r in log_rows(site, 2)] == ["account.update", "move.request"]
    assert log_rows(site, 2)[0][3:] == shop_change(reg, "S101", "S202")
    install_meter(site, reg, "S202", OTHER, "000000000902")
    other = built(site, OTHER)
    assert other.problems == ()
    assert meter_map(other.documents) == {"000000000901": ("S201", "A0101"),
                                          "000000000902": ("S202", A1)}  # fmt: skip
    assert [a["id"] for a in other.documents["accounts"]] == [A1, "A0101"]
    logged = counts(site)["operator_log"]
    assert client.post("/moves", json=body).status_code == 200  # the same move: nothing again
    assert counts(site)["operator_log"] == logged

    edge.sync(NODE)  # the move_out arrives: the destination is pushed, then sent the move_in
    row = client.get("/moves/M1").json()
    assert (row["status"], row["fen"]) == ("in_transit", 8_163)
    move_in = command(site, row["in_command_id"])
    with session_factory(site.engine)() as session:
        config = session.scalars(
            select(Command)
            .where(Command.node == OTHER, Command.kind == "config")
            .order_by(Command.seq.desc())
        ).first()
    assert config is not None
    assert (move_in.node, move_in.kind, move_in.seq) == (OTHER, "move_in", config.seq + 1)
    assert config.operator == "system"
    assert meter_map(config.args["documents"])["000000000902"] == ("S202", A1)
    assert marked(site) == [NODE]
    assert site.ingest.issue_due() == 0
    # A new tenant takes S101, and the source is pushed while the move is open (a real source
    # refuses that push while A0001 holds money there: it is marked again once the move settles)
    with session_factory(site.engine).begin() as session:
        add(session, entities.ACCOUNTS, id="A0003", merchant_id=reg["merchant"],
            shop_id=reg["shops"]["S101"], account_type="merchant", tariff=None,
            credit_limit_fen=0, keep_power=False)  # fmt: skip
    assert client.post(f"/concentrators/{NODE}/config").status_code == 201
    assert marked(site) == []

    edge.sync(OTHER)
    assert client.get("/moves/M1").json()["status"] == "arrived"
    assert marked(site) == []
    edge.sync(NODE)
    assert client.get("/moves/M1").json()["status"] == "settled"
    assert shop_of(site, A1) == reg["shops"]["S202"]
    assert marked(site) == [NODE]  # its configuration without A0001 is due again
    source = built(site, NODE).documents
    assert meter_map(source) == {"000000000001": ("S101", "A0003"),
                                 "000000000002": ("S101", "A0003"),
                                 "3": ("S102", "A0002")}  # fmt: skip
    assert [a["id"] for a in source["accounts"]] == ["A0002", "A0003"]
    assert_books_balance(site)


@pytest.mark.parametrize("refused", ["move_out", "move_in"])
def test_a_failed_or_voided_move_puts_the_registry_account_back(
    client: TestClient, site: Site, edge: ContractEdge, reg: dict[str, Any], refused: str
) -> None:
    client.post("/moves", json={"account": A1, "to_shop": "S202", "to_node": OTHER, "move": "M4"})
    with session_factory(site.engine).begin() as session:
        site_config.push(session, OTHER, key=site.key, now=T0, actor=ME)
    if refused == "move_out":
        edge.refuse.add(client.get("/moves/M4").json()["out_command_id"])
        edge.sync(NODE)
    else:
        edge.sync(NODE)
        edge.refuse.add(client.get("/moves/M4").json()["in_command_id"])
        edge.sync(OTHER)
    status = client.get("/moves/M4").json()["status"]
    assert status == ("failed" if refused == "move_out" else "voided")
    assert shop_of(site, A1) == reg["shops"]["S101"]
    assert marked(site) == [NODE, OTHER]
    assert log_rows(site, 1)[0] == ("system", "account.update", f"account:{A1}",
                                    *shop_change(reg, "S202", "S101"))  # fmt: skip
    assert meter_map(built(site, NODE).documents)["000000000001"] == ("S101", A1)
    assert A1 not in [a["id"] for a in built(site, OTHER).documents["accounts"]]


def doubles(site: Site) -> list[str]:
    """What `books verify` finds wrong (a subsidy issued twice among it)."""
    with session_factory(site.engine)() as session:
        return books.verify(session)


def arriving(documents: Any) -> dict[str, str]:
    return {a["id"]: a["arriving"] for a in documents["accounts"] if "arriving" in a}


def test_a_configuration_pushed_before_the_move_in_holds_the_destinations_subsidy(
    client: TestClient, site: Site, edge: ContractEdge, reg: dict[str, Any]
) -> None:
    """Issue 13: the destination's configuration (with the tenant) was applied before the
    move_in, so its billing cycle issued the period the source had issued in between. The
    configuration names the account `arriving` by the move: no subsidy until its move_in."""
    answer = client.post("/moves", json={"account": A1, "to_shop": "S202", "to_node": OTHER,
                                         "move": "M-early"})  # fmt: skip
    assert answer.status_code == 201, answer.text
    install_meter(site, reg, "S202", OTHER, "000000000902")
    assert client.post(f"/concentrators/{OTHER}/config").status_code == 201  # pushed at once
    assert arriving(built(site, OTHER).documents) == {A1: "M-early"}
    assert arriving(built(site, NODE).documents) == {}
    edge.sync(OTHER)  # the tenant is in OTHER's configuration; its money is not there yet
    assert not edge.issue_subsidy(OTHER, A1, "2026-11")  # held, though never issued at OTHER
    assert edge.issue_subsidy(OTHER, "A0101", "2026-12")  # the others are not held
    edge.sync_all()
    assert client.get("/moves/M-early").json()["status"] == "settled"
    assert not edge.issue_subsidy(OTHER, A1, "2026-11")  # the move_in brought it: issued once
    assert edge.issue_subsidy(OTHER, A1, "2026-12")
    assert arriving(built(site, OTHER).documents) == {}  # arrived: nothing held any more
    assert doubles(site) == []


def test_a_move_with_nothing_to_carry_still_brings_the_subsidy_periods(
    client: TestClient, site: Site, edge: ContractEdge, reg: dict[str, Any]
) -> None:
    """Issue 13: a move with no prepaid to carry sent no move_in (it needed fen >= 1), so the
    destination never learnt the periods issued at the source and issued them again. Now a
    move_in of 0 fen carries them; the destination books nothing and the move settles."""
    assert edge.models[NODE].prepaid[A2] == 0 and edge.models[NODE].periods[A2] == {"2026-11"}
    answer = client.post("/moves", json={"account": A2, "to_shop": "S202", "to_node": OTHER,
                                         "move": "M-empty"})  # fmt: skip
    assert answer.status_code == 201, answer.text
    install_meter(site, reg, "S202", OTHER, "000000000902")
    edge.sync(NODE)  # the move_out: nothing pending, the subsidy left cleared
    row = client.get("/moves/M-empty").json()
    assert (row["status"], row["fen"]) == ("in_transit", 0)
    move_in = command(site, row["in_command_id"])
    assert (move_in.node, move_in.kind, move_in.args) == (
        OTHER,
        "move_in",
        {"account": A2, "move": "M-empty", "fen": 0, "from_node": NODE,
         "subsidy_periods": ["2026-11"]},
    )  # fmt: skip
    edge.sync(OTHER)  # its configuration (A0002 arriving by M-empty), then the move_in
    row = client.get("/moves/M-empty").json()
    assert (row["status"], row["settle_command_id"]) == ("settled", None)
    assert client.get(f"/accounts/{A2}").json()["node"] == OTHER
    assert not edge.issue_subsidy(OTHER, A2, "2026-11")
    assert edge.issue_subsidy(OTHER, A2, "2026-12")
    assert site.ingest.issue_due() == 0
    assert system_id(System.MOVES_IN_TRANSIT) not in balances(site)  # no money moved
    assert doubles(site) == []


def test_a_refused_empty_move_in_voids_the_move_with_nothing_to_settle(
    client: TestClient, site: Site, edge: ContractEdge, reg: dict[str, Any]
) -> None:
    client.post("/moves", json={"account": A2, "to_shop": "S202", "to_node": OTHER,
                                "move": "M-none"})  # fmt: skip
    install_meter(site, reg, "S202", OTHER, "000000000902")
    edge.sync(NODE)
    edge.refuse.add(client.get("/moves/M-none").json()["in_command_id"])
    edge.sync(OTHER)
    row = client.get("/moves/M-none").json()
    assert (row["status"], row["settle_command_id"]) == ("voided", None)
    assert site.ingest.issue_due() == 0  # no pending at the source to void
    assert shop_of(site, A2) == reg["shops"]["S102"]


def test_a_voided_move_whose_old_shop_was_taken_raises_an_alarm(
    client: TestClient, site: Site, edge: ContractEdge, reg: dict[str, Any]
) -> None:
    client.post("/moves", json={"account": A1, "to_shop": "S202", "to_node": OTHER, "move": "M5"})
    with session_factory(site.engine).begin() as session:
        add(session, entities.ACCOUNTS, id="A0003", merchant_id=reg["merchant"],
            shop_id=reg["shops"]["S101"], account_type="merchant", tariff=None,
            credit_limit_fen=0, keep_power=False)  # fmt: skip
        site_config.push(session, OTHER, key=site.key, now=T0, actor=ME)
    edge.sync(NODE)
    edge.refuse.add(client.get("/moves/M5").json()["in_command_id"])
    before = registry_rows(site)
    edge.sync(OTHER)
    assert client.get("/moves/M5").json()["status"] == "voided"
    assert registry_rows(site) == before  # A0001 stays in S202: S101 is A0003's now
    with session_factory(site.engine)() as session:
        alarms = session.scalars(select(Alarm).where(Alarm.kind == "move_registry")).all()
        assert [(a.node, a.detail) for a in alarms] == [(
            NODE,
            "move M5 voided: A0001 stays in shop S202 on edge-0002 in the registry, its old "
            "shop S101 on edge-0001 holds A0003 now; put the account in its shop by hand",
        )]  # fmt: skip


def test_moves_to_a_shop_the_registry_has_not_free_change_nothing(
    client: TestClient, site: Site, reg: dict[str, Any]
) -> None:
    before, rows = counts(site), registry_rows(site)
    for body, status in (
        ({"account": A1, "to_shop": "S999", "to_node": NODE}, 404),
        ({"account": A1, "to_shop": "S201", "to_node": NODE}, 404),  # on OTHER
        ({"account": A1, "to_shop": "S103", "to_node": OTHER}, 404),
        ({"account": A1, "to_shop": "S102", "to_node": NODE}, 409),  # A0002's
        ({"account": A1, "to_shop": "S201", "to_node": OTHER}, 409),
    ):  # A0101's
        answer = client.post("/moves", json=body)
        assert answer.status_code == status, (body, answer.text)
    assert (counts(site), registry_rows(site)) == (before, rows)
    assert marked(site) == []


# -- receipts ------------------------------------------------------------------------------


def test_receipts_are_numbered_contiguously(client: TestClient, site: Site) -> None:
    for n in range(3):
        made = client.post("/recharges", json={"account": A2, "fen": 100 + n, "method": "cash",
                                               "payment": f"PAY{n}"})  # fmt: skip
        assert made.json()["receipt"] == f"2026-00000{n + 1}"  # issued at the desk
        again = client.post(f"/receipts/recharges/PAY{n}")  # a reprint: the same receipt
        assert (again.status_code, again.json()["number"]) == (200, f"2026-00000{n + 1}")
    numbers = [r["number"] for r in client.get("/receipts").json()["items"]]
    assert numbers == ["2026-000001", "2026-000002", "2026-000003"]
    one = client.get("/receipts/2026-000002").json()
    assert (one["fen"], one["yuan"], one["capital"], one["method"]) == (
        101,
        "1.01",
        "壹元零壹分",
        "cash",
    )
    assert client.get("/receipts/2026-999999").status_code == 404
    assert client.post("/receipts/recharges/NOPE").status_code == 404
