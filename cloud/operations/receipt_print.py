"""What a receipt shows: as JSON (`view`), as text for the desk's printer (`text`) and as a PDF
(`pdf`), in Chinese (the default) or English.

Every value is printed whole (order numbers and transfer ids are never cut), money in yuan from
the integer fen, energy in kWh from the integer Wh (three decimals, exact), and the coded
values in words: 现金, 已入账, 峰 … A void receipt says 作废 at its head with the
concentrator's reason; a pending one says the balance is not known yet. Where the operation
stands comes from `receipt_status`, read when the receipt is shown.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from fpdf import FPDF
from sqlalchemy.orm import Session

from cloud.db.operations import Receipt
from cloud.operations.receipt_status import Standing, State, standing
from cloud.operations.receipts import SITE_ZONE, capital, prints, yuan
from cloud.reports.words import word

Lang = Literal["zh", "en"]
PDF_MEDIA_TYPE = "application/pdf"
_FAMILY = "noto-sc"

WORDS: dict[str, dict[str, str]] = {
    "zh": {
        "receipt": "收据", "number": "收据编号", "state": "状态", "reason": "作废原因",
        "kind": "业务类型", "site": "项目", "merchant": "商户", "shop": "商铺", "account": "户号",
        "ref": "单号", "amount": "金额", "capital": "大写", "method": "方式",
        "operator": "经办人", "time": "时间", "transfer": "账务流水", "booked": "入账时间",
        "balance": "入账后余额", "pending_balance": "待入账: 集中器入账后显示",
        "void_balance": "作废: 未入账", "energy": "结算电量", "none": "—",
        "recharge": "充值", "correction": "更正", "refund": "退费", "meter_swap": "换表",
        "pending": "待入账", "booked_state": "已入账", "void": "作废",
        "payment": "支付单号", "original_transfer": "被更正流水", "correction_reason": "更正原因",
        "sources": "退回至", "old_meter": "旧表", "final_wh": "旧表末次读数",
        "new_meter": "新表", "initial_wh": "新表初始读数", "final_from": "读数来源",
        "ir": "红外抄表", "by_operator": "人工录入",
    },
    "en": {
        "receipt": "Receipt", "number": "Receipt no.", "state": "Status", "reason": "Void reason",
        "kind": "Operation", "site": "Site", "merchant": "Merchant", "shop": "Shop",
        "account": "Account", "ref": "Order no.", "amount": "Amount",
        "capital": "In words", "method": "Method", "operator": "Operator", "time": "Time",
        "transfer": "Ledger transfer", "booked": "Booked at", "balance": "Balance after",
        "pending_balance": "pending: shown once the concentrator books it",
        "void_balance": "void: not booked", "energy": "Energy billed", "none": "-",
        "recharge": "Recharge", "correction": "Correction", "refund": "Refund",
        "meter_swap": "Meter swap", "pending": "PENDING", "booked_state": "Booked",
        "void": "VOID", "payment": "Payment no.",
        "original_transfer": "Corrected transfer", "correction_reason": "Reason",
        "sources": "Paid back to", "old_meter": "Old meter", "final_wh": "Old meter final",
        "new_meter": "New meter", "initial_wh": "New meter initial", "final_from": "Read by",
        "ir": "infrared handheld", "by_operator": "operator",
    },
}  # fmt: skip
_STATE_WORD = {State.PENDING: "pending", State.BOOKED: "booked_state", State.VOID: "void"}
_DETAIL_ORDER = ("payment", "original", "reason", "sources", "old_meter", "final_wh",
                 "final_from", "new_meter", "initial_wh")  # fmt: skip
_DETAIL_WORD = {"original": "original_transfer", "reason": "correction_reason"}


def kwh(wh: int) -> str:
    """`101500` → `"101.500 kWh"`: exact, from the integer."""
    sign = "-" if wh < 0 else ""
    whole, rest = divmod(abs(wh), 1000)
    return f"{sign}{whole:,}.{rest:03d} kWh"


def view(session: Session, receipt: Receipt) -> dict[str, Any]:
    """Everything the receipt shows, as JSON (codes, not words)."""
    now = standing(session, receipt)
    return {
        "number": receipt.number,
        "kind": receipt.kind,
        "ref": receipt.ref,
        "state": now.state.value,
        "void_reason": now.reason or None,
        "site": receipt.site,
        "merchant": receipt.merchant,
        "account": receipt.account,
        "shop": receipt.shop,
        "fen": now.fen,
        "yuan": yuan(now.fen),
        "capital": capital(now.fen),
        "method": receipt.method,
        "operator": receipt.operator,
        "time": receipt.time.astimezone(SITE_ZONE).isoformat(),
        "transfer": receipt.transfer,
        "booked": None if now.booked is None else now.booked.astimezone(SITE_ZONE).isoformat(),
        "balance_after_fen": now.balance_fen,
        "energy_wh": now.energy_wh,
        "bill_wh": dict(now.bill),
        "detail": dict(receipt.detail),
        "print": prints(session, receipt),
    }


def lines(session: Session, receipt: Receipt, lang: Lang = "zh") -> tuple[str, list[str]]:
    """The receipt's title and its printed lines, `label: value`, in `lang`."""
    words = WORDS[lang]
    now = standing(session, receipt)
    state = words[_STATE_WORD[now.state]]
    title = f"{receipt.site or 'Voltbook'} {words['receipt']}"
    rows = [(words["number"], receipt.number), (words["state"], state)]
    if now.booked is not None:
        rows.append((words["booked"], f"{now.booked.astimezone(SITE_ZONE):%Y-%m-%d %H:%M:%S}"))
    if now.state is State.VOID:
        title = f"{title} [{state}]"
        rows.append((words["reason"], now.reason))
    rows += [
        (words["kind"], words.get(receipt.kind, receipt.kind)),
        (words["site"], receipt.site or words["none"]),
        (words["merchant"], receipt.merchant or words["none"]),
        (words["shop"], receipt.shop or words["none"]),
        (words["account"], receipt.account),
        (words["ref"], receipt.ref),
        (words["amount"], f"¥{yuan(now.fen)}"),
    ]
    if lang == "zh":
        rows.append((words["capital"], f"人民币{capital(now.fen)}"))
    if receipt.method:
        rows.append((words["method"], word("method", receipt.method, lang)))
    local = receipt.time.astimezone(SITE_ZONE)
    rows += [
        (words["operator"], receipt.operator),
        (words["time"], f"{local:%Y-%m-%d %H:%M:%S} ({SITE_ZONE.key})"),
        (words["transfer"], receipt.transfer),
    ]
    shown = {k: v for k, v in receipt.detail.items() if v != receipt.ref}  # not twice
    rows += _detail(shown, words)
    rows += _bill(now, words, lang)
    rows.append((words["balance"], _balance(now, words)))
    return title, [f"{label}: {value}" for label, value in rows]


