"""Calendar helpers the rules share: aware `now`, period keys, daily time windows.

Rules never read a clock: the shell passes `now`, aware and in the site's zone (default
Asia/Shanghai). Everything here derives from that value, so a month of billing or a clock jump
is a test input, not a wait.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from edge.rules.errors import InputError, PolicyError

DAY_SECONDS = 24 * 3600


def require_aware(now: dt.datetime, what: str = "now") -> dt.datetime:
    """`now` itself, or InputError if it has no zone (a naive time has no month or hour)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise InputError(f"{what} must be timezone-aware (the site's zone), got {now!r}")
    return now


def stamp(moment: dt.datetime) -> str:
    """The transfer `time` text for a moment: ISO 8601 with its offset."""
    return require_aware(moment, "transfer time").isoformat()


def month_key(moment: dt.datetime) -> str:
    """The period key of a moment's month in its own zone, e.g. '2026-11'."""
    return f"{moment.year:04d}-{moment.month:02d}"


def parse_month(key: str) -> tuple[int, int]:
    year, _, month = key.partition("-")
    return int(year), int(month)


def month_start(key: str, zone: dt.tzinfo | None) -> dt.datetime:
    """Midnight starting the month `key` in `zone`."""
    year, month = parse_month(key)
    return dt.datetime(year, month, 1, tzinfo=zone)


def next_month(key: str) -> str:
    year, month = parse_month(key)
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def seconds_of_day(t: dt.time) -> int:
    if t.microsecond:
        raise PolicyError(f"times of day are whole seconds, got {t}")
    return t.hour * 3600 + t.minute * 60 + t.second


@dataclass(frozen=True, slots=True)
class DailyWindow:
    """A range of wall-clock time repeated every day: `start` inclusive, `end` exclusive.

    An `end` at or before `start` wraps past midnight (20:00–08:00 is the night); 00:00–00:00 is
    the whole day.
    """

    start: dt.time
    end: dt.time

    def __post_init__(self) -> None:
        seconds_of_day(self.start)
        seconds_of_day(self.end)

    def contains(self, moment: dt.time) -> bool:
        at = seconds_of_day(moment.replace(microsecond=0))
        start, end = seconds_of_day(self.start), seconds_of_day(self.end)
        if start < end:
            return start <= at < end
        return at >= start or at < end

    def spans(self) -> list[tuple[int, int]]:
        """The window as second-of-day ranges [a, b) within one day (two if it wraps)."""
        start, end = seconds_of_day(self.start), seconds_of_day(self.end)
        if start < end:
            return [(start, end)]
        return [(start, DAY_SECONDS), (0, end)] if end else [(start, DAY_SECONDS)]


def in_any(moment: dt.datetime, windows: tuple[DailyWindow, ...]) -> bool:
    """True when the wall-clock time of `moment` falls in one of `windows`."""
    wall = moment.timetz().replace(tzinfo=None)
    return any(window.contains(wall) for window in windows)
