"""What a notice says: its WeChat template fields and its text message, written from its facts.

Each kind's template is a table of fields (`FIELDS`): the key the template in the Official
Account's back office has (`thing1`, `amount2`, …), the key's type, and how the value is made
from the facts. A value longer than its type allows (`LIMITS`: 20 characters for `thing`, 5
for `phrase`, …) is cut to fit, ending in "…", since WeChat refuses the whole message
otherwise. Amounts are fen, written as yuan with integer arithmetic; times are written in the
zone they were planned in (the facts carry their offset).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from cloud.notices.outbox import NoticeKind

# Characters a value of each template key type may have (WeChat's category templates).
LIMITS = {
    "thing": 20,
    "character_string": 32,
    "number": 32,
    "letter": 32,
    "amount": 32,
    "time": 32,
    "date": 32,
    "phrase": 5,
    "symbol": 5,
    "phone_number": 17,
    "name": 10,
}

REASONS = {"maintenance": "检修", "violation": "违规用电"}
SIGNATURE = "【Voltbook】"

Facts = Mapping[str, Any]


def yuan(fen: int) -> str:
    """`1234` → `"12.34元"`, `-5` → `"-0.05元"` (integers only, never a float)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}元"


def clock(text: object) -> str:
    """An ISO time from the facts as `2026-12-06 09:00` (in its own offset); else as given."""
    if not isinstance(text, str):
        return ""
    try:
        return dt.datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return text


def fit(value: str, kind: str) -> str:
    """`value` cut to what a template key of type `kind` holds."""
    limit = LIMITS.get(kind, 20)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _place(facts: Facts) -> str:
    shop, account = facts.get("shop") or "", facts.get("account") or ""
    return f"商铺{shop}（{account}）" if shop and account else f"账户{account or shop}"


def _days(facts: Facts) -> str:
    days = facts.get("days_left")
    return "不足1天" if days == 0 else ("未知" if days is None else f"约{days}天")


def _shops(facts: Facts) -> str:
    return "、".join(str(s) for s in facts.get("shops", []))


def _reason(facts: Facts) -> str:
    return REASONS.get(str(facts.get("reason")), str(facts.get("reason", "")))


Field = tuple[str, str, Callable[[Facts], str]]  # key, type, value

FIELDS: dict[NoticeKind, tuple[Field, ...]] = {
    NoticeKind.LOW_BALANCE: (
        ("thing1", "thing", _place),
        ("amount2", "amount", lambda f: yuan(int(f.get("balance_fen", 0)))),
        ("thing3", "thing", lambda f: f"可用{_days(f)}，请及时充值"),
        ("time4", "time", lambda f: clock(f.get("time"))),
    ),
    NoticeKind.ARREARS_WARNING: (
        ("thing1", "thing", _place),
        ("amount2", "amount", lambda f: yuan(int(f.get("balance_fen", 0)))),
        ("time3", "time", lambda f: clock(f.get("cut_off")) or "欠费即停电"),
        ("thing4", "thing", lambda _f: "已欠费，请尽快充值以免停电"),
    ),
    NoticeKind.CUT_OFF: (
        ("thing1", "thing", _place),
        ("time2", "time", lambda f: clock(f.get("time"))),
        ("thing3", "thing", lambda _f: "欠费停电，充值后自动恢复"),
    ),
    NoticeKind.RECHARGE_CREDITED: (
        ("thing1", "thing", _place),
        ("amount2", "amount", lambda f: yuan(int(f.get("fen", 0)))),
        ("character_string3", "character_string", lambda f: str(f.get("payment", ""))),
        ("time4", "time", lambda f: clock(f.get("time"))),
    ),
    NoticeKind.REFUND_PAID: (
        ("thing1", "thing", _place),
        ("amount2", "amount", lambda f: yuan(int(f.get("fen", 0)))),
        ("character_string3", "character_string", lambda f: str(f.get("refund", ""))),
        ("time4", "time", lambda f: clock(f.get("time"))),
    ),
    NoticeKind.POWER_OFF: (
        ("thing1", "thing", lambda f: f"商铺{_shops(f)}"),
        ("phrase2", "phrase", _reason),
        ("time3", "time", lambda f: clock(f.get("from"))),
        ("time4", "time", lambda f: clock(f.get("to"))),
        ("thing5", "thing", lambda f: str(f.get("note") or "请提前做好准备")),
    ),
}


def template_data(kind: NoticeKind, facts: Facts) -> dict[str, dict[str, str]]:
    """The `data` of a template message: `{key: {"value": text}}`, each value cut to fit."""
    return {key: {"value": fit(value(facts), type_)} for key, type_, value in FIELDS[kind]}


def _sms_low_balance(f: Facts) -> str:
    balance = yuan(int(f.get("balance_fen", 0)))
    return f"{_place(f)}余额{balance}，按近日用电可用{_days(f)}，请及时充值。"


def _sms_arrears(f: Facts) -> str:
    when = clock(f.get("cut_off"))
    cut = f"将于{when}停电" if when else "将被停电"
    return f"{_place(f)}已欠费（余额{yuan(int(f.get('balance_fen', 0)))}），{cut}，请尽快充值。"


def _sms_cut_off(f: Facts) -> str:
    return f"{_place(f)}因欠费于{clock(f.get('time'))}停电，充值到账后自动恢复供电。"


def _sms_recharge(f: Facts) -> str:
    return f"{_place(f)}充值{yuan(int(f.get('fen', 0)))}已到账（单号{f.get('payment', '')}）。"


def _sms_refund(f: Facts) -> str:
    return f"{_place(f)}退款{yuan(int(f.get('fen', 0)))}已支付（单号{f.get('refund', '')}）。"


def _sms_power_off(f: Facts) -> str:
    when = f"{clock(f.get('from'))}至{clock(f.get('to'))}"
    return f"商铺{_shops(f)}因{_reason(f)}将于{when}停电。{f.get('note') or ''}"


TEXTS: dict[NoticeKind, Callable[[Facts], str]] = {
    NoticeKind.LOW_BALANCE: _sms_low_balance,
    NoticeKind.ARREARS_WARNING: _sms_arrears,
    NoticeKind.CUT_OFF: _sms_cut_off,
    NoticeKind.RECHARGE_CREDITED: _sms_recharge,
    NoticeKind.REFUND_PAID: _sms_refund,
    NoticeKind.POWER_OFF: _sms_power_off,
}


def sms_text(kind: NoticeKind, facts: Facts) -> str:
    """The text message, signed."""
    return SIGNATURE + TEXTS[kind](facts).strip()
