"""Real Modbus meters, as their vendors document them: read over a real pty, billed, relay-less.

An SDM120 responder answering only its documented registers (anything else: exception 0x02,
illegal data address) is read through the real `SerialBus` and driver, and its readings are
billed by the consumption rule. A relay order to a meter with no relay map is refused with the
driver's reason and recorded as a failed order by the runtime's relay shell.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from demo.sim.modbus_responder import ModbusResponder
from demo.sim.pty_bus import PtyBus
from demo.sim.state import MeterState
from edge.drivers.base import Bus, SerialSettings
from edge.drivers.bus import SerialBus
from edge.drivers.errors import MeterRefused
from edge.drivers.modbus_maps import SIMULATED_RELAY, relay_map
from edge.drivers.modbus_meters import SDM120
from edge.drivers.reading import Reading
from edge.rules.consumption import (
    AccountCharges,
    ConsumptionPolicy,
    ConsumptionState,
    MeterBilling,
    bill_reading,
)
from edge.rules.decisions import RelayCause, RelayCommand
from edge.rules.pockets import Pockets
from edge.rules.tariffs import FlatTariff
from edge.runtime.relays import RelayOrder, execute
from edge.site.model import MeterConfig
from ledger.accounts import Pocket, pocket_id
from ledger.book import Outcome
from ledger.transfers import Code
from ledger.units import Price
from tests.edge.rules.helpers import SOURCE, Ledger
from tests.ledger.factories import CASH, transfer

FAST = SerialSettings(baudrate=115200, parity="N")
OWNER = "A1"
T0 = dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC)


def sdm120_state(energy_mwh: int) -> MeterState:
    return MeterState(
        address="5",
        protocol="sdm120",
        energy_mwh=energy_mwh,
        voltage_v=230.0,
        current_a=4.0,
        power_w=900.0,
        power_factor=0.98,
        frequency_hz=50.0,
    )


@pytest.fixture
def documented_sdm120() -> Iterator[tuple[MeterState, SerialBus]]:
    """An SDM120 with only its documented registers on a pty, and the concentrator's port."""
    state = sdm120_state(1_234_567_000)  # 1 234.567 kWh
    with PtyBus(FAST, wire_timing=False) as line:
        line.attach(ModbusResponder(state, "sdm120", 5, documented_only=True), name="sdm120")
        bus = SerialBus(line.port, FAST, retries=0)
        try:
            yield state, bus
        finally:
            bus.close()


def read(bus: Bus, driver: SDM120, block: str = "basic") -> Reading:
    reading: Reading = bus.run(driver.read("5", block), address="5")
    return reading


def test_a_documented_only_sdm120_is_read_and_billed(
    documented_sdm120: tuple[MeterState, SerialBus],
) -> None:
    state, bus = documented_sdm120
    driver = SDM120(FAST)
    first = read(bus, driver)
    assert first.energy_wh == 1_234_567
    assert abs(first.energy_wh - state.energy_mwh / 1000) <= first.energy_error_wh
    assert first.relay is None  # the meter has no relay register: unknown, not invented
    assert first.voltage_v == pytest.approx(230.0)
    assert first.power_w == pytest.approx(900.0)

    ledger = Ledger(OWNER)
    ledger.post([transfer(1, CASH, pocket_id(OWNER, Pocket.PREPAID), 100_000, Code.RECHARGE)])
    policy = ConsumptionPolicy(FlatTariff(Price(8_000)), max_power_w=20_000)  # 80 fen a kWh
    billing = ConsumptionState(MeterBilling.first(first, T0), AccountCharges())

    state.energy_mwh += 2_500_000  # 2.5 kWh in the next hour
    second = read(bus, driver)
    assert second.relay is None
    decided = bill_reading(
        T0 + dt.timedelta(hours=1),
        second,
        billing,
        policy,
        owner=OWNER,
        pockets=Pockets.from_book(ledger.book, OWNER),
        source=SOURCE,
    )
    transfers = decided.decisions.transfers
    assert [t.code for t in transfers] == [Code.CONSUME]
    assert sum(int(t.refs["energy_wh"]) for t in transfers) == 2_500
    assert sum(t.amount for t in transfers) == 200  # 2.5 kWh × 80 fen
    assert all(o is Outcome.OK for o in ledger.post(transfers))
    ledger.assert_sound()


def test_asking_a_documented_only_meter_for_a_relay_refuses_the_whole_read(
    documented_sdm120: tuple[MeterState, SerialBus],
) -> None:
    _state, bus = documented_sdm120
    guessing = SDM120(FAST, relay=relay_map("sdm120", SIMULATED_RELAY))
    with pytest.raises(MeterRefused, match="illegal data address"):
        read(bus, guessing)
    assert read(bus, SDM120(FAST), "energy").energy_wh == 1_234_567


def test_a_trip_order_to_a_meter_without_relay_map_is_recorded_as_refused(
    documented_sdm120: tuple[MeterState, SerialBus],
) -> None:
    state, bus = documented_sdm120
    meter = MeterConfig(address="5", bus="rs485-1", protocol="sdm120", shop="S1", account=OWNER)
    order = RelayOrder(meter, RelayCommand.TRIP, RelayCause.ARREARS, "balance below zero", T0)
    outcome = execute(bus, SDM120(FAST), order)
    assert not outcome.confirmed
    assert outcome.attempts == 1  # refused before any byte: retrying cannot help
    assert "no relay map" in outcome.error and "meter 5" in outcome.error
    assert state.relay_closed  # nothing was commanded
