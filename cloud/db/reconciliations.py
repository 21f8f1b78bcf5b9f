"""The daily reconciliation of online payments against the providers' bills
(`cloud.payments.reconcile`).

    payment_reconciliations   one per day (site zone): when it was made, every difference found
                              (`rows`), the totals per provider as the bills and as our books
                              say (`totals`), and finance's sign-off
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Date, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base


class PaymentReconciliation(Base):
    __tablename__ = "payment_reconciliations"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    made: Mapped[dt.datetime]  # the last run (a day is made again until signed off)
    runs: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(16))  # clean, differences
    rows: Mapped[list[Any]] = mapped_column(JSON, default=list)  # the differences
    totals: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # per provider
    signed_off_by: Mapped[str | None] = mapped_column(String(64))  # None: not yet
    signed_off_at: Mapped[dt.datetime | None]
    note: Mapped[str] = mapped_column(Text, default="")
