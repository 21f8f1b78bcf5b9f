"""Receipts finance accepts, end to end: the API books an operation, a concentrator that keeps
the command contract (`contract_edge`) books its side through the real ingest, and the receipt
says where the operation stands — pending, booked (with the balance after it) or void (with the
concentrator's reason) — under the site's print setting, with the site's and the merchant's
names, the real amount of a swap, whole order numbers, kWh and words, as JSON, text and PDF
(text extracted with pypdf), in Chinese or English."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader

from cloud.db.engine import session_factory
from cloud.registry import entities
from cloud.registry import rows as registry
from ledger import entry_ids
from ledger.accounts import Pocket, System, pocket_id, system_id
from ledger.ids import derive_id
from ledger.transfers import Code
from tests.cloud.api.conftest import M1, NODE, OTHER, Site
from tests.cloud.api.contract_edge import ContractEdge, edge_transfer
from tests.cloud.fake_edge import T0
from tests.cloud.registry_world import ME, make_registry

A1 = "A0001"
AVAILABLE = 10_000 - 837 - 1_000  # A0001's available prepaid after the site fixture's opening
OPENING_T3 = f"{derive_id('test', NODE, 3):032x}"  # the site fixture's desk recharge of A0001
LONG_ORDER = "WX20261124093000-" + "8" * 47  # a 64-character payment order


@pytest.fixture
def world(site: Site) -> dict[str, Any]:
    """The registry over the site fixture: A0001 in shop S101 of site Market (prints
    receipts), merchant Li Wei."""
    with session_factory(site.engine).begin() as session:
        return make_registry(session, register=False)


@pytest.fixture
def edge(site: Site) -> ContractEdge:
    return ContractEdge(site)


def recharge(client: TestClient, fen: int, payment: str, method: str = "cash") -> dict[str, Any]:
    answer = client.post("/recharges", json={"account": A1, "fen": fen, "method": method,
                                             "payment": payment})  # fmt: skip
    assert answer.status_code == 201, answer.text
    return answer.json()


def receipt(client: TestClient, number: str, **params: str) -> Any:
    answer = client.get(f"/receipts/{number}", params=params)
    assert answer.status_code == 200, answer.text
    if params.get("format") == "pdf":
        assert answer.headers["content-type"] == "application/pdf"
        pages = PdfReader(io.BytesIO(answer.content)).pages
        return "\n".join(page.extract_text() for page in pages)
    return answer.text if params.get("format") == "txt" else answer.json()


def test_print_setting_site_and_merchant_are_the_registrys(
    client: TestClient, world: dict[str, Any], site: Site
) -> None:
    number = recharge(client, 5_000, "P-PRINT")["receipt"]
    shown = receipt(client, number)
    assert (shown["site"], shown["merchant"], shown["shop"], shown["print"]) == (
        "Market", "Li Wei", "S101", True,
    )  # fmt: skip
    text = receipt(client, number, format="txt")
    assert "Market 收据" in text and "项目: Market" in text and "商户: Li Wei" in text
    with session_factory(site.engine).begin() as session:
        registry.update(session, entities.SITES, world["site"], {"print_receipts": False}, ME, T0)
    assert receipt(client, number)["print"] is False  # the site's setting, read when shown
    assert receipt(client, number)["site"] == "Market"


def test_balance_after_is_pending_until_the_concentrator_books_it(
    client: TestClient, world: dict[str, Any], site: Site, edge: ContractEdge
) -> None:
    number = recharge(client, 100_000, "P-1000")["receipt"]
    before = receipt(client, number)
    assert (before["state"], before["balance_after_fen"], before["booked"]) == (
        "pending", None, None,
    )  # fmt: skip
    assert "入账后余额: 待入账: 集中器入账后显示" in receipt(client, number, format="txt")
    edge.sync(NODE)
    after = receipt(client, number)
    assert (after["state"], after["fen"], after["balance_after_fen"]) == (
        "booked", 100_000, AVAILABLE + 100_000,
    )  # fmt: skip
    text = receipt(client, number, format="txt")
    assert "入账后余额: ¥1081.63" in text and "入账时间: 2026-11-24 16:00:00" in text
    assert text.count("P-1000") == 1  # the order number once
    # Energy billed after the top-up does not change what the balance was just after it.
    spent = edge_transfer(entry_ids.consume(M1, 101_200, 101_700, "prepaid"),
                          pocket_id(A1, Pocket.PREPAID), system_id(System.ENERGY_SALES), 418,
                          Code.CONSUME, refs={"meter": M1, "reg_from": 101_200,
                                              "reg_to": 101_700, "energy_wh": 500})  # fmt: skip
    site.upload(NODE, [spent])
    assert receipt(client, number)["balance_after_fen"] == AVAILABLE + 100_000
    second = recharge(client, 1_000, "P-10")["receipt"]
    edge.sync(NODE)
    assert receipt(client, second)["balance_after_fen"] == AVAILABLE + 100_000 - 418 + 1_000


def test_balance_after_counts_another_concentrator_up_to_its_time(
    client: TestClient, world: dict[str, Any], site: Site, edge: ContractEdge
) -> None:
    """An account that moved has entries on two chains: the other chain's count up to the
    entry's time (there is no order across chains but time)."""
    number = recharge(client, 1_000, "P-MOVED")["receipt"]
    edge.sync(NODE)
    transit = system_id(System.MOVES_IN_TRANSIT)
    arrived = [
        dataclasses.replace(
            edge_transfer(derive_id("moved", n), transit, pocket_id(A1, Pocket.PREPAID), fen,
                          Code.MOVE, refs={"move": f"M{n}"}),
            time=(T0 + dt.timedelta(hours=hours)).isoformat(),
        )
        for n, fen, hours in ((1, 700, -1), (2, 900, 1))
    ]  # fmt: skip
    site.upload(OTHER, arrived)
    assert receipt(client, number)["balance_after_fen"] == AVAILABLE + 1_000 + 700


