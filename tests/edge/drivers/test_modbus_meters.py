"""Modbus RTU meters: reference frames, adversarial replies, float32 energy, drivers vs. sims."""

from __future__ import annotations

import contextlib
import itertools
import math
import struct
from collections.abc import Callable
from fractions import Fraction
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demo.sim.modbus_responder import ModbusResponder
from demo.sim.state import MeterState
from edge.drivers.base import Conversation, MeterDriver, SerialSettings
from edge.drivers.errors import (
    ChecksumError,
    DriverUsageError,
    FrameError,
    MeterError,
    MeterRefused,
    MeterTimeout,
    PeerError,
    RelayNotConfirmed,
    UnsupportedOperation,
)
from edge.drivers.modbus_maps import (
    MAX_READ_REGISTERS,
    MODELS,
    RELAY_MAPS,
    SIMULATED_RELAY,
    Register,
    RegisterTable,
    relay_map,
)
from edge.drivers.modbus_meters import (
    DDSU666,
    SDM120,
    SDM630,
    ModbusMeter,
    ModbusTransaction,
    RtuStream,
    float32_kwh_to_wh,
    parse_unit_id,
    plan_reads,
)
from edge.drivers.reading import Reading, RelayState
from tests.edge.drivers.tiny_meter import drive as run

T = TypeVar("T")
H = bytes.fromhex

# --- harness -----------------------------------------------------------------------------


def first_tx(conversation: Conversation[Any]) -> Any:
    return next(conversation)


def feed_whole(tx: Any, data: bytes) -> None:
    tx.feed(data)


def feed_bytewise(tx: Any, data: bytes) -> None:
    for i in range(len(data)):
        tx.feed(data[i : i + 1])


FEEDERS = pytest.mark.parametrize("feed", [feed_whole, feed_bytewise], ids=["whole", "bytewise"])


def meter_state(unit: str, model: str, **kw: Any) -> MeterState:
    defaults: dict[str, Any] = {
        "energy_mwh": 123_456_789,
        "voltage_v": 229.5,
        "current_a": 4.25,
        "power_w": 950.0,
        "reactive_var": 120.0,
        "power_factor": 0.93,
        "frequency_hz": 49.98,
    }
    return MeterState(address=unit, protocol=model, **(defaults | kw))


# --- reference frames (docs/architecture.md §11) -----------------------------------------


def test_voltage_request_matches_reference() -> None:
    tx = first_tx(SDM120().read_registers("1", RegisterTable.INPUT, 0x0000, 2))
    assert tx.request == H("01 04 00 00 00 02 71 CB")


def test_sdm120_basic_reads_voltage_with_the_reference_frame() -> None:
    spans = SDM120().plan("basic")
    assert (RegisterTable.INPUT, 0x0000, 2) in [(s.table, s.address, s.count) for s in spans]


@pytest.mark.parametrize("driver", [SDM120(), SDM630()], ids=["sdm120", "sdm630"])
def test_energy_block_is_the_reference_import_kwh_request(driver: ModbusMeter) -> None:
    tx = first_tx(driver.read("1", "energy"))
    assert tx.request == H("01 04 00 48 00 02 F1 DD")


def test_ddsu666_basic_reads_the_reference_block_in_one_request() -> None:
    tx = first_tx(DDSU666().read("1", "basic"))
    assert tx.request == H("01 03 20 00 00 10 4F C6")


def test_block_plans_use_few_requests() -> None:
    # DDSU666: 0x2000..0x200F, energy (and the relay state, with a relay map);
    # SDM630: voltages+currents merged.
    assert len(DDSU666().plan("basic")) == 2
    assert len(DDSU666(relay=relay_map("ddsu666", SIMULATED_RELAY)).plan("basic")) == 3
    sdm630 = [(s.address, s.count) for s in SDM630().plan("basic")]
    assert sdm630 == [(0x0000, 12), (0x0034, 2), (0x003E, 2), (0x0046, 4)]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_without_a_relay_map_only_documented_registers_are_read(model: str) -> None:
    driver = ModbusMeter(MODELS[model])
    documented = {r.address for r in MODELS[model].registers}
    for block in driver.blocks:
        for span in driver.plan(block):
            assert span.address in documented, (block, hex(span.address))
    assert "relay" not in driver.blocks


