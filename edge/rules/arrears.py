"""Arrears: cut the power of an account that can no longer pay, and restore it after a top-up.

An account is *in arrears* when it owes (`Pockets.debt_fen`: energy the consumption rule booked
as debt) or when its pockets are exhausted (no subsidy, no grace, prepaid at its floor: zero,
or `-credit_limit` with an overdraft allowance).

An account's water meters are judged apart from its electricity meters, with their own state
(`ArrearsAccount.water`): their valves close when the account owes or has neither free water
nor money left (`Pockets.water_exhausted`), and open after a top-up, by the same modes and
calendar. Debt is one: water owed closes the relays too, energy owed the valves.

Two modes (`ArrearsPolicy.mode`):

- `at_zero`: trip as soon as the account is in arrears;
- `scheduled`: once a day, at the first call at or after `cut_off`, trip the accounts in
  arrears then. An account that falls into arrears after the day's cut-off waits for the next
  one. A cut-off that falls in friendly hours waits until they end, the same day.

Never a trip during friendly hours (daily ranges, 20:00–08:00 by default), on a listed holiday,
or for a keep-power account. These stop new trips only: a relay already open stays open until
the account pays. A tripped account is closed as soon as it is no longer in arrears (a top-up,
which the billing cycle uses to pay the debt back first, `edge.rules.debt`), or when it is made
keep-power; closing is never held back by the calendar.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from edge.rules.decisions import (
    Alarm,
    AlarmKind,
    Decided,
    Decisions,
    RelayAction,
    RelayCause,
    RelayCommand,
    Severity,
)
from edge.rules.pockets import Pockets
from edge.rules.times import DailyWindow, in_any, require_aware


class ArrearsMode(StrEnum):
    AT_ZERO = "at_zero"
    SCHEDULED = "scheduled"


@dataclass(frozen=True, slots=True)
class ArrearsPolicy:
    mode: ArrearsMode = ArrearsMode.AT_ZERO
    cut_off: dt.time = dt.time(10, 0)  # scheduled mode: the daily cut-off time
    friendly_hours: tuple[DailyWindow, ...] = (DailyWindow(dt.time(20, 0), dt.time(8, 0)),)
    holidays: frozenset[dt.date] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class ArrearsAccount:
    """One account as the arrears rule sees it."""

    owner: str
    meters: tuple[str, ...]
    pockets: Pockets
    keep_power: bool = False
    water: bool = False  # `meters` are water meters: their valves are judged

    @property
    def in_arrears(self) -> bool:
        exhausted = self.pockets.water_exhausted if self.water else self.pockets.exhausted
        return self.pockets.debt_fen > 0 or exhausted


@dataclass(frozen=True, slots=True)
class ArrearsState:
    tripped: bool = False
    cut_off_done: dt.date | None = None  # scheduled mode: the day whose cut-off has run


def _relays(account: ArrearsAccount, command: RelayCommand, why: str) -> tuple[RelayAction, ...]:
    return tuple(RelayAction(m, command, RelayCause.ARREARS, why) for m in account.meters)


def protected(now: dt.datetime, policy: ArrearsPolicy) -> bool:
    """True in friendly hours and on holidays: no arrears trip then."""
    return now.date() in policy.holidays or in_any(now, policy.friendly_hours)


def judge_arrears(
    now: dt.datetime, account: ArrearsAccount, state: ArrearsState, policy: ArrearsPolicy
) -> Decided[ArrearsState]:
    """Trip, close, or leave alone one account's meters."""
    require_aware(now)
    if state.tripped:
        if account.in_arrears and not account.keep_power:
            return Decided(state)
        why = "keep-power account" if account.keep_power else "back in credit"
        why = f"water: {why}" if account.water else why
        alarm = Alarm(AlarmKind.ARREARS_CLOSE, Severity.INFO, why, account=account.owner)
        closes = _relays(account, RelayCommand.CLOSE, why)
        return Decided(
            dataclasses.replace(state, tripped=False), Decisions(relays=closes, alarms=(alarm,))
        )
    if protected(now, policy):
        return Decided(state)
    if policy.mode is ArrearsMode.SCHEDULED:
        today = now.date()
        cut_off = dt.datetime.combine(today, policy.cut_off, tzinfo=now.tzinfo)
        # `!=`, not `<`: a clock that jumped ahead and came back must not stop cut-offs.
        if now < cut_off or state.cut_off_done == today:
            return Decided(state)
        state = dataclasses.replace(state, cut_off_done=today)
    if not account.in_arrears or account.keep_power:
        return Decided(state)
    why = (
        f"{account.pockets.debt_fen} fen owed"
        if account.pockets.debt_fen
        else f"balance exhausted ({account.pockets.prepaid_fen} fen)"
    )
    why = f"water: {why}" if account.water else why
    alarm = Alarm(AlarmKind.ARREARS_TRIP, Severity.WARNING, why, account=account.owner)
    trips = _relays(account, RelayCommand.TRIP, why)
    return Decided(
        dataclasses.replace(state, tripped=True), Decisions(relays=trips, alarms=(alarm,))
    )
