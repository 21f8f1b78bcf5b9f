"""The poll grid: cycles start at fixed points of the site's clock, whatever a cycle takes.

With a 15-minute interval a cycle starts at :00, :15, :30 and :45 of the site's wall clock, not
`interval` after the last one ended: a full bus's three-minute round would otherwise push every
start (and the subsidies, cut-offs and alarm times that follow the cycles) three minutes later
each time. Points are counted from the site's local midnight, so an interval that does not
divide the day starts again at midnight.

A cycle that runs past the next point misses it: that is an overrun, reported with its duration,
and the next cycle starts at the first point at or after its end. A cycle is never stretched
silently, never started at once to catch up, and never run beside another.

Pure: times in, times out. The runner supplies the clock and does the waiting.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

DAY = dt.timedelta(days=1)


def _midnight(moment: dt.datetime) -> dt.datetime:
    # Same tzinfo on both sides: arithmetic between them is on the wall clock.
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def grid_point_before(moment: dt.datetime, interval: dt.timedelta) -> dt.datetime:
    """The last grid point at or before `moment`."""
    midnight = _midnight(moment)
    return midnight + ((moment - midnight) // interval) * interval


def next_grid_point(moment: dt.datetime, interval: dt.timedelta) -> dt.datetime:
    """The first grid point strictly after `moment`."""
    midnight = _midnight(moment)
    point = midnight + ((moment - midnight) // interval + 1) * interval
    return min(point, midnight + DAY)


def grid_point_from(moment: dt.datetime, interval: dt.timedelta) -> dt.datetime:
    """`moment` if it is a grid point, else the next one."""
    before = grid_point_before(moment, interval)
    return moment if before == moment else next_grid_point(moment, interval)


def drift(start: dt.datetime, interval: dt.timedelta) -> dt.timedelta:
    """How late `start` is after the grid point it belongs to (zero on the grid)."""
    return start - grid_point_before(start, interval)


@dataclass(frozen=True, slots=True)
class Overrun:
    """A cycle that ran past the next grid point."""

    started: dt.datetime
    ended: dt.datetime
    missed: int  # grid points that passed while it ran (no cycle started at them)
    next_start: dt.datetime

    @property
    def duration(self) -> dt.timedelta:
        return self.ended - self.started


@dataclass(frozen=True, slots=True)
class NextCycle:
    start: dt.datetime
    overrun: Overrun | None = None


def plan_next(started: dt.datetime, ended: dt.datetime, interval: dt.timedelta) -> NextCycle:
    """When the cycle after one that ran from `started` to `ended` (site time) starts."""
    due = next_grid_point(started, interval)
    if ended <= due:
        return NextCycle(due)
    start = grid_point_from(ended, interval)
    missed = 0
    point = due
    while point < start:
        missed += 1
        point = next_grid_point(point, interval)
    return NextCycle(start, Overrun(started, ended, missed, start))
