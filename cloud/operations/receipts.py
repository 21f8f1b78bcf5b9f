"""Receipts for money operations: recharges, corrections, refund payouts and meter swaps.

A receipt is issued in the same transaction as its operation and never changes. Numbers are
`YYYY-NNNNNN` (the year in the site's zone), contiguous per year: the writer locks the year's
`receipt_counters` row, so two desks never take the same number or leave a hole. One receipt
per operation (`kind`, `ref`): issuing again returns the first.

What it keeps is what was true at the desk: number, kind, account, shop, the site (whose
`print_receipts` setting says whether the desk prints it) and the merchant, as the registry
named them, the amount, method, operator, time and the ledger transfer it vouches for. Where the
operation stands (booked, pending, void) and the balance after it are read from the ledger when
it is shown (`receipt_status`); what is printed, in Chinese or English, is `receipt_print`.
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

from cloud.db.models import ReportedAccount
from cloud.db.operations import Receipt, ReceiptCounter
from cloud.db.registry import Account, Merchant, Shop, Site
from cloud.errors import NotFound

SITE_ZONE = ZoneInfo("Asia/Shanghai")
KINDS = ("recharge", "correction", "refund", "meter_swap")

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
    site, merchant = _names(session, voucher.account)
    receipt = Receipt(
        number=_next_number(session, now),
        kind=voucher.kind,
        ref=voucher.ref,
        account=voucher.account,
        shop=owner.shop if owner is not None else "",
        site_id=None if site is None else site.id,
        site="" if site is None else site.name,
        merchant=merchant,
        fen=voucher.fen,
        method=voucher.method,
        operator=voucher.operator,
        time=now,
        transfer=voucher.transfer,
        detail=dict(voucher.detail),
    )
    session.add(receipt)
    session.flush()
    return receipt


def _names(session: Session, account: str) -> tuple[Site | None, str]:
    """The registry's site of the account's shop, and its merchant's name ("" if unknown)."""
    found = session.execute(
        select(Site, Merchant.name)
        .select_from(Account)
        .join(Merchant, Merchant.id == Account.merchant_id)
        .outerjoin(Shop, Shop.id == Account.shop_id)
        .outerjoin(Site, Site.id == Shop.site_id)
        .where(Account.id == account)
    ).one_or_none()
    return (None, "") if found is None else (found[0], found[1])


def prints(session: Session, receipt: Receipt) -> bool:
    """Whether the receipt's site prints receipts (`registry_sites.print_receipts`); a receipt
    of no registered site is not printed, as a new site's setting starts."""
    site = None if receipt.site_id is None else session.get(Site, receipt.site_id)
    return site is not None and site.print_receipts


def find(session: Session, kind: str, ref: str) -> Receipt | None:
    return session.scalars(
        select(Receipt).where(Receipt.kind == kind, Receipt.ref == ref)
    ).one_or_none()


def get(session: Session, number: str) -> Receipt:
    receipt = session.get(Receipt, number)
    if receipt is None:
        raise NotFound(f"no receipt number {number!r}")
    return receipt
