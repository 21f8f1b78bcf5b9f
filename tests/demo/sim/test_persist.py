"""Simulated meters for the runtime: the in-process bus and the building kept on disk."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from demo.sim.direct_bus import DirectBus
from demo.sim.persist import STATE_FILE, MeterSpec, SimStateError, SimulatedBuilding
from edge.drivers.dlt645 import BROADCAST
from edge.drivers.dlt645_meter import DLT645_2007
from edge.drivers.errors import MeterTimeout
from edge.drivers.reading import RelayState
from edge.drivers.registry import driver_for

ZONE = ZoneInfo("Asia/Shanghai")
START = dt.datetime(2026, 11, 1, 0, 0, tzinfo=ZONE)
A, B = "000000000001", "000000000002"


def _building(tmp_path: Path) -> SimulatedBuilding:
    specs = [MeterSpec(A, "dlt645", "constant", 123_456_789), MeterSpec(B, "dlt645", "idle")]
    return SimulatedBuilding.create(tmp_path / "sim", specs, start=START, seed=3)


def test_the_driver_reads_and_trips_a_simulated_meter_over_the_direct_bus(tmp_path: Path) -> None:
    building = _building(tmp_path)
    bus = DirectBus(building.responders([A, B]))
    driver = driver_for("dlt645")
    reading = bus.run(driver.read(A, "basic"), address=A)
    assert reading.energy_wh == 123_450  # 0.01 kWh steps, truncated as a meter shows them
    assert reading.relay is RelayState.CLOSED and reading.voltage_v is not None
    assert bus.run(driver.relay(A, "trip"), address=A) is RelayState.OPEN
    assert not building.meters[A].state.relay_closed
    # The relay change was saved at once: a crash now finds the relay open.
    saved = json.loads((tmp_path / "sim" / STATE_FILE).read_text())
    assert [m["relay_closed"] for m in saved["meters"]] == [False, True]


def test_a_detached_meter_times_out_and_a_broadcast_reaches_every_meter(tmp_path: Path) -> None:
    building = _building(tmp_path)
    bus = DirectBus(building.responders([A, B]))
    bus.detach(A)
    with pytest.raises(MeterTimeout):
        bus.run(driver_for("dlt645").read(A, "basic"), address=A)
    later = dt.datetime(2027, 1, 2, 3, 4, 5)
    bus.run(DLT645_2007.broadcast_time(later), address=BROADCAST)
    assert building.meters[B].state.clock == later


def test_a_lossy_direct_bus_drops_replies(tmp_path: Path) -> None:
    building = _building(tmp_path)
    bus = DirectBus(building.responders([A]), loss=1.0)
    with pytest.raises(MeterTimeout):
        bus.run(driver_for("dlt645").read(A, "basic"), address=A)


def test_the_building_reopens_where_it_was_and_never_runs_back(tmp_path: Path) -> None:
    building = _building(tmp_path)
    later = START + dt.timedelta(hours=2)
    building.advance_to(later)
    building.save()
    registers = building.registers_wh()
    assert registers[A] - 123_450 == pytest.approx(4_000, abs=10)  # 2 kW for two hours
    again = SimulatedBuilding.open(tmp_path / "sim", ZONE)
    assert again.time == later and again.registers_wh() == registers
    again.advance_to(START)  # simulated time never runs backwards
    assert again.registers_wh() == registers
    assert again.meters[A].state.clock == later.replace(tzinfo=None)


def test_a_damaged_building_file_is_refused_with_its_name(tmp_path: Path) -> None:
    _building(tmp_path)
    path = tmp_path / "sim" / STATE_FILE
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(SimStateError, match=STATE_FILE):
        SimulatedBuilding.open(tmp_path / "sim", ZONE)
