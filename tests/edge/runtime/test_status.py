"""`voltbook-edge status`: the box's status read from its store while the runtime holds it; every
number is what the store holds."""

from __future__ import annotations

import datetime as dt
import json

from demo.sim.direct_bus import DirectBus
from demo.site import DemoSite
from edge.site import load_site
from tests.edge.runtime.conftest import booted_at, cli

QUARTER = dt.timedelta(minutes=15)


def test_status_after_a_few_cycles_is_what_the_store_holds(small_site: DemoSite) -> None:
    booted, clock = booted_at(load_site(small_site.site_toml))
    runtime, store = booted.runtime, booted.runtime.store
    bus = runtime.buses["rs485-1"]
    assert isinstance(bus, DirectBus)
    cut = runtime.site.meters[0].address
    try:
        for _ in range(3):
            runtime.run_cycle()
            clock.advance(QUARTER)
        bus.detach(cut)
        runtime.run_cycle()
        # The runtime still holds the store: status reads a snapshot without its lock.
        done = cli("status", "--config", str(small_site.site_toml), "--json")
        assert done.returncode == 0, done.stderr
        status = json.loads(done.stdout)
        text = cli("status", "--config", str(small_site.site_toml))
        assert text.returncode == 0 and "rs485-1" in text.stdout and cut in text.stdout
        assert status["rounds"] == 4
        assert status["sync"]["chain_seq"] == store.chain.seq
        assert status["sync"]["outbox"] == store.outbox_size()
        assert status["sync"]["acknowledged_seq"] == 0  # an offline site: nothing acked
        assert status["clock"]["cycles"] == runtime.clock_state.cycles
        assert not status["clock"]["held"]
        (bus_status,) = status["buses"]
        assert (bus_status["reads"], bus_status["reads_tried"]) == (31, 32)
        assert bus_status["read_success"] == round(31 / 32, 4)
        for meter in bus_status["meters"]:
            address = meter["address"]
            stored = store.readings(address)
            latest = store.latest_reading(address)
            assert latest is not None
            assert meter["readings"] == len(stored)
            assert meter["last_read"] == latest.time.astimezone(runtime.site.zone).isoformat()
            assert meter["register"] == latest.reading.energy_wh
            assert meter["relay_seen"] == "closed"
        broken = next(m for m in bus_status["meters"] if m["address"] == cut)
        assert broken["read_failures"] == 1 and "no reply" in broken["last_error"]
        assert broken["read_success"] == 0.75
        opened = {(a["kind"], a.get("bus") or a.get("meter")) for a in status["open_alarms"]}
        assert opened == {("read_success_low", "rs485-1"), ("meter_unreadable", cut)}
        recent = {(a["kind"], a["meter"]) for a in status["recent_alarms"]}
        assert recent == {("read_success_low", None), ("meter_unreadable", cut)}
    finally:
        booted.close()


def test_status_before_the_first_run_says_so(small_site: DemoSite) -> None:
    done = cli("status", "--config", str(small_site.site_toml))
    assert done.returncode == 1 and "has not run" in done.stderr