def test_reply_timeout_follows_baud_rate() -> None:
    tx = first_tx(SDM120().read("1", "energy"))
    byte_time = 10 / 2400  # 8N1
    assert tx.reply_timeout == pytest.approx(0.2 + (3.5 + 9) * byte_time)
    fast = first_tx(SDM120(SerialSettings(9600, "N")).read("1", "energy"))
    assert fast.reply_timeout < tx.reply_timeout
    assert tx.expects_reply


# --- replies: whole and byte by byte -----------------------------------------------------

GOOD = "01 04 04 42 F6 E9 79 81 BC"  # unit 1: 123.456 kWh
OTHER_UNIT = "02 04 04 41 18 00 00 5C BF"  # unit 2: 9.5
ECHO = "01 04 00 48 00 02 F1 DD"  # our own request, echoed by the adapter

REPLIES: list[tuple[str, str, type[MeterError] | None]] = [
    ("clean", GOOD, None),
    ("noise before", "FF 00 13 " + GOOD, None),
    ("noise that looks like a frame start", "01 03 FF 12 " + GOOD, None),
    ("noise after", GOOD + " 00 FF", None),
    ("another unit first", OTHER_UNIT + " " + GOOD, None),
    ("own echo first", ECHO + " " + GOOD, None),
    ("bad CRC then good", "01 04 04 42 F6 E9 79 81 BD " + GOOD, None),
    ("bad CRC only", "01 04 04 42 F6 E9 79 81 BD", ChecksumError),
    ("truncated", "01 04 04 42 F6 E9", MeterTimeout),
    ("silence", "", MeterTimeout),
    ("only our own echo", ECHO, MeterTimeout),
    ("only another unit", OTHER_UNIT, MeterTimeout),
    ("exception: illegal address", "01 84 02 C2 C1", MeterRefused),
    ("wrong register count", "01 04 02 42 F6 09 D6", FrameError),
    ("wrong function from our unit", "01 03 04 42 F6 E9 79 80 0B", MeterTimeout),
]


@FEEDERS
@pytest.mark.parametrize(("name", "reply", "error"), REPLIES, ids=[r[0] for r in REPLIES])
def test_read_reply(
    feed: Callable[[Any, bytes], None], name: str, reply: str, error: type[MeterError] | None
) -> None:
    conversation = SDM120().read("1", "energy")
    tx = next(conversation)
    feed(tx, H(reply))
    if error is None:
        assert tx.done()
        reading = run_to_end(conversation, tx)
        assert reading.energy_wh == 123_456
        assert reading.energy_error_wh == 1
        return
    with pytest.raises(error) as caught:
        conversation.send(tx)
    assert caught.value.address == "1"


def run_to_end(conversation: Conversation[T], tx: Any) -> T:
    try:
        conversation.send(tx)
    except StopIteration as finished:
        return finished.value  # type: ignore[no-any-return]
    raise AssertionError("conversation wanted more")


def test_exception_code_is_decoded() -> None:
    conversation = SDM120().read("1", "energy")
    tx = next(conversation)
    tx.feed(H("01 84 02 C2 C1"))
    with pytest.raises(MeterRefused) as caught:
        conversation.send(tx)
    assert caught.value.code == 2
    assert caught.value.reasons == ("illegal data address",)


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("01 04 04 7F C0 00 00 E2 6C", "not a number"),
        ("01 04 04 7F 80 00 00 E3 B8", "not a number"),
        ("01 04 04 BF 80 00 00 DF B8", "negative"),
    ],
    ids=["nan", "inf", "negative"],
)
def test_impossible_energy_is_refused(reply: str, why: str) -> None:
    conversation = SDM120().read("1", "energy")
    tx = next(conversation)
    tx.feed(H(reply))
    with pytest.raises(PeerError, match=why):
        conversation.send(tx)


def test_reply_split_anywhere_decodes() -> None:
    data = H("00 " + OTHER_UNIT + " " + GOOD)
    for cut in range(len(data) + 1):
        tx = first_tx(SDM120().read("1", "energy"))
        tx.feed(data[:cut])
        tx.feed(data[cut:])
        assert tx.done(), cut
        assert list(tx.result().registers) == [0x42F6, 0xE979]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.integers(min_value=1, max_value=7))
