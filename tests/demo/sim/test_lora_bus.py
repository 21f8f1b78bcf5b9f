"""A site with meters on a simulated LoRa bus (`kind = "simulated"`, `radio = "lora"`), end to end.

Real everything on the concentrator's side: the runtime, the store, `RadioBus` over
`Sx127xRadio` over the real pyLoRa, talking SPI to the SX127x stand-in on a lossy medium with
simulated DL/T 645 meters behind their radios; a `ManualClock` (the air on a virtual clock).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest

from demo.sim.direct_bus import DirectBus
from demo.sim.simulation import BuildingSimulation, building_of
from demo.site import LORA_BUS, DemoSite
from edge.drivers.lora import RadioBus
from edge.runtime.boot import BootError, boot
from edge.runtime.clock import ManualClock
from edge.site import SiteConfigError, load_site
from ledger.transfers import Code
from tests.edge.runtime.conftest import START, booted_at, cycles, demo, demo_cli, transfers_of

QUARTER = dt.timedelta(minutes=15)


@pytest.fixture
def lora_site(tmp_path: Path) -> DemoSite:
    return demo(tmp_path, 6, tariff="flat", lora=3, profiles=("constant",))


def _pylora_modules() -> list[str]:
    return [m for m in sys.modules if m.split(".")[0] in ("SX127x", "spidev", "RPi")]


def test_meters_on_the_radio_are_read_and_billed(lora_site: DemoSite) -> None:
    site = load_site(lora_site.site_toml)
    on_air = {m.address for m in site.meters if m.bus == LORA_BUS}
    assert len(on_air) == 3
    before = _pylora_modules()
    booted, clock = booted_at(site)
    try:
        assert _pylora_modules() == before  # the fake board is not left in sys.modules
        buses = booted.runtime.buses
        assert isinstance(buses[LORA_BUS], RadioBus)
        assert isinstance(buses["rs485-1"], DirectBus)
        for _ in range(8):
            result = booted.runtime.run_cycle()
            assert (result.read, result.failed) == (6, 0)
            clock.advance(QUARTER)
        transfers = transfers_of(booted.runtime.store)
        billed = {t.refs["meter"] for t in transfers if t.code is Code.CONSUME}
        assert on_air <= billed  # consumption entries for every meter on LoRa
        readings = {r.reading.address for r in booted.runtime.store.readings()}
        assert on_air <= readings
        radio = buses[LORA_BUS]
        assert isinstance(radio, RadioBus)
        assert set(radio.stats) == on_air
        assert all(s.conversations > 0 and s.failures == 0 for s in radio.stats.values())
    finally:
        booted.close()


def test_the_air_loses_packets_and_the_retries_carry_the_readings(lora_site: DemoSite) -> None:
    booted, clock = booted_at(load_site(lora_site.site_toml))
    try:
        cycles(booted, clock, 24, QUARTER)
        simulation = booted.simulation
        assert isinstance(simulation, BuildingSimulation)
        medium = simulation.airs[LORA_BUS].medium
        assert medium.stats.lost + medium.stats.corrupted > 0  # the loss model is in the loop
        bus = booted.runtime.buses[LORA_BUS]
        assert isinstance(bus, RadioBus)
        links = bus.stats.values()
        assert sum(s.timeouts for s in links) > 0  # packets lost on the way ...
        assert sum(s.failures for s in links) == 0  # ... and the retries got every reading
    finally:
        booted.close()


def test_the_radio_meters_keep_their_registers_across_a_restart(lora_site: DemoSite) -> None:
    site = load_site(lora_site.site_toml)
    booted, clock = booted_at(site)
    cycles(booted, clock, 4, QUARTER)
    booted.close()
    again = boot(load_site(lora_site.site_toml), clock=clock)
    try:
        assert again.runtime.run_cycle().failed == 0
        radio_meter = next(m.address for m in site.meters if m.bus == LORA_BUS)
        assert building_of(again).meters[radio_meter].state.energy_mwh > 0
    finally:
        again.close()


def test_a_site_all_on_lora(tmp_path: Path) -> None:
    site = load_site(demo(tmp_path, 2, tariff="flat", lora=2).site_toml)
    assert [b.name for b in site.buses] == [LORA_BUS]
    booted, clock = booted_at(site, START)
    try:
        cycles(booted, clock, 2, QUARTER)
        assert booted.runtime.run_cycle().read == 2
    finally:
        booted.close()


def _bus_toml(site_toml: Path, old: str, new: str) -> None:
    text = site_toml.read_text()
    assert old in text
    site_toml.write_text(text.replace(old, new))


def test_radio_on_a_real_bus_is_refused(lora_site: DemoSite) -> None:
    _bus_toml(lora_site.site_toml, 'kind = "simulated"\nradio', 'kind = "lora"\nradio')
    with pytest.raises(SiteConfigError, match="'radio' puts a simulated bus"):
        load_site(lora_site.site_toml)


def test_an_unknown_radio_is_refused(lora_site: DemoSite) -> None:
    _bus_toml(lora_site.site_toml, 'radio = "lora"', 'radio = "zigbee"')
    with pytest.raises(SiteConfigError, match="radio"):
        load_site(lora_site.site_toml)


def test_a_simulated_radio_outside_the_band_is_refused_at_boot(lora_site: DemoSite) -> None:
    _bus_toml(lora_site.site_toml, "frequency_hz = 470300000", "frequency_hz = 868100000")
    with pytest.raises(BootError, match=r"simulated radio bus 'lora-1'.*470"):
        boot(load_site(lora_site.site_toml), clock=ManualClock(START))


def test_demo_site_lora_option(tmp_path: Path) -> None:
    done = demo_cli("site", "--dir", str(tmp_path / "s"), "--meters", "4", "--lora", "2")
    assert done.returncode == 0, done.stderr
    site = load_site(tmp_path / "s" / "site.toml")
    assert sum(m.bus == LORA_BUS for m in site.meters) == 2
    refused = demo_cli("site", "--dir", str(tmp_path / "t"), "--meters", "4", "--lora", "5")
    assert refused.returncode == 2 and "LoRa" in refused.stderr
