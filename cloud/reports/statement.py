"""A merchant's monthly statement: the prepaid pocket (fen) and the subsidy pocket (Wh) from
their opening balance through the month's movements to the closing balance, consumption by
tariff period, and the month's recharges, refunds and corrections line by line.

Balances count posted value only (single transfers and posted two-phase ones; a refund still
pending is not yet off the balance), by the transfers' wall time in the site's zone. The
closing balance is summed on its own, over every entry up to the month's end, and checked
against opening + movements: a statement that does not add up is never issued.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, case, cast, func, or_, select
from sqlalchemy.orm import Session

from cloud.db import models
from cloud.db.rollups import ConsumptionMonthly
from cloud.reports import pdf
from cloud.reports.core import Column, Kind, Window
from ledger.accounts import Pocket, pocket_id
from ledger.transfers import Code

_LE = models.LedgerEntry.__table__
_CM = ConsumptionMonthly.__table__
POSTED = ("single", "post")

# code → the statement line it is counted on, per pocket
PREPAID_LINES = {
    Code.RECHARGE.value: "recharges",
    Code.CONSUME.value: "consumption",
    Code.METER_SETTLE.value: "consumption",
    Code.REFUND.value: "refunds",
    Code.CORRECTION.value: "corrections",
    Code.DEBT_REPAY.value: "debt_repaid",
}
SUBSIDY_LINES = {
    Code.SUBSIDY_ISSUE.value: "issued",
    Code.CONSUME.value: "used",
    Code.METER_SETTLE.value: "used",
    Code.SUBSIDY_EXPIRE.value: "expired",
    Code.CORRECTION.value: "corrections",
}
DEBT_LINES = {  # the debt pocket: energy used with no money left, paid back from prepaid
    Code.CONSUME.value: "owed",
    Code.METER_SETTLE.value: "owed",
    Code.DEBT_REPAY.value: "debt_repaid",
}
LINE_LABELS = {
    "opening": "期初余额",
    "recharges": "充值",
    "consumption": "电费",
    "refunds": "退款",
    "corrections": "冲正",
    "other": "其他(迁移等)",
    "closing": "期末余额",
    "issued": "补贴发放",
    "used": "补贴使用",
    "expired": "补贴清零",
    "owed": "新增欠费",
    "debt_repaid": "偿还欠费",
}
ITEM_CODES = (
    Code.RECHARGE.value,
    Code.REFUND.value,
    Code.CORRECTION.value,
    Code.MOVE.value,
    Code.DEBT_REPAY.value,
)


def _sum(value: Any) -> Any:
    """SUM as a bigint (PostgreSQL sums bigints as numeric: Decimals in Python)."""
    return cast(func.sum(value), BigInteger)


class StatementMismatch(AssertionError):
    """Opening + movements ≠ closing: the books disagree with themselves."""


@dataclass(frozen=True, slots=True)
class PocketLines:
    opening: int
    movements: dict[str, int]  # signed, in the order of the lines
    closing: int

    def check(self, what: str) -> None:
        if self.opening + sum(self.movements.values()) != self.closing:
            raise StatementMismatch(
                f"{what}: opening {self.opening} + movements {sum(self.movements.values())} "
                f"!= closing {self.closing}"
            )


@dataclass(frozen=True, slots=True)
class Statement:
    account: str
    month: str
    shop: str
    building: str
    floor: str
    prepaid: PocketLines  # fen
    subsidy: PocketLines  # Wh
    debt: PocketLines  # fen, ≤ 0: what the merchant owes
    consumption: list[dict[str, Any]]  # tariff_period, pocket, wh, fen
    items: list[dict[str, Any]] = field(default_factory=list)  # time, code, fen, reference


def _lines(
    session: Session, pocket: str, window: Window, lines: dict[str, str], order: tuple[str, ...]
) -> PocketLines:
    signed = case((_LE.c.credit == pocket, _LE.c.amount), else_=-_LE.c.amount)
    touches = (or_(_LE.c.debit == pocket, _LE.c.credit == pocket), _LE.c.kind.in_(POSTED))
    before = _LE.c.time < window.start
    found = session.execute(
        select(_LE.c.code, before.label("before"), func.sum(signed))
        .where(*touches, _LE.c.time < window.end)
        .group_by(_LE.c.code, before)
    ).all()
    opening, movements = 0, dict.fromkeys(order, 0)
    for code, was_before, amount in found:
        if was_before:
            opening += int(amount)
        else:
            line = lines.get(code, "other")
            movements[line] = movements.get(line, 0) + int(amount)
    closing = session.scalar(select(func.coalesce(func.sum(signed), 0)).where(
        *touches, _LE.c.time < window.end))  # fmt: skip
    return PocketLines(opening, movements, int(closing or 0))


def monthly(session: Session, account: str, month: str, window: Window) -> Statement:
    """The statement of `account` for `month` (its `window`)."""
    prepaid = _lines(
        session, pocket_id(account, Pocket.PREPAID), window, PREPAID_LINES,
        ("recharges", "consumption", "debt_repaid", "refunds", "corrections", "other"),
    )  # fmt: skip
    subsidy = _lines(
        session, pocket_id(account, Pocket.SUBSIDY), window, SUBSIDY_LINES,
        ("issued", "used", "expired", "corrections", "other"),
    )  # fmt: skip
    debt = _lines(
        session, pocket_id(account, Pocket.DEBT), window, DEBT_LINES,
        ("owed", "debt_repaid", "other"),
    )  # fmt: skip
    prepaid.check(f"{account} {month} prepaid")
    subsidy.check(f"{account} {month} subsidy")
    debt.check(f"{account} {month} debt")
    consumption = [
        dict(r)
        for r in session.execute(
            select(
                _CM.c.period.label("tariff_period"),
                _CM.c.pocket,
                _sum(_CM.c.wh).label("wh"),
                _sum(_CM.c.fen).label("fen"),
            )
            .where(_CM.c.account == account, _CM.c.month == window.first)
            .group_by(_CM.c.period, _CM.c.pocket)
            .order_by(_CM.c.period, _CM.c.pocket)
        ).mappings()
    ]
    pocket = pocket_id(account, Pocket.PREPAID)
    items = [
        {"time": r.time, "code": r.code, "kind": r.kind,
         "fen": r.amount if r.credit == pocket else -r.amount,
         "reference": str(r.refs.get("payment") or r.refs.get("refund")
                          or r.refs.get("correction") or r.refs.get("move") or r.transfer_id)}
        for r in session.execute(
            select(_LE.c.time, _LE.c.code, _LE.c.kind, _LE.c.amount, _LE.c.credit, _LE.c.refs,
                   _LE.c.transfer_id)
            .where(or_(_LE.c.debit == pocket, _LE.c.credit == pocket), _LE.c.kind.in_(POSTED),
                   _LE.c.code.in_(ITEM_CODES), _LE.c.time >= window.start,
                   _LE.c.time < window.end)
            .order_by(_LE.c.time, _LE.c.id)
        )
    ]  # fmt: skip
    place = session.get(models.ReportedAccount, account)
    return Statement(
        account, month,
        place.shop if place else "", place.building if place else "", place.floor if place else "",
        prepaid, subsidy, debt, consumption, items,
    )  # fmt: skip


# -- printed and exported ------------------------------------------------------------------------

_LINE = (Column("line", "项目"), Column("amount", "金额(元)", Kind.FEN))
_WH_LINE = (Column("line", "项目"), Column("amount", "电量(Wh)", Kind.WH))
_CONSUMPTION = (
    Column("tariff_period", "时段"),
    Column("pocket", "扣费来源"),
    Column("wh", "用电量(Wh)", Kind.WH, total=True),
    Column("fen", "电费(元)", Kind.FEN, total=True),
)
_ITEMS = (
    Column("time", "时间", Kind.TIME),
    Column("code", "类型"),
    Column("reference", "单号"),
    Column("fen", "金额(元)", Kind.FEN, total=True),
)
Section = tuple[str, tuple[Column, ...], list[dict[str, Any]]]


def _pocket_rows(lines: PocketLines) -> list[dict[str, Any]]:
    rows = [{"line": LINE_LABELS["opening"], "amount": lines.opening}]
    rows += [{"line": LINE_LABELS[k], "amount": v} for k, v in lines.movements.items()]
    return [*rows, {"line": LINE_LABELS["closing"], "amount": lines.closing}]


def sections(statement: Statement) -> list[Section]:
    """The statement as tables: heading, columns, rows."""
    return [
        ("预付余额", _LINE, _pocket_rows(statement.prepaid)),
        ("补贴电量", _WH_LINE, _pocket_rows(statement.subsidy)),
        ("欠费", _LINE, _pocket_rows(statement.debt)),
        ("分时段用电", _CONSUMPTION, statement.consumption),
        ("充值、退款、冲正明细", _ITEMS, statement.items),
    ]


def header(statement: Statement) -> dict[str, str]:
    return {"账户": statement.account, "月份": statement.month, "商铺": statement.shop,
            "楼栋": statement.building, "楼层": statement.floor}  # fmt: skip


def printable(statement: Statement, *, generated: dt.datetime, lang: str = "zh") -> bytes:
    """The statement as a printable PDF (the API's `?format=pdf` and the merchant's phone page
    serve the same document)."""
    printed = [
        (heading, cols, [[pdf.text_of(c, row[c.key], lang) for c in cols] for row in rows])
        for heading, cols, rows in sections(statement)
    ]
    return pdf.document("月结单", header(statement), printed, generated=generated, lang=lang)
