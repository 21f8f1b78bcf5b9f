"""DL/T 645 drivers driven against simulated meters (`Dlt645Responder`) in-process.

`run` is a tiny bus: it writes each transaction's request to every responder, delivers their
replies (whole, byte by byte, or wrapped in line noise) and sends the transaction back into the
conversation. No mocks: odd meters are responders with options or a scripted peer that answers
with the reference's own bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demo.sim.dlt645_responder import Dlt645Responder
from demo.sim.state import MeterState
from edge.drivers.base import Conversation, SerialSettings
from edge.drivers.dlt645 import Frame, decode_frame, encode_frame
from edge.drivers.dlt645_items import ITEMS_BY_NAME, ReadingBlock
from edge.drivers.dlt645_meter import DLT645_1997, DLT645_2007, Dlt645Driver
from edge.drivers.dlt645_requests import read_request, write_request
from edge.drivers.errors import (
    ChecksumError,
    DriverUsageError,
    MeterError,
    MeterRefused,
    MeterTimeout,
    RelayNotConfirmed,
)
from edge.drivers.reading import Reading, RelayState
from ledger.units import Wh

METER = "123456789012"
OTHER = "000000000042"
TRIP = bytes.fromhex(
    "68 12 90 78 56 34 12 68 1C 10 35 33 33 33 33 33 33 33 4D 33 8C 8C 56 64 45 58 3B 16"
)
RELAY_OK = bytes.fromhex("68 12 90 78 56 34 12 68 9C 00 22 16")
READ_FORWARD = bytes.fromhex("FE FE FE FE 68 12 90 78 56 34 12 68 11 04 33 33 34 33 68 16")
READ_ADDRESS = bytes.fromhex("FE FE FE FE 68 AA AA AA AA AA AA 68 13 00 DF 16")
BROADCAST_TIME = bytes.fromhex("FE FE FE FE 68 99 99 99 99 99 99 68 08 06 89 67 45 63 39 58 9D 16")

T = TypeVar("T")
Peer = Callable[[bytes], list[bytes]]  # request bytes → reply byte strings


class Bus:
    """Carries one conversation's requests to the peers; records what went over the wire."""

    def __init__(self, *peers: Peer, deliver: str = "whole") -> None:
        self.peers = peers
        self.deliver = deliver
        self.requests: list[bytes] = []

    def chunks(self, reply: bytes) -> Iterable[bytes]:
        if self.deliver == "bytewise":
            return [reply[i : i + 1] for i in range(len(reply))]
        if self.deliver == "noisy":  # turnaround noise, a stray 68, the reply split in three
            third = len(reply) // 3
            return [
                b"\x00\xff\x68\x01",
                reply[:third],
                reply[third : 2 * third],
                reply[2 * third :],
            ]
        return [reply]

    def run(self, conversation: Conversation[T]) -> T:
        try:
            tx = next(conversation)
            while True:
                self.requests.append(tx.request)
                for peer in self.peers:
                    for reply in peer(tx.request):
                        for chunk in self.chunks(reply):
                            tx.feed(chunk)
                tx = conversation.send(tx)
        except StopIteration as stop:
            return stop.value


def meter_state(address: str = METER, **changes: object) -> MeterState:
    state = MeterState(
        address=address,
        protocol="dlt645",
        energy_mwh=1_234_567_891,  # 1234.567891 kWh: the meter shows 1234.56
        tariff_mwh=[100_000_000, 400_000_000, 534_567_891, 200_000_000],
        voltage_v=220.1,
        current_a=5.123,
        power_w=1127.5,
        reactive_var=-12.3,
        power_factor=0.95,
        frequency_hz=49.98,
        clock=dt.datetime(2026, 11, 1, 8, 30, 15),
        counters={"malicious_load_trips": 2, "overload_trips": 3, "over_voltage_trips": 1},
    )
    for name, value in changes.items():
        setattr(state, name, value)
    return state


