"""What no notification settles: the sweeper asks the provider (the sandbox) and settles or
closes; an order closed here and then paid there goes to `refunding`; the close endpoint
closes at the provider too; a recharge the concentrator refused sends the order back."""

from __future__ import annotations

import dataclasses

import httpx
import pytest
from sqlalchemy import update

from cloud.db.models import Concentrator, Recharge
from cloud.payments.sandbox.state import CLOSED, SandboxRefused
from cloud.payments.sweeper import QUIET_S
from tests.cloud.api.conftest import NODE
from tests.cloud.payments.conftest import World


def test_a_missing_notice_is_settled_by_query(world: World) -> None:
    world.knobs.drop = True
    no = str(world.order("wechat", "native")["out_trade_no"])
    world.sandbox.pay(no)
    assert world.sweep().settled == []  # too young to ask about
    world.clock.advance(seconds=QUIET_S + 1)
    report = world.sweep()
    assert report.settled == [no] and report.failed == []
    assert world.row(no).state == "credited"
    assert world.causes(no)[1:] == [("created", "paid", "query"), ("paid", "credited", "query")]
    assert world.verdicts(no) == []  # no notice ever came
    assert world.sweep().settled == []  # and nothing twice
    assert len(world.recharges(no)) == 1
    world.books_sound()


def test_a_missing_alipay_notice_is_settled_by_query(world: World) -> None:
    world.knobs.drop = True
    no = str(world.order("alipay", "precreate")["out_trade_no"])
    world.sandbox.pay(no)
    world.clock.advance(seconds=QUIET_S + 1)
    assert world.sweep().settled == [no]
    assert world.row(no).state == "credited"
    world.books_sound()


@pytest.mark.parametrize("provider", ["wechat", "alipay"])
def test_expiry_closes_at_the_provider_and_here(world: World, provider: str) -> None:
    no = str(
        world.order(provider, "native" if provider == "wechat" else "precreate")["out_trade_no"]
    )
    world.clock.advance(seconds=QUIET_S + 1)
    assert world.sweep().expired == []  # asked, unpaid, not expired yet
    world.clock.advance(seconds=1800)
    assert world.sweep().expired == [no]
    row = world.row(no)
    assert row.state == "closed" and row.closed_at is not None
    assert world.causes(no)[-1] == ("created", "closed", "expired")
    sandboxed = world.sandbox.state.order(no)
    assert sandboxed is not None and sandboxed.state == CLOSED
    with pytest.raises(SandboxRefused):
        world.sandbox.pay(no)
    world.books_sound()


def test_cancel_closes_at_the_provider_and_a_late_payment_is_sent_back(world: World) -> None:
    no = str(world.order("wechat", "native")["out_trade_no"])
    closed = world.merchant.post(f"/payments/orders/{no}/close")
    assert closed.status_code == 200, closed.text
    assert closed.json()["state"] == "closed"
    assert closed.json()["transitions"][-1]["cause"] == "cancelled"
    assert world.sandbox.state.order(no).state == CLOSED  # type: ignore[union-attr]
    assert world.client.post(f"/payments/orders/{no}/close").status_code == 409
    # the payment crossed the close: the provider took it anyway and says so
    world.sandbox.pay(no, even_closed=True)
    row = world.wait_state(no, "refunded")  # sent back to the original payment, at once
    assert row.transaction_id and row.paid_fen == row.refunded_fen == 1990
    assert world.recharges(no) == []
    assert ("closed", "refunding", "notice") in world.causes(no)
    assert world.refunds(no) == [("late_payment", 1990, "success")]
    world.books_sound()


def test_a_paid_order_cannot_be_cancelled_and_is_settled_instead(world: World) -> None:
    world.knobs.drop = True
    no = str(world.order("wechat", "native")["out_trade_no"])
    world.sandbox.pay(no)
    answer = world.client.post(f"/payments/orders/{no}/close")
    assert answer.status_code == 200 and answer.json()["state"] == "credited"
    world.books_sound()


def test_a_refused_recharge_sends_the_order_to_refunding(world: World) -> None:
    no = str(world.order("wechat", "native")["out_trade_no"])
    world.sandbox.pay(no)
    world.wait_state(no, "credited")
    with world.session() as session:  # as `cloud.operations.settlements` does on a refusal
        session.execute(update(Recharge).where(Recharge.payment == no)
                        .values(status="voided", reason="account unknown",
                                voided=world.clock()))  # fmt: skip
        session.commit()
    assert world.sweep().refused == [no]
    assert ("credited", "refunding", "recharge_refused") in world.causes(no)
    assert world.sweep().refused == []
    world.wait_state(no, "refunded")
    assert world.refunds(no) == [("recharge_refused", 1990, "success")]


def test_a_provider_down_fails_one_order_not_the_sweep(world: World) -> None:
    no = str(world.order("wechat", "native")["out_trade_no"])
    world.clock.advance(seconds=QUIET_S + 1)
    wechat = world.providers.wechat
    assert wechat is not None
    wechat.settings = dataclasses.replace(wechat.settings, api_base="http://127.0.0.1:9")
    report = world.sweep()
    assert report.failed == [no] and world.row(no).state == "created"


def test_who_sees_and_opens_what(world: World) -> None:
    mine = world.merchant.post("/payments/orders", json={
        "account": "A0001", "fen": 500, "provider": "alipay", "channel": "precreate"})  # fmt: skip
    assert mine.status_code == 201
    theirs = world.order("alipay", "precreate", account="A0002")
    other = {"account": "A0002", "fen": 500, "provider": "alipay", "channel": "precreate"}
    assert world.merchant.post("/payments/orders", json=other).status_code == 403
    assert world.merchant.get(f"/payments/orders/{theirs['out_trade_no']}").status_code == 404
    listed = world.merchant.get("/payments/orders").json()
    assert [o["out_trade_no"] for o in listed["items"]] == [mine.json()["out_trade_no"]]
    staff = world.client.get("/payments/orders", params={"account": "A0002", "state": "created"})
    assert [o["out_trade_no"] for o in staff.json()["items"]] == [theirs["out_trade_no"]]
    unknown = {"account": "A9999", "fen": 500, "provider": "alipay", "channel": "precreate"}
    assert world.client.post("/payments/orders", json=unknown).status_code == 404
    assert httpx.get(f"{world.cloud_url}/payments/orders").status_code == 401


def test_a_payment_that_cannot_be_credited_waits_paid_and_is_credited_later(world: World) -> None:
    def quarantine(status: str) -> None:
        with world.session() as session:
            session.execute(update(Concentrator).where(Concentrator.node == NODE)
                            .values(status=status, quarantine_reason="test"))  # fmt: skip
            session.commit()

    quarantine("quarantined")
    no = str(world.order("wechat", "native")["out_trade_no"])
    world.sandbox.pay(no)
    world.wait_state(no, "paid")  # the notice was taken: the money is ours, the credit waits
    assert world.recharges(no) == [] and world.alarms("payment_not_credited") == 1
    assert world.sweep().credited == [] and world.alarms("payment_not_credited") == 1
    quarantine("active")
    assert world.sweep().credited == [no]
    assert world.row(no).state == "credited" and len(world.recharges(no)) == 1
    world.books_sound()