def test_any_bytes_decode_or_raise_meter_error(data: bytes, chunk: int) -> None:
    tx: ModbusTransaction = first_tx(SDM120().read("1", "energy"))
    for i in range(0, len(data), chunk):
        tx.feed(data[i : i + chunk])
    with contextlib.suppress(MeterError):
        tx.result()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_stream_and_responder_survive_any_bytes(data: bytes) -> None:
    for is_server in (False, True):
        stream = RtuStream(is_server=is_server)
        stream.feed(data)
        while stream.next_frame() is not None:
            pass
    responder = ModbusResponder(meter_state("1", "sdm120"), "sdm120", 1)
    for reply in responder.feed(data):
        assert reply[0] == 1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40), st.binary(max_size=40), st.booleans())
def test_reply_is_found_behind_any_noise(before: bytes, after: bytes, bytewise: bool) -> None:
    tx: ModbusTransaction = first_tx(SDM120().read("1", "energy"))
    (feed_bytewise if bytewise else feed_whole)(tx, before + H(GOOD) + after)
    assert tx.done()  # a complete frame for us is never lost behind noise
    if 0x01 not in before:  # no other frame of unit 1 can come first
        assert list(tx.result().registers) == [0x42F6, 0xE979]


# --- float32 energy ----------------------------------------------------------------------


def to_float32(value: float) -> float:
    result: float = struct.unpack(">f", struct.pack(">f", value))[0]
    return result


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=0, max_value=1_000_000_000))
def test_float32_energy_error_within_bound_up_to_a_million_kwh(true_wh: int) -> None:
    sent = to_float32(true_wh / 1000)
    wh, bound = float32_kwh_to_wh(sent, address="1")
    assert abs(wh - true_wh) <= bound
    assert bound < 100  # below 0.1 kWh


@settings(max_examples=500, deadline=None)
@given(st.fractions(min_value=0, max_value=1_000_000, max_denominator=10**9))
def test_float32_energy_bound_holds_for_any_true_value(true_kwh: Fraction) -> None:
    # The meter's register may hold any real count; the float32 it sends is its nearest.
    sent = to_float32(float(true_kwh))
    wh, bound = float32_kwh_to_wh(sent, address="1")
    assert abs(wh - true_kwh * 1000) <= bound
    assert bound < 100


def test_float32_bound_at_a_million_kwh_is_32_wh() -> None:
    assert float32_kwh_to_wh(1_000_000.0, address="1") == (1_000_000_000, 32)
    assert float32_kwh_to_wh(0.0, address="1") == (0, 1)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -0.5])
def test_float32_refuses_impossible_energy(value: float) -> None:
    with pytest.raises(PeerError):
        float32_kwh_to_wh(value, address="1")


# --- planning ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.sets(st.integers(min_value=0, max_value=600), min_size=1, max_size=80),
    st.integers(min_value=0, max_value=8),
)
def test_plan_covers_every_register_within_limits(addresses: set[int], gap: int) -> None:
    rows = [Register(f"r{a}", 2 * a, RegisterTable.INPUT) for a in addresses]
    spans = plan_reads(rows, max_gap=gap)
    covered = [r for s in spans for r in s.registers]
    assert sorted(covered, key=lambda r: r.address) == sorted(rows, key=lambda r: r.address)
    for span in spans:
        assert 1 <= span.count <= MAX_READ_REGISTERS
        for reg in span.registers:
            assert span.address <= reg.address and reg.end <= span.address + span.count
    # Contiguous rows merge: with no gap allowed, neighbours never sit in separate spans.
    if gap == 0:
        for a, b in itertools.pairwise(spans):
            assert a.address + a.count != b.address or a.count + b.count > MAX_READ_REGISTERS


def test_plan_splits_at_the_125_register_limit() -> None:
    rows = [Register(f"r{i}", 2 * i, RegisterTable.HOLDING) for i in range(100)]
    spans = plan_reads(rows)
    assert [s.count for s in spans] == [124, 76]


# --- usage errors ------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["0", "248", "x", "", "1.5"])
def test_bad_unit_ids_are_usage_errors(address: str) -> None:
    with pytest.raises(DriverUsageError):
        parse_unit_id(address)
    with pytest.raises(DriverUsageError):
        SDM120().read(address)


def test_unknown_block_and_action_are_usage_errors() -> None:
    with pytest.raises(DriverUsageError, match="no block"):
        SDM120().read("1", "abnormal_trips")
    with pytest.raises(DriverUsageError):
        SDM120().relay("1", "toggle")  # type: ignore[arg-type]