def test_a_refused_recharge_has_a_void_receipt_with_the_reason(
    client: TestClient, world: dict[str, Any], edge: ContractEdge
) -> None:
    made = recharge(client, 2_000, "P-VOID")
    edge.refuse.add(made["command_id"])
    edge.sync(NODE)
    shown = receipt(client, made["receipt"])
    assert (shown["state"], shown["void_reason"], shown["balance_after_fen"]) == (
        "void", "told to", None,
    )  # fmt: skip
    text = receipt(client, made["receipt"], format="txt")
    assert text.splitlines()[0].strip() == "Market 收据 [作废]"
    assert "作废原因: told to" in text and "入账后余额: 作废: 未入账" in text
    printed = receipt(client, made["receipt"], format="pdf")
    assert "作废" in printed and "told to" in printed
    english = receipt(client, made["receipt"], format="txt", lang="en")
    assert "Market Receipt [VOID]" in english and "Void reason: told to" in english


def test_a_correction_refused_is_void_too(
    client: TestClient, world: dict[str, Any], edge: ContractEdge
) -> None:
    answer = client.post(
        "/corrections",
        json={"account": A1, "fen": -300, "original": OPENING_T3, "reason": "double"},
    )
    assert answer.status_code == 201, answer.text
    edge.refuse.add(answer.json()["command_id"])
    edge.sync(NODE)
    shown = receipt(client, answer.json()["receipt"])
    assert (shown["state"], shown["void_reason"]) == ("void", "told to")


