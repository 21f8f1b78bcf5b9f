"""The poll interval holds: cycles start on the site clock's grid, whatever a cycle takes.

The runner runs for real (its loop, its scheduler, the store, simulated meters) on a
`ManualClock`: its naps advance the clock instead of sleeping, and a slow cycle is one that
advances the clock by its duration after it has run.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from edge.runtime.boot import Booted
from edge.runtime.clock import ManualClock
from edge.runtime.cycle import CycleReport
from edge.runtime.events import RuntimeKind
from edge.runtime.grid import (
    drift,
    grid_point_before,
    grid_point_from,
    next_grid_point,
    plan_next,
)
from edge.runtime.notify import Notifier
from edge.runtime.runner import RunLimits, Runner, RunSummary
from edge.site import load_site
from edge.store import Category, Store
from tests.edge.runtime.conftest import START, ZONE, booted_at, demo

QUARTER = dt.timedelta(minutes=15)
MINUTE = dt.timedelta(minutes=1)


def at(hh: int, mm: int, ss: int = 0, day: int = 1) -> dt.datetime:
    return dt.datetime(2026, 11, day, hh, mm, ss, tzinfo=ZONE)


# -- the grid (pure) ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("moment", "before", "after"),
    [
        (at(0, 0), at(0, 0), at(0, 15)),
        (at(0, 7), at(0, 0), at(0, 15)),
        (at(0, 14, 59), at(0, 0), at(0, 15)),
        (at(0, 15), at(0, 15), at(0, 30)),
        (at(23, 50), at(23, 45), at(0, 0, day=2)),
    ],
)
def test_grid_points_are_counted_from_the_sites_midnight(
    moment: dt.datetime, before: dt.datetime, after: dt.datetime
) -> None:
    assert grid_point_before(moment, QUARTER) == before
    assert next_grid_point(moment, QUARTER) == after
    assert drift(moment, QUARTER) == moment - before


def test_an_interval_that_does_not_divide_the_day_starts_again_at_midnight() -> None:
    seven = 7 * MINUTE
    assert next_grid_point(at(23, 55), seven) == at(0, 0, day=2)  # 23:55 is 205 × 7 min
    assert grid_point_from(at(23, 56), seven) == at(0, 0, day=2)
    assert grid_point_from(at(0, 14), seven) == at(0, 14)


def test_a_cycle_shorter_than_the_interval_is_followed_at_the_next_point() -> None:
    plan = plan_next(at(0, 0), at(0, 3), QUARTER)
    assert (plan.start, plan.overrun) == (at(0, 15), None)
    assert plan_next(at(0, 0), at(0, 15), QUARTER).overrun is None  # ended just in time


def test_a_cycle_past_the_next_point_is_an_overrun_and_the_grid_is_kept() -> None:
    plan = plan_next(at(0, 0), at(0, 20), QUARTER)
    assert plan.start == at(0, 30)
    assert plan.overrun is not None
    assert (plan.overrun.duration, plan.overrun.missed) == (20 * MINUTE, 1)
    # Late start, short cycle, still past the point: the start it missed is reported too.
    late = plan_next(at(0, 1), at(0, 15, 30), QUARTER)
    assert late.start == at(0, 30) and late.overrun is not None and late.overrun.missed == 1
    long = plan_next(at(0, 0), at(0, 45), QUARTER)  # ends on a point: starts there
    assert long.start == at(0, 45) and long.overrun is not None and long.overrun.missed == 2


# -- the runner on a manual clock --------------------------------------------------------------
def run_slow(booted: Booted, clock: ManualClock, *took: dt.timedelta) -> tuple[Runner, RunSummary]:
    """Run one cycle for each of `took`, each taking that long on the clock; the runner's
    naps advance the clock."""
    runtime = booted.runtime
    real_cycle = runtime.run_cycle
    durations = iter(took)

    def slow_cycle() -> CycleReport:
        report = real_cycle()
        clock.advance(next(durations))
        return report

    def nap(seconds: float) -> None:
        clock.advance(dt.timedelta(seconds=seconds))

    runtime.run_cycle = slow_cycle  # type: ignore[method-assign]
    runner = Runner(booted, RunLimits(cycles=len(took)), Notifier(None, None), nap=nap)
    return runner, runner.run()


def overrun_alarms(site_toml: Path) -> list[dict[str, object]]:
    site = load_site(site_toml)
    with Store.open(site.settings.store_path, read_only=True) as store:
        return [
            dict(e.event.detail)
            for e in store.events(category=Category.ALARM)
            if e.event.kind == RuntimeKind.CYCLE_OVERRUN.value
        ]


def test_a_three_minute_cycle_still_starts_on_the_quarter_hours(tmp_path: Path) -> None:
    files = demo(tmp_path, 4, tariff="flat")
    booted, clock = booted_at(load_site(files.site_toml), START + 7 * MINUTE)
    runner, summary = run_slow(booted, clock, *[3 * MINUTE] * 5)
    assert summary.cycles == 5
    # The first cycle runs at once (a restart catches up), then the grid, never 18 minutes.
    assert list(runner.starts) == [at(0, 7), at(0, 15), at(0, 30), at(0, 45), at(1, 0)]
    assert not runner.overruns
    assert overrun_alarms(files.site_toml) == []


def test_a_twenty_minute_cycle_is_one_overrun_and_the_next_starts_on_the_grid(
    tmp_path: Path,
) -> None:
    files = demo(tmp_path, 4, tariff="flat")
    booted, clock = booted_at(load_site(files.site_toml))
    runner, summary = run_slow(booted, clock, 20 * MINUTE, 3 * MINUTE, 3 * MINUTE)
    assert summary.cycles == 3
    # 00:15 is missed, never run late beside 00:30
    assert list(runner.starts) == [at(0, 0), at(0, 30), at(0, 45)]
    assert [(o.started, o.duration, o.missed) for o in runner.overruns] == [
        (at(0, 0), 20 * MINUTE, 1)
    ]
    stored = overrun_alarms(files.site_toml)
    assert len(stored) == 1
    assert stored[0]["duration_s"] == 1200.0
    assert stored[0]["interval_s"] == 900.0
    assert stored[0]["next_start"] == at(0, 30).isoformat()
    assert stored[0]["severity"] == "warning"