def test_drivers_satisfy_the_protocol() -> None:
    drivers: list[MeterDriver] = [SDM120(), SDM630(), DDSU666()]
    assert [d.name for d in drivers] == ["sdm120", "sdm630", "ddsu666"]
    for driver in drivers:
        assert driver.default_settings == SerialSettings(2400, "N", 8, 1)
        assert {"basic", "energy"} <= driver.blocks


# --- drivers against the simulated meters ------------------------------------------------

DRIVERS = [SDM120, SDM630, DDSU666]


def with_sim_relay(driver_class: Callable[..., ModbusMeter]) -> ModbusMeter:
    name = driver_class().name
    return driver_class(relay=relay_map(name, SIMULATED_RELAY))


@pytest.mark.parametrize("driver_class", DRIVERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("sim_relay", [False, True], ids=["documented", "sim-relay"])
def test_basic_reading_from_simulated_meter(
    driver_class: Callable[..., ModbusMeter], sim_relay: bool
) -> None:
    driver = with_sim_relay(driver_class) if sim_relay else driver_class()
    state = meter_state("7", driver.name)
    reading: Reading = run(driver.read("7"), ModbusResponder(state, driver.name, 7))
    assert reading.address == "7"
    assert reading.energy_wh == 123_457
    assert abs(123_457 - state.energy_mwh / 1000) <= reading.energy_error_wh
    assert reading.voltage_v == pytest.approx(229.5)
    assert reading.current_a == pytest.approx(4.25)
    assert reading.power_w == pytest.approx(950.0, rel=1e-6)
    assert reading.power_factor == pytest.approx(0.93, rel=1e-6)
    assert reading.frequency_hz == pytest.approx(49.98, rel=1e-6)
    assert reading.relay is (RelayState.CLOSED if sim_relay else None)


@pytest.mark.parametrize("driver_class", DRIVERS, ids=lambda c: c.__name__)
def test_relay_trip_and_close_are_confirmed(driver_class: Callable[..., ModbusMeter]) -> None:
    driver = with_sim_relay(driver_class)
    state = meter_state("3", driver.name)
    meter = ModbusResponder(state, driver.name, 3)
    assert run(driver.relay("3", "trip"), meter) is RelayState.OPEN
    assert state.relay_closed is False
    assert run(driver.read("3", "relay"), meter).relay is RelayState.OPEN
    assert run(driver.relay("3", "close"), meter) is RelayState.CLOSED
    assert state.relay_closed is True


class StuckRelay:
    """A meter whose relay contact is welded: it acknowledges, and stays closed."""

    def __init__(self, meter: ModbusResponder) -> None:
        self.meter = meter

    def feed(self, data: bytes) -> list[bytes]:
        replies = self.meter.feed(data)
        self.meter.state.relay_closed = True
        return replies


def test_relay_not_confirmed_when_the_state_does_not_follow() -> None:
    state = meter_state("3", "sdm120")
    with pytest.raises(RelayNotConfirmed):
        run(
            with_sim_relay(SDM120).relay("3", "trip"),
            StuckRelay(ModbusResponder(state, "sdm120", 3)),
        )


def test_energy_follows_the_simulated_state() -> None:
    state = meter_state("1", "sdm630", energy_mwh=0)
    meter = ModbusResponder(state, "sdm630", 1)
    readings = []
    for mwh in (0, 5_000_000, 99_999_999_999, 1_000_000_000_000):
        state.energy_mwh = mwh
        reading = run(SDM630().read("1", "energy"), meter)
        assert reading.energy_wh is not None
        assert abs(reading.energy_wh - mwh / 1000) <= reading.energy_error_wh
        readings.append(reading.energy_wh)
    assert readings == sorted(readings)


def test_only_the_addressed_meter_answers_on_a_shared_bus() -> None:
    one = ModbusResponder(meter_state("1", "sdm120", energy_mwh=1_000_000), "sdm120", 1)
    two = ModbusResponder(meter_state("2", "sdm120", energy_mwh=2_000_000), "sdm120", 2)
    assert run(SDM120().read("2", "energy"), one, two).energy_wh == 2_000
    assert run(SDM120().read("1", "energy"), two, one).energy_wh == 1_000


def test_unknown_register_gets_an_exception_reply() -> None:
    meter = ModbusResponder(meter_state("1", "sdm120"), "sdm120", 1)
    with pytest.raises(MeterRefused) as caught:
        run(SDM120().read_registers("1", RegisterTable.INPUT, 0x0300, 2), meter)
    assert caught.value.code == 2
    # Across a gap the model does not allow: also refused.
    with pytest.raises(MeterRefused):
        run(SDM120().read_registers("1", RegisterTable.INPUT, 0x0000, 8), meter)


# --- the responder's own answers ---------------------------------------------------------


def responder_reply(request: bytes, model: str = "sdm120", unit: int = 1) -> list[bytes]:
    return ModbusResponder(meter_state(str(unit), model), model, unit).feed(request)


RESPONDER_ROWS: list[tuple[str, str, list[str]]] = [
    # read coils: not a meter function → illegal function
    ("unsupported function", "01 01 00 00 00 01 FD CA", ["01 81 01 81 90"]),
    # write 2 to the relay command register → illegal value
    ("bad relay value", "01 06 90 00 00 02 25 0B", ["01 86 03 02 61"]),
    # write to a measured register (read-only) → illegal address
    ("write to a measurement", "01 06 00 00 00 01 48 0A", ["01 86 02 C3 A1"]),
    ("another unit", "02 04 00 00 00 02 71 F8", []),
    ("bad CRC", "01 04 00 00 00 02 71 CC", []),
]


@pytest.mark.parametrize(
    ("name", "request_hex", "replies"), RESPONDER_ROWS, ids=[r[0] for r in RESPONDER_ROWS]
)
def test_responder_rows(name: str, request_hex: str, replies: list[str]) -> None:
    assert responder_reply(H(request_hex)) == [H(r) for r in replies]


def test_responder_answers_the_reference_requests() -> None:
    (reply,) = responder_reply(H("01 04 00 00 00 02 71 CB"))
    assert reply[:3] == H("01 04 04")
    (reply,) = responder_reply(H("01 03 20 00 00 10 4F C6"), model="ddsu666")
    assert reply[:3] == H("01 03 20")


def test_responder_hears_requests_split_and_among_noise() -> None:
    meter = ModbusResponder(meter_state("1", "sdm120"), "sdm120", 1)
    data = H("FF 00 02 04 04 41 18 00 00 5C BF 01 04 00 48 00 02 F1 DD")
    replies = [r for i in range(len(data)) for r in meter.feed(data[i : i + 1])]
    assert len(replies) == 1 and replies[0][:3] == H("01 04 04")


# --- real meters: documented registers only, no relay ---------------------------------------


@pytest.mark.parametrize("driver_class", DRIVERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("action", ["trip", "close"])
def test_relay_command_without_a_relay_map_is_refused(
    driver_class: Callable[..., ModbusMeter], action: str
) -> None:
    driver = driver_class()
    with pytest.raises(UnsupportedOperation, match="no relay map") as caught:
        driver.relay("3", action)  # type: ignore[arg-type]
    assert caught.value.address == "3" and caught.value.item == "relay"
    with pytest.raises(UnsupportedOperation):
        driver.read("3", "relay")


def test_documented_only_meter_refuses_the_simulated_relay_registers() -> None:
    meter = ModbusResponder(meter_state("1", "sdm120"), "sdm120", 1, documented_only=True)
    with pytest.raises(MeterRefused) as caught:
        run(with_sim_relay(SDM120).read("1"), meter)  # basic asks for 0x9001 too
    assert caught.value.code == 2 and caught.value.reasons == ("illegal data address",)
    with pytest.raises(MeterRefused):
        run(with_sim_relay(SDM120).relay("1", "trip"), meter)
    assert meter.state.relay_closed is True


def test_every_relay_row_names_its_source() -> None:
    assert set(RELAY_MAPS) == set(MODELS)
    for variants in RELAY_MAPS.values():
        for variant, row in variants.items():
            assert row.variant == variant and row.source
            assert row.documented is ("Voltbook simulator" not in row.source)
    with pytest.raises(UnsupportedOperation, match="known: voltbook-sim"):
        relay_map("sdm120", "eastron-relay-module")


def test_unknown_model_is_a_usage_error() -> None:
    with pytest.raises(DriverUsageError):
        ModbusResponder(meter_state("1", "x"), "sdm999", 1)
    assert set(MODELS) == {"sdm120", "sdm630", "ddsu666"}
