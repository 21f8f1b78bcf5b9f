"""DL/T 645 block reads: block frames from hex, the read plan, refusals remembered, and the
driver reading the same values through blocks as through single DIs (in-process and over a pty).

The block frames are built by hand from the standard for meter 123456789012 (address on the
wire `12 90 78 56 34 12`); each data byte is shown as meant, then +0x33 as sent.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from demo.sim.dlt645_responder import Dlt645Responder
from demo.sim.pty_bus import PtyBus
from demo.sim.state import MeterState
from edge.drivers.base import SerialSettings
from edge.drivers.bus import SerialBus
from edge.drivers.dlt645 import Decoder, Frame, decode_frame, encode_frame
from edge.drivers.dlt645_blocks import (
    BLOCK_SUPPORT,
    ReadPlans,
    RefusedBlocks,
    plan_reads,
    supported_blocks,
)
from edge.drivers.dlt645_items import BLOCKS_2007, ITEMS, ITEMS_BY_NAME, decode_reply
from edge.drivers.dlt645_meter import DLT645_1997, DLT645_2007
from edge.drivers.dlt645_vendor import SIMULATED_MODEL
from edge.drivers.errors import DriverUsageError, FrameError, MeterRefused
from tests.edge.drivers.test_dlt645_meter import METER, Bus, meter_state

# (name, frame as sent, block row, register values of its parts in DI order)
BLOCK_FRAMES = [
    (
        # 91 reply, L=0A: DI 02 01 FF 00 sent 00 FF 01 02 → 33 32 34 35;
        # A 220.1 V = 01 22 → 34 55, B 219.8 V = 98 21 → CB 54, C 221.0 V = 10 22 → 43 55
        "voltage A/B/C",
        "68 12 90 78 56 34 12 68 91 0A 33 32 34 35 34 55 CB 54 43 55 2F 16",
        "voltage_block",
        {"voltage_a": 2201, "voltage_b": 2198, "voltage_c": 2210},
    ),
    (
        # L=0D: DI 02 02 FF 00 → 33 32 35 35; XXX.XXX A, 3 bytes, top bit the sign:
        # A 5.123 = 23 51 00 → 56 84 33, B 0.500 = 00 05 00 → 33 38 33,
        # C -1.250 = 50 12 80 → 83 45 B3 (the meter sees current flowing back)
        "current A/B/C",
        "68 12 90 78 56 34 12 68 91 0D 33 32 35 35 56 84 33 33 38 33 83 45 B3 19 16",
        "current_block",
        {"current_a": 5123, "current_b": 500, "current_c": -1250},
    ),
    (
        # L=10: DI 02 03 FF 00 → 33 32 36 35; XX.XXXX kW, 3 bytes: total 1.2345 = 45 23 01
        # → 78 56 34, A 0.4000 = 00 40 00 → 33 73 33, B 0.5000 → 33 83 33, C 0.3345 → 78 66 33
        "active power total/A/B/C",
        "68 12 90 78 56 34 12 68 91 10 33 32 36 35 78 56 34 33 73 33 33 83 33 78 66 33 CC 16",
        "active_power_block",
        {
            "active_power_total": 12345,
            "active_power_a": 4000,
            "active_power_b": 5000,
            "active_power_c": 3345,
        },
    ),
    (
        # L=10: DI 00 00 FF 00 → 33 32 33 33; XXXXXX.XX kWh, 4 bytes: total 1234.56 =
        # 56 34 12 00 → 89 67 45 33, tariff 1 1000.00 = 00 00 10 00 → 33 33 43 33,
        # tariff 2 234.56 = 56 34 02 00 → 89 67 35 33; a two-tariff meter stops there
        "combined active energy total + 2 tariffs",
        "68 12 90 78 56 34 12 68 91 10 33 32 33 33 89 67 45 33 33 33 43 33 89 67 35 33 8E 16",
        "combined_active_block",
        {
            "combined_active_total": 123456,
            "combined_active_tariff_1": 100000,
            "combined_active_tariff_2": 23456,
        },
    ),
]
READ_VOLTAGE_BLOCK = bytes.fromhex("FE FE FE FE 68 12 90 78 56 34 12 68 11 04 33 32 34 35 69 16")
NO_SUCH_DATA = bytes.fromhex("68 12 90 78 56 34 12 68 D1 01 35 8D 16")  # the reference's


@pytest.mark.parametrize("feeding", ["whole", "bytewise", "noisy"])
@pytest.mark.parametrize(("name", "wire", "row", "expected"), BLOCK_FRAMES)
def test_block_reply_decodes(name, wire, row, expected, feeding):
    raw = bytes.fromhex(wire)
    decoder = Decoder()
    if feeding == "noisy":  # preamble, line noise with a stray 68, then the frame in halves
        chunks = [b"\xfe\xfe\x00\x68\x11", raw[:7], raw[7:]]
    elif feeding == "bytewise":
        chunks = [raw[i : i + 1] for i in range(len(raw))]
    else:
        chunks = [raw]
    frames = []
    for chunk in chunks:
        decoder.feed(chunk)
        frames += decoder.frames()
    (frame,) = frames
    item = ITEMS_BY_NAME[row]
    assert (frame.address, frame.control) == (METER, 0x91)
    assert frame.data[:4] == item.di.to_bytes(4, "little")
    values = decode_reply(item, frame.data[4:], address=METER)
    assert {part.name: value for part, value in values} == expected
    assert [part.name for part, _ in values] == list(expected)  # DI order
    assert encode_frame(frame, preamble=0) == raw  # the checksum by hand agrees


@pytest.mark.parametrize(("name", "wire", "row", "expected"), BLOCK_FRAMES)
def test_block_reply_with_a_bad_checksum_or_cut_short_is_no_frame(name, wire, row, expected):
    raw = bytearray(bytes.fromhex(wire))
    raw[-2] ^= 0x01
    decoder = Decoder()
    decoder.feed(bytes(raw))
    assert decoder.frames() == [] and decoder.checksum_errors == 1
    decoder = Decoder()
    decoder.feed(bytes.fromhex(wire)[:-3])
    assert decoder.frames() == [] and decoder.pending > 0


def test_block_data_that_splits_badly_is_a_frame_error():
    voltage = ITEMS_BY_NAME["voltage_block"]
    with pytest.raises(FrameError, match="do not split"):
        decode_reply(voltage, bytes.fromhex("01 22 98"), address=METER)  # 1.5 voltages
    with pytest.raises(FrameError, match="not BCD"):
        decode_reply(voltage, bytes.fromhex("0A 22"), address=METER)
    with pytest.raises(FrameError, match="do not split"):
        decode_reply(voltage, b"", address=METER)


@given(st.sampled_from([i for i in ITEMS if i.is_block]), st.binary(max_size=260))
def test_any_bytes_decode_or_raise_our_error(block, data):
    try:
        values = decode_reply(block, data, address=METER)
    except FrameError:
        return
    assert values and [part.name for part, _ in values] == list(block.parts[: len(values)])


def test_the_driver_sends_the_block_request_of_the_standard():
    assert encode_frame(decode_frame(READ_VOLTAGE_BLOCK)) == READ_VOLTAGE_BLOCK
    three_phase = ("voltage_a", "voltage_b", "voltage_c")
    driver = DLT645_2007.with_block_reads("standard")

    def meter(request: bytes) -> list[bytes]:
        assert request == READ_VOLTAGE_BLOCK
        return [bytes.fromhex(BLOCK_FRAMES[0][1])]

    rows = [ITEMS_BY_NAME[name] for name in three_phase]
    bus = Bus(meter)
    reading = bus.run(driver.read_items(METER, rows))
    assert reading.voltage_v == 220.1  # the Reading carries phase A
    assert len(bus.requests) == 1


# --- the plan ----------------------------------------------------------------------------------


def test_plan_for_basic_per_capability():
    basic = BLOCKS_2007["basic"].items
    by_capability = {
        capability: [p.row.name for p in plan_reads(basic, supported_blocks(capability))]
        for capability in BLOCK_SUPPORT
    }
    # The standard's blocks hold one class each: a single-phase basic read gains nothing.
    assert by_capability["none"] == by_capability["standard"] == [i.name for i in basic]
    assert by_capability[SIMULATED_MODEL] == ["basic_vendor_block"]
    refused = plan_reads(basic, supported_blocks(SIMULATED_MODEL), {"basic_vendor_block"})
    assert [p.row.name for p in refused] == [i.name for i in basic]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(BLOCKS_2007)),
            st.sampled_from(sorted(BLOCK_SUPPORT)),
            st.frozensets(st.sampled_from(sorted(BLOCK_SUPPORT[SIMULATED_MODEL]))),
        ),
        max_size=20,
    )
)
def test_a_kept_plan_is_the_plan_made_afresh(
    reads: list[tuple[str, str, frozenset[str]]],
) -> None:
    """The driver plans each reading block once per supported blocks and refusals; whatever
    was asked before, the plan it keeps is the one `plan_reads` makes."""
    plans = ReadPlans()
    supported = {capability: supported_blocks(capability) for capability in BLOCK_SUPPORT}
    for block, capability, refused in reads:
        kept = plans.plan(BLOCKS_2007[block], supported[capability], refused)
        assert kept == plan_reads(BLOCKS_2007[block].items, supported[capability], refused)


def test_plan_groups_phases_and_keeps_asked_blocks():
    names = ("voltage_a", "forward_active_block", "voltage_b", "voltage_c", "current_a")
    plan = plan_reads([ITEMS_BY_NAME[n] for n in names], supported_blocks("standard"))
    assert [(p.row.name, [w.name for w in p.wanted]) for p in plan] == [
        ("voltage_block", ["voltage_a", "voltage_b", "voltage_c"]),
        ("forward_active_block", ["forward_active_block"]),
        ("current_a", ["current_a"]),  # one wanted item: its own DI is shorter
    ]
    assert [p.is_substitute for p in plan] == [True, False, False]


def test_unknown_capability_is_a_usage_error():
    with pytest.raises(DriverUsageError, match="known: none, standard"):
        DLT645_2007.with_block_reads("acme-9000")
    # 1997 meters have no DI for these blocks: the driver keeps single reads.
    assert DLT645_1997.with_block_reads(SIMULATED_MODEL).block_support == (
        ITEMS_BY_NAME["forward_active_block"],
    )


# --- the driver against simulated meters -------------------------------------------------------


def test_basic_through_the_vendor_block_is_one_exchange_with_the_same_reading():
    per_di = Bus(Dlt645Responder(meter_state()).feed)
    expected = per_di.run(DLT645_2007.read(METER, "basic"))
    bus = Bus(Dlt645Responder(meter_state()).feed, deliver="bytewise")
    reading = bus.run(DLT645_2007.with_block_reads(SIMULATED_MODEL).read(METER, "basic"))
    assert reading == expected
    assert (len(per_di.requests), len(bus.requests)) == (7, 1)


def test_a_refused_block_is_remembered_for_that_meter():
    driver = DLT645_2007.with_block_reads(SIMULATED_MODEL)
    expected = Bus(Dlt645Responder(meter_state()).feed).run(DLT645_2007.read(METER, "basic"))
    old_meter = Bus(Dlt645Responder(meter_state(), block_reads=False).feed)
    assert old_meter.run(driver.read(METER, "basic")) == expected
    assert len(old_meter.requests) == 1 + 7  # the block, refused "no such data"; then singles
    assert driver.refused_blocks is not None
    assert driver.refused_blocks.refused(METER) == {"basic_vendor_block"}
    old_meter.requests.clear()
    assert old_meter.run(driver.read(METER, "basic")) == expected
    assert len(old_meter.requests) == 7  # not asked again
    # An asked-for block (energy) refused once is read part by part straight away afterwards.
    old_meter.requests.clear()
    first = old_meter.run(driver.read(METER, "energy"))
    asked_first = len(old_meter.requests)
    old_meter.requests.clear()
    assert old_meter.run(driver.read(METER, "energy")) == first
    assert len(old_meter.requests) == asked_first - 1
    # Another meter on the same driver still gets the block.
    other = "000000000042"
    new_meter = Bus(Dlt645Responder(meter_state(other)).feed)
    new_meter.run(driver.read(other, "basic"))
    assert len(new_meter.requests) == 1


def test_a_block_laid_out_otherwise_is_read_singly_and_remembered():
    responder = Dlt645Responder(meter_state())
    vendor_block = bytes.fromhex("00 FF F1 03")  # 03 F1 FF 00 as sent, before +0x33

    def other_make(request: bytes) -> list[bytes]:
        frame = decode_frame(request)
        if frame.data == vendor_block:  # a valid reply whose 5 data bytes fit no layout
            reply = Frame(METER, 0x91, vendor_block + bytes.fromhex("56 34 12 00 01"))
            return [encode_frame(reply)]
        return responder.feed(request)

    driver = DLT645_2007.with_block_reads(SIMULATED_MODEL)
    expected = Bus(Dlt645Responder(meter_state()).feed).run(DLT645_2007.read(METER, "basic"))
    bus = Bus(other_make)
    assert bus.run(driver.read(METER, "basic")) == expected
    assert len(bus.requests) == 1 + 7
    bus.requests.clear()
    assert bus.run(driver.read(METER, "basic")) == expected
    assert len(bus.requests) == 7


def test_a_refusal_for_another_reason_is_not_remembered():
    driver = DLT645_2007.with_block_reads(SIMULATED_MODEL)

    def unauthorised_for_blocks(request: bytes) -> list[bytes]:
        # error byte 0x01 ("other"): not "no such data", so no fallback and no memory
        return [bytes.fromhex("68 12 90 78 56 34 12 68 D1 01 34 8C 16")]

    with pytest.raises(MeterRefused, match="other"):
        Bus(unauthorised_for_blocks).run(driver.read(METER, "basic"))
    assert driver.refused_blocks is not None and driver.refused_blocks.refused(METER) == set()


def test_the_reference_error_reply_is_what_the_refusing_simulator_sends():
    responder = Dlt645Responder(meter_state(), block_reads=False)
    request = encode_frame(decode_frame(READ_VOLTAGE_BLOCK))
    assert responder.feed(request) == [b"\xfe" * 4 + NO_SUCH_DATA]


def test_refused_blocks_forget_a_replaced_meter():
    memory = RefusedBlocks()
    memory.remember(METER, "voltage_block")
    memory.forget(METER)
    assert memory.refused(METER) == frozenset()


# --- over a real pty -------------------------------------------------------------------------

FAST = SerialSettings(baudrate=115200, parity="E")
BLOCK_METER, OLD_METER = "202612000101", "202612000102"


@pytest.fixture
def line() -> Iterator[PtyBus]:
    with PtyBus(FAST, wire_timing=False) as pty:
        for address, blocks in ((BLOCK_METER, True), (OLD_METER, False)):
            state = MeterState(address=address, protocol="dlt645", energy_mwh=4_321_987_000)
            state.voltage_v, state.current_a, state.power_w = 228.7, 3.25, 712.5
            state.power_factor, state.frequency_hz = 0.93, 50.02
            pty.attach(Dlt645Responder(state, block_reads=blocks), name=address)
        yield pty


def test_blocks_over_a_pty_give_the_single_reads_values(line: PtyBus) -> None:
    driver = DLT645_2007.with_settings(FAST)
    blocks = driver.with_block_reads(SIMULATED_MODEL)
    addresses = (BLOCK_METER, OLD_METER)
    with SerialBus(line.port, FAST) as bus:
        singles = [bus.run(driver.read(a, "basic"), address=a) for a in addresses]
        per_di_requests = bus.stats.total.requests
        through_blocks = [bus.run(blocks.read(a, "basic"), address=a) for a in addresses]
        first_block_round = bus.stats.total.requests - per_di_requests
        again = [bus.run(blocks.read(a, "basic"), address=a) for a in addresses]
        second_block_round = bus.stats.total.requests - per_di_requests - first_block_round
    assert through_blocks == again == singles
    assert singles[0].energy_wh == 4_321_980 and singles[0].voltage_v == 228.7
    assert per_di_requests == 14
    assert first_block_round == 1 + (1 + 7)  # block meter: 1; old meter: refused + 7
    assert second_block_round == 1 + 7  # the refusal remembered
    assert bus.stats.total.failures == 0