DELIVERIES = pytest.mark.parametrize("deliver", ["whole", "bytewise", "noisy"])


# --- reading blocks ----------------------------------------------------------------------------


@DELIVERIES
def test_basic_block(deliver):
    bus = Bus(Dlt645Responder(meter_state()).feed, deliver=deliver)
    reading = bus.run(DLT645_2007.read(METER, "basic"))
    assert reading == Reading(
        address=METER,
        energy_wh=Wh(1_234_560),
        voltage_v=220.1,
        current_a=5.123,
        power_w=1127.5,
        power_factor=0.95,
        frequency_hz=49.98,
        relay=RelayState.CLOSED,
    )
    assert bus.requests[0] == READ_FORWARD  # the reference's read request, byte for byte
    assert len(bus.requests) == 7  # no multi-DI read in DL/T 645: one round trip per item


@DELIVERIES
def test_energy_block_is_one_round_trip(deliver):
    bus = Bus(Dlt645Responder(meter_state()).feed, deliver=deliver)
    reading = bus.run(DLT645_2007.read(METER, "energy"))
    assert reading.energy_wh == 1_234_560
    assert reading.energy_by_tariff_wh == (100_000, 400_000, 534_560, 200_000)
    assert all(isinstance(wh, int) for wh in reading.energy_by_tariff_wh)
    assert len(bus.requests) == 1


def test_abnormal_trips_status_and_clock_blocks():
    state = meter_state(relay_closed=False, keep_power=False, alarm=True)
    bus = Bus(Dlt645Responder(state).feed)
    trips = bus.run(DLT645_2007.read(METER, "abnormal_trips"))
    assert dict(trips.counters) == state.counters
    status = bus.run(DLT645_2007.read(METER, "status"))
    assert status.relay is RelayState.OPEN
    assert status.status_words[2] == 0x00D0
    assert status.event_flags == {"relay_commanded_open", "pre_trip_alarm"}
    clock = bus.run(DLT645_2007.read(METER, "clock"))
    assert clock.meter_time == dt.datetime(2026, 11, 1, 8, 30, 15)
    assert len(bus.requests) == 1 + 1 + 2


def test_operator_defined_block():
    trips_and_energy = ReadingBlock("trips_energy", ("forward_active_total", "overload_trips"))
    driver = Dlt645Driver(
        "dlt645", 2007, DLT645_2007.default_settings, custom_blocks=(trips_and_energy,)
    )
    assert "trips_energy" in driver.blocks
    reading = Bus(Dlt645Responder(meter_state()).feed).run(driver.read(METER, "trips_energy"))
    assert (reading.energy_wh, reading.counters) == (1_234_560, (("overload_trips", 3),))


def test_block_refused_is_read_part_by_part():
    bus = Bus(Dlt645Responder(meter_state(), block_reads=False).feed)
    reading = bus.run(DLT645_2007.read(METER, "energy"))
    assert reading.energy_by_tariff_wh == (100_000, 400_000, 534_560, 200_000)
    # block refused, total + 4 tariffs, tariff 5 refused: the meter has four
    assert len(bus.requests) == 1 + 5 + 1
    status = bus.run(DLT645_2007.read(METER, "status"))
    assert status.status_words == (0,) * 7


@pytest.mark.parametrize("deliver", ["whole", "bytewise"])
def test_follow_up_frames(deliver):
    responder = Dlt645Responder(meter_state(), max_reply_data=10)
    bus = Bus(responder.feed, deliver=deliver)
    reading = bus.run(DLT645_2007.read(METER, "energy"))
    assert reading.energy_by_tariff_wh == (100_000, 400_000, 534_560, 200_000)
    first, *rest = [decode_frame(r) for r in bus.requests]
    assert first.control == 0x11
    assert [f.control for f in rest] == [0x12] * len(rest)
    assert [f.data[-1] for f in rest] == list(range(1, len(rest) + 1))  # sequence numbers