def test_a_swap_receipt_shows_its_final_bill_in_kwh(
    client: TestClient, world: dict[str, Any], site: Site
) -> None:
    swap = {
        "old": M1,
        "final_wh": 101_500,
        "initial_wh": 0,
        "new": {"address": "000000000777", "protocol": "dlt645", "multiplier": 1},
    }
    answer = client.post("/meter-swaps", json=swap)
    assert answer.status_code == 201, answer.text
    row = answer.json()
    assert receipt(client, row["receipt"])["state"] == "pending"
    # The concentrator bills the old meter up to its final register and applies the swap.
    refs = {
        "meter": M1,
        "reg_from": 101_200,
        "reg_to": 101_500,
        "energy_wh": 300,
        "swap": row["id"],
        "tariff": "peak:200@11000;valley:100@4000",
        "cost_cum": 0,
    }
    bill = edge_transfer(entry_ids.meter_settle(row["id"], "prepaid"),
                         pocket_id(A1, Pocket.PREPAID), system_id(System.ENERGY_SALES), 26,
                         Code.METER_SETTLE, refs=refs)  # fmt: skip
    applied = {"command": row["command_id"], "status": "applied", "seqs": [],
               "outcomes": ["ok"]}  # fmt: skip
    site.upload(NODE, [bill], results=[applied])
    shown = receipt(client, row["receipt"])
    assert (shown["state"], shown["fen"], shown["yuan"], shown["energy_wh"]) == (
        "booked", 26, "0.26", 300,
    )  # fmt: skip
    assert shown["bill_wh"] == {"peak": 200, "valley": 100}
    assert shown["balance_after_fen"] == AVAILABLE - 26
    text = receipt(client, row["receipt"], format="txt")
    assert "金额: ¥0.26" in text and "旧表末次读数: 101.500 kWh" in text
    assert "结算电量: 0.300 kWh" in text and "峰: 0.200 kWh" in text and "谷: 0.100 kWh" in text
    assert "101500" not in text  # energy in kWh, never Wh


def test_a_refund_receipt_shows_what_was_paid_and_the_balance_after_it(
    client: TestClient, world: dict[str, Any], edge: ContractEdge
) -> None:
    body = {"account": A1, "method": "cash", "grace_wh": 0, "grace_hours": 0, "refund": "R1"}
    assert client.post("/refunds", json=body).status_code == 201
    edge.sync(NODE)
    paid = client.post("/refunds/R1/pay")
    assert paid.status_code == 200, paid.text
    shown = receipt(client, paid.json()["receipt"])
    assert (shown["kind"], shown["state"], shown["fen"], shown["balance_after_fen"]) == (
        "refund", "booked", AVAILABLE, 0,
    )  # fmt: skip
    assert "方式: 现金" in receipt(client, paid.json()["receipt"], format="txt")


def test_the_pdf_prints_the_whole_order_number_and_words(
    client: TestClient, world: dict[str, Any], edge: ContractEdge
) -> None:
    number = recharge(client, 1_234, LONG_ORDER, method="wechat")["receipt"]
    pending = receipt(client, number, format="pdf")
    assert LONG_ORDER in pending.replace("\n", "")  # wrapped, never cut
    assert "…" not in pending
    for words in ("Market 收据", "商户: Li Wei", "微信支付", "待入账", "壹拾贰元叁角肆分"):
        assert words in pending, words
    edge.sync(NODE)
    booked = receipt(client, number, format="pdf")
    assert "已入账" in booked and f"¥{(AVAILABLE + 1_234) / 100:.2f}" in booked
    english = receipt(client, number, format="pdf", lang="en")
    for words in ("Market Receipt", "WeChat Pay", "Booked", "Balance after"):
        assert words in english, words
    assert client.get(f"/receipts/{number}", params={"lang": "fr"}).status_code == 422
    assert client.get(f"/receipts/{number}", params={"format": "doc"}).status_code == 422


def test_a_receipt_of_no_registered_site_is_not_printed(client: TestClient) -> None:
    number = recharge(client, 100, "P-NOSITE")["receipt"]
    shown = receipt(client, number)
    assert (shown["site"], shown["merchant"], shown["print"]) == ("", "", False)
    assert "Voltbook 收据" in receipt(client, number, format="txt")
