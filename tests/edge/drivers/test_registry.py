"""Driver options (`edge.drivers.registry`): checked per protocol, and on the wire.

Drivers made by `driver_for` with a bus's options and per-meter overrides are driven against
simulated meters on an in-process bus: a CJ/T 188 meter of another type or DI order answers
only a driver configured for it; a Modbus meter's relay is commanded only where a relay variant
is configured.
"""

from __future__ import annotations

import pytest

from demo.sim.cjt188_responder import Cjt188Responder
from demo.sim.direct_bus import DirectBus
from demo.sim.dlt645_responder import Dlt645Responder
from demo.sim.modbus_responder import ModbusResponder
from demo.sim.state import MeterState
from edge.drivers.cjt188 import DiOrder
from edge.drivers.errors import DriverUsageError, MeterRefused, MeterTimeout, UnsupportedOperation
from edge.drivers.reading import RelayState, ValveState
from edge.drivers.registry import NO_RELAY, DriverOptions, check_options, driver_for

HOT = "78330011223344"
COLD = "78330011223345"
HOT_WATER = 0x11

REFUSED: list[tuple[str, DriverOptions, str]] = [
    (
        "sdm120",
        DriverOptions(relay="eastron-x"),
        "sdm120 has no relay variant 'eastron-x' (known: voltbook-sim, none)",
    ),
    (
        "cjt188",
        DriverOptions(relay="voltbook-sim"),
        "cjt188 takes no option 'relay' (its options: meter_type, di_order)",
    ),
    (
        "dlt645",
        DriverOptions(di_order="901F"),
        "dlt645 takes no option 'di_order' (its options: blocks)",
    ),
    (
        "dlt645",
        DriverOptions(blocks="acme"),
        "blocks 'acme' is no block capability (known: none, standard, voltbook-sim)",
    ),
    ("cjt188", DriverOptions(blocks="standard"), "cjt188 takes no option 'blocks'"),
    ("sdm630", DriverOptions(meter_type=0x10), "sdm630 takes no option 'meter_type'"),
    (
        "cjt188",
        DriverOptions(meter_type=0x99),
        "meter_type 0x99 is no CJ/T 188 meter type (known: 0x10 cold water, 0x11 hot water",
    ),
    ("cjt188", DriverOptions(meter_type=0xAA), "meter_type 0xAA is no CJ/T 188 meter type"),
    (
        "cjt188",
        DriverOptions(di_order="9F10"),
        "di_order must be one of '1F90', '901F', got '9F10'",
    ),
]


@pytest.mark.parametrize(("name", "options", "message"), REFUSED)
def test_an_option_the_protocol_lacks_or_a_value_it_does_not_know_is_refused(
    name: str, options: DriverOptions, message: str
) -> None:
    with pytest.raises(DriverUsageError) as caught:
        check_options(name, options)
    assert message in str(caught.value)
    with pytest.raises(DriverUsageError):
        driver_for(name, None, DriverOptions(), {"1": options})  # per meter just the same


def test_known_options_pass() -> None:
    for name, options in [
        ("sdm120", DriverOptions(relay="voltbook-sim")),
        ("ddsu666", DriverOptions(relay=NO_RELAY)),
        ("cjt188", DriverOptions(meter_type=HOT_WATER, di_order="901F")),
        ("dlt645", DriverOptions()),
        ("dlt645-1997", DriverOptions(blocks="standard")),
    ]:
        assert check_options(name, options) is options


def test_per_meter_options_fall_back_to_the_bus_options() -> None:
    bus = DriverOptions(meter_type=HOT_WATER, di_order="901F")
    assert DriverOptions(di_order="1F90").over(bus) == DriverOptions(
        meter_type=HOT_WATER, di_order="1F90"
    )
    assert DriverOptions().over(bus) == bus


def _water(address: str, *, meter_type: int, di_order: DiOrder) -> Cjt188Responder:
    state = MeterState(address=address, protocol="cjt188", volume_ml=12_340_000)
    return Cjt188Responder(state, di_order, meter_type=meter_type, either_di_order=False)


def test_cjt188_meter_type_and_di_order_reach_the_wire() -> None:
    bus = DirectBus(
        {
            HOT: _water(HOT, meter_type=HOT_WATER, di_order="901F"),
            COLD: _water(COLD, meter_type=0x10, di_order="1F90"),
        }
    )
    configured = driver_for(
        "cjt188",
        None,
        DriverOptions(meter_type=HOT_WATER, di_order="901F"),
        {COLD: DriverOptions(meter_type=0x10, di_order="1F90")},
    )
    assert bus.run(configured.read(HOT), address=HOT).volume_l == 12_340
    assert bus.run(configured.read(COLD), address=COLD).volume_l == 12_340
    assert bus.run(configured.relay(HOT, "trip"), address=HOT) is ValveState.CLOSED

    defaults = driver_for("cjt188")  # cold water, "1F90": the hot meter hears no request to it
    with pytest.raises(MeterTimeout):
        bus.run(defaults.read(HOT), address=HOT)
    wrong_order = driver_for("cjt188", None, DriverOptions(meter_type=HOT_WATER))
    with pytest.raises(MeterRefused):  # it knows no DI 901F sent low byte first
        bus.run(wrong_order.read(HOT), address=HOT)


def test_dlt645_block_capability_reaches_the_wire_per_meter() -> None:
    new, old = "202612000001", "202612000002"
    meters = {
        address: Dlt645Responder(
            MeterState(address=address, protocol="dlt645", energy_mwh=7_000_000)
        )
        for address in (new, old)
    }
    bus = DirectBus(meters)
    driver = driver_for(
        "dlt645", None, DriverOptions(blocks="voltbook-sim"), {old: DriverOptions(blocks="none")}
    )
    plain = driver_for("dlt645")
    for address, exchanges in ((new, 1), (old, 7)):
        before = bus.requests
        reading = bus.run(driver.read(address, "basic"), address=address)
        assert bus.requests - before == exchanges
        assert reading == bus.run(plain.read(address, "basic"), address=address)
        assert reading.energy_wh == 7_000


def _modbus_meter(unit: int) -> ModbusResponder:
    return ModbusResponder(MeterState(address=str(unit), protocol="sdm120"), "sdm120", unit)


def test_a_modbus_relay_variant_reaches_the_wire_per_meter() -> None:
    bus = DirectBus({"1": _modbus_meter(1), "2": _modbus_meter(2)})
    driver = driver_for(
        "sdm120", None, DriverOptions(relay="voltbook-sim"), {"2": DriverOptions(relay=NO_RELAY)}
    )
    assert bus.run(driver.read("1"), address="1").relay is RelayState.CLOSED
    assert bus.run(driver.relay("1", "trip"), address="1") is RelayState.OPEN
    assert bus.run(driver.read("2"), address="2").relay is None
    with pytest.raises(UnsupportedOperation, match=r"relay variant as `relay` in site\.toml"):
        bus.run(driver.relay("2", "trip"), address="2")

    plain = driver_for("sdm120")  # no variant configured: read without relay, commands refused
    assert bus.run(plain.read("1"), address="1").relay is None
    with pytest.raises(UnsupportedOperation, match="known: voltbook-sim"):
        bus.run(plain.relay("1", "close"), address="1")
