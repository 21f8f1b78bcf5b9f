"""The clock guard: decide what time it is on a box with no real-time clock.

A Raspberry Pi boots with whatever time the kernel guesses (often the build date or 1970) until
NTP, the cloud or a meter tells it better. Billing by register deltas does not need wall time,
but subsidies, month end, scheduled cut-offs and alarm times do, and issuing November's subsidy
because the clock says 2038 would be a real loss. So the runtime asks `judge_clock` every cycle:

- the system time is accepted when it is not earlier than the last known time (persisted on
  every commit) minus a small tolerance, and not further ahead than the elapsed monotonic time
  since that last known time allows (plus a tolerance), unless a trusted reference confirms it;
- after a restart the monotonic clock starts again, so how long the box was off is unknown:
  up to `ClockPolicy.boot_gap` (`unaccounted`) is allowed on top of the elapsed time, and that
  allowance stays until a verdict is plausible again. A restart with the clock further ahead
  (a Pi booting at 2038) is held like any jump: a site without meter clocks waits for the
  cloud's signed time or an installer's `voltbook-edge clock set`;
- on a first boot meter clocks are trusted over the system clock, except when they differ from
  it by more than the tolerance but at most 14 h, as meters set in another zone do: that is
  not taken silently, the system clock is used and the cycle is held (an alarm);
- trusted references are the cloud's time (signed commands carry their issue time; an
  installer's `clock set` is carried the same way by `edge.runtime.clock.ClockGuard`) and the
  median of meter clocks (each meter's clock is poor, several agree); a reference that agrees with
  itself within the tolerance wins over the system clock;
- otherwise the time is *implausible*: the verdict carries the best estimate (last known time
  plus monotonic elapsed), holds time-driven actions and says why, so the runtime raises an alarm.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ledger.transfers import TimeSource


@dataclass(frozen=True, slots=True)
class ClockPolicy:
    tolerance: dt.timedelta = dt.timedelta(minutes=5)
    meter_quorum: int = 3  # meter clocks needed before their median is trusted
    # How long a restart may have taken: a boot further ahead of the last known time than this
    # needs corroboration. Longer outages are held until meters, the cloud or an installer agree.
    boot_gap: dt.timedelta = dt.timedelta(days=2)


@dataclass(frozen=True, slots=True)
class ClockVerdict:
    now: dt.datetime  # the time to use (estimate when not plausible)
    source: TimeSource
    plausible: bool  # False: hold time-driven actions, raise an alarm
    reason: str


def judge_clock(
    system_now: dt.datetime,
    last_known: dt.datetime | None,
    elapsed_since_last_known: dt.timedelta | None,
    *,
    unaccounted: dt.timedelta | None = None,
    cloud_time: dt.datetime | None = None,
    meter_times: tuple[dt.datetime, ...] = (),
    policy: ClockPolicy = ClockPolicy(),
    system_source: TimeSource = TimeSource.NTP,
) -> ClockVerdict:
    """Judge the system clock against what we last knew and what others say.

    `elapsed_since_last_known` is None when it is unknown (the first cycle after a restart);
    `unaccounted` is how much unseen time may have passed on top of it (default: none when the
    elapsed time is known, `policy.boot_gap` when it is not)."""
    if cloud_time is not None:
        return ClockVerdict(cloud_time, TimeSource.CLOUD, True, "time from the cloud")
    meters = _meter_consensus(meter_times, policy)
    if last_known is None:
        return _first_boot(system_now, meters, policy, system_source)
    if unaccounted is None:
        unaccounted = policy.boot_gap if elapsed_since_last_known is None else dt.timedelta(0)
    expected = last_known + (elapsed_since_last_known or dt.timedelta(0))
    if system_now < last_known - policy.tolerance:
        reason = f"system clock {system_now:%Y-%m-%d %H:%M} is before the last known time"
    elif system_now > expected + unaccounted + policy.tolerance:
        if elapsed_since_last_known is None:
            reason = (
                f"system clock at boot {system_now:%Y-%m-%d %H:%M} is "
                f"{_hours(system_now - expected)} h ahead of the last known time "
                f"{last_known:%Y-%m-%d %H:%M}, more than a restart accounts for"
            )
        else:
            reason = (
                f"system clock jumped to {system_now:%Y-%m-%d %H:%M}, "
                f"{_hours(system_now - expected)} h beyond what has elapsed"
            )
    else:
        return ClockVerdict(system_now, system_source, True, "system clock consistent")
    if meters is not None and abs(meters - system_now) <= policy.tolerance:
        return ClockVerdict(system_now, TimeSource.METER, True, reason + "; meters confirm it")
    if meters is not None:
        return ClockVerdict(meters, TimeSource.METER, True, reason + "; median meter clock used")
    return ClockVerdict(max(expected, last_known), TimeSource.PERSISTED, False, reason)


def _first_boot(
    system_now: dt.datetime,
    meters: dt.datetime | None,
    policy: ClockPolicy,
    system_source: TimeSource,
) -> ClockVerdict:
    """No last known time: meter clocks win, unless they look set in another time zone."""
    if meters is None:
        return ClockVerdict(system_now, system_source, True, "first boot: system clock taken")
    if _zone_shaped(meters - system_now, policy):
        return ClockVerdict(
            system_now,
            system_source,
            False,
            f"first boot: meter clocks are {_hours(meters - system_now)} h off the system "
            "clock (set in another time zone?); system clock taken, check both",
        )
    return ClockVerdict(meters, TimeSource.METER, True, "first boot: median meter clock")


def _zone_shaped(delta: dt.timedelta, policy: ClockPolicy) -> bool:
    """Whether `delta` could be a UTC offset: beyond the tolerance and within 14 h. (Further
    off, the system clock is the one that is wrong: a Pi at 1970 or at its build date.)"""
    return policy.tolerance < abs(delta) <= ZONE_SPREAD + policy.tolerance


ZONE_SPREAD = dt.timedelta(hours=14)  # the widest UTC offset (Kiribati)


def _meter_consensus(times: tuple[dt.datetime, ...], policy: ClockPolicy) -> dt.datetime | None:
    """Median meter clock when enough meters answered and half of them agree with it."""
    if len(times) < policy.meter_quorum:
        return None
    ordered = sorted(times)
    median = ordered[len(ordered) // 2]
    agreeing = sum(1 for t in ordered if abs(t - median) <= policy.tolerance)
    return median if agreeing * 2 > len(ordered) else None


def _hours(delta: dt.timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f}"
