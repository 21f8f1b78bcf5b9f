"""The planner as tables: for each account and moment, which notice is due (and its dedupe
key), with no database; and what each notice says."""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from cloud.config import NOTICE_KINDS
from cloud.notices import messages, planner
from cloud.notices.outbox import NoticeKind
from cloud.notices.planner import AccountView, Arrears, Window

SH = ZoneInfo("Asia/Shanghai")
AT = dt.time(9, 0)


def at(hour: int, minute: int = 0, day: int = 7) -> dt.datetime:
    """A moment on 2026-12-`day` in Shanghai."""
    return dt.datetime(2026, 12, day, hour, minute, tzinfo=SH)


def view(**changes: object) -> AccountView:
    base = AccountView(account="A1", shop="S1", zone=SH, prepaid_fen=5000, daily_fen=1000,
                       below_fen=None, below_days=None)  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# (case, moment, account, days threshold) → the dedupe keys planned
LOW_BALANCE = [
    ("before the round", at(8, 59), view(prepaid_fen=1000), 3, []),
    ("at the round", at(9, 0), view(prepaid_fen=1000), 3, ["low_balance:A1:2026-12-07"]),
    ("late in the day", at(23, 59), view(prepaid_fen=1000), 3, ["low_balance:A1:2026-12-07"]),
    ("exactly 3 days left", at(9), view(prepaid_fen=3000), 3, ["low_balance:A1:2026-12-07"]),
    ("3.99 days left", at(9), view(prepaid_fen=3999), 3, ["low_balance:A1:2026-12-07"]),
    ("4 days left", at(9), view(prepaid_fen=4000), 3, []),
    ("no recent use", at(9), view(prepaid_fen=100, daily_fen=None), 3, []),
    ("below the site's fen", at(9), view(prepaid_fen=1999, daily_fen=None, below_fen=2000), 3,
     ["low_balance:A1:2026-12-07"]),
    ("site's days win", at(9), view(prepaid_fen=5000, below_days=5), 3,
     ["low_balance:A1:2026-12-07"]),
    ("zero is arrears", at(9), view(prepaid_fen=0), 3, []),
    ("nothing booked", at(9), view(prepaid_fen=None), 3, []),
    ("the next day", at(9, day=8), view(prepaid_fen=1000), 3, ["low_balance:A1:2026-12-08"]),
    ("UTC midnight is 08:00 here", dt.datetime(2026, 12, 7, 0, 30, tzinfo=dt.UTC),
     view(prepaid_fen=1000), 3, []),
    ("another zone", at(9), view(prepaid_fen=1000, zone=ZoneInfo("Asia/Urumqi")), 3, []),
]  # fmt: skip


@pytest.mark.parametrize(("case", "now", "account", "days", "keys"), LOW_BALANCE,
                         ids=[row[0] for row in LOW_BALANCE])  # fmt: skip
def test_low_balance(
    case: str, now: dt.datetime, account: AccountView, days: int, keys: list[str]
) -> None:
    planned = planner.low_balance(now, [account], AT, days)
    assert [p.dedupe for p in planned] == keys
    for item in planned:
        assert item.kind is NoticeKind.LOW_BALANCE and item.account == "A1"
        assert item.facts["days_left"] == account.days_left


SCHEDULED = Arrears(mode="scheduled", cut_off=dt.time(10, 0))
BEFORE = dt.timedelta(hours=2)
OWING = {"prepaid_fen": -50}

