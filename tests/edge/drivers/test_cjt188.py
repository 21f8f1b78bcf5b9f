"""CJ/T 188-2004: reference frames, decoder fed whole and byte by byte, driver vs. sim meter."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demo.sim.cjt188_responder import Cjt188Responder
from demo.sim.state import MeterState
from edge.drivers.base import MeterDriver, SerialSettings
from edge.drivers.cjt188 import (
    CHINA_STANDARD_TIME,
    CJT188,
    Cjt188Transaction,
    Decoder,
    Frame,
    MeterOptions,
    decode_volume_l,
    encode,
    metering_reading,
    read_address_request,
    read_request,
    valve_request,
)
from edge.drivers.cjt188_items import VALVE as VALVE_ITEM
from edge.drivers.cjt188_items import Control, ValveCommand
from edge.drivers.errors import (
    ChecksumError,
    DriverUsageError,
    FrameError,
    MeterError,
    MeterRefused,
    MeterTimeout,
    PeerError,
    RelayNotConfirmed,
)
from edge.drivers.reading import ValveState
from tests.edge.drivers.tiny_meter import drive as run

H = bytes.fromhex

METER = "78330011223344"
# The CJ/T 188 reference frames (docs/architecture.md §11), byte for byte.
READ_901F = "68 10 44 33 22 11 00 33 78 01 03 1F 90 00 80 16"
REPLY_901F = (
    "68 10 44 33 22 11 00 33 78 81 16 1F 90 00 00 77 66 55 2C 00 77 66 55 2C"
    " 31 01 22 11 05 15 20 21 84 13 16"
)
REPLY_901F_BAD_COPY = REPLY_901F[:-5] + "08 16"  # the published copy with checksum 08
VALVE_OPEN = "68 10 01 13 12 19 00 00 00 04 04 A0 17 01 55 CC 16"


def decode_all(data: bytes, *, bytewise: bool) -> list[Frame | type[MeterError]]:
    """Every event the decoder produces: frames, and the class of each error raised."""
    decoder = Decoder()
    events: list[Frame | type[MeterError]] = []
    chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for chunk in chunks:
        decoder.feed(chunk)
        while True:
            try:
                frame = decoder.next_frame()
            except MeterError as exc:
                events.append(type(exc))
                continue
            if frame is None:
                break
            events.append(frame)
    return events


FEEDING = pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])

# --- reference frames --------------------------------------------------------------------


def test_read_901f_request_matches_reference() -> None:
    assert encode(read_request(METER, ser=0)) == H(READ_901F)


def test_driver_sends_the_reference_request_after_its_preamble() -> None:
    tx = next(CJT188().read(METER))
    assert tx.request == H("FE FE " + READ_901F)
    assert tx.expects_reply


def test_valve_open_matches_reference() -> None:
    frame = valve_request("00000019121301", ValveCommand.OPEN, ser=1, di_order="901F")
    assert encode(frame) == H(VALVE_OPEN)


def test_read_address_request_uses_the_wildcard() -> None:
    assert encode(read_address_request()) == H("68 AA AA AA AA AA AA AA AA 03 03 0A 81 00 49 16")


@FEEDING
def test_reference_reply_decodes(bytewise: bool) -> None:
    (frame,) = decode_all(H("FE FE FE " + REPLY_901F), bytewise=bytewise)
    assert isinstance(frame, Frame)
    assert frame.address == METER
    assert frame.control == 0x81
    assert frame.has_di(0x901F)
    reading = metering_reading(frame)
    assert reading.volume_l == 556_677_000  # 556677.00 m³
    assert reading.meter_time == dt.datetime(2015, 5, 11, 22, 1, 31, tzinfo=CHINA_STANDARD_TIME)
    assert reading.valve is ValveState.CLOSED  # status 21: D0..D1 = 01
    assert reading.status_words == (0x8421,)
    assert dict(reading.counters) == {"settlement_volume_l": 556_677_000}


@FEEDING
def test_published_copy_with_checksum_08_is_refused(bytewise: bool) -> None:
    assert decode_all(H(REPLY_901F_BAD_COPY), bytewise=bytewise) == [ChecksumError]


# --- the decoder, fed whole and byte by byte ---------------------------------------------

GOOD = H(REPLY_901F)
VALVE = H(VALVE_OPEN)
DECODER_ROWS: list[tuple[str, bytes, list[str]]] = [
    ("clean", GOOD, ["frame"]),
    ("preamble", H("FE FE FE FE") + GOOD, ["frame"]),
    ("noise before", H("00 13 FF 55") + GOOD, ["frame"]),
    ("noise after", GOOD + H("00 FF"), ["frame"]),
    ("two frames", GOOD + VALVE, ["frame", "frame"]),
    # A stray 68 whose length byte runs past the real frame: found garbage once the real
    # frame behind it is complete.
    ("stray 68 with long length", H("68 00 00 00 00 00 00 00 00 00 FF") + GOOD, ["error", "frame"]),
    # A stray 68 with a short length: complete, wrong, dropped; the hunt goes on.
    (
        "stray 68 with short length",
        H("68 10 00 00 00 00 00 00 00 01 03 00 00") + GOOD,
        ["error", "frame"],
    ),
    ("bad checksum then good", GOOD[:-2] + H("00 16") + GOOD, ["error", "frame"]),
    ("bad terminator then good", GOOD[:-1] + H("17") + GOOD, ["error", "frame"]),
    ("truncated", GOOD[:20], []),
    ("no DI", H("68 10 44 33 22 11 00 33 78 81 00 A0 16"), ["error"]),
    ("only noise", H("00 01 02 FE FE 16"), []),
]


@FEEDING
@pytest.mark.parametrize(
    ("name", "data", "expected"), DECODER_ROWS, ids=[r[0] for r in DECODER_ROWS]
)
def test_decoder_rows(name: str, data: bytes, expected: list[str], bytewise: bool) -> None:
    events = decode_all(data, bytewise=bytewise)
    assert ["frame" if isinstance(e, Frame) else "error" for e in events] == expected


def test_decoder_finds_the_frame_after_any_split() -> None:
    data = H("FE 00 68 FE") + GOOD
    for cut in range(len(data) + 1):
        decoder = Decoder()
        frames = []
        for part in (data[:cut], data[cut:]):
            decoder.feed(part)
            while True:
                try:
                    frame = decoder.next_frame()
                except FrameError:
                    continue
                if frame is None:
                    break
                frames.append(frame)
        assert [f.address for f in frames] == [METER], cut


frames = st.builds(
    Frame,
    meter_type=st.sampled_from([0x10, 0x11, 0x20, 0x30, 0xAA]),
    address=st.text("0123456789", min_size=14, max_size=14),
    control=st.integers(0, 255),
    di=st.binary(min_size=2, max_size=2),
    ser=st.integers(0, 255),
    data=st.binary(max_size=60),
)
noise_without_start = st.binary(max_size=20).map(lambda b: b.replace(b"\x68", b""))


@settings(max_examples=200, deadline=None)
@given(frames, st.integers(0, 4), noise_without_start, st.booleans())
def test_round_trip_behind_preamble_and_noise(
    frame: Frame, preamble: int, noise: bytes, bytewise: bool
) -> None:
    data = noise + b"\xfe" * preamble + encode(frame)
    assert decode_all(data, bytewise=bytewise) == [frame]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(1, 9))
def test_any_bytes_decode_or_raise_meter_error(data: bytes, chunk: int) -> None:
    decoder = Decoder()
    for i in range(0, len(data), chunk):
        decoder.feed(data[i : i + chunk])
        for _ in range(len(data) + 1):  # every error consumes at least one byte
            try:
                if decoder.next_frame() is None:
                    break
            except MeterError:
                continue


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_transaction_and_responder_survive_any_bytes(data: bytes) -> None:
    tx = next(CJT188().read(METER))
    tx.feed(data)
    try:
        frame = tx.result()
        metering_reading(frame)
    except MeterError:
        pass
    Cjt188Responder(MeterState(address=METER, protocol="cjt188")).feed(data)


# --- values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "litres"),
    [
        ("00 77 66 55 2C", 556_677_000),
        ("99 99 99 99 2C", 999_999_990),
        ("45 23 01 00 29", 123),  # 123.45 L, rounded down
        ("00 00 00 00 2C", 0),
    ],
)
def test_volume_to_integer_litres(data: str, litres: int) -> None:
    assert decode_volume_l(H(data)) == litres


@pytest.mark.parametrize(
    ("data", "error"),
    [("00 7A 66 55 2C", FrameError), ("00 77 66 55 05", PeerError), ("00 77 66 55 FF", PeerError)],
    ids=["not BCD", "kWh is no volume", "unknown unit"],
)
def test_bad_volume_is_a_peer_error(data: str, error: type[PeerError]) -> None:
    with pytest.raises(error):
        decode_volume_l(H(data))


def test_impossible_meter_time_is_a_frame_error() -> None:
    bad = GOOD.replace(H("05 15 20"), H("13 15 20"))  # month 13
    bad = bad[:-2] + bytes([sum(bad[:-2]) & 0xFF, 0x16])
    (frame,) = decode_all(bad, bytewise=False)
    assert isinstance(frame, Frame)
    with pytest.raises(FrameError) as caught:
        metering_reading(frame)
    assert caught.value.address == METER


# --- transactions ------------------------------------------------------------------------


def reply_frame(address: str = METER, control: int = 0x81, data: bytes | None = None) -> bytes:
    body = H(REPLY_901F)[14:-2] if data is None else data
    return encode(Frame(0x10, address, control, H("1F 90"), 0, body))


TX_ROWS: list[tuple[str, bytes, type[MeterError] | None]] = [
    ("clean", H("FE FE") + GOOD, None),
    ("another meter first", reply_frame("00000000000001") + GOOD, None),
    ("own echo first", H("FE FE " + READ_901F) + GOOD, None),
    ("reply with DI 90 1F", encode(Frame(0x10, METER, 0x81, H("90 1F"), 0, GOOD[14:-2])), None),
    ("bad checksum only", H(REPLY_901F_BAD_COPY), ChecksumError),
    ("error reply", reply_frame(control=0xC1, data=H("01 00")), MeterRefused),
    ("another meter only", reply_frame("00000000000001"), MeterTimeout),
    ("silence", b"", MeterTimeout),
]


@FEEDING
@pytest.mark.parametrize(("name", "data", "error"), TX_ROWS, ids=[r[0] for r in TX_ROWS])
def test_read_transaction_rows(
    name: str, data: bytes, error: type[MeterError] | None, bytewise: bool
) -> None:
    conversation = CJT188().read(METER)
    tx = next(conversation)
    for chunk in [data[i : i + 1] for i in range(len(data))] if bytewise else [data]:
        tx.feed(chunk)
    if error is None:
        with pytest.raises(StopIteration) as finished:
            conversation.send(tx)
        assert finished.value.value.volume_l == 556_677_000
    else:
        with pytest.raises(error):
            conversation.send(tx)


def test_reply_timeout_from_baud_rate() -> None:
    slow = next(CJT188().read(METER)).reply_timeout
    fast = next(CJT188(SerialSettings(9600, "E")).read(METER)).reply_timeout
    assert 0.5 < fast < slow < 0.5 + 50 * 11 / 2400


# --- driver against the simulated meter --------------------------------------------------


def water_meter(**kw: Any) -> MeterState:
    return MeterState(address=METER, protocol="cjt188", **kw)


@pytest.mark.parametrize("send_order", ["1F90", "901F"])
@pytest.mark.parametrize("reply_order", ["1F90", "901F"])
def test_read_in_any_di_order(send_order: Any, reply_order: Any) -> None:
    state = water_meter(volume_ml=1_234_567_890, clock=dt.datetime(2026, 3, 4, 5, 6, 7))
    driver = CJT188(options=MeterOptions(di_order=send_order))
    reading = run(driver.read(METER), Cjt188Responder(state, di_order=reply_order))
    assert reading.volume_l == 1_234_560  # 1234.56 m³: the meter shows 0.01 m³ steps
    assert reading.valve is ValveState.OPEN
    assert reading.meter_time == dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=CHINA_STANDARD_TIME)


def test_valve_trip_and_close_are_confirmed() -> None:
    state = water_meter()
    meter = Cjt188Responder(state, di_order="901F")
    driver = CJT188()
    assert run(driver.relay(METER, "trip"), meter) is ValveState.CLOSED
    assert state.valve_open is False
    assert run(driver.read(METER), meter).valve is ValveState.CLOSED
    assert run(driver.relay(METER, "close"), meter) is ValveState.OPEN
    assert state.valve_open is True


def test_valve_control_code_is_a_per_meter_setting() -> None:
    state = water_meter()
    meter = Cjt188Responder(state, valve_control=0x2A)
    plain = CJT188()
    with pytest.raises(MeterRefused):  # this make knows no write of A017 with C=04
        run(plain.relay(METER, "trip"), Cjt188Responder(water_meter(), valve_control=0x2A))
    driver = CJT188(per_meter={METER: MeterOptions(valve_control=0x2A)})
    assert run(driver.relay(METER, "trip"), meter) is ValveState.CLOSED
    assert next(driver.relay(METER, "trip")).request[2 + 9] == 0x2A


class StuckValve:
    """A meter whose valve is seized: it acknowledges, and stays open."""

    def __init__(self, meter: Cjt188Responder) -> None:
        self.meter = meter

    def feed(self, data: bytes) -> list[bytes]:
        replies = self.meter.feed(data)
        self.meter.state.valve_open = True
        return replies


def test_valve_not_confirmed() -> None:
    with pytest.raises(RelayNotConfirmed):
        run(CJT188().relay(METER, "trip"), StuckValve(Cjt188Responder(water_meter())))


def test_read_address_with_the_wildcard() -> None:
    assert run(CJT188().read_address(), Cjt188Responder(water_meter())) == METER


def test_only_the_addressed_meter_answers() -> None:
    one = Cjt188Responder(water_meter(volume_ml=10_000_000))
    two = Cjt188Responder(MeterState(address="00000000000002", protocol="cjt188"))
    assert run(CJT188().read(METER), two, one).volume_l == 10_000
    with pytest.raises(MeterTimeout):
        run(CJT188().read("00000000000003"), one, two)


def test_unknown_di_gets_an_error_reply() -> None:
    frame = Frame(0x10, METER, Control.READ, H("20 90"), 7)
    (reply,) = Cjt188Responder(water_meter()).feed(encode(frame))
    (decoded,) = decode_all(reply, bytewise=False)
    assert isinstance(decoded, Frame)
    assert decoded.control == 0xC1 and decoded.is_error and decoded.ser == 7


def test_bad_valve_command_is_refused() -> None:
    state = water_meter()
    frame = valve_request(METER, ValveCommand.HALF_OPEN)
    tx = Cjt188Transaction(frame, item=VALVE_ITEM, settings=SerialSettings(), preamble=b"")
    for reply in Cjt188Responder(state).feed(tx.request):
        tx.feed(reply)
    with pytest.raises(MeterRefused) as caught:
        tx.result()
    assert caught.value.code == 0x00  # status byte: valve open, battery fine
    assert state.valve_open is True


def test_usage_errors() -> None:
    driver = CJT188()
    for bad in ("7833001122334", "7833001122334X", ""):
        with pytest.raises(DriverUsageError):
            driver.read(bad)
    with pytest.raises(DriverUsageError, match="no block"):
        driver.read(METER, "energy")
    with pytest.raises(DriverUsageError):
        driver.relay(METER, "open")  # type: ignore[arg-type]


def test_driver_satisfies_the_protocol() -> None:
    driver: MeterDriver = CJT188()
    assert driver.name == "cjt188"
    assert driver.default_settings == SerialSettings(2400, "E", 8, 1)
    assert "basic" in driver.blocks