def test_unknown_block_and_bad_address():
    with pytest.raises(DriverUsageError, match="no block 'nope'"):
        next(DLT645_2007.read(METER, "nope"))
    with pytest.raises(DriverUsageError):
        next(DLT645_2007.read("12345678901Z"))


# --- the reply must be the addressed meter's ---------------------------------------------------


def test_other_meter_replying_first_is_never_taken():
    ours, theirs = Dlt645Responder(meter_state()), Dlt645Responder(meter_state(OTHER))

    def impostor(request: bytes) -> list[bytes]:
        # The other meter answers as if addressed (a misconfigured twin), before ours does.
        frame = decode_frame(request)
        return theirs.feed(encode_frame(Frame(OTHER, frame.control, frame.data)))

    bus = Bus(impostor, ours.feed)
    theirs.state.energy_mwh = 999_990_000
    assert bus.run(DLT645_2007.read(METER, "energy")).energy_wh == 1_234_560


def test_only_another_meter_replying_is_a_timeout():
    theirs = Dlt645Responder(meter_state(OTHER))

    def impostor(request: bytes) -> list[bytes]:
        frame = decode_frame(request)
        return theirs.feed(encode_frame(Frame(OTHER, frame.control, frame.data)))

    with pytest.raises(MeterTimeout) as caught:
        Bus(impostor).run(DLT645_2007.read(METER, "energy"))
    assert caught.value.address == METER
    assert caught.value.item == "forward_active_block"
    assert "1 frames for others" in str(caught.value)


def test_echo_and_late_reply_for_another_di_are_ignored():
    responder = Dlt645Responder(meter_state())
    late = responder.feed(encode_frame(read_request(METER, 0x02010100)))[0]

    def echoing_line(request: bytes) -> list[bytes]:
        return [request, late, *responder.feed(request)]  # RS-485 echo, then a stale reply

    reading = Bus(echoing_line).run(DLT645_2007.read(METER, "energy"))
    assert reading.energy_wh == 1_234_560


def test_no_reply_is_a_timeout_naming_meter_and_item():
    with pytest.raises(MeterTimeout, match=rf"meter {METER} \(forward_active_total\)"):
        Bus().run(DLT645_2007.read(METER, "basic"))


def test_bad_checksum_reply_is_a_checksum_error():
    responder = Dlt645Responder(meter_state())

    def corrupting(request: bytes) -> list[bytes]:
        return [r[:-2] + bytes(((r[-2] ^ 0xFF), 0x16)) for r in responder.feed(request)]

    with pytest.raises(ChecksumError) as caught:
        Bus(corrupting).run(DLT645_2007.read(METER, "energy"))
    assert (caught.value.address, caught.value.item) == (METER, "forward_active_block")


def test_error_reply_is_refused_with_reasons():
    with pytest.raises(MeterRefused) as caught:
        Bus(Dlt645Responder(meter_state()).feed).run(
            DLT645_2007.read_items(METER, [ITEMS_BY_NAME["voltage_b"]])
        )
    assert caught.value.reasons == ("no_such_data",)
    assert caught.value.code == 0x02
    assert (caught.value.address, caught.value.item) == (METER, "voltage_b")


# --- relay -------------------------------------------------------------------------------------


@DELIVERIES
def test_trip_and_close(deliver):
    state = meter_state()
    bus = Bus(Dlt645Responder(state).feed, deliver=deliver)
    until = dt.datetime(2025, 12, 31, 23, 59, 59)
    state.clock = dt.datetime(2025, 12, 1)
    assert bus.run(DLT645_2007.relay(METER, "trip", valid_until=until)) is RelayState.OPEN
    assert not state.relay_closed
    assert bus.requests[0] == b"\xfe" * 4 + TRIP  # the reference's trip frame
    assert decode_frame(bus.requests[1]).data == bytes.fromhex("03 05 00 04")  # status word 3
    assert bus.run(DLT645_2007.relay(METER, "close")) is RelayState.CLOSED
    assert state.relay_closed
    assert decode_frame(bus.requests[2]).data[8] == 0x1C  # direct close


