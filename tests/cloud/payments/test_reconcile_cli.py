"""`voltbook-cloud payments reconcile --day D` against the sandbox on loopback (real clock: the
day is yesterday, Beijing time), on SQLite and PostgreSQL: a clean day exits 0, a payment
we do not know exits 1 naming it; and `refund_rest`, the automatic refund, sends back what is
left of an order once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from cloud.cli import main
from cloud.db.engine import session_factory
from cloud.db.models import Recharge, RechargeStatus
from cloud.db.payments import PaymentOrder
from cloud.payments import refunds
from cloud.payments.reconcile import BEIJING
from cloud.payments.sandbox.app import Sandbox, create_sandbox, serve_in_thread
from cloud.payments.sandbox.refunds import desk
from cloud.payments.sandbox.state import SandboxOrder
from tests.cloud.payments.refund_world import providers_for


@pytest.fixture
def sandbox() -> Iterator[tuple[Sandbox, str]]:
    made = create_sandbox()
    with serve_in_thread(made) as running:
        yield made, running.url


def paid_yesterday(sandbox: Sandbox, no: str, fen: int) -> SandboxOrder:
    now = dt.datetime.now(dt.UTC)
    order = SandboxOrder(
        provider="wechat",
        out_trade_no=no,
        channel="native",
        merchant=sandbox.keys.mchid,
        appid=sandbox.keys.appid,
        fen=fen,
        description="电费充值",
        notify_url="http://127.0.0.1:9/payments/wechat/notify",
        return_url="",
        created=now,
    )
    sandbox.state.orders[no] = order
    sandbox.pay(no, notify=False)
    yesterday = (now.astimezone(BEIJING) - dt.timedelta(days=1)).replace(hour=12)
    order.paid_at = yesterday
    return order


def test_reconcile_from_the_command_line(
    engine: Engine,
    sandbox: tuple[Sandbox, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    made, url = sandbox
    taken = paid_yesterday(made, "VB-CLI-1", 2_500)
    assert taken.paid_at is not None
    with session_factory(engine).begin() as session:
        session.add(
            PaymentOrder(
                out_trade_no=taken.out_trade_no,
                account="A0001",
                fen=2_500,
                provider="wechat",
                channel="native",
                state="credited",
                created_by="merchant-1",
                payer=None,
                pay={},
                transaction_id=taken.transaction_id,
                paid_fen=2_500,
                refunded_fen=0,
                created=taken.paid_at,
                expires=taken.paid_at,
                paid_at=taken.paid_at,
                credited_at=taken.paid_at,
                closed_at=None,
            )
        )
        session.add(
            Recharge(
                payment=taken.out_trade_no,
                account="A0001",
                fen=2_500,
                method="wechat",
                operator="wechat-pay",
                status=RechargeStatus.POSTED.value,
                pending_transfer="0" * 32,
                command_id=None,
                created=taken.paid_at,
                posted=taken.paid_at,
                voided=None,
                reason="",
            )
        )
    snippet = made.keys.write(tmp_path / "pay", api_base=url, notify_base="http://127.0.0.1:9")
    database = engine.url.render_as_string(hide_password=False)
    config = tmp_path / "cloud.toml"
    config.write_text(f'[database]\nurl = "{database}"\n\n' + snippet.read_text())
    day = taken.paid_at.astimezone(BEIJING).date().isoformat()
    code = main(["payments", "reconcile", "--day", day, "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "wechat: bill 1 paid 2500 fen, refunded 0 fen; ours 1 paid 2500 fen" in out
    assert out.endswith(f"{day}: clean\n")
    paid_yesterday(made, "VB-CLI-STRANGER", 700)
    code = main(["payments", "reconcile", "--day", day, "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 1
    assert "DIFFERENCE wechat paid_not_ours VB-CLI-STRANGER" in out
    assert out.endswith(f"{day}: 1 differences\n")
    with pytest.raises(SystemExit) as refused:  # argparse: not a day
        main(["payments", "reconcile", "--day", "2026-13-01", "--config", str(config)])
    assert refused.value.code == 2 and "--day" in capsys.readouterr().err


def test_refund_rest_sends_back_what_is_left_once(
    engine: Engine, sandbox: tuple[Sandbox, str], tmp_path: Path
) -> None:
    made, url = sandbox
    taken = paid_yesterday(made, "VB-REST-1", 3_000)
    assert taken.paid_at is not None
    now = dt.datetime.now(dt.UTC)
    providers = providers_for(
        made, tmp_path / "pay", api_base=url, notify_base="http://127.0.0.1:9", clock=lambda: now
    )
    sessions = session_factory(engine)
    with sessions.begin() as session:
        session.add(
            PaymentOrder(
                out_trade_no=taken.out_trade_no,
                account="A0001",
                fen=3_000,
                provider="wechat",
                channel="native",
                state="closed",
                created_by="merchant-1",
                payer=None,
                pay={},
                transaction_id=taken.transaction_id,
                paid_fen=3_000,
                refunded_fen=1_000,
                created=taken.paid_at,
                expires=taken.paid_at,
                paid_at=taken.paid_at,
                credited_at=None,
                closed_at=taken.paid_at,
            )
        )
    try:
        for _ in range(2):
            with sessions.begin() as session:
                order = session.get(PaymentOrder, taken.out_trade_no)
                assert order is not None
                row = refunds.refund_rest(session, providers, order, reason="late_payment", now=now)
                assert row is not None and row.fen == 2_000
        assert [r.fen for r in desk(made).refunds.values()] == [2_000]
    finally:
        providers.close()
