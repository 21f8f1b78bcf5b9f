"""The daily reconciliation against the sandbox's bills (downloaded over loopback, in the
providers' formats) on SQLite and PostgreSQL: a clean day, each kind of difference as a row
and an alarm (once), totals equal to the ledger's recharges and refunds, the Excel and PDF
finance reads, and the sign-off (finance only, logged)."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from pypdf import PdfReader
from sqlalchemy import Engine, func, select

from cloud.db.auth import OperatorLogEntry
from cloud.db.models import Recharge
from cloud.db.payments import PaymentOrder, PaymentRefund
from cloud.db.reconciliations import PaymentReconciliation
from cloud.errors import Conflict, Invalid
from cloud.payments import daily, reconcile, refunds
from cloud.payments.sandbox.refunds import paid_trade
from cloud.people.auth import Role
from ledger.chain import NodeKey
from tests.cloud.api.conftest import bearer, tokens
from tests.cloud.conftest import Clock
from tests.cloud.fake_edge import T0
from tests.cloud.payments.refund_world import World, wait_for, world_on

__all__ = ["tokens"]  # the API tests' fixture, used here
DAY = T0.astimezone(reconcile.BEIJING).date()


@pytest.fixture
def world(engine: Engine, cloud_key: NodeKey, clock: Clock, tmp_path: Path) -> Iterator[World]:
    with world_on(engine, cloud_key, clock, tmp_path / "pay") as built:
        yield built


def refund(world: World, no: str, fen: int, number: str) -> None:
    with world.sessions.begin() as session:
        refunds.start(
            session,
            world.providers,
            out_trade_no=no,
            fen=fen,
            out_refund_no=number,
            reason="refund",
            now=world.clock(),
        )


def run(world: World) -> PaymentReconciliation:
    with world.sessions.begin() as session:
        row = reconcile.reconcile(session, world.providers, DAY, world.clock())
        session.expunge(row)
        return row


def ledger_figures(world: World, provider: str) -> tuple[int, int, int]:
    """Count and fen of the provider's credited orders' recharges, and of its refunds."""
    with world.sessions() as session:
        count, credited = session.execute(
            select(func.count(), func.coalesce(func.sum(Recharge.fen), 0))
            .join(PaymentOrder, PaymentOrder.out_trade_no == Recharge.payment)
            .where(PaymentOrder.provider == provider)
        ).one()
        refunded = session.scalar(
            select(func.coalesce(func.sum(PaymentRefund.fen), 0))
            .join(PaymentOrder, PaymentOrder.out_trade_no == PaymentRefund.out_trade_no)
            .where(PaymentOrder.provider == provider, PaymentRefund.state == "success")
        )
    return int(count), int(credited), int(refunded or 0)


def clean_day(world: World) -> dict[str, str]:
    orders = {
        "w1": world.paid_order("wechat", 1_990),
        "w2": world.paid_order("wechat", 12_345),
        "a1": world.paid_order("alipay", 5_000),
    }
    refund(world, orders["w2"], 345, "RF-1")
    refund(world, orders["a1"], 1_000, "RF-2")
    wait_for(lambda: world.refund("RF-1").state == "success")
    return orders


def test_a_clean_day_has_no_rows_and_the_ledgers_totals(world: World) -> None:
    clean_day(world)
    with pytest.raises(Invalid, match="not over"):
        run(world)
    world.clock.advance(days=1)
    row = run(world)
    assert (row.state, row.rows) == ("clean", [])
    for provider in ("wechat", "alipay"):
        figures = row.totals[provider]
        count, credited, refunded = ledger_figures(world, provider)
        assert (figures["bill_count"], figures["count"]) == (count, count)
        assert (
            figures["bill_paid_fen"] == figures["paid_fen"] == figures["credited_fen"] == credited
        )
        assert figures["bill_refunded_fen"] == figures["refunded_fen"] == refunded
    assert row.totals["wechat"]["paid_fen"] == 14_335
    assert row.totals["alipay"]["refunded_fen"] == 1_000
    assert world.alarms("reconciliation_mismatch") == []


def test_every_kind_of_difference_is_a_row_and_one_alarm(world: World) -> None:
    clean_day(world)
    world.sandbox_paid("wechat", 700, "VB-NOT-OURS")  # paid, order unknown
    unrecorded = world.paid_order("wechat", 800, state="created", credited=False)
    uncredited = world.paid_order("alipay", 900, state="paid", credited=False)
    never_paid = world.paid_order("alipay", 1_100)
    with world.sandbox.state.lock:
        del world.sandbox.state.orders[never_paid]  # the provider has no such payment
    differs = world.paid_order("wechat", 1_000, ours_fen=1_100)
    with world.sessions.begin() as session:
        order = session.get(PaymentOrder, unrecorded)
        assert order is not None
        order.paid_fen = None
        session.add(
            PaymentRefund(
                out_refund_no="RF-GHOST",
                out_trade_no=uncredited,
                refund=None,
                fen=100,
                state="success",
                reason="refund",
                provider_refund_id="x",
                created=world.clock(),
                finished=world.clock(),
            )
        )
    stranger = world.paid_order("alipay", 2_000)
    with world.sandbox.state.lock:  # refunded at the provider's console, not by us
        world.desk.alipay_refund(
            paid_trade(world.sandbox.state.orders[stranger], "alipay"),
            {"out_request_no": "RF-CONSOLE", "refund_amount": "3.00"},
            world.clock(),
        )
    slow = world.paid_order("wechat", 400)
    world.sandbox.state.knobs.drop = True  # its refund notice never comes
    refund(world, slow, 400, "RF-SLOW")
    wait_for(lambda: world.desk.refunds[("wechat", "RF-SLOW")].status == "SUCCESS")
    world.clock.advance(days=1)
    row = run(world)
    found = sorted(
        (r["provider"], r["kind"], r["out_trade_no"], r["out_refund_no"]) for r in row.rows
    )
    assert found == sorted(
        [
            ("wechat", "paid_not_ours", "VB-NOT-OURS", ""),
            ("wechat", "paid_not_recorded", unrecorded, ""),
            ("alipay", "paid_not_credited", uncredited, ""),
            ("alipay", "credited_not_paid", never_paid, ""),
            ("wechat", "amount_mismatch", differs, ""),
            ("alipay", "refund_not_ours", stranger, "RF-CONSOLE"),
            ("alipay", "refund_not_at_provider", uncredited, "RF-GHOST"),
            ("wechat", "refund_state_mismatch", slow, "RF-SLOW"),
        ]
    )
    mismatch = next(r for r in row.rows if r["kind"] == "amount_mismatch")
    assert (mismatch["ours_fen"], mismatch["provider_fen"]) == (1_100, 1_000)
    assert row.state == "differences"
    assert len(world.alarms("reconciliation_mismatch")) == 8
    again = run(world)  # made again: the same differences raise nothing new
    assert (again.runs, len(again.rows)) == (2, 8)
    assert len(world.alarms("reconciliation_mismatch")) == 8


def test_finance_reads_and_signs_off(world: World, tokens: dict[Role, str]) -> None:
    clean_day(world)
    world.sandbox_paid("alipay", 700, "VB-NOT-OURS")
    world.clock.advance(days=1)
    run(world)
    with TestClient(world.app) as client:
        client.headers.update(bearer(tokens[Role.AUDITOR]))
        listed = client.get("/payments/reconciliations").json()
        assert [r["day"] for r in listed["items"]] == [DAY.isoformat()]
        path = f"/payments/reconciliations/{DAY.isoformat()}"
        assert client.get(path).json()["rows"][0]["kind"] == "paid_not_ours"
        sheet = client.get(path, params={"format": "xlsx"})
        book = load_workbook(io.BytesIO(sheet.content))
        assert book.sheetnames == ["差异", "合计"]
        rows = list(book["差异"].iter_rows(values_only=True))
        assert rows[0][:3] == ("支付渠道", "差异类型", "商户订单号")
        assert rows[1][:3] == ("alipay", "paid_not_ours", "VB-NOT-OURS")
        totals = list(book["合计"].iter_rows(values_only=True))
        assert totals[-1][0] == "合计" and str(totals[-1][2]) == "200.35"  # yuan, exact
        for lang, words in (
            ("zh", ["支付对账单", "渠道收款无对应订单", "200.35"]),
            ("en", ["Payment reconciliation", "Paid, order unknown"]),
        ):
            printed = client.get(path, params={"format": "pdf", "lang": lang})
            text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(printed.content)).pages)
            assert all(w in text for w in words), text
        sign = f"{path}/sign-off"
        for role in (Role.AUDITOR, Role.OPERATOR, Role.ADMIN, Role.MERCHANT):
            answer = client.post(sign, json={"note": "ok"}, headers=bearer(tokens[role]))
            assert answer.status_code == 403, role
        finance = bearer(tokens[Role.FINANCE])
        assert client.post(sign, json={}, headers=finance).status_code == 422  # a note, please
        assert (
            client.post(
                "/payments/reconciliations/2026-01-01/sign-off", json={"note": "x"}, headers=finance
            ).status_code
            == 404
        )
        signed = client.post(sign, json={"note": "refunded by hand"}, headers=finance)
        assert signed.status_code == 200, signed.text
        assert signed.json()["signed_off_by"] == "finance-1"
        assert client.post(sign, json={"note": "again"}, headers=finance).status_code == 200
    with world.sessions() as session:
        logged = session.scalars(
            select(OperatorLogEntry.user).where(
                OperatorLogEntry.action == "reconciliation.sign_off"
            )
        ).all()
    assert logged == ["finance-1"]  # once
    with pytest.raises(Conflict, match="signed off"):
        run(world)
    assert world.clock() - dt.timedelta(days=1) >= T0


def test_a_day_with_nothing_is_clean(world: World) -> None:
    world.clock.advance(days=1)  # neither provider has a bill: NO_STATEMENT_EXIST, not_exist
    row = run(world)
    assert (row.state, row.rows) == ("clean", [])
    assert {p: (f["bill_count"], f["count"], f["paid_fen"]) for p, f in row.totals.items()} == {
        "wechat": (0, 0, 0),
        "alipay": (0, 0, 0),
    }


def test_the_server_rounds_check_refunds_and_make_yesterday(world: World) -> None:
    orders = clean_day(world)
    world.sandbox.state.knobs.drop = True
    refund(world, orders["w1"], 990, "RF-LOOP")  # its notice never comes
    wait_for(lambda: world.desk.refunds[("wechat", "RF-LOOP")].status == "SUCCESS")
    rounds = daily.RefundRounds(world.sessions, world.providers, world.clock)
    rounds.round()  # today is not over: refunds checked, no reconciliation
    assert world.refund("RF-LOOP").state == "success"
    with world.sessions() as session:
        assert session.get(PaymentReconciliation, DAY) is None
    world.clock.advance(days=1)  # 16:00 the next day, after the bills are ready
    rounds.round()
    rounds.round()  # made once
    with world.sessions() as session:
        made = session.get(PaymentReconciliation, DAY)
        assert made is not None and (made.state, made.runs) == ("clean", 1)
