"""The load model: energy bookkeeping in milli-Wh, tariff registers, instantaneous values,
relays and valves, determinism."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from demo.sim.load import (
    APPLIANCES,
    PEAK,
    PROFILES,
    SHARP,
    TARIFF_BY_HOUR,
    VALLEY,
    Load,
    LoadProfile,
    Use,
)
from demo.sim.state import MeterState

NOON = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def meter(clock: dt.datetime = dt.datetime(2026, 11, 2, 12, 0)) -> MeterState:
    return MeterState(address="202611000101", protocol="dlt645", clock=clock)


def steady(*names: str) -> LoadProfile:
    return LoadProfile("test", "electric", tuple(Use(name) for name in names))


def test_appliances_are_a_table_with_power_and_power_factor() -> None:
    assert APPLIANCES["kettle"].power_w == 2000 and APPLIANCES["kettle"].power_factor == 0.97
    assert APPLIANCES["computer"].power_w == 200 and APPLIANCES["computer"].power_factor == 0.70
    for name in ("lighting", "air_conditioner", "heater"):
        assert 0 < APPLIANCES[name].power_factor <= 1


def test_a_2kw_load_for_an_hour_is_2kwh_exactly() -> None:
    state = meter()
    Load(steady("kettle_steady")).advance(state, 3600, NOON)
    assert state.energy_mwh == 2_000_000
    assert state.energy_wh == 2000
    assert sum(state.tariff_mwh) == state.energy_mwh


def test_fractions_of_a_milli_wh_are_carried_not_lost() -> None:
    state, load = meter(), Load(steady("kettle_steady"))
    for i in range(3600):  # one-second steps: 0.5555… mWh each
        load.advance(state, 1, NOON + dt.timedelta(seconds=i + 1))
    assert state.energy_mwh in (1_999_999, 2_000_000)


def test_energy_goes_to_the_register_of_the_meter_clock() -> None:
    state = meter(clock=dt.datetime(2026, 11, 2, 19, 0))  # 19-21 is the sharp period
    Load(steady("kettle_steady")).advance(state, 3600, NOON)
    assert state.tariff_mwh[SHARP] == 2_000_000
    assert state.clock == dt.datetime(2026, 11, 2, 20, 0)  # the meter's clock ran on


def test_an_interval_across_tariff_periods_is_split() -> None:
    state = meter(clock=dt.datetime(2026, 11, 2, 6, 30))  # valley until 07, then flat
    Load(steady("kettle_steady")).advance(state, 3600, NOON)
    assert state.tariff_mwh[VALLEY] == 1_000_000
    assert state.tariff_mwh[TARIFF_BY_HOUR[7]] == 1_000_000


def test_the_tariff_table_covers_every_hour() -> None:
    assert len(TARIFF_BY_HOUR) == 24
    assert TARIFF_BY_HOUR[9] == PEAK and TARIFF_BY_HOUR[3] == VALLEY


def test_instantaneous_values_mix_power_factors() -> None:
    state = meter()
    Load(steady("kettle_steady", "computer")).advance(state, 1, NOON)
    p = 2000 + 200
    q = 2000 * math.tan(math.acos(0.97)) + 200 * math.tan(math.acos(0.70))
    assert state.power_w == pytest.approx(p)
    assert state.reactive_var == pytest.approx(q, abs=0.1)
    assert state.power_factor == pytest.approx(p / math.hypot(p, q), abs=0.001)
    assert state.current_a == pytest.approx(math.hypot(p, q) / state.voltage_v, abs=0.01)
    assert 215 < state.voltage_v < 225
    assert 49.9 < state.frequency_hz < 50.1


def test_a_tripped_relay_cuts_the_load() -> None:
    state = meter()
    state.relay_closed = False
    Load(steady("kettle_steady")).advance(state, 3600, NOON)
    assert state.energy_mwh == 0
    assert state.power_w == 0 and state.current_a == 0
    assert state.voltage_v > 200  # the line side is still live


def test_over_voltage_supply() -> None:
    state = meter()
    Load(steady("kettle_steady"), nominal_voltage_v=264.0).advance(state, 1, NOON)
    assert state.voltage_v > 255


def test_profiles_follow_the_time_of_day() -> None:
    office = Load("office", seed=1)
    night = NOON.replace(hour=3)
    assert office.power_at("1", night) == (0.0, 0.0)
    assert office.power_at("1", NOON)[0] > 0


def test_a_seed_makes_a_day_reproducible() -> None:
    def day(seed: int) -> int:
        state, load = meter(), Load("restaurant", seed=seed)
        start = NOON.replace(hour=0)
        for minute in range(1, 24 * 60 + 1, 5):
            load.advance(state, 300, start + dt.timedelta(minutes=minute))
        return state.energy_mwh

    assert day(1) == day(1)
    assert day(1) != day(2)
    assert day(1) > 0


def test_water_meters_accumulate_volume_while_the_valve_is_open() -> None:
    state = MeterState(address="00000000000001", protocol="cjt188")
    load = Load(LoadProfile("taps", "water", (Use("tap"),)))
    load.advance(state, 0, NOON)
    hours = 0
    while state.volume_ml == 0 and hours < 48:
        load.advance(state, 3600, NOON + dt.timedelta(hours=hours))
        hours += 1
    assert state.volume_ml > 0 and state.energy_mwh == 0
    state.valve_open = False
    before = state.volume_ml
    load.advance(state, 24 * 3600, NOON)
    assert state.volume_ml == before


def test_every_named_profile_uses_known_appliances() -> None:
    for profile in PROFILES.values():
        load = Load(profile)
        state = MeterState("1", "dlt645" if profile.kind == "electric" else "cjt188")
        load.advance(state, 3600, NOON)  # raises KeyError on an unknown name


def test_negative_time_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot advance"):
        Load("idle").advance(meter(), -1, NOON)
