"""The meter CLI contract (`read`, `relay`, `scan`, `sync-time`), run as a subprocess against
simulated meters on real ptys: exact JSON keys, exit codes, one-sentence errors. (`voltbook-demo
sim`, which serves such meters, is tested in tests/demo/test_cli.py.)"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from demo.sim.cjt188_responder import Cjt188Responder
from demo.sim.dlt645_responder import Dlt645Responder
from demo.sim.pty_bus import PtyBus
from demo.sim.site import BusSpec, SimulatedBus
from demo.sim.state import MeterState
from edge.drivers.base import SerialSettings

ELECTRIC_KEYS = {
    "address",
    "energy_wh",
    "voltage_v",
    "current_a",
    "power_w",
    "power_factor",
    "frequency_hz",
    "relay",
}
WATER_KEYS = {"address", "volume_l", "valve"}


CLI = (sys.executable, "-m", "edge.cli")


def cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_sentence(result: subprocess.CompletedProcess[str], *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("error: ") and lines[0].endswith(".")
    for word in words:
        assert word in lines[0]


@pytest.fixture(scope="module")
def dlt645_bus() -> Iterator[SimulatedBus]:
    with SimulatedBus(BusSpec("dlt645", meters=3, wire_timing=False), seed=5) as bus:
        yield bus


def line(bus: SimulatedBus, protocol: str) -> list[str]:
    return ["--port", bus.port, "--protocol", protocol]


def test_read_prints_one_json_object_with_the_contract_keys(dlt645_bus: SimulatedBus) -> None:
    address = dlt645_bus.addresses[0]
    state = dlt645_bus.meter(address).state
    result = cli("read", *line(dlt645_bus, "dlt645"), "--address", address, "--json")
    assert result.returncode == 0, result.stderr
    reading = json.loads(result.stdout)
    assert set(reading) == ELECTRIC_KEYS
    assert reading["address"] == address
    assert isinstance(reading["energy_wh"], int)
    # The register shows 0.01 kWh steps; the load keeps adding while we read.
    assert 0 <= state.energy_wh - reading["energy_wh"] < 100
    assert reading["relay"] == "closed"
    assert reading["frequency_hz"] == pytest.approx(50, abs=0.1)


def test_read_through_block_dis(dlt645_bus: SimulatedBus) -> None:
    """`--blocks` reads `basic` through the simulated model's block: the same contract keys."""
    address = dlt645_bus.addresses[1]
    state = dlt645_bus.meter(address).state
    result = cli(
        "read", *line(dlt645_bus, "dlt645"), "--address", address, "--blocks", "voltbook-sim",
        "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    reading = json.loads(result.stdout)
    assert set(reading) == ELECTRIC_KEYS
    assert 0 <= state.energy_wh - reading["energy_wh"] < 100
    assert reading["relay"] == "closed"


@pytest.mark.slow  # four CLI subprocesses
def test_read_block_prints_the_values_the_block_read(dlt645_bus: SimulatedBus) -> None:
    address = dlt645_bus.addresses[2]
    state = dlt645_bus.meter(address).state
    state.counters.update(malicious_load_trips=1, overload_trips=4, over_voltage_trips=0)

    def block(name: str) -> dict[str, object]:
        result = cli("read", *line(dlt645_bus, "dlt645"), "--address", address, "--block", name,
                     "--json")  # fmt: skip
        assert result.returncode == 0, result.stderr
        values: dict[str, object] = json.loads(result.stdout)
        assert (values.pop("address"), values.pop("block")) == (address, name)
        return values

    clock = block("clock")
    assert set(clock) == {"meter_time"}
    assert abs(dt.datetime.fromisoformat(str(clock["meter_time"])) - state.clock) < dt.timedelta(
        seconds=5
    )
    assert block("status") == {"relay": "closed", "status_words": [0, 0, 0, 0, 0, 0, 0]}
    assert block("abnormal_trips") == {
        "counters": {"malicious_load_trips": 1, "overload_trips": 4, "over_voltage_trips": 0}
    }
    power = block("power")
    assert set(power) == {"power_w", "power_factor"}
    assert isinstance(power["power_w"], float) and power["power_w"] >= 0  # the load moves on


@pytest.mark.slow  # three CLI subprocesses
def test_relay_trip_and_close_exit_0_once_confirmed(dlt645_bus: SimulatedBus) -> None:
    address = dlt645_bus.addresses[1]
    state = dlt645_bus.meter(address).state
    tripped = cli("relay", *line(dlt645_bus, "dlt645"), "--address", address, "trip", "--json")
    assert tripped.returncode == 0, tripped.stderr
    assert json.loads(tripped.stdout)["relay"] == "open"
    assert state.relay_closed is False
    read = cli("read", *line(dlt645_bus, "dlt645"), "--address", address, "--json")
    assert json.loads(read.stdout)["relay"] == "open"
    closed = cli("relay", *line(dlt645_bus, "dlt645"), "--address", address, "close")
    assert closed.returncode == 0, closed.stderr
    assert "closed (confirmed" in closed.stdout
    assert state.relay_closed is True


@pytest.mark.slow  # a CLI subprocess waiting out the reply timeouts
def test_no_answer_is_one_sentence_naming_meter_and_cause(dlt645_bus: SimulatedBus) -> None:
    result = cli("read", *line(dlt645_bus, "dlt645"), "--address", "123", "--retries", "0")
    assert result.returncode == 1
    assert result.stdout == ""
    assert_one_sentence(result, "meter 000000000123", "no reply", dlt645_bus.port)


def test_a_refused_command_is_one_sentence() -> None:
    state = MeterState(address="202611000777", protocol="dlt645")
    with PtyBus(SerialSettings(), wire_timing=False) as pty:
        pty.attach(Dlt645Responder(state, password=123456), name=state.address)
        result = cli(
            "relay", "--port", pty.port, "--protocol", "dlt645", "--address", "202611000777", "trip"
        )
    assert result.returncode == 1
    assert_one_sentence(result, "meter 202611000777", "refused", "unauthorised")
    assert state.relay_closed is True


def test_a_port_that_does_not_exist() -> None:
    result = cli(
        "read", "--port", "/dev/nonexistent-port", "--protocol", "sdm120", "--address", "3"
    )
    assert result.returncode == 1
    assert_one_sentence(result, "meter 3", "/dev/nonexistent-port", "No such file")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--protocol", "dlt645", "--address", "12345678901234"], ["12 digits"]),
        (["--protocol", "cjt188", "--address", "1"], ["14 digits"]),
        (["--protocol", "sdm120", "--address", "300"], ["1..247"]),
        (["--protocol", "dlt645", "--address", "1", "--block", "nonsense"], ["nonsense"]),
        (
            ["--protocol", "cjt188", "--address", "78330011223344", "--blocks", "standard"],
            ["cjt188 takes no option 'blocks'"],
        ),
    ],
)
def test_usage_errors_exit_2(dlt645_bus: SimulatedBus, args: list[str], words: list[str]) -> None:
    result = cli("read", "--port", dlt645_bus.port, *args)
    assert result.returncode == 2
    assert_one_sentence(result, *words)


