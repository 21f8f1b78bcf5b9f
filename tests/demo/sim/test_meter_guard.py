"""The simulated meter judges malicious load itself once its window is written: it trips within
the written delay, counts the trip and stops counting energy; the window survives a restart."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from demo.sim.direct_bus import DirectBus
from demo.sim.load import Load, LoadProfile, Use
from demo.sim.meter_guard import guard, written_window
from demo.sim.persist import MeterSpec, SimulatedBuilding
from demo.sim.state import MeterState
from edge.drivers.dlt645_meter import DLT645_2007
from edge.drivers.dlt645_vendor import MALICIOUS_LOAD_MAPS, SIMULATED_MODEL, MaliciousLoadSettings
from edge.drivers.reading import RelayState

ZONE = ZoneInfo("Asia/Shanghai")
START = dt.datetime(2026, 11, 1, 0, 0, tzinfo=ZONE)
A = "000000000001"
ROW = MALICIOUS_LOAD_MAPS[SIMULATED_MODEL]
KETTLE = MaliciousLoadSettings(1_900.0, 2_600.0, 0.95, 1.0, 5)


def _written(settings: MaliciousLoadSettings) -> dict[str, int]:
    return {item.name: register for item, register in ROW.registers(settings)}


def test_nothing_is_judged_until_the_whole_window_is_written() -> None:
    state = MeterState(A, "dlt645")
    assert written_window(state) is None
    assert guard(state, 2_000.0, 500.0, 60.0) == 60.0 and state.relay_closed
    state.parameters = _written(KETTLE)
    assert written_window(state) == KETTLE


def test_a_load_in_the_window_trips_after_the_delay_and_counts() -> None:
    state = MeterState(A, "dlt645", parameters=_written(KETTLE))
    assert guard(state, 2_000.0, 500.0, 3.0) == 3.0  # 3 s of 5: still closed
    assert guard(state, 2_000.0, 500.0, 60.0) == 2.0  # tripped 2 s into this step
    assert not state.relay_closed and state.counters["malicious_load_trips"] == 1
    # A computer (200 W at PF 0.70) is not in the window; a gap resets the delay.
    state = MeterState(A, "dlt645", parameters=_written(KETTLE))
    assert guard(state, 2_000.0, 500.0, 4.0) == 4.0
    assert guard(state, 200.0, 204.0, 1.0) == 1.0
    assert guard(state, 2_000.0, 500.0, 4.0) == 4.0 and state.relay_closed
    keep = MeterState(A, "dlt645", parameters=_written(KETTLE), keep_power=True)
    assert guard(keep, 2_000.0, 500.0, 600.0) == 600.0 and keep.relay_closed


def test_the_load_model_stops_counting_energy_the_second_the_meter_trips() -> None:
    state = MeterState(A, "dlt645", parameters=_written(KETTLE))
    load = Load(LoadProfile("kettle", "electric", (Use("kettle_steady"),)))
    load.advance(state, 3_600, START + dt.timedelta(hours=1))
    assert not state.relay_closed and state.counters["malicious_load_trips"] == 1
    assert state.energy_mwh == 2_000 * 5 * 1000 // 3600  # 2 kW for the 5 s of the delay
    assert state.power_w == 0.0


def test_a_written_window_is_kept_through_a_restart_and_trips_the_kettle(tmp_path: Path) -> None:
    spec = MeterSpec(A, "dlt645", "constant", 1_000_000)
    building = SimulatedBuilding.create(tmp_path / "sim", [spec], start=START, seed=1)
    bus = DirectBus(building.responders([A]))
    bus.run(DLT645_2007.write_malicious_load(A, ROW, KETTLE), address=A)
    building.save()
    again = SimulatedBuilding.open(tmp_path / "sim", ZONE)
    assert again.meters[A].state.parameters == _written(KETTLE)
    again.advance_to(START + dt.timedelta(seconds=30))
    reading = DirectBus(again.responders([A])).run(DLT645_2007.read(A, "abnormal_trips"), address=A)
    assert dict(reading.counters)["malicious_load_trips"] == 1
    status = DirectBus(again.responders([A])).run(DLT645_2007.read(A, "basic"), address=A)
    assert status.relay is RelayState.OPEN
