"""Driver options in `site.toml` (`edge.site.bus_options`): refused at load with a sentence
naming the bus (and meter), and what is loaded is what the bus's driver puts on the wire.

The site is the README's example (`tests/edge/runtime/test_readme_site.py`), edited.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.sim.cjt188_responder import Cjt188Responder
from demo.sim.direct_bus import DirectBus
from demo.sim.modbus_responder import ModbusResponder
from demo.sim.state import MeterState
from edge.drivers.dlt645_meter import Dlt645Driver
from edge.drivers.errors import MeterTimeout, UnsupportedOperation
from edge.drivers.reading import RelayState
from edge.drivers.registry import DriverOptions
from edge.site import SiteConfigError, load_site
from edge.site.model import BusConfig, Site
from tests.edge.runtime.test_readme_site import readme_site  # noqa: F401 (a fixture)

COLD = "78330011223344"  # the example's meter_options: cold water, "1F90"
HOT = "78330011223345"  # the bus's options: hot water, "901F"

# Where to add a field to each bus of the example, and where to add a table after it.
MODBUS_BUS = 'protocol = "sdm120"\n'
MODBUS_BUS_END = 'parity = "N"\n'
DLT645_BUS_END = 'parity = "E"\n'
WATER_BUS = 'protocol = "cjt188"\n'
WATER_BUS_END = 'di_order = "1F90"\n'  # the last line: the cold meter's options


def _edit(site_toml: Path, after: str, added: str) -> None:
    text = site_toml.read_text()
    assert text.count(after) == 1
    site_toml.write_text(text.replace(after, after + added))


def _bus(site: Site, protocol: str) -> BusConfig:
    return next(bus for bus in site.buses if bus.protocol == protocol)


REFUSED: list[tuple[str, str, str]] = [
    (
        MODBUS_BUS,
        'relay = "eastron-module"\n',
        "bus 'rs485-2': sdm120 has no relay variant 'eastron-module' (known: voltbook-sim, none)",
    ),
    (
        WATER_BUS,
        'relay = "voltbook-sim"\n',
        "bus 'rs485-3': cjt188 takes no option 'relay' (its options: meter_type, di_order)",
    ),
    ('protocol = "dlt645"\n', "di_order = '901F'\n", "dlt645 takes no option 'di_order'"),
    (
        WATER_BUS_END,
        f'[buses.meter_options."{HOT}"]\nmeter_type = 0x99\n',
        f"bus 'rs485-3' meter '{HOT}': meter_type 0x99 is no CJ/T 188 meter type (known: 0x10",
    ),
    (
        WATER_BUS_END,
        f'[buses.meter_options."{HOT}"]\nmeter_type = "hot"\n',
        "meter_type must be an integer from 0 to 255, got 'hot'",
    ),
    (WATER_BUS_END, 'valve = "0x2A"\n', f"bus 'rs485-3' meter '{COLD}': unknown field 'valve'"),
    (
        WATER_BUS_END,
        '[buses.meter_options."7833"]\nmeter_type = 0x10\n',
        "bus 'rs485-3' meter '7833': bus: cjt188 address must be 14 digits",
    ),
    (
        WATER_BUS_END,
        f'[buses.meter_options."{HOT}"]\ndi_order = "1F09"\n',
        f"bus 'rs485-3' meter '{HOT}': di_order must be one of '1F90', '901F', got '1F09'",
    ),
    (
        MODBUS_BUS_END,
        '[buses.meter_options."001"]\nrelay = "none"\n[buses.meter_options."1"]\nrelay = "none"\n',
        "bus 'rs485-2' meter '1': meter 1 has options twice",
    ),
    (DLT645_BUS_END, f'[buses.meter_options."{HOT}"]\n', "dlt645 address must be up to 12 digits"),
    (
        WATER_BUS_END,
        '[[buses]]\nname = "rs485-4"\nkind = "serial"\nprotocol = "dlt645"\nport = "/dev/ttyUSB3"\n'
        '[buses.meter_options."202611000001"]\n',
        "bus 'rs485-4' has meter_options for meter 202611000001, which is on bus 'rs485-1'",
    ),
]


@pytest.mark.parametrize(("after", "added", "message"), REFUSED)
def test_bad_driver_options_are_refused_at_load_naming_the_bus(
    readme_site: Path,  # noqa: F811
    after: str,
    added: str,
    message: str,
) -> None:
    _edit(readme_site, after, added)
    with pytest.raises(SiteConfigError) as caught:
        load_site(readme_site)
    assert caught.value.path.name == "site.toml"
    assert message in caught.value.problem


def test_a_meter_not_in_the_documents_may_have_options(readme_site: Path) -> None:  # noqa: F811
    _edit(readme_site, MODBUS_BUS_END, 'relay = "voltbook-sim"\n[buses.meter_options."7"]\n')
    bus = _bus(load_site(readme_site), "sdm120")
    assert bus.options == DriverOptions(relay="voltbook-sim")
    assert bus.meter_options == {"7": DriverOptions()}


def test_a_dlt645_block_capability_is_loaded_and_checked(readme_site: Path) -> None:  # noqa: F811
    _edit(readme_site, DLT645_BUS_END, 'blocks = "standard"\n')
    bus = _bus(load_site(readme_site), "dlt645")
    assert bus.options == DriverOptions(blocks="standard")
    driver = bus.driver()
    assert isinstance(driver, Dlt645Driver)
    assert [b.name for b in driver.block_support][:2] == ["forward_active_block", "voltage_block"]
    assert driver.password == bus.password  # the credentials still apply
    readme_site.write_text(readme_site.read_text().replace('"standard"', '"fastest"'))
    with pytest.raises(SiteConfigError, match="blocks 'fastest' is no block capability"):
        load_site(readme_site)


def _water(address: str, meter_type: int, *, hot: bool) -> Cjt188Responder:
    state = MeterState(address=address, protocol="cjt188", volume_ml=5_000_000)
    order = "901F" if hot else "1F90"
    return Cjt188Responder(state, order, meter_type=meter_type, either_di_order=False)


def test_the_water_buses_options_reach_the_wire(readme_site: Path) -> None:  # noqa: F811
    driver = _bus(load_site(readme_site), "cjt188").driver()
    bus = DirectBus({COLD: _water(COLD, 0x10, hot=False), HOT: _water(HOT, 0x11, hot=True)})
    assert bus.run(driver.read(COLD), address=COLD).volume_l == 5_000
    assert bus.run(driver.read(HOT), address=HOT).volume_l == 5_000

    # The same meters behind a bus configured as if both were of the cold make.
    readme_site.write_text(readme_site.read_text().replace("meter_type = 0x11\n", ""))
    misconfigured = _bus(load_site(readme_site), "cjt188").driver()
    with pytest.raises(MeterTimeout):
        bus.run(misconfigured.read(HOT), address=HOT)


def test_the_modbus_relay_variant_reaches_the_wire(readme_site: Path) -> None:  # noqa: F811
    state = MeterState(address="1", protocol="sdm120")
    bus = DirectBus({"1": ModbusResponder(state, "sdm120", 1)})
    plain = _bus(load_site(readme_site), "sdm120").driver()
    assert bus.run(plain.read("1"), address="1").relay is None
    with pytest.raises(UnsupportedOperation):
        bus.run(plain.relay("1", "trip"), address="1")

    _edit(readme_site, MODBUS_BUS, 'relay = "voltbook-sim"\n')
    driver = _bus(load_site(readme_site), "sdm120").driver()
    assert bus.run(driver.relay("1", "trip"), address="1") is RelayState.OPEN
    assert not state.relay_closed