def test_a_relay_the_protocol_cannot_move_is_a_usage_error(dlt645_bus: SimulatedBus) -> None:
    result = cli("relay", *line(dlt645_bus, "dlt645-1997"), "--address", "1", "trip")
    assert result.returncode == 2
    assert_one_sentence(result, "1997")


def test_water_and_modbus_meters() -> None:
    water = SimulatedBus(BusSpec("cjt188", meters=1, wire_timing=False), seed=2)
    modbus = SimulatedBus(BusSpec("sdm120", meters=2, wire_timing=False), seed=2)
    with water, modbus:
        result = cli("read", *line(water, "cjt188"), "--address", water.addresses[0], "--json")
        assert result.returncode == 0, result.stderr
        reading = json.loads(result.stdout)
        assert set(reading) == WATER_KEYS
        assert isinstance(reading["volume_l"], int) and reading["valve"] == "open"
        assert abs(water.meters[0].state.volume_ml // 1000 - reading["volume_l"]) < 100

        result = cli("read", *line(modbus, "sdm120"), "--address", "2", "--json")
        assert result.returncode == 0, result.stderr
        reading = json.loads(result.stdout)
        assert set(reading) == ELECTRIC_KEYS
        assert reading["address"] == "2" and isinstance(reading["energy_wh"], int)


@pytest.mark.slow  # a bus scan in a CLI subprocess
def test_scan_lists_the_meters_of_a_bus() -> None:
    several = BusSpec("dlt645", meters=3, wire_timing=False, baudrate=115200)
    one = BusSpec("dlt645", meters=1, wire_timing=False, baudrate=115200)
    with SimulatedBus(several, seed=9) as bus, SimulatedBus(one, seed=9) as single:
        fast = ["--baud", "115200", "--window", "0.02"]
        result = cli("scan", *line(bus, "dlt645"), *fast, "--json")
        text = cli("scan", *line(single, "dlt645"), *fast)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["addresses"] == sorted(bus.addresses) and found["complete"] is True
    assert found["probes"] > 100  # the wildcard collided: the suffix search ran
    assert text.returncode == 0, text.stderr
    assert text.stdout.split() == single.addresses
    assert "scan: one meter on the bus" in text.stderr  # progress on stderr, list on stdout


@pytest.mark.parametrize("command", ["read", "relay", "scan", "sync-time"])
def test_every_command_has_help(command: str) -> None:
    result = cli(command, "--help")
    assert result.returncode == 0
    assert "usage: voltbook-edge " + command in result.stdout
    assert len(result.stdout) > 400


@pytest.mark.parametrize(
    ("given", "zone", "local"),
    [
        ("2026-11-01T00:00+00:00", [], dt.datetime(2026, 11, 1, 8, 0)),  # the site's default
        ("2026-11-01T00:00+00:00", ["--zone", "Europe/Berlin"], dt.datetime(2026, 11, 1, 1, 0)),
    ],
)
def test_sync_time_sets_the_instant_given_in_the_meters_zone(
    dlt645_bus: SimulatedBus, given: str, zone: list[str], local: dt.datetime
) -> None:
    """The offset of `--time` is kept: the instant is converted to the meters' local time,
    never relabelled (a UTC time broadcast as is puts every meter 8 h off)."""
    result = cli("sync-time", *line(dlt645_bus, "dlt645"), "--time", given, *zone)
    assert result.returncode == 0, result.stderr
    for address in dlt645_bus.addresses:
        clock = dlt645_bus.meter(address).state.clock
        assert abs(clock - local) < dt.timedelta(seconds=30), (address, clock)


def test_sync_time_needs_the_offset_of_its_time(dlt645_bus: SimulatedBus) -> None:
    result = cli("sync-time", *line(dlt645_bus, "dlt645"), "--time", "2026-11-01T00:00")
    assert result.returncode == 2
    assert "UTC offset" in result.stderr


@pytest.mark.slow  # three CLI subprocesses and a timeout
def test_driver_options_reach_the_wire() -> None:
    """`--meter-type`/`--di-order` talk to a hot water meter of the 901F make, `--relay` moves
    a Modbus meter's relay; an option the protocol does not take is a usage error."""
    hot = MeterState(address="78330011223345", protocol="cjt188", volume_ml=7_000_000)
    meter = Cjt188Responder(hot, "901F", meter_type=0x11, either_di_order=False)
    with PtyBus(SerialSettings(2400, "E", 8, 1), wire_timing=False) as pty:
        pty.attach(meter, name=hot.address)
        water = ["--port", pty.port, "--protocol", "cjt188", "--address", hot.address, "--json"]
        result = cli("read", *water, "--meter-type", "0x11", "--di-order", "901F")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["volume_l"] == 7_000
        assert cli("read", *water, "--retries", "0").returncode == 1  # a cold water request
        result = cli("read", *water, "--relay", "voltbook-sim")
        assert result.returncode == 2
        assert_one_sentence(result, "cjt188 takes no option 'relay'")

    with SimulatedBus(BusSpec("sdm120", meters=1, wire_timing=False), seed=2) as modbus:
        unit = ["--address", modbus.addresses[0]]
        result = cli("relay", *line(modbus, "sdm120"), *unit, "--relay", "voltbook-sim", "trip")
        assert result.returncode == 0, result.stderr
        assert not modbus.meters[0].state.relay_closed
        result = cli("relay", *line(modbus, "sdm120"), *unit, "close")
        assert result.returncode == 2
        assert_one_sentence(result, "no relay map", "voltbook-sim")