def test_trip_refused_under_keep_power():
    state = meter_state(keep_power=True)
    with pytest.raises(MeterRefused) as caught:
        Bus(Dlt645Responder(state).feed).run(DLT645_2007.relay(METER, "trip"))
    assert (caught.value.address, caught.value.item) == (METER, "relay trip")
    assert state.relay_closed


def test_relay_acked_but_not_moved_is_not_confirmed():
    state = meter_state()
    responder = Dlt645Responder(state)

    def stuck_relay(request: bytes) -> list[bytes]:
        if decode_frame(request).control == 0x1C:
            return [RELAY_OK]  # acknowledges, relay welded shut
        return responder.feed(request)

    with pytest.raises(RelayNotConfirmed) as caught:
        Bus(stuck_relay).run(DLT645_2007.relay(METER, "trip"))
    assert (caught.value.address, caught.value.item) == (METER, "status_word_3")


def test_relay_wrong_password_and_expired_command():
    state = meter_state()
    with pytest.raises(MeterRefused) as caught:
        Bus(Dlt645Responder(state, password=0x123456).feed).run(DLT645_2007.relay(METER, "trip"))
    assert caught.value.reasons == ("unauthorised",)
    expired = dt.datetime(2020, 1, 1)
    with pytest.raises(MeterRefused):
        Bus(Dlt645Responder(state).feed).run(DLT645_2007.relay(METER, "trip", valid_until=expired))
    assert state.relay_closed


def test_1997_has_no_relay():
    with pytest.raises(DriverUsageError):
        next(DLT645_1997.relay(METER, "trip"))


# --- other functions ---------------------------------------------------------------------------


def test_read_address():
    bus = Bus(Dlt645Responder(meter_state()).feed)
    assert bus.run(DLT645_2007.read_address()) == METER
    assert bus.requests == [READ_ADDRESS]


def test_broadcast_time_reaches_every_meter_silently():
    states = [meter_state(), meter_state(OTHER)]
    responders = [Dlt645Responder(s) for s in states]
    replies: list[bytes] = []

    def listening(responder: Dlt645Responder) -> Peer:
        def peer(request: bytes) -> list[bytes]:
            replies.extend(responder.feed(request))
            return []

        return peer

    bus = Bus(*(listening(r) for r in responders))
    when = dt.datetime(2025, 6, 30, 12, 34, 56)
    conversation = DLT645_2007.broadcast_time(when)
    tx = next(conversation)
    assert not tx.expects_reply
    assert tx.request == BROADCAST_TIME
    assert bus.run(DLT645_2007.broadcast_time(when)) is None
    assert [s.clock for s in states] == [when, when]
    assert replies == []


def test_freeze_and_change_baud():
    responder = Dlt645Responder(meter_state())
    bus = Bus(responder.feed)
    assert bus.run(DLT645_2007.freeze()) is None  # broadcast: no reply awaited
    assert bus.run(DLT645_2007.freeze(METER, hour=0, minute=0)) is None
    assert responder.freezes == 2
    new = bus.run(DLT645_2007.change_baud(METER, 9600))
    assert new == SerialSettings(baudrate=9600, parity="E")
    assert responder.baudrate == 9600


def test_write_clock_to_the_simulated_meter():
    state = meter_state()
    responder = Dlt645Responder(state, password=0x123456)
    time = write_request(METER, 0x04000102, bytes.fromhex("00 00 09"), password=0x123456)
    assert decode_frame(responder.feed(encode_frame(time))[0]).control == 0x94
    assert state.clock == dt.datetime(2026, 11, 1, 9, 0, 0)
    wrong = write_request(METER, 0x04000102, bytes.fromhex("00 00 09"), password=1)
    assert decode_frame(responder.feed(encode_frame(wrong))[0]).data == b"\x04"


