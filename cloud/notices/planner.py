"""Which notices to make, as pure functions of `now` and rows already read (`cloud.notices.sources`
reads them). Each answer is a list of `Planned`, each with the dedupe key that makes it once:

- `low_balance:<account>:<day>` — at or after `low_balance_at` in the site's zone, a balance
  above zero that is at or below the site's `below_fen`, or whose days of credit left (balance
  ÷ recent daily fen) are at or below `below_days` (the site's, else the configured);
- `arrears_warning:<account>:<day>` — in arrears and not keep-power: with a scheduled cut-off,
  within `warn_before` of the day's effective cut-off; without one (`at_zero`), at or after
  `low_balance_at`;
- `cut_off:<node>:<event id>` — the concentrator's `arrears_trip` alarm;
- `recharge_credited:<payment>` — a recharge posted; `refund_paid:<refund>` — a refund paid.

"In arrears" and "the effective cut-off" mirror the concentrator's rule (`edge.rules.arrears`,
whose code the cloud may not import): in arrears when the account owes or has no subsidy, no
grace and prepaid at its floor (zero, or minus its credit limit); a scheduled cut-off happens at
the first moment at or after `cut_off` that is outside friendly hours, the same day, never on a
holiday; an `at_zero` account is cut as soon as it is in arrears (outside friendly hours).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from cloud.notices.outbox import NoticeKind, Planned


@dataclass(frozen=True, slots=True)
class Window:
    """A daily range of wall-clock time, `start` inclusive, `end` exclusive; wraps past
    midnight when `end <= start` (the edge's `DailyWindow`)."""

    start: dt.time
    end: dt.time

    def contains(self, moment: dt.time) -> bool:
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


@dataclass(frozen=True, slots=True)
class Arrears:
    """A site's arrears policy as the registry declares it."""

    mode: str = "at_zero"  # at_zero | scheduled
    cut_off: dt.time = dt.time(10, 0)
    friendly_hours: tuple[Window, ...] = (Window(dt.time(20, 0), dt.time(8, 0)),)
    holidays: frozenset[dt.date] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class AccountView:
    """One account as the planner sees it: its place, its pockets, its use and its site's rules."""

    account: str
    shop: str
    zone: ZoneInfo
    prepaid_fen: int | None  # None: nothing booked yet
    subsidy_wh: int = 0
    grace_wh: int = 0
    debt_fen: int = 0  # owed
    credit_limit_fen: int = 0
    keep_power: bool = False
    daily_fen: int | None = None  # recent average fen used per day; None: no recent use
    below_fen: int | None = None  # the site's alarm rule
    below_days: int | None = None
    arrears: Arrears = field(default_factory=Arrears)

    @property
    def in_arrears(self) -> bool:
        if self.debt_fen > 0:
            return True
        exhausted = (self.prepaid_fen or 0) <= -self.credit_limit_fen
        return exhausted and self.subsidy_wh <= 0 and self.grace_wh <= 0

    @property
    def days_left(self) -> int | None:
        if self.prepaid_fen is None or not self.daily_fen:
            return None
        return max(0, self.prepaid_fen) // self.daily_fen


def _local(now: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    return now.astimezone(zone)


def _facts(view: AccountView, local: dt.datetime) -> dict[str, object]:
    return {"account": view.account, "shop": view.shop, "balance_fen": view.prepaid_fen or 0,
            "time": local.isoformat(timespec="minutes")}  # fmt: skip


def low_balance(
    now: dt.datetime, views: Iterable[AccountView], at: dt.time, days: int
) -> list[Planned]:
    """The day's low-balance notices, once the day's `at` has come in each account's zone."""
    planned = []
    for view in views:
        local = _local(now, view.zone)
        balance = view.prepaid_fen
        if local.time() < at or balance is None or balance <= 0:
            continue
        threshold_days = days if view.below_days is None else view.below_days
        days_left = view.days_left
        low = (view.below_fen is not None and balance <= view.below_fen) or (
            days_left is not None and days_left <= threshold_days
        )
        if low:
            facts = _facts(view, local) | {"days_left": days_left, "daily_fen": view.daily_fen}
            planned.append(Planned(NoticeKind.LOW_BALANCE,
                                   f"low_balance:{view.account}:{local.date().isoformat()}",
                                   view.account, facts, view.shop))  # fmt: skip
    return planned


def effective_cut_off(day: dt.date, zone: ZoneInfo, policy: Arrears) -> dt.datetime | None:
    """When a scheduled cut-off happens on `day`: the first moment at or after `cut_off`
    outside friendly hours, that day; None on a holiday or when friendly hours last the day."""
    if policy.mode != "scheduled" or day in policy.holidays:
        return None
    moment = policy.cut_off
    for _ in range(len(policy.friendly_hours) + 1):
        inside = next((w for w in policy.friendly_hours if w.contains(moment)), None)
        if inside is None:
            return dt.datetime.combine(day, moment, tzinfo=zone)
        if inside.end <= moment or inside.end == dt.time(0, 0):  # ends tomorrow: no cut today
            return None
        moment = inside.end
    return None


def arrears_warnings(
    now: dt.datetime, views: Iterable[AccountView], at: dt.time, warn_before: dt.timedelta
) -> list[Planned]:
    """Warnings to accounts in arrears: before the day's scheduled cut-off, or (no cut-off
    time) once a day from `at` on."""
    planned = []
    for view in views:
        if view.prepaid_fen is None or not view.in_arrears or view.keep_power:
            continue  # nothing booked yet: not live, not cut
        local = _local(now, view.zone)
        if view.arrears.mode == "scheduled":
            cut = effective_cut_off(local.date(), view.zone, view.arrears)
            if cut is None or not cut - warn_before <= local < cut:
                continue
            cut_text: str | None = cut.isoformat(timespec="minutes")
        elif local.time() < at:
            continue
        else:
            cut_text = None
        facts = _facts(view, local) | {"cut_off": cut_text}
        planned.append(Planned(NoticeKind.ARREARS_WARNING,
                               f"arrears_warning:{view.account}:{local.date().isoformat()}",
                               view.account, facts, view.shop))  # fmt: skip
    return planned


@dataclass(frozen=True, slots=True)
class CutOff:
    """A concentrator's `arrears_trip` alarm as the cloud copied it."""

    node: str
    event_id: int
    account: str
    shop: str
    time: dt.datetime
    meter: str | None = None


def cut_offs(rows: Sequence[CutOff], zone: ZoneInfo) -> list[Planned]:
    return [
        Planned(NoticeKind.CUT_OFF, f"cut_off:{r.node}:{r.event_id}", r.account,
                {"account": r.account, "shop": r.shop, "meter": r.meter,
                 "time": r.time.astimezone(zone).isoformat(timespec="minutes")}, r.shop)
        for r in rows
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Credited:
    """A recharge posted (`reference`: its payment) or a refund paid (its id)."""

    reference: str
    account: str
    fen: int
    time: dt.datetime
    shop: str = ""
    method: str = ""


def recharges_credited(rows: Sequence[Credited], zone: ZoneInfo) -> list[Planned]:
    return [
        Planned(NoticeKind.RECHARGE_CREDITED, f"recharge_credited:{r.reference}", r.account,
                {"account": r.account, "shop": r.shop, "payment": r.reference, "fen": r.fen,
                 "method": r.method, "time": r.time.astimezone(zone).isoformat(timespec="minutes")},
                r.shop)
        for r in rows
    ]  # fmt: skip


def refunds_paid(rows: Sequence[Credited], zone: ZoneInfo) -> list[Planned]:
    return [
        Planned(NoticeKind.REFUND_PAID, f"refund_paid:{r.reference}", r.account,
                {"account": r.account, "shop": r.shop, "refund": r.reference, "fen": r.fen,
                 "method": r.method, "time": r.time.astimezone(zone).isoformat(timespec="minutes")},
                r.shop)
        for r in rows
    ]  # fmt: skip
