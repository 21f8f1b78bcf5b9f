"""Read success as data: each round's counts per bus are stored, low rates and coarse float
energy registers are alarmed. Real cycles over simulated DL/T 645 meters; a silent meter is
one detached from its bus (it never answers)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from demo.sim.direct_bus import DirectBus
from edge.drivers.reading import Reading
from edge.runtime.events import RuntimeKind
from edge.runtime.polling import MeterRead
from edge.runtime.read_success import QUANTISATION_LIMIT_WH, quantisation_events
from edge.site import SiteConfigError, load_site
from edge.store import Category, Event
from ledger.units import Wh
from tests.edge.runtime.conftest import START, booted_at, demo

QUARTER = dt.timedelta(minutes=15)
LIMIT = QUANTISATION_LIMIT_WH  # at the limit: not alarmed


def set_minimum(site_toml: Path, line: str) -> None:
    text = site_toml.read_text()
    site_toml.write_text(text.replace("[site]\n", f"[site]\n{line}\n", 1))


def kinds_of(events: list[Event], kind: RuntimeKind) -> list[Event]:
    return [e for e in events if e.kind == kind.value]


def test_silent_meters_are_counted_per_bus_stored_and_alarmed_below_the_minimum(
    tmp_path: Path,
) -> None:
    files = demo(tmp_path, 20, tariff="flat")  # two buses
    booted, clock = booted_at(load_site(files.site_toml))
    runtime = booted.runtime
    assert runtime.site.settings.read_success_min == 0.9  # the default
    on_bus = {b.name: [m.address for m in runtime.site.meters if m.bus == b.name] for b in
              runtime.site.buses}  # fmt: skip
    noisy, quiet = sorted(on_bus)
    bus = runtime.buses[noisy]
    assert isinstance(bus, DirectBus)
    try:
        first = runtime.run_cycle()
        assert [(b.bus, b.attempted, b.read, b.failed, b.rate) for b in first.buses] == [
            (noisy, len(on_bus[noisy]), len(on_bus[noisy]), 0, 1.0),
            (quiet, len(on_bus[quiet]), len(on_bus[quiet]), 0, 1.0),
        ]
        silent = {a: bus.detach(a) for a in on_bus[noisy][:2]}
        for _ in range(3):
            clock.advance(QUARTER)
            report = runtime.run_cycle()
        attempted = len(on_bus[noisy])
        low = report.buses[0]
        assert (low.attempted, low.read, low.failed) == (attempted, attempted - 2, 2)
        assert low.rate == pytest.approx((attempted - 2) / attempted)
        assert low.rate < 0.9
        assert report.buses[1].rate == 1.0

        for address, responder in silent.items():
            assert responder is not None
            bus.attach(address, responder)
        clock.advance(QUARTER)
        assert runtime.run_cycle().buses[0].rate == 1.0

        events = [e.event for e in runtime.store.events()]
        rounds = kinds_of(events, RuntimeKind.READ_ROUND)
        assert len(rounds) == 5  # one compact event a cycle
        detail = rounds[1].detail
        total = attempted + len(on_bus[quiet])
        assert (detail["attempted"], detail["read"], detail["failed"]) == (total, total - 2, 2)
        assert detail["buses"] == [
            {
                "bus": noisy,
                "attempted": attempted,
                "read": attempted - 2,
                "failed": 2,
                "rate": round((attempted - 2) / attempted, 4),
            },
            {"bus": quiet, "attempted": total - attempted, "read": total - attempted,
             "failed": 0, "rate": 1.0},
        ]  # fmt: skip
        lows = kinds_of(events, RuntimeKind.READ_SUCCESS_LOW)
        assert len(lows) == 1  # once, not once a cycle
        assert lows[0].category is Category.ALARM and lows[0].detail["bus"] == noisy
        assert lows[0].detail["minimum"] == 0.9
        assert len(kinds_of(events, RuntimeKind.READ_SUCCESS_OK)) == 1
    finally:
        booted.close()


def test_the_minimum_comes_from_site_toml(tmp_path: Path) -> None:
    files = demo(tmp_path, 4, tariff="flat")
    set_minimum(files.site_toml, "read_success_min = 0.5")
    booted, _ = booted_at(load_site(files.site_toml), START)
    runtime = booted.runtime
    bus = runtime.buses[runtime.site.meters[0].bus]
    assert isinstance(bus, DirectBus)
    try:
        bus.detach(runtime.site.meters[0].address)
        report = runtime.run_cycle()
        assert report.buses[0].rate == 0.75  # above 0.5: counted, not alarmed
        events = [e.event for e in runtime.store.events()]
        assert kinds_of(events, RuntimeKind.READ_SUCCESS_LOW) == []
    finally:
        booted.close()


@pytest.mark.parametrize("value", ["1.5", "-0.1", '"high"'])
def test_a_minimum_outside_zero_to_one_is_refused_at_load(tmp_path: Path, value: str) -> None:
    files = demo(tmp_path, 4, tariff="flat")
    set_minimum(files.site_toml, f"read_success_min = {value}")
    with pytest.raises(SiteConfigError, match="read_success_min"):
        load_site(files.site_toml)


def test_a_float_register_coarser_than_100_wh_is_alarmed_once_per_meter(tmp_path: Path) -> None:
    site = load_site(demo(tmp_path, 4, tariff="flat").site_toml)
    fine, coarse, behind_ct = site.meters[:3]
    behind_ct = dataclasses.replace(behind_ct, multiplier=40)  # 4 Wh × 40 is 160 Wh billed
    reads = [
        MeterRead(
            fine, Reading(fine.address, Wh(2_000_000), energy_error_wh=QUANTISATION_LIMIT_WH)
        ),
        MeterRead(coarse, Reading(coarse.address, Wh(20_000_000), energy_error_wh=128)),
        MeterRead(behind_ct, Reading(behind_ct.address, Wh(100_000), energy_error_wh=4)),
        MeterRead(site.meters[3], None),
    ]
    events, alarmed = quantisation_events(site, START, reads, frozenset())
    assert alarmed == {coarse.address, behind_ct.address}
    assert [(e.kind, e.meter, e.category) for e in events] == [
        (RuntimeKind.ENERGY_QUANTISATION.value, coarse.address, Category.ALARM),
        (RuntimeKind.ENERGY_QUANTISATION.value, behind_ct.address, Category.ALARM),
    ]
    assert events[1].detail["error_wh"] == 160
    assert events[0].shop == coarse.shop
    again, still = quantisation_events(site, START + QUARTER, reads, alarmed)
    assert again == [] and still == alarmed