def _detail(detail: Mapping[str, Any], words: Mapping[str, str]) -> list[tuple[str, str]]:
    rows = []
    order = {name: i for i, name in enumerate(_DETAIL_ORDER)}
    for name, value in sorted(detail.items(), key=lambda item: (order.get(item[0], 99), item[0])):
        label = words.get(_DETAIL_WORD.get(name, name), name)
        if name.endswith("_wh") and type(value) is int:
            rows.append((label, kwh(value)))
        elif name == "final_from":
            rows.append((label, words["ir"] if value == "ir" else words["by_operator"]))
        else:
            rows.append((label, str(value)))
    return rows


def _bill(now: Standing, words: Mapping[str, str], lang: Lang) -> list[tuple[str, str]]:
    if now.energy_wh is None:
        return []
    rows = [(words["energy"], kwh(now.energy_wh))]
    for period, wh in sorted(now.bill.items()):
        rows.append((f"  {word('tariff_period', period, lang)}", kwh(wh)))
    return rows


def _balance(now: Standing, words: Mapping[str, str]) -> str:
    if now.state is State.VOID:
        return words["void_balance"]
    if now.state is State.PENDING:
        return words["pending_balance"]
    return words["none"] if now.balance_fen is None else f"¥{yuan(now.balance_fen)}"


def text(session: Session, receipt: Receipt, lang: Lang = "zh") -> str:
    """The printable receipt: plain text, one field per line."""
    title, body = lines(session, receipt, lang)
    return "\n".join([f"{title:^28}", *body]) + "\n"


def pdf(session: Session, receipt: Receipt, lang: Lang = "zh") -> bytes:
    """The receipt as an A5 PDF, its font subset to its characters (`cloud.reports.fonts`);
    long values wrap, never cut."""
    from cloud.reports.fonts import truetype_subset  # fontTools: only when printing

    title, body = lines(session, receipt, lang)
    document = FPDF(orientation="P", unit="mm", format=(148.0, 210.0))  # A5
    document.set_title(title)
    document.set_creator("Voltbook")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "noto-sc-subset.ttf"
        path.write_bytes(truetype_subset([title, *body]))
        document.add_font(_FAMILY, "", str(path))
        document.add_page()
        document.set_font(_FAMILY, size=14)
        document.multi_cell(0, 9, title, align="C", new_x="LMARGIN", new_y="NEXT")
        document.set_font(_FAMILY, size=9)
        for line in body:
            document.multi_cell(0, 5.5, line, new_x="LMARGIN", new_y="NEXT")
        return bytes(document.output())
