"""Site-defined reading blocks in the running runtime: a fast `power` block catches a kettle that
two quarter-hour billing reads never see, without billing, storing readings or writing a
transaction per round.

The runner runs for real (its loop, the store, simulated DL/T 645 meters answering real frames)
on a `ManualClock` whose naps advance the clock. The `brief_kettle` profile boils a 2 kW kettle
at PF 0.99 beside a 200 W computer from 6:40 to 7:20 past every quarter hour.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from demo.site import DemoSite
from edge.runtime.boot import Booted
from edge.runtime.clock import ManualClock
from edge.runtime.events import RuntimeKind
from edge.runtime.notify import Notifier
from edge.runtime.runner import RunLimits, Runner
from edge.site import load_site
from edge.store import Category, Store
from edge.store.config_db import ConfigDB, ConfigKind
from tests.edge.runtime.conftest import START, booted_at, demo

POWER_BLOCK = '\n[[blocks]]\nname = "power"\ninterval_s = 15\n'
TRIPS_BLOCK = (
    '\n[[blocks]]\nname = "trips"\ninterval_s = 3600\n'
    'items = ["malicious_load_trips", "overload_trips", "over_voltage_trips"]\n'
)
KETTLE_ON = START + dt.timedelta(minutes=6, seconds=40)
KETTLE_OFF = START + dt.timedelta(minutes=7, seconds=20)


def kettle_site(tmp_path: Path, *, blocks: str) -> DemoSite:
    """Two meters, the first behind the brief kettle, the second idle; malicious load after
    two matching readings."""
    files = demo(tmp_path, 2, tariff="flat", profiles=["brief_kettle", "idle"])
    with ConfigDB.open(files.directory / "config.json") as config:
        protection = config.get(ConfigKind.RULES, "protection")
        assert protection is not None
        config.put(ConfigKind.RULES, {**protection, "debounce_readings": 2})
    with files.site_toml.open("a") as toml:
        toml.write(blocks)
    return files


def run_two_cycles(booted: Booted, clock: ManualClock) -> Runner:
    """The cycles at 00:00 and 00:15, and whatever falls between them."""

    def nap(seconds: float) -> None:
        clock.advance(dt.timedelta(seconds=seconds))

    runner = Runner(booted, RunLimits(cycles=2), Notifier(None, None), nap=nap)
    runner.run()
    return runner


def stored(files: DemoSite) -> Store:
    return Store.open(load_site(files.site_toml).settings.store_path, read_only=True)


def test_a_kettle_on_for_40_s_between_two_polls_is_tripped_by_the_power_block(
    tmp_path: Path,
) -> None:
    files = kettle_site(tmp_path, blocks=POWER_BLOCK + TRIPS_BLOCK)
    kettle, idle = files.meters
    booted, clock = booted_at(load_site(files.site_toml))
    runner = run_two_cycles(booted, clock)
    assert list(runner.starts) == [START, START + dt.timedelta(minutes=15)]
    with stored(files) as store:
        alarms = [e.event for e in store.events(category=Category.ALARM)]
        malicious = [a for a in alarms if a.kind == "malicious_load"]
        assert [a.meter for a in malicious] == [kettle]
        # Two readings 15 s apart inside the 40 s: caught while it boils, not at 00:15.
        assert KETTLE_ON < malicious[0].time < KETTLE_OFF
        assert "step 2000 W at PF 0.99" in str(malicious[0].detail)
        confirmed = [
            e.event
            for e in store.events()
            if e.event.kind == RuntimeKind.RELAY_CONFIRMED.value and e.event.meter == kettle
        ]
        assert [e.detail["command"] for e in confirmed][:1] == ["trip"]
        # Fast rounds bill nothing and store no readings: the two cycles did, one row a meter.
        polls = {START, START + dt.timedelta(minutes=15)}
        assert {r.time for r in store.readings()} == polls
        assert len(list(store.readings())) == 4
        # The hourly block's point is 00:00: read with the billing read, stored with it.
        counters = {r.time: dict(r.reading.counters) for r in store.readings(kettle)}
        assert counters[START] == {
            "malicious_load_trips": 0,
            "overload_trips": 0,
            "over_voltage_trips": 0,
        }
        assert counters[START + dt.timedelta(minutes=15)] == {}
        billed = [e.transfer for e in store.entries() if e.transfer.code.value == "consume"]
        assert billed and all(t.refs["meter"] in (kettle, idle) for t in billed)
        # The 00:15 read_round event tallies the power block: 59 rounds between the cycles and
        # its read with the billing read at 00:15, two meters each.
        rounds = [e.event for e in store.events() if e.event.kind == "read_round"]
        first, last = (r.detail["blocks"] for r in rounds)
        assert set(first) == {"power", "trips"}  # type: ignore[arg-type]
        power = last["power"]  # type: ignore[index]
        assert (power["rounds"], power["attempted"], power["read"]) == (60, 120, 120)


def test_a_site_file_without_blocks_runs_as_before_and_misses_the_kettle(tmp_path: Path) -> None:
    files = kettle_site(tmp_path, blocks="")
    site = load_site(files.site_toml)
    assert site.settings.blocks == ()
    booted, clock = booted_at(site)
    runner = run_two_cycles(booted, clock)
    assert runner.block_due == {}
    with stored(files) as store:
        kinds = {e.event.kind for e in store.events(category=Category.ALARM)}
        assert "malicious_load" not in kinds  # off at 00:00 and at 00:15: never seen
        rounds = [e.event for e in store.events() if e.event.kind == "read_round"]
        assert len(rounds) == 2 and all("blocks" not in r.detail for r in rounds)
