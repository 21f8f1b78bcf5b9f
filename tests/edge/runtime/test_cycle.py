"""One poll cycle at a time, in-process: what it stores, and how it copes with the world.

Real store, real simulated DL/T 645 meters over a `DirectBus`, a `ManualClock`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from pathlib import Path

import pytest

from demo.sim.direct_bus import DirectBus
from demo.sim.simulation import building_of
from demo.site import DemoSite
from edge.rules.decisions import AlarmKind, RelayCause
from edge.rules.tariffs import energy_of
from edge.runtime.audit import audit_store
from edge.runtime.boot import boot, read_node_key
from edge.runtime.clock import ManualClock
from edge.runtime.events import RuntimeKind
from edge.runtime.notify import Notifier
from edge.site import load_site
from edge.store import Category
from edge.store.config_db import ConfigDB, ConfigKind
from ledger.accounts import Pocket, pocket_id
from ledger.transfers import Code
from tests.edge.runtime.conftest import START, booted_at, cycles, demo, transfers_of

QUARTER = dt.timedelta(minutes=15)
HOUR = dt.timedelta(hours=1)


def _audit(site_toml: Path) -> None:
    site = load_site(site_toml)
    audit = audit_store(site, read_node_key(site.settings.node_key).public_key)
    assert audit.ok, audit.problem


def test_a_cycle_reads_bills_stores_and_signs(small_site: DemoSite) -> None:
    booted, clock = booted_at(load_site(small_site.site_toml))
    runtime, store = booted.runtime, booted.runtime.store
    try:
        first = runtime.run_cycle()
        assert (first.read, first.failed) == (8, 0)
        issued = [t for t in transfers_of(store) if t.code is Code.SUBSIDY_ISSUE]
        assert len(issued) == 8 and {t.refs["period"] for t in issued} == {"2026-11"}
        clock.advance(QUARTER)
        second = runtime.run_cycle()
        assert second.transfers > 0  # consumption of the first quarter hour
        assert len(store.readings()) == 16
        assert store.checkpoints()[-1].seq == store.chain.seq  # signed to the head
        consume = [t for t in transfers_of(store) if t.code is Code.CONSUME]
        assert {"meter", "reg_from", "reg_to", "energy_wh"} <= set(consume[0].refs)
    finally:
        booted.close()
    _audit(small_site.site_toml)


def test_a_restart_resumes_without_booking_anything_twice(small_site: DemoSite) -> None:
    site = load_site(small_site.site_toml)
    booted, clock = booted_at(site)
    cycles(booted, clock, 4, QUARTER)
    booted.close()
    again = boot(load_site(small_site.site_toml), clock=clock)  # seed booked again: no-op
    try:
        cycles(again, clock, 4, QUARTER)
        transfers = transfers_of(again.runtime.store)
        assert max(Counter(t.id for t in transfers).values()) == 1
        assert Counter(t.code for t in transfers)[Code.RECHARGE] == 8
        assert again.runtime.clock_state.cycles == 8
    finally:
        again.close()
    _audit(small_site.site_toml)


def test_a_cycle_whose_transfers_were_booked_before_is_decided_again_with_lookups(
    small_site: DemoSite, caplog: pytest.LogCaptureFixture
) -> None:
    """The cycle's transaction defers the book's lookups to one query before it writes; a
    transfer it took for new that was booked before (here: the month's subsidies, the
    accounts' states set back as a replay would) fails that transaction, and the cycle is
    decided again, looking each transfer up: it commits, nothing booked twice."""
    booked, clock = booted_at(load_site(small_site.site_toml))
    runtime, store = booked.runtime, booked.runtime.store
    try:
        before = dict(runtime.accounts)
        runtime.run_cycle()
        issued = [t for t in transfers_of(store) if t.code is Code.SUBSIDY_ISSUE]
        assert len(issued) == 8
        runtime.accounts = before  # a replay: the states from before the subsidies
        clock.advance(QUARTER)
        with caplog.at_level(logging.INFO, logger="edge.runtime"):
            report = runtime.run_cycle()
        assert "were booked before" in caplog.text and "deciding it again" in caplog.text
        transfers = transfers_of(store)
        assert max(Counter(t.id for t in transfers).values()) == 1
        assert [t for t in transfers if t.code is Code.SUBSIDY_ISSUE] == issued
        assert (runtime.clock_state.cycles, report.seq) == (2, store.chain.seq)
        assert len(store.readings()) == 16
    finally:
        booked.close()
    _audit(small_site.site_toml)


def test_a_meter_that_fails_is_recorded_and_billing_catches_up(small_site: DemoSite) -> None:
    booted, clock = booted_at(load_site(small_site.site_toml))
    runtime = booted.runtime
    bus = runtime.buses["rs485-1"]
    assert isinstance(bus, DirectBus)
    address = runtime.site.meters[0].address
    try:
        cycles(booted, clock, 2, QUARTER)
        unplugged = bus.detach(address)
        assert unplugged is not None
        for _ in range(3):
            clock.advance(QUARTER)
            report = runtime.run_cycle()
            assert (report.read, report.failed) == (7, 1)
        assert runtime.meters[address].read_failures == 3
        assert "no reply" in runtime.meters[address].last_error
        bus.attach(address, unplugged)
        clock.advance(QUARTER)
        assert runtime.run_cycle().read == 8
        events = Counter(e.event.kind for e in runtime.store.events())
        assert events[RuntimeKind.METER_UNREADABLE.value] == 1  # one alarm, not one a cycle
        assert events[RuntimeKind.METER_READABLE.value] == 1
        unreadable = runtime.store.events(category=Category.ALARM, meter=address)[0].event
        assert unreadable.shop == runtime.site.meters[0].shop
    finally:
        booted.close()
    _audit(small_site.site_toml)  # the unread hour was billed at the next reading, no gap


def test_a_relay_that_refuses_is_an_alarm_and_is_retried_until_it_obeys(tmp_path: Path) -> None:
    site_files = demo(tmp_path, 5, tariff="flat", profiles=("constant",))
    booted, clock = booted_at(load_site(site_files.site_toml))
    runtime = booted.runtime
    poor = "A0004"  # 3 yuan and 20 kWh of subsidy: at 2 kW, empty before noon
    meter = runtime.site.meters_of(poor)[0].address
    simulated = building_of(booted).meters[meter].state
    simulated.keep_power = True  # this meter refuses to trip (as a keep-power meter does)
    try:
        while not runtime.meters[meter].relay.held:
            runtime.run_cycle()
            clock.advance(HOUR)
        assert runtime.meters[meter].relay.held == {RelayCause.ARREARS}
        assert simulated.relay_closed
        assert runtime.meters[meter].relay.failures == 1
        runtime.run_cycle()  # records the failure; the reading shows it closed: sent again
        clock.advance(HOUR)
        assert runtime.meters[meter].relay.failures == 2
        simulated.keep_power = False  # an electrician fixes the meter's setting
        runtime.run_cycle()
        assert not simulated.relay_closed
        clock.advance(HOUR)
        runtime.run_cycle()
        kinds = Counter(e.event.kind for e in runtime.store.events())
        assert kinds[RuntimeKind.RELAY_FAILED.value] == 1
        assert kinds[RuntimeKind.RELAY_STILL_FAILING.value] == 1
        assert kinds[RuntimeKind.RELAY_CONFIRMED.value] == 1
        assert kinds[AlarmKind.ARREARS_TRIP.value] == 1
        failed = next(
            e.event
            for e in runtime.store.events(category=Category.ALARM)
            if e.event.kind == RuntimeKind.RELAY_FAILED.value
        )
        assert (failed.meter, failed.account) == (meter, poor)
        # A top-up closes it again.
        assert runtime.recharge(poor, 50_000, "wx-0001")
        clock.advance(HOUR)
        runtime.run_cycle()
        assert simulated.relay_closed
        assert runtime.store.book.balance(pocket_id(poor, Pocket.PREPAID)).posted > 0
    finally:
        booted.close()
    _audit(site_files.site_toml)


def test_the_manual_clock_moves_true_time_and_jumps_only_the_system_clock() -> None:
    clock = ManualClock(START)
    clock.advance(HOUR)
    clock.jump(dt.timedelta(days=3))
    assert clock.true_now() == START + HOUR
    assert clock.system_now() == START + HOUR + dt.timedelta(days=3)
    assert clock.monotonic() == 3600


def test_a_current_transformer_multiplies_the_billed_energy(tmp_path: Path) -> None:
    site_files = demo(tmp_path, 2, tariff="flat", profiles=("constant",))
    with ConfigDB.open(site_files.directory / "config.json") as db:
        meter = db.get(ConfigKind.METERS, "202611000001")
        assert meter is not None
        # A 150/5 A transformer: the register counts 1/30 of the energy; a 100 kW feeder.
        db.put(ConfigKind.METERS, {**meter, "multiplier": 30, "max_power_w": 100_000})
    booted, clock = booted_at(load_site(site_files.site_toml))
    store = booted.runtime.store
    try:
        cycles(booted, clock, 3, QUARTER)
        raw = [r.reading.energy_wh for r in store.readings("202611000001")]
        assert raw[0] is not None and raw[-1] is not None
        billed = sum(
            int(t.refs["energy_wh"])
            for t in transfers_of(store)
            if t.code is Code.CONSUME and t.refs["meter"] == "202611000001"
        )
        unbilled = energy_of(booted.runtime.meters["202611000001"].billing.unbilled)  # type: ignore[union-attr]
        assert billed + unbilled == 30 * (raw[-1] - raw[0]) > 0
    finally:
        booted.close()


def test_the_watchdog_keepalive_pings_at_most_every_half_interval() -> None:
    notifier = Notifier(None, watchdog_usec=2_000_000)  # no socket: sends nothing
    assert notifier.watchdog_interval == 1.0
    before = notifier._pinged
    notifier.keepalive()
    assert notifier._pinged == before  # not due yet
    notifier._pinged -= 1.0
    notifier.keepalive()
    assert notifier._pinged > before - 1.0


def test_a_meter_with_no_relay_is_told_once_and_not_asked_again_every_cycle(
    tmp_path: Path,
) -> None:
    """DL/T 645-1997 has no relay command: the arrears trip is refused before a byte is sent,
    raised once as a failed relay, and not ordered again each cycle (no "still failing")."""
    site_files = demo(tmp_path, 5, tariff="flat", profiles=("constant",))
    for path in (site_files.site_toml, site_files.directory / "sim" / "meters.json"):
        path.write_text(path.read_text().replace('"dlt645"', '"dlt645-1997"'))
    with ConfigDB.open(site_files.directory / "config.json") as config:
        for meter in config.documents(ConfigKind.METERS):
            config.put(ConfigKind.METERS, {**meter, "protocol": "dlt645-1997"})
    booted, clock = booted_at(load_site(site_files.site_toml))
    runtime = booted.runtime
    poor = "A0004"  # 3 yuan and 20 kWh of subsidy: at 2 kW, empty before noon
    meter = runtime.site.meters_of(poor)[0].address
    try:
        while not runtime.meters[meter].relay.held:
            runtime.run_cycle()
            clock.advance(HOUR)
        for _ in range(6):
            runtime.run_cycle()
            clock.advance(HOUR)
        kinds = Counter(e.event.kind for e in runtime.store.events() if e.event.meter == meter)
        assert kinds[RuntimeKind.RELAY_FAILED.value] == 1
        assert kinds[RuntimeKind.RELAY_STILL_FAILING.value] == 0
        assert runtime.meters[meter].relay.no_relay
        [failed] = [
            e.event
            for e in runtime.store.events(category=Category.ALARM, meter=meter)
            if e.event.kind == RuntimeKind.RELAY_FAILED.value
        ]
        assert "cannot 'trip' a relay" in failed.detail["message"]
    finally:
        booted.close()
