"""Notices, duplicates, queries, closes and late payments in any order (Hypothesis, stateful),
against the sandbox and a real cloud: after every step each order paid at the provider is
credited at most once, nothing is credited that was not paid, and the books hold; at the end,
once every notice is delivered and the sweeper has run, every payment is credited exactly once
or on its way back to the payer."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import func, select

from cloud.db.models import Recharge
from cloud.db.payments import PaymentOrder
from cloud.payments.sandbox.state import PAID, SandboxRefused
from cloud.payments.sweeper import QUIET_S
from cloud.reports import books
from tests.cloud.payments.conftest import World

REFUNDED = ("refunding", "refunded")


def run_machine(world: World) -> None:
    world.knobs.drop = True  # notices go only when a rule sends them

    class Payments(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.numbers: list[str] = []

        @rule(provider=st.sampled_from(["wechat", "alipay"]), fen=st.integers(1, 500_000))
        def open_order(self, provider: str, fen: int) -> None:
            channel = "native" if provider == "wechat" else "precreate"
            self.numbers.append(str(world.order(provider, channel, fen=fen)["out_trade_no"]))

        @rule(pick=st.integers(0, 50), even_closed=st.booleans())
        def pay_at_the_provider(self, pick: int, even_closed: bool) -> None:
            if self.numbers:
                with contextlib.suppress(SandboxRefused):  # closed there, or expired
                    world.sandbox.pay(self.numbers[pick % len(self.numbers)],
                                      even_closed=even_closed, notify=False)  # fmt: skip

        @rule(pick=st.integers(0, 50), copies=st.integers(1, 3))
        def deliver_notices(self, pick: int, copies: int) -> None:
            if self.numbers:
                order = world.sandbox.state.order(self.numbers[pick % len(self.numbers)])
                if order is not None and order.state == PAID:
                    for _ in range(copies):
                        world.sandbox.notify(order, now=True)

        @rule(pick=st.integers(0, 50))
        def close(self, pick: int) -> None:
            if self.numbers:
                no = self.numbers[pick % len(self.numbers)]
                answer = world.client.post(f"/payments/orders/{no}/close")
                assert answer.status_code in (200, 409), answer.text

        @rule(seconds=st.sampled_from([0, QUIET_S + 1, 1801]))
        def time_passes_and_the_sweeper_runs(self, seconds: int) -> None:
            world.clock.advance(seconds=seconds)
            assert world.sweep().failed == []

        @invariant()
        def credited_at_most_once_and_only_if_paid(self) -> None:
            check(world, final=False)

    Payments.TestCase.settings = settings(
        max_examples=12, stateful_step_count=12, deadline=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    run_state_machine_as_test(Payments, settings=Payments.TestCase.settings)
    # the end: every paid notice delivered, the sweeper once more: nothing is left hanging
    for order in list(world.sandbox.state.orders.values()):
        if order.state == PAID:
            world.sandbox.notify(order, now=True)
    world.clock.advance(seconds=QUIET_S + 1)
    world.sweep()
    check(world, final=True)
    with world.session() as session:  # the run went through every road, not only the easy one
        states = set(session.scalars(select(PaymentOrder.state)))
    assert {"credited", "closed"} <= states, states


def check(world: World, *, final: bool) -> None:
    with world.session() as session:
        assert books.verify(session) == []
        credits = dict(session.execute(
            select(Recharge.payment, func.count()).group_by(Recharge.payment)
        ).all())  # fmt: skip
        for row in session.scalars(select(PaymentOrder)):
            there = world.sandbox.state.order(row.out_trade_no)
            paid_there = there is not None and there.state == PAID
            count = credits.get(row.out_trade_no, 0)
            assert count <= 1, f"{row.out_trade_no} credited {count} times"
            if count:
                assert paid_there and row.state == "credited"
                assert there is not None and row.transaction_id == there.transaction_id
                assert row.paid_fen == row.fen
            if row.state in ("paid", "credited", *REFUNDED):
                assert paid_there, f"{row.out_trade_no} is {row.state} but never paid"
            if row.state in REFUNDED:
                assert count == 0
            if final and paid_there:
                assert (row.state, count) in {("credited", 1), ("refunding", 0),
                                              ("refunded", 0)}, (row.state, count)  # fmt: skip


def test_notices_queries_and_closes_in_any_order(world: World) -> None:
    run_machine(world)
