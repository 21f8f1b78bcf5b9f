"""A day's reconciliation as finance reads it: Excel (the differences and the totals, one sheet
each) and PDF (both tables, zh-CN or English), through the report machinery of
`cloud.reports` (typed cells, yuan from integer fen, the CJK font subset).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from cloud.db.reconciliations import PaymentReconciliation
from cloud.reports import excel, pdf
from cloud.reports.core import Column, Kind

TITLE = "支付对账单"
DIFFERENCES: tuple[Column, ...] = (
    Column("provider", "支付渠道"),
    Column("kind", "差异类型"),
    Column("out_trade_no", "商户订单号"),
    Column("out_refund_no", "退款单号"),
    Column("ours_fen", "我方金额(元)", Kind.FEN),
    Column("provider_fen", "渠道金额(元)", Kind.FEN),
    Column("detail", "说明"),
)
TOTALS: tuple[Column, ...] = (
    Column("provider", "支付渠道"),
    Column("bill_count", "账单笔数", Kind.INT, total=True),
    Column("bill_paid_fen", "账单收款(元)", Kind.FEN, total=True),
    Column("bill_refunded_fen", "账单退款(元)", Kind.FEN, total=True),
    Column("count", "入账笔数", Kind.INT, total=True),
    Column("paid_fen", "我方收款(元)", Kind.FEN, total=True),
    Column("credited_fen", "充值入账(元)", Kind.FEN, total=True),
    Column("refunded_fen", "我方退款(元)", Kind.FEN, total=True),
)


def total_rows(row: PaymentReconciliation) -> list[dict[str, Any]]:
    return [{"provider": provider, **figures} for provider, figures in sorted(row.totals.items())]


def _sum_row(rows: list[dict[str, Any]], lang: str) -> list[str]:
    head = "合计" if lang == "zh" else "Total"
    return [head] + [
        pdf.text_of(c, sum(int(r.get(c.key) or 0) for r in rows), lang) for c in TOTALS[1:]
    ]


def filters(row: PaymentReconciliation) -> Mapping[str, str]:
    signed = (
        f"{row.signed_off_by} {row.signed_off_at:%Y-%m-%d %H:%M}"
        if row.signed_off_by and row.signed_off_at
        else "未签核"
    )
    state = "有差异" if row.rows else "无差异"
    return {"日期": row.day.isoformat(), "状态": state, "签核": signed}


def workbook(row: PaymentReconciliation) -> bytes:
    totals = total_rows(row)
    return excel.sheets(
        [
            ("差异", DIFFERENCES, excel.rows_of(DIFFERENCES, row.rows), False),
            ("合计", TOTALS, excel.rows_of(TOTALS, totals), True),
        ]
    )


def document(row: PaymentReconciliation, *, generated: dt.datetime, lang: str = "zh") -> bytes:
    totals = total_rows(row)
    differences = [[pdf.text_of(c, d.get(c.key), lang) for c in DIFFERENCES] for d in row.rows]
    printed_totals = [[pdf.text_of(c, t.get(c.key), lang) for c in TOTALS] for t in totals]
    return pdf.document(
        TITLE,
        filters(row),
        [
            ("差异", DIFFERENCES, differences),
            ("合计", TOTALS, [*printed_totals, _sum_row(totals, lang)]),
        ],
        generated=generated,
        lang=lang,
    )
