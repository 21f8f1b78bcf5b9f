"""Pre-aggregated consumption for fast reports, and operators' saved report templates.

- `consumption_daily`: per (account, meter, day in the site's zone, tariff period, pocket) the
  Wh and fen the ledger's `consume` and `meter_settle` entries billed (`cloud.chains.rollups` folds
  each batch in, inside the ingest's transaction). `period` is '' for legs that carry no
  tariff split (subsidy and grace legs are Wh, not priced). `pocket` is subsidy, prepaid,
  grace or credit (a prepaid leg below zero, within the credit limit).
- `consumption_monthly`: the same per calendar month, for windows of whole months.
- `consumption_account_monthly`: per account and calendar month only, the totals the report
  pages show (Wh, of it from subsidy, fen): a month of 10 000 shops is 10 000 rows, so a
  page's totals and its rows are read, not aggregated from every period and pocket.
- `report_templates`: an admin's named choice of columns (and title) for a report.

Report queries filter and group these by day range first, so the indexes lead with `day`; the
indexes on other tables that the reports need (recharges by time) are declared here too.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base


class ConsumptionDaily(Base):
    __tablename__ = "consumption_daily"
    __table_args__ = (
        Index("consumption_daily_by_day", "day", "account"),
        Index("consumption_daily_by_account", "account", "day"),
    )

    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    meter: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    period: Mapped[str] = mapped_column(String(32), primary_key=True)
    pocket: Mapped[str] = mapped_column(String(16), primary_key=True)
    wh: Mapped[int] = mapped_column(BigInteger)
    fen: Mapped[int] = mapped_column(BigInteger)
    entries: Mapped[int] = mapped_column(Integer)


class ConsumptionMonthly(Base):
    """`consumption_daily` summed per calendar month (`month` is its first day): a year's
    report by account reads 12 rows per account and period instead of 365."""

    __tablename__ = "consumption_monthly"
    __table_args__ = (Index("consumption_monthly_by_month", "month", "account"),)

    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    meter: Mapped[str] = mapped_column(String(32), primary_key=True)
    month: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    period: Mapped[str] = mapped_column(String(32), primary_key=True)
    pocket: Mapped[str] = mapped_column(String(16), primary_key=True)
    wh: Mapped[int] = mapped_column(BigInteger)
    fen: Mapped[int] = mapped_column(BigInteger)
    entries: Mapped[int] = mapped_column(Integer)


class ConsumptionAccountMonthly(Base):
    """`consumption_monthly` summed over meters, periods and pockets: what a consumption page
    grouped by account or area shows (`books.verify` checks it against the ledger)."""

    __tablename__ = "consumption_account_monthly"
    __table_args__ = (Index("consumption_account_monthly_by_month", "month", "account"),)

    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    month: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    wh: Mapped[int] = mapped_column(BigInteger)
    subsidy_wh: Mapped[int] = mapped_column(BigInteger)
    fen: Mapped[int] = mapped_column(BigInteger)
    entries: Mapped[int] = mapped_column(Integer)


class ReportTemplate(Base):
    __tablename__ = "report_templates"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    report: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    columns: Mapped[list[Any]] = mapped_column(JSON)
    updated_by: Mapped[str] = mapped_column(String(64))
    updated: Mapped[dt.datetime]
