"""The Modbus RTU reply hunt on a noisy line: any bytes, byte by byte and whole.

`RtuStream` judges each offset once as its bytes arrive. These tests hold it to what the
rescanning hunt it replaced found (kept below as the oracle, fed the whole stream at once),
to "any bytes: a reply or our error" through a transaction, to finding every real frame among
noise before and between frames, and to a bounded buffer on endless noise.
"""

from __future__ import annotations

import contextlib
import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU
from pymodbus.pdu.register_message import ReadInputRegistersResponse

from edge.drivers.errors import MeterError
from edge.drivers.modbus_meters import SDM120, ModbusTransaction, RtuStream, build_frame

H = bytes.fromhex
GOOD = H("01 04 04 42 F6 E9 79 81 BC")  # unit 1: 123.456 kWh
EXCEPTION = H("01 84 02 C2 C1")
_PARSE_ERRORS = (ModbusException, IndexError, KeyError, ValueError, struct.error)


def reply_frame(unit: int, words: list[int]) -> bytes:
    return build_frame(ReadInputRegistersResponse(registers=words, dev_id=unit))


def oracle_frames(data: bytes, *, is_server: bool = False) -> list[bytes]:
    """The frames the previous, rescanning hunt found in `data` fed at once (its algorithm:
    every offset in order, the first complete CRC-valid candidate wins, skip one byte after a
    CRC failure)."""
    decoder = DecodePDU(is_server)
    framer = FramerRTU(decoder)
    buf, found = bytearray(data), []
    while True:
        offset, frame = 0, None
        while offset <= len(buf) - 4:
            window = bytes(buf[offset : offset + 16])
            size: int | None
            try:
                pdu_class = decoder.lookupPduClass(window)
                size = None if pdu_class is None else pdu_class.calculateRtuFrameSize(window)
            except _PARSE_ERRORS:
                size = None
            if not size or size < 4 or offset + size > len(buf):
                offset += 1
                continue
            raw = bytes(buf[offset : offset + size])
            if not framer.decode(raw)[3]:
                offset += 1
                continue
            frame = raw
            del buf[: offset + size]
            break
        if frame is None:
            return found
        found.append(frame)


def stream_frames(data: bytes, chunk: int, *, is_server: bool = False) -> list[bytes]:
    stream, found = RtuStream(is_server=is_server), []
    for i in range(0, len(data), chunk):
        stream.feed(data[i : i + chunk])
        while (frame := stream.next_frame()) is not None:
            found.append(frame.raw)
    return found


noise = st.binary(max_size=60)
real = st.sampled_from(
    [GOOD, EXCEPTION, reply_frame(2, [1, 2, 3]), reply_frame(1, list(range(40)))]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(noise, real), max_size=4), noise, st.booleans())
def test_same_frames_as_the_rescanning_hunt(
    parts: list[tuple[bytes, bytes]], tail: bytes, is_server: bool
) -> None:
    data = b"".join(n + f for n, f in parts) + tail
    assert stream_frames(data, len(data) or 1, is_server=is_server) == oracle_frames(
        data, is_server=is_server
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(noise, real), min_size=1, max_size=4), noise, st.integers(1, 9))
def test_every_frame_is_found_behind_and_between_noise(
    parts: list[tuple[bytes, bytes]], tail: bytes, chunk: int
) -> None:
    data = b"".join(n + f for n, f in parts) + tail
    wanted = [f for _n, f in parts]
    for size in (1, chunk, len(data)):
        found = stream_frames(data, size)
        spurious = [f for f in found if f not in wanted]
        if not spurious:  # noise that is itself a CRC-valid frame may take a real one's bytes
            rest = iter(found)
            assert all(f in rest for f in wanted), (size, found)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(1, 9))
def test_any_bytes_fed_byte_by_byte_or_whole_give_a_reply_or_our_error(
    data: bytes, chunk: int
) -> None:
    outcomes = []
    for size in (1, chunk, max(len(data), 1)):
        tx: ModbusTransaction = next(SDM120().read("1", "energy"))
        for i in range(0, len(data), size):
            tx.feed(data[i : i + size])
        try:
            outcomes.append(("reply", list(tx.result().registers)))
        except MeterError as exc:
            outcomes.append(("error", type(exc).__name__))
    assert all(kind in ("reply", "error") for kind, _ in outcomes)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=40), st.booleans())
def test_a_reply_after_noise_is_the_reply(before: bytes, bytewise: bool) -> None:
    tx: ModbusTransaction = next(SDM120().read("1", "energy"))
    data = before + GOOD
    for i in range(0, len(data), 1 if bytewise else len(data)):
        tx.feed(data[i : i + (1 if bytewise else len(data))])
    assert tx.done()
    if 0x01 not in before:
        assert list(tx.result().registers) == [0x42F6, 0xE979]
    else:
        with contextlib.suppress(MeterError):
            tx.result()


def test_endless_noise_keeps_the_buffer_bounded_and_the_reply_found() -> None:
    rng = random.Random(12)
    stream = RtuStream(is_server=False)
    most = 0
    for _ in range(2_000):
        stream.feed(rng.randbytes(rng.randrange(1, 33)))
        while stream.next_frame() is not None:
            pass
        most = max(most, stream.buffered)
    assert most <= 4 * FramerRTU.MAX_SIZE
    stream.feed(GOOD)
    frames = []
    while (frame := stream.next_frame()) is not None:
        frames.append(frame.raw)
    assert GOOD in frames


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(noise, real), max_size=4), noise, st.integers(1, 9))
def test_a_stream_for_some_units_finds_their_frames(
    parts: list[tuple[bytes, bytes]], tail: bytes, chunk: int
) -> None:
    data = b"".join(n + f for n, f in parts) + tail
    every = stream_frames(data, len(data) or 1)
    if any(f not in [r for _n, r in parts] for f in every):
        return  # noise held a CRC-valid frame: which bytes it takes differs, by design
    for size in (1, chunk, len(data) or 1):
        stream, found = RtuStream(is_server=False, units=(1,)), []
        for i in range(0, len(data), size):
            stream.feed(data[i : i + size])
            while (frame := stream.next_frame()) is not None:
                found.append(frame.raw)
        assert found == [f for f in every if f[0] == 1]
