"""Refunds to the original payment against the provider sandbox on loopback (both providers,
keys made in the test), the cloud's API on loopback for the refund notices, on SQLite and
PostgreSQL: the refund and its notice, the same number again, partial refunds, concurrent
duplicate notices, forged and mismatched notices, ABNORMAL → failed with an alarm, a provider
that did not answer settled by the check.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select

from cloud.db.payments import PaymentNotice, PaymentOrder, PaymentRefund, PaymentTransition
from cloud.errors import Conflict
from cloud.payments import refunds
from cloud.payments.refunds import RefundState
from cloud.payments.sandbox import refunds as sandbox_refunds
from cloud.payments.sandbox.keys import new_key
from ledger.chain import NodeKey
from tests.cloud.conftest import Clock
from tests.cloud.payments.refund_world import World, providers_for, wait_for, world_on


@pytest.fixture
def world(engine: Engine, cloud_key: NodeKey, clock: Clock, tmp_path: Path) -> Iterator[World]:
    with world_on(engine, cloud_key, clock, tmp_path / "pay") as built:
        yield built


def start(world: World, no: str, fen: int, number: str, **more: object) -> PaymentRefund:
    with world.sessions.begin() as session:
        row = refunds.start(
            session,
            world.providers,
            out_trade_no=no,
            fen=fen,
            out_refund_no=number,
            reason=str(more.get("reason", "refund")),
            now=world.clock(),
        )
        session.expunge(row)
        return row


def transitions(world: World, no: str) -> list[tuple[str | None, str, str]]:
    with world.sessions() as session:
        return [
            (t.from_state, t.to_state, t.cause)
            for t in session.scalars(
                select(PaymentTransition)
                .where(PaymentTransition.out_trade_no == no)
                .order_by(PaymentTransition.id)
            )
        ]


def test_a_wechat_refund_ends_by_its_notice(world: World) -> None:
    no = world.paid_order("wechat", 1_990)
    row = start(world, no, 1_990, "RF-W-1")
    assert (row.state, row.provider_refund_id is not None) == ("processing", True)
    assert world.order(no).state == "refunding"
    wait_for(lambda: world.refund("RF-W-1").state == "success")  # the notice came back
    order = world.order(no)
    assert (order.state, order.refunded_fen) == ("refunded", 1_990)
    assert transitions(world, no) == [
        ("credited", "refunding", "refund"),
        ("refunding", "refunded", "notice"),
    ]
    # Answered 204 (taken): the answer reaches the provider just after the commit it follows.
    wait_for(lambda: bool(world.sandbox.state.accepted(no, "refund")))


def test_the_same_number_refunds_once_and_partial_refunds_add_up(world: World) -> None:
    no = world.paid_order("wechat", 3_000)
    first = start(world, no, 1_000, "RF-P-1")
    again = start(world, no, 1_000, "RF-P-1")  # a retry: the same refund
    assert again.provider_refund_id == first.provider_refund_id
    assert len([r for r in world.desk.refunds.values() if r.out_refund_no == "RF-P-1"]) == 1
    with pytest.raises(Conflict, match="other content"):
        start(world, no, 1_500, "RF-P-1")
    start(world, no, 1_500, "RF-P-2")  # two in flight: 2 500 of 3 000
    with pytest.raises(Conflict, match="500 fen left"):
        start(world, no, 600, "RF-P-3")
    wait_for(lambda: world.order(no).refunded_fen == 2_500)
    order = world.order(no)
    assert order.state == "refunded"  # when the last in flight ended
    start(world, no, 500, "RF-P-3")  # refunded ─refund→ refunding: the rest
    wait_for(lambda: world.order(no).refunded_fen == 3_000)
    assert world.desk.refunded_fen("wechat", no) == 3_000


def test_alipay_refunds_at_once_and_a_retry_changes_nothing(world: World) -> None:
    no = world.paid_order("alipay", 5_000)
    row = start(world, no, 1_234, "RF-A-1")
    assert row.state == "success" and row.provider_refund_id is not None
    assert world.order(no).refunded_fen == 1_234
    assert start(world, no, 1_234, "RF-A-1").state == "success"
    assert world.order(no).refunded_fen == 1_234  # once
    assert world.desk.refunded_fen("alipay", no) == 1_234
    world.desk.knob["RF-A-2"] = "CLOSED"
    refused = start(world, no, 100, "RF-A-2")
    assert refused.state == "closed"
    assert (world.order(no).state, world.order(no).refunded_fen) == ("failed", 1_234)
    assert world.alarms("payment_refund_failed")


def test_abnormal_fails_the_order_with_an_alarm(world: World) -> None:
    no = world.paid_order("wechat", 800)
    world.desk.knob["*"] = "ABNORMAL"
    start(world, no, 800, "RF-X-1")
    wait_for(lambda: world.refund("RF-X-1").state == "abnormal")
    order = world.order(no)
    assert (order.state, order.refunded_fen) == ("failed", 0)
    assert any("RF-X-1" in a for a in world.alarms("payment_refund_failed"))


def test_twenty_concurrent_duplicate_notices_end_the_refund_once(world: World) -> None:
    no = world.paid_order("wechat", 2_000)
    world.desk.settle_after_s = 3600.0  # no timer: the test sends the notices
    start(world, no, 2_000, "RF-D-1")
    refund = world.desk.refunds[("wechat", "RF-D-1")]
    with world.sandbox.state.lock:
        world.desk.settle(refund, world.clock())
    body, headers = sandbox_refunds.refund_notice(world.sandbox, refund).build()
    url = f"{world.cloud_url}/payments/wechat/refund-notify"
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(
            pool.map(
                lambda _: httpx.post(url, content=body, headers=headers, timeout=30), range(20)
            )
        )
    assert [a.status_code for a in answers] == [204] * 20, [a.text for a in answers]
    assert (world.refund("RF-D-1").state, world.order(no).refunded_fen) == ("success", 2_000)
    with world.sessions() as session:
        verdicts = session.scalars(
            select(PaymentNotice.verdict).where(PaymentNotice.out_trade_no == no)
        ).all()
        ended = session.scalar(
            select(func.count())
            .select_from(PaymentTransition)
            .where(PaymentTransition.out_trade_no == no, PaymentTransition.to_state == "refunded")
        )
    assert sorted(verdicts) == ["accepted"] + ["duplicate"] * 19
    assert ended == 1
    # a day later, the same notice (signed anew) is still a duplicate that changes nothing
    world.clock.advance(days=1)
    body, headers = sandbox_refunds.refund_notice(world.sandbox, refund).build()
    assert httpx.post(url, content=body, headers=headers).status_code == 204
    assert world.order(no).refunded_fen == 2_000


def test_forged_stale_and_mismatched_notices_change_nothing(world: World) -> None:
    no = world.paid_order("wechat", 2_000)
    world.desk.settle_after_s = 3600.0
    start(world, no, 2_000, "RF-F-1")
    refund = world.desk.refunds[("wechat", "RF-F-1")]
    with world.sandbox.state.lock:
        world.desk.settle(refund, world.clock())
    url = f"{world.cloud_url}/payments/wechat/refund-notify"
    body, headers = sandbox_refunds.refund_notice(world.sandbox, refund).build()
    serial = world.sandbox.keys.platform[0][0]
    world.sandbox.keys.platform[0] = (serial, new_key())  # a forger with the right serial
    forged_body, forged = sandbox_refunds.refund_notice(world.sandbox, refund).build()
    answer = httpx.post(url, content=forged_body, headers=forged)
    assert (answer.status_code, answer.json()["code"]) == (401, "FAIL")
    tampered = body.replace(b'"REFUND.SUCCESS"', b'"REFUND.CLOSED"')
    assert httpx.post(url, content=tampered, headers=headers).status_code == 401
    probe = headers | {"Wechatpay-Signature": "WECHATPAY/SIGNTEST/" + "A" * 40}
    assert httpx.post(url, content=body, headers=probe).status_code == 401
    world.clock.advance(minutes=6)
    assert httpx.post(url, content=body, headers=headers).status_code == 401  # stale
    assert world.refund("RF-F-1").state == "processing"
    assert world.order(no).refunded_fen == 0
    with world.sessions() as session:
        refused = session.scalars(
            select(PaymentNotice.reason).where(PaymentNotice.verdict == "refused")
        ).all()
    assert len(refused) == 4 and any("stale" in r for r in refused)
    assert not world.alarms("payment_mismatch")


def test_a_notice_for_another_amount_is_refused_with_an_alarm(world: World) -> None:
    no = world.paid_order("wechat", 2_000)
    world.desk.settle_after_s = 3600.0
    start(world, no, 700, "RF-M-1")
    refund = world.desk.refunds[("wechat", "RF-M-1")]
    with world.sandbox.state.lock:
        world.desk.settle(refund, world.clock())
        refund.fen = 900  # the provider's notice says 900
    body, headers = sandbox_refunds.refund_notice(world.sandbox, refund).build()
    answer = httpx.post(
        f"{world.cloud_url}/payments/wechat/refund-notify", content=body, headers=headers
    )
    assert answer.status_code == 401 and "mismatch" in answer.json()["message"]
    assert world.refund("RF-M-1").state == "processing"
    assert any("900" in a for a in world.alarms("payment_mismatch"))


def test_a_refund_the_provider_never_got_is_sent_again_by_the_check(
    world: World, tmp_path: Path
) -> None:
    no = world.paid_order("wechat", 1_000)
    down = providers_for(
        world.sandbox,
        tmp_path / "down",
        api_base="http://127.0.0.1:9",
        notify_base=world.cloud_url,
        clock=world.clock,
    )
    try:
        with world.sessions.begin() as session:
            row = refunds.start(
                session,
                down,
                out_trade_no=no,
                fen=1_000,
                out_refund_no="RF-C-1",
                reason="refund",
                now=world.clock(),
            )
            assert (row.state, row.provider_refund_id) == ("processing", None)
    finally:
        down.close()
    assert world.desk.refunds == {}
    world.sandbox.state.knobs.drop = True  # no notices: only the check can tell
    with world.sessions.begin() as session:
        assert refunds.check(session, world.providers, world.clock()) == 0  # sent: processing
    assert ("wechat", "RF-C-1") in world.desk.refunds
    wait_for(lambda: world.desk.refunds[("wechat", "RF-C-1")].status == "SUCCESS")
    with world.sessions.begin() as session:
        assert refunds.check(session, world.providers, world.clock()) == 1
    assert (world.order(no).state, world.order(no).refunded_fen) == ("refunded", 1_000)


def test_an_unpaid_order_is_not_refunded(world: World) -> None:
    no = world.paid_order("wechat", 1_000, state="created", credited=False)
    with world.sessions.begin() as session:
        order = session.get(PaymentOrder, no)
        assert order is not None
        order.paid_fen = None
    with pytest.raises(Conflict, match="only a paid order"):
        start(world, no, 1_000, "RF-U-1")
    with world.sessions() as session:
        assert session.get(PaymentRefund, "RF-U-1") is None


def test_late_payment_and_refused_recharge_open_the_refund(world: World) -> None:
    late = world.paid_order("alipay", 600, state="closed", credited=False)
    start(world, late, 600, "RF-L-1", reason="late_payment")
    assert [t[:2] for t in transitions(world, late)] == [
        ("closed", "refunding"),
        ("refunding", "refunded"),
    ]
    refused = world.paid_order("alipay", 700)
    start(world, refused, 700, "RF-R-1", reason="recharge_refused")
    assert transitions(world, refused)[0] == ("credited", "refunding", "recharge_refused")
    assert refunds.RefundState.SUCCESS is RefundState("success")
    assert world.order(refused).state == "refunded"
    assert dt.timedelta(0) <= world.clock() - world.order(refused).created


def test_concurrent_starts_of_one_number_make_one_refund(world: World) -> None:
    no = world.paid_order("wechat", 5_000)

    def one(_: int) -> str:
        return start(world, no, 1_000, "RF-T-1").out_refund_no

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(8))) == {"RF-T-1"}
    assert [r.out_refund_no for r in world.desk.refunds.values()] == ["RF-T-1"]
    with world.sessions() as session:
        assert session.scalar(select(func.count()).select_from(PaymentRefund)) == 1
    wait_for(lambda: world.order(no).refunded_fen == 1_000)
    assert world.alarms("payment_refund_failed") == []


def test_the_sandboxs_refund_outcome_knob(world: World) -> None:
    url = f"{world.running.url}/sandbox/refund-outcome"
    assert httpx.post(url, json={"number": "RF-K-1", "outcome": "CLOSED"}).status_code == 204
    assert httpx.post(url, json={"number": "RF-K-1", "outcome": "MAYBE"}).status_code == 400
    assert httpx.post(url, content=b"\xff").status_code == 400
    no = world.paid_order("wechat", 900)
    start(world, no, 900, "RF-K-1")
    wait_for(lambda: world.refund("RF-K-1").state == "closed")
    assert world.order(no).state == "failed"


def test_a_garbage_refund_notice_is_answered_as_wechat_reads_it(world: World) -> None:
    url = f"{world.cloud_url}/payments/wechat/refund-notify"
    for body in (b'{"id": 1, "id": 2}', b'{"n": NaN}', b"\xff\xfe", b""):
        answer = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
        assert (answer.status_code, answer.json()["code"]) == (401, "FAIL"), body
    with world.sessions() as session:
        refused = session.scalar(
            select(func.count())
            .select_from(PaymentNotice)
            .where(PaymentNotice.verdict == "refused")
        )
    assert refused == 4
