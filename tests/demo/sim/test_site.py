"""Simulated sites: meters built from a spec, loads advancing on the bus thread."""

from __future__ import annotations

import time

import pytest

from demo.sim.site import BusSpec, SimulatedBus, SimulatedSite
from edge.drivers.bus import SerialBus
from edge.drivers.registry import driver_for


@pytest.mark.parametrize(
    ("protocol", "digits"), [("dlt645", 12), ("cjt188", 14), ("dlt645-1997", 12)]
)
def test_addresses_are_distinct_and_in_the_protocols_form(protocol: str, digits: int) -> None:
    with SimulatedBus(BusSpec(protocol, meters=20, wire_timing=False), seed=3) as bus:
        addresses = bus.addresses
    assert len(set(addresses)) == 20
    assert all(len(a) == digits and a.isdigit() for a in addresses)


def test_modbus_meters_are_unit_ids() -> None:
    with SimulatedBus(BusSpec("ddsu666", meters=3, wire_timing=False)) as bus:
        assert bus.addresses == ["1", "2", "3"]
        assert bus.settings.parity == "N"


def test_the_same_seed_builds_the_same_site() -> None:
    def build(seed: int) -> list[tuple[str, int]]:
        bus = SimulatedBus(BusSpec("dlt645", meters=4, wire_timing=False), seed=seed)
        bus.stop()
        return [(m.state.address, m.state.energy_mwh) for m in bus.meters]

    assert build(1) == build(1)
    assert build(1) != build(2)


@pytest.mark.slow  # sleeps 1.3 s for the loads to advance
def test_loads_advance_while_the_bus_serves_reads() -> None:
    spec = BusSpec("dlt645", meters=1, wire_timing=False, profiles=("constant",))
    with SimulatedBus(spec, seed=1, speed=3600.0) as bus:  # an hour a second
        state = bus.meters[0].state
        before = state.energy_mwh
        driver = driver_for("dlt645", bus.settings)
        address = bus.addresses[0]
        with SerialBus(bus.port, bus.settings) as serial_bus:
            first = serial_bus.run(driver.read(address, "energy"), address=address)
            time.sleep(1.3)
            second = serial_bus.run(driver.read(address, "energy"), address=address)
    assert state.energy_mwh - before >= 1_900_000  # ≥ ~1 h of a steady 2 kW
    assert second.energy_wh is not None and first.energy_wh is not None
    assert second.energy_wh - first.energy_wh >= 1900


def test_over_voltage_site() -> None:
    with SimulatedBus(BusSpec("dlt645", meters=2, wire_timing=False, over_voltage=True)) as bus:
        assert all(m.state.voltage_v > 255 for m in bus.meters)


def test_a_site_of_several_buses_starts_and_stops_together() -> None:
    specs = [BusSpec("dlt645", 2, wire_timing=False), BusSpec("cjt188", 1, wire_timing=False)]
    with SimulatedSite(specs, seed=1) as site:
        ports = [bus.port for bus in site.buses]
        assert len(set(ports)) == 2
        assert [bus.describe()["protocol"] for bus in site.buses] == ["dlt645", "cjt188"]


def test_a_profile_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="not a water load profile"):
        SimulatedBus(BusSpec("cjt188", 1, profiles=("shop",)))