def test_responder_ignores_what_is_not_for_it():
    responder = Dlt645Responder(meter_state())
    other = encode_frame(read_request(OTHER, 0x00010000))
    reply_of_other = encode_frame(Frame(OTHER, 0x91, bytes.fromhex("00 00 01 00 00 00 00 00")))
    wildcard_read = encode_frame(read_request("AAAAAAAAAAAA", 0x00010000))
    assert responder.feed(other + reply_of_other + wildcard_read + b"\x00\x68\x16") == []
    by_low_digits = encode_frame(read_request("AAAAAA789012", 0x00010000))
    assert len(responder.feed(by_low_digits)) == 1


# --- timing and the 1997 driver ----------------------------------------------------------------


def test_reply_timeout_follows_line_settings():
    tx = next(DLT645_2007.read(METER, "basic"))
    byte_time = 11 / 2400
    assert tx.reply_timeout == pytest.approx(0.5 + (4 + 12 + 8) * byte_time)
    fast = DLT645_2007.with_settings(SerialSettings(baudrate=9600))
    assert next(fast.read(METER, "basic")).reply_timeout < tx.reply_timeout
    assert DLT645_2007.default_settings == SerialSettings(2400, "E", 8, 1)
    assert DLT645_1997.default_settings == SerialSettings(1200, "E", 8, 1)
    assert (DLT645_2007.name, DLT645_1997.name) == ("dlt645", "dlt645-1997")


@pytest.mark.parametrize("deliver", ["whole", "bytewise", "noisy"])
def test_1997_blocks(deliver):
    state = meter_state(protocol="dlt645-1997", current_a=5.12, power_w=1127.5)
    responder = Dlt645Responder(state, version=1997, max_reply_data=8)
    bus = Bus(responder.feed, deliver=deliver)
    basic = bus.run(DLT645_1997.read(METER, "basic"))
    assert (basic.energy_wh, basic.voltage_v, basic.current_a, basic.power_w) == (
        1_234_560,
        220.0,  # 1997 voltage is whole volts
        5.12,
        1127.5,
    )
    assert decode_frame(bus.requests[0]).data == bytes.fromhex("10 90")  # DI 9010, DI0 first
    energy = bus.run(DLT645_1997.read(METER, "energy"))  # split into follow-ups (02)
    assert energy.energy_by_tariff_wh == (100_000, 400_000, 534_560, 200_000)
    assert bus.run(DLT645_1997.read(METER, "clock")).meter_time == state.clock
    assert DLT645_1997.blocks == {"basic", "energy", "power", "clock"}
    with pytest.raises(DriverUsageError):
        next(DLT645_1997.read_address())


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 999_999_99 * 10_000), st.lists(st.integers(0, 10**11), max_size=4))
def test_energy_is_integer_wh_at_register_resolution(energy_mwh, tariffs):
    state = meter_state(energy_mwh=energy_mwh, tariff_mwh=tariffs)
    reading = Bus(Dlt645Responder(state).feed).run(DLT645_2007.read(METER, "energy"))
    assert reading.energy_wh == energy_mwh // 10_000 * 10
    assert reading.energy_by_tariff_wh == tuple(t // 10_000 % 10**8 * 10 for t in tariffs)


# --- fuzzing both sides ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(0x00, 0x1F), st.binary(max_size=40), st.binary(max_size=30))
def test_responder_answers_any_request_without_raising(function, data, noise):
    responder = Dlt645Responder(meter_state())
    request = encode_frame(Frame(METER, function, data))
    for reply in responder.feed(noise + request):
        frame = decode_frame(reply)
        assert frame.is_reply and frame.address == METER


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120), st.sampled_from(["basic", "energy", "status", "clock"]))
def test_transaction_takes_any_bytes_then_returns_a_frame_or_our_error(data, block):
    conversation = DLT645_2007.read(METER, block)
    tx = next(conversation)
    tx.feed(data)
    try:
        conversation.send(tx)
    except StopIteration:
        pass  # a single-row block that decoded: fine
    except MeterError:
        pass
