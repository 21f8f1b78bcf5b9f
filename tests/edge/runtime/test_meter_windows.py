"""Malicious-load recognition in the meter, end to end on a simulated site: the runtime writes a
`voltbook-sim` meter its window once (remembered in the store, across a restart), the meter
trips a kettle within seconds and the runtime records that trip; a meter of a model without a
window is judged by the concentrator's rule alone; wrong credentials are an alarm, retried."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import Counter
from pathlib import Path

from demo.sim.simulation import building_of
from demo.site import DemoSite
from edge.drivers.dlt645_vendor import SIMULATED_MODEL, MaliciousLoadSettings
from edge.rules.decisions import AlarmKind
from edge.rules.protection import LoadWindow, ProtectionPolicy
from edge.runtime.codec import decode
from edge.runtime.events import RuntimeKind
from edge.runtime.meter_windows import EMPTY_WINDOW, MeterWindowState, meter_window_key, wanted
from edge.site import load_site
from edge.site.model import MeterConfig
from edge.store import Store, StoredEvent
from edge.store.config_db import ConfigDB, ConfigKind
from tests.edge.runtime.conftest import START, booted_at, demo

POLL = dt.timedelta(minutes=15)
KETTLE_WINDOW = {"min_w": 1_900, "max_w": 2_600, "min_pf": 0.95, "max_pf": 1.0}
PROTECTION = {
    "id": "protection",
    "windows": [KETTLE_WINDOW],
    "debounce_readings": 3,
    "reclose_after_s": 3_600,
}


def _site(tmp_path: Path) -> tuple[DemoSite, str, str]:
    """Three meters with a kettle on all day: the first keeps a window, the third does not."""
    site = demo(tmp_path, 3, tariff="flat", profiles=("constant", "steady_shop", "constant"))
    own, plain = site.meters[0], site.meters[2]
    with ConfigDB.open(site.directory / "config.json") as db:
        document = db.get(ConfigKind.METERS, own)
        assert document is not None
        db.put(ConfigKind.METERS, {**document, "model": SIMULATED_MODEL})
        db.put(ConfigKind.RULES, PROTECTION)
    return site, own, plain


def _events(store: Store) -> list[StoredEvent]:
    return list(store.events())


def building_parameters(files: DemoSite) -> dict[str, int]:
    """The parameters the first simulated meter holds, as saved on disk."""
    saved = json.loads((files.directory / "sim" / "meters.json").read_text())
    return dict(saved["meters"][0].get("parameters", {}))


def test_the_meter_gets_its_window_once_and_its_own_trip_is_recorded(tmp_path: Path) -> None:
    files, own, plain = _site(tmp_path)
    site = load_site(files.site_toml)
    assert site.meter(own).malicious_load_map is not None
    assert site.meter(plain).malicious_load_map is None
    booted, clock = booted_at(site)
    building = building_of(booted)
    try:
        runtime = booted.runtime
        runtime.run_cycle()  # reads the kettle, writes the window
        assert building.meters[own].state.parameters["malicious_load_power_low"] == 19_000
        assert building.meters[plain].state.parameters == {}  # no window: nothing written
        clock.advance(POLL)
        second = runtime.run_cycle()  # the meter tripped 5 s after the first cycle
        assert building.meters[own].state.counters["malicious_load_trips"] == 1
        assert [o.order.meter.address for o in second.outcomes] == [own]
        assert building.meters[plain].state.relay_closed  # the rule waits for 3 readings
        for _ in range(2):  # (the first reading, at the site's first instant, showed 0 W)
            clock.advance(POLL)
            runtime.run_cycle()
        assert not building.meters[plain].state.relay_closed  # the rule's own trip
        events = _events(runtime.store)
    finally:
        booted.close()
    kinds = Counter((e.event.kind, e.event.meter) for e in events)
    assert kinds[(RuntimeKind.METER_WINDOW_WRITTEN.value, own)] == 1
    assert not any(k == RuntimeKind.METER_WINDOW_WRITTEN.value and m != own for k, m in kinds)
    trips = [e.event for e in events if e.event.kind == AlarmKind.MALICIOUS_LOAD.value]
    assert [(t.meter, "by the meter itself" in t.detail["message"]) for t in trips] == [
        (own, True),
        (plain, False),
    ]
    assert trips[0].time == START + POLL  # recorded the first cycle after the meter tripped
    assert trips[0].shop is not None and trips[0].account is not None
    # The kettle ran for the 5 s delay after the window was written, then the meter cut it.
    energy = building.meters[own].state.energy_mwh - building.meters[plain].state.energy_mwh
    assert energy < -1_400_000  # the plain kettle ran 45 min more (1 kWh = 1e6 mWh)

    # After a restart the window the meter holds is known: nothing is written again. A new
    # policy is written once.
    booted, clock = booted_at(load_site(files.site_toml), START + 4 * POLL)
    try:
        booted.runtime.run_cycle()
        with ConfigDB.open(files.directory / "config.json") as db:
            db.put(ConfigKind.RULES, {**PROTECTION, "windows": [KETTLE_WINDOW, KETTLE_WINDOW]})
        booted.runtime.use_site(load_site(files.site_toml))
        clock.advance(POLL)
        booted.runtime.run_cycle()
        clock.advance(POLL)
        booted.runtime.run_cycle()
        store = booted.runtime.store
        written = [
            e.event.detail["window"]
            for e in _events(store)
            if e.event.kind == RuntimeKind.METER_WINDOW_WRITTEN.value
        ]
        state = decode(MeterWindowState, store.get_state(meter_window_key(own)))
    finally:
        booted.close()
    assert len(written) == 2 and written[1].startswith("empty")  # two windows: the meter none
    assert state == MeterWindowState(SIMULATED_MODEL, EMPTY_WINDOW)


def test_wrong_credentials_are_an_alarm_and_retried_until_they_are_right(tmp_path: Path) -> None:
    files, own, _ = _site(tmp_path)
    toml = files.site_toml.read_text()
    files.site_toml.write_text(toml.replace('parity = "E"', 'parity = "E"\npassword = "123456"'))
    site = load_site(files.site_toml)
    assert site.buses[0].password == 0x123456
    booted, clock = booted_at(site)
    try:
        for _ in range(3):
            booted.runtime.run_cycle()
            clock.advance(POLL)
        store = booted.runtime.store
        failed = [
            e.event for e in _events(store) if e.event.kind == RuntimeKind.METER_WINDOW_FAILED.value
        ]
        state = decode(MeterWindowState, store.get_state(meter_window_key(own)))
    finally:
        booted.close()
    (alarm,) = failed  # raised once, retried quietly
    assert alarm.meter == own and alarm.detail["severity"] == "critical"
    assert "unauthorised" in alarm.detail["message"]
    assert state.failures == 3 and state.written is None
    assert building_parameters(files) == {}

    files.site_toml.write_text(toml)  # the installer puts the right password back
    booted, clock = booted_at(load_site(files.site_toml), START + 3 * POLL)
    try:
        booted.runtime.run_cycle()
        (written,) = [
            e.event
            for e in _events(booted.runtime.store)
            if e.event.kind == RuntimeKind.METER_WINDOW_WRITTEN.value
        ]
    finally:
        booted.close()
    assert "after 3 failed cycles" in written.detail["message"]
    assert building_parameters(files)["malicious_load_pf_low"] == 950


def test_what_a_meter_is_written_follows_the_policy() -> None:
    meter = MeterConfig("000000000001", "b", "dlt645", "s", "a", model=SIMULATED_MODEL)
    one = ProtectionPolicy(windows=(LoadWindow(100, 300, 0.96, 0.99),))
    assert wanted(meter, one) == MaliciousLoadSettings(100, 300, 0.96, 0.99, 5)
    assert wanted(meter, ProtectionPolicy()) == EMPTY_WINDOW
    assert wanted(dataclasses.replace(meter, model="DDZY1234"), one) is None
    assert wanted(dataclasses.replace(meter, protocol="dlt645-1997"), one) is None