# (case, moment, account) → the dedupe keys, and the cut-off the warning names
ARREARS = [
    ("too early", at(7, 59), view(**OWING, arrears=SCHEDULED), [], None),
    ("two hours before", at(8, 0), view(**OWING, arrears=SCHEDULED),
     ["arrears_warning:A1:2026-12-07"], "2026-12-07T10:00+08:00"),
    ("at the cut-off: too late", at(10, 0), view(**OWING, arrears=SCHEDULED), [], None),
    ("in credit", at(9), view(arrears=SCHEDULED), [], None),
    ("zero is arrears", at(9), view(prepaid_fen=0, arrears=SCHEDULED),
     ["arrears_warning:A1:2026-12-07"], "2026-12-07T10:00+08:00"),
    ("subsidy left", at(9), view(prepaid_fen=0, subsidy_wh=10, arrears=SCHEDULED), [], None),
    ("within the credit limit", at(9),
     view(prepaid_fen=-50, credit_limit_fen=100, arrears=SCHEDULED), [], None),
    ("owes despite credit", at(9), view(prepaid_fen=100, debt_fen=1, arrears=SCHEDULED),
     ["arrears_warning:A1:2026-12-07"], "2026-12-07T10:00+08:00"),
    ("keep power", at(9), view(**OWING, keep_power=True, arrears=SCHEDULED), [], None),
    ("holiday", at(9), view(**OWING, arrears=dataclasses.replace(
        SCHEDULED, holidays=frozenset({dt.date(2026, 12, 7)}))), [], None),
    ("cut-off in friendly hours waits", at(10, 30), view(**OWING, arrears=dataclasses.replace(
        SCHEDULED, friendly_hours=(Window(dt.time(9), dt.time(11)),))),
     ["arrears_warning:A1:2026-12-07"], "2026-12-07T11:00+08:00"),
    ("friendly until tomorrow: no cut today", at(19), view(**OWING, arrears=dataclasses.replace(
        SCHEDULED, cut_off=dt.time(21))), [], None),
    ("at zero: from the round", at(9), view(**OWING), ["arrears_warning:A1:2026-12-07"], None),
    ("at zero: before the round", at(8, 59), view(**OWING), [], None),
]  # fmt: skip


@pytest.mark.parametrize(("case", "now", "account", "keys", "cut_off"), ARREARS,
                         ids=[row[0] for row in ARREARS])  # fmt: skip
def test_arrears_warnings(
    case: str, now: dt.datetime, account: AccountView, keys: list[str], cut_off: str | None
) -> None:
    planned = planner.arrears_warnings(now, [account], AT, BEFORE)
    assert [p.dedupe for p in planned] == keys
    for item in planned:
        assert item.facts["cut_off"] == cut_off


def test_events_become_notices_keyed_by_what_happened() -> None:
    when = dt.datetime(2026, 12, 7, 2, 0, tzinfo=dt.UTC)
    cut = planner.cut_offs([planner.CutOff("edge-1", 42, "A1", "S1", when, "m1")], SH)
    assert [(p.kind, p.dedupe, p.facts["time"]) for p in cut] == [
        (NoticeKind.CUT_OFF, "cut_off:edge-1:42", "2026-12-07T10:00+08:00")
    ]
    paid = planner.Credited("PAY-1", "A1", 5000, when, "S1", "wechat")
    credited = planner.recharges_credited([paid], SH)
    assert [(p.dedupe, p.facts["fen"]) for p in credited] == [("recharge_credited:PAY-1", 5000)]
    refunded = planner.refunds_paid([dataclasses.replace(paid, reference="R-1")], SH)
    assert [(p.dedupe, p.facts["refund"]) for p in refunded] == [("refund_paid:R-1", "R-1")]


YUAN = [(0, "0.00元"), (1, "0.01元"), (1234, "12.34元"), (-5, "-0.05元"),
        (10_000_000, "100000.00元")]  # fmt: skip


@pytest.mark.parametrize(("fen", "text"), YUAN)
def test_yuan_is_integer_arithmetic(fen: int, text: str) -> None:
    assert messages.yuan(fen) == text


def test_every_kind_has_a_template_and_a_text() -> None:
    facts = {"account": "A1", "shop": "S1", "balance_fen": 1234, "days_left": 1,
             "time": "2026-12-07T09:00+08:00", "cut_off": "2026-12-07T10:00+08:00",
             "fen": 5000, "payment": "PAY-1", "refund": "R-1", "reason": "violation",
             "note": "", "shops": ["S1"], "from": "2026-12-08T09:00+08:00",
             "to": "2026-12-08T12:00+08:00"}  # fmt: skip
    for kind in NoticeKind:
        data = messages.template_data(kind, facts)
        assert data and all(len(v["value"]) <= 20 for k, v in data.items() if "thing" in k)
        assert messages.sms_text(kind, facts).startswith(messages.SIGNATURE)
    assert "12.34元" in messages.sms_text(NoticeKind.LOW_BALANCE, facts)
    assert "2026-12-07 10:00" in messages.sms_text(NoticeKind.ARREARS_WARNING, facts)
    assert "违规用电" in messages.sms_text(NoticeKind.POWER_OFF, facts)


def test_the_configured_kinds_are_the_notice_kinds() -> None:
    assert tuple(k.value for k in NoticeKind) == NOTICE_KINDS
