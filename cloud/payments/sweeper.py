"""The sweeper: what no notification settles, settled by asking. `cloud.server` runs `sweep`
every `SWEEP_EVERY_S`; each order is handled in its own transaction, and one that fails (a
provider down, a bad answer) is logged and tried again next round, never stopping the rest.

    created, past `expires`        query the provider: paid → settled as a notice would
                                   (cause `query`); otherwise closed there and here (`expired`)
    created, older than `QUIET_S`  query it: a notice that never came is settled
    paid (its credit failed)       credit again
    credited, its recharge voided  the concentrator refused it: `recharge_refused` → refunding
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from cloud.db.models import Recharge, RechargeStatus
from cloud.db.payments import PaymentOrder
from cloud.errors import CloudError
from cloud.payments import gateways, orders, settle
from cloud.payments.providers import Providers
from cloud.payments.states import OrderEvent, OrderState
from ledger.chain import NodeKey

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 30
QUIET_S = 60  # an order this old with no notice is asked about
BATCH = 200  # orders of each kind per round


@dataclass
class SweepReport:
    expired: list[str] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)  # paid, found by a query
    credited: list[str] = field(default_factory=list)  # a failed credit done now
    refused: list[str] = field(default_factory=list)  # recharge voided → refunding
    failed: list[str] = field(default_factory=list)  # tried again next round


Work = Callable[[Session, PaymentOrder, SweepReport], None]


@dataclass
class Sweeper:
    sessions: Callable[[], Session]
    providers: Providers
    key: NodeKey
    now: Callable[[], dt.datetime]

    def sweep(self) -> SweepReport:
        report = SweepReport()
        now = self.now()
        for no in self._numbers(
            select(PaymentOrder.out_trade_no)
            .where(
                PaymentOrder.state == OrderState.CREATED,
                PaymentOrder.created <= now - dt.timedelta(seconds=QUIET_S),
            )
            .order_by(PaymentOrder.expires)  # the most urgent first, if more than a batch
        ):
            self._each(no, report, self._ask)
        for no in self._numbers(
            select(PaymentOrder.out_trade_no).where(PaymentOrder.state == OrderState.PAID)
        ):
            self._each(no, report, self._credit)
        for no in self._numbers(
            select(PaymentOrder.out_trade_no)
            .join(Recharge, Recharge.payment == PaymentOrder.out_trade_no)
            .where(
                PaymentOrder.state == OrderState.CREDITED,
                Recharge.status == RechargeStatus.VOIDED.value,
            )
        ):
            self._each(no, report, self._refused)
        return report

    def _numbers(self, query: Select[Any]) -> list[str]:
        with self.sessions() as session:
            return list(session.scalars(query.limit(BATCH)))

    def _each(
        self,
        no: str,
        report: SweepReport,
        work: Callable[[Session, PaymentOrder, SweepReport], None],
    ) -> None:
        with self.sessions() as session:
            try:
                work(session, orders.get(session, no), report)
                session.commit()
            except (CloudError, SQLAlchemyError):
                session.rollback()
                log.exception("payment order %s: not settled this round", no)
                report.failed.append(no)

    def _ask(self, session: Session, row: PaymentOrder, report: SweepReport) -> None:
        now = self.now()
        session.commit()  # nothing held while the provider answers
        trade = gateways.query(self.providers, row)
        row = orders.get(session, row.out_trade_no)
        if trade.status == gateways.PAID:
            try:
                settle.settle_trade(session, self.providers, row, trade, cause="query",
                                    key=self.key, now=now)  # fmt: skip
            except settle.Mismatch as exc:
                session.rollback()
                settle.alarm(session, row.out_trade_no, row.provider, str(exc), now)
                raise
            report.settled.append(row.out_trade_no)
        elif row.state == OrderState.CREATED and row.expires <= now:
            orders.close(session, self.providers, row, event=OrderEvent.EXPIRED,
                         cause="expired", key=self.key, now=now,
                         facts={"provider_state": trade.facts.get("provider_state")})  # fmt: skip
            report.expired.append(row.out_trade_no)

    def _credit(self, session: Session, row: PaymentOrder, report: SweepReport) -> None:
        if settle.credit(session, row, cause=settle.RETRY, key=self.key, now=self.now()):
            report.credited.append(row.out_trade_no)

    def _refused(self, session: Session, row: PaymentOrder, report: SweepReport) -> None:
        now = self.now()
        recharge = session.get(Recharge, row.out_trade_no)
        reason = recharge.reason if recharge is not None else ""
        if orders.transition(session, row, OrderEvent.RECHARGE_REFUSED, cause="recharge_refused",
                             now=now, facts={"reason": reason}):  # fmt: skip
            settle.start_refund(session, self.providers, row, reason="recharge_refused", now=now)
            report.refused.append(row.out_trade_no)
