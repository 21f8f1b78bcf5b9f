"""Receipts for money operations: recharges, corrections, refund payouts and meter swaps.

A receipt is issued in the same transaction as its operation and never changes. Numbers are
`YYYY-NNNNNN` (the year in the site's zone), contiguous per year: the writer locks the year's
`receipt_counters` row, so two desks never take the same number or leave a hole. One receipt
per operation (`kind`, `ref`): issuing again returns the first.

What is printed (`view`, `text`): number, kind, account and shop, the amount in fen, as yuan
and in capital characters (人民币大写, as Chinese receipts write it), the method, the
operator, the time, the ledger transfer it vouches for and the prepaid balance the cloud held
when it was printed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.chains import projection
from cloud.db.models import ReportedAccount
from cloud.db.operations import Receipt, ReceiptCounter
from cloud.errors import NotFound

SITE_ZONE = ZoneInfo("Asia/Shanghai")
PRINT_RECEIPTS = True  # sites print by default; a site's setting may turn it off
KINDS = ("recharge", "correction", "refund", "meter_swap")

KIND_LABEL = {"recharge": "充值", "correction": "更正", "refund": "退费", "meter_swap": "换表"}
METHOD_LABEL = {"cash": "现金", "card": "银行卡", "wechat": "微信支付", "alipay": "支付宝",
                "transfer": "转账", "original": "原路退回", "": "—"}  # fmt: skip

_DIGITS = "零壹贰叁肆伍陆柒捌玖"
_PLACES = ("", "拾", "佰", "仟")
_SECTIONS = ("", "万", "亿", "万亿")


def yuan(fen: int) -> str:
    """`-1234` → `"-12.34"`: exact, from the integer."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def _integer_capital(number: int) -> str:
    digits = str(number)
    out: list[str] = []
    zero = False
    for index, char in enumerate(digits):
        place = len(digits) - 1 - index
        if char == "0":
            zero = True
        else:
            if zero and out:
                out.append("零")
            zero = False
            out.append(_DIGITS[int(char)] + _PLACES[place % 4])
        group = digits[max(0, len(digits) - place - 4) : len(digits) - place]
        if place % 4 == 0 and place and int(group):
            out.append(_SECTIONS[place // 4])
    return "".join(out)


def capital(fen: int) -> str:
    """The amount in capital characters: 12345 → 壹佰贰拾叁元肆角伍分, 5000 → 伍拾元整."""
    sign = "负" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    jiao, fen_ = divmod(cents, 10)
    head = f"{_integer_capital(whole)}元" if whole else ""
    if not cents:
        return f"{sign}{head or '零元'}整"
    if not jiao:
        return f"{sign}{head}{'零' if whole else ''}{_DIGITS[fen_]}分"
    tail = f"{_DIGITS[fen_]}分" if fen_ else "整"
    return f"{sign}{head}{_DIGITS[jiao]}角{tail}"


def _next_number(session: Session, when: dt.datetime) -> str:
    year = when.astimezone(SITE_ZONE).year
    statement = (
        select(ReceiptCounter)
        .where(ReceiptCounter.year == year)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    counter = session.scalars(statement).one_or_none()
    if counter is None:
        try:
            with session.begin_nested():
                session.add(ReceiptCounter(year=year, last=0))
        except IntegrityError:
            pass  # another desk opened the year first
        counter = session.scalars(statement).one()
    counter.last += 1
    return f"{year}-{counter.last:06d}"


@dataclass(frozen=True, slots=True)
class Voucher:
    """What an operation's receipt vouches for; each operation makes its own (`voucher(row)`
    in `recharges`, `corrections`, `refunds`, `meter_swaps`)."""

    kind: str  # one of KINDS
    ref: str  # the operation's reference (a recharge's payment id)
    account: str
    fen: int
    method: str
    operator: str
    transfer: str  # the ledger transfer (or, for a swap, the command) it vouches for
    detail: Mapping[str, Any] = field(default_factory=dict)


def issue(session: Session, voucher: Voucher, now: dt.datetime) -> Receipt:
    """The receipt of operation (`kind`, `ref`), issued now unless it exists."""
    existing = find(session, voucher.kind, voucher.ref)
    if existing is not None:
        return existing
    owner = session.get(ReportedAccount, voucher.account)
    receipt = Receipt(
        number=_next_number(session, now),
        kind=voucher.kind,
        ref=voucher.ref,
        account=voucher.account,
        shop=owner.shop if owner is not None else "",
        fen=voucher.fen,
        method=voucher.method,
        operator=voucher.operator,
        time=now,
        transfer=voucher.transfer,
        balance_fen=projection.prepaid_balance(session, voucher.account),
        detail=dict(voucher.detail),
    )
    session.add(receipt)
    session.flush()
    return receipt


def find(session: Session, kind: str, ref: str) -> Receipt | None:
    return session.scalars(
        select(Receipt).where(Receipt.kind == kind, Receipt.ref == ref)
    ).one_or_none()


def get(session: Session, number: str) -> Receipt:
    receipt = session.get(Receipt, number)
    if receipt is None:
        raise NotFound(f"no receipt number {number!r}")
    return receipt


def view(receipt: Receipt) -> dict[str, Any]:
    """Everything printed on the receipt, as JSON."""
    local = receipt.time.astimezone(SITE_ZONE)
    return {
        "number": receipt.number,
        "kind": receipt.kind,
        "ref": receipt.ref,
        "account": receipt.account,
        "shop": receipt.shop,
        "fen": receipt.fen,
        "yuan": yuan(receipt.fen),
        "capital": capital(receipt.fen),
        "method": receipt.method,
        "operator": receipt.operator,
        "time": local.isoformat(),
        "transfer": receipt.transfer,
        "balance_fen": receipt.balance_fen,
        "detail": dict(receipt.detail),
        "print": PRINT_RECEIPTS,
    }


def text(receipt: Receipt) -> str:
    """The printable receipt: plain text, Chinese labels, one field per line."""
    local = receipt.time.astimezone(SITE_ZONE)
    balance = "—" if receipt.balance_fen is None else f"¥{yuan(receipt.balance_fen)}"
    lines = [
        f"{'Voltbook 收据':^28}",
        f"收据编号: {receipt.number}",
        f"业务类型: {KIND_LABEL.get(receipt.kind, receipt.kind)}",
        f"户号: {receipt.account}",
        f"商铺: {receipt.shop or '—'}",
        f"金额: ¥{yuan(receipt.fen)}",
        f"大写: 人民币{capital(receipt.fen)}",
        f"方式: {METHOD_LABEL.get(receipt.method, receipt.method)}",
        f"经办人: {receipt.operator}",
        f"时间: {local:%Y-%m-%d %H:%M:%S} ({SITE_ZONE.key})",
        f"账务流水: {receipt.transfer}",
        f"预付余额: {balance}",
    ]
    lines += [f"{name}: {value}" for name, value in sorted(receipt.detail.items())]
    return "\n".join(lines) + "\n"
