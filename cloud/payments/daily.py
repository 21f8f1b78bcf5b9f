"""The refunds' and bills' share of the server loop (`cloud.server` runs `RefundRounds.round`
every `EVERY_S`), each piece in its own transaction so one failure never stops the rest:

    refunds still processing      asked about, or sent again (`refunds.check`)
    paid `original` refunds       online sources with no payment refund yet are sent
                                  (`original.sweep`)
    yesterday's reconciliation    made once a day, after `BILLS_READY` Beijing time (the
                                  providers publish the bills in the morning), if not made yet

`voltbook-cloud payments reconcile --day D` makes (or makes again) any day by hand.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from cloud.errors import CloudError
from cloud.payments import original, reconcile, refunds
from cloud.payments.providers import Providers

log = logging.getLogger(__name__)

EVERY_S = 60
BILLS_READY = dt.time(10, 0)  # WeChat Pay's bills of a day are ready after 10:00 the next day


@dataclass
class RefundRounds:
    sessions: Callable[[], Session]
    providers: Providers
    now: Callable[[], dt.datetime]

    def round(self) -> None:
        self._step("refund check", lambda s: refunds.check(s, self.providers, self.now()))
        self._step("original refunds", lambda s: original.sweep(s, self.providers, self.now()))
        now = self.now()
        if now.astimezone(reconcile.BEIJING).time() >= BILLS_READY:
            self._step("reconciliation", self._reconcile)

    def _reconcile(self, session: Session) -> object:
        now = self.now()
        day = reconcile.due_day(session, now)
        return None if day is None else reconcile.reconcile(session, self.providers, day, now)

    def _step(self, what: str, work: Callable[[Session], object]) -> None:
        with self.sessions() as session:
            try:
                work(session)
                session.commit()
            except (CloudError, SQLAlchemyError):
                session.rollback()
                log.exception("payments: %s not done this round", what)
