"""The simulated RS-485 line: raw bytes, wire timing, collisions, faults, clean shutdown.

Driven through real ptys with pyserial on the client side, as a concentrator would open them.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Iterator

import pytest
import serial

from demo.sim.pty_bus import LineFaults, PtyBus
from edge.drivers.base import SerialSettings
from edge.drivers.dlt645 import Decoder, Frame, encode_frame
from tests.edge.drivers.tiny_meter import DI_ENERGY, EchoAll, TinyMeter

FAST = SerialSettings(baudrate=115200, parity="N")
A, B = "000000000001", "000000000002"


def open_client(bus: PtyBus) -> serial.Serial:
    # A pty has no parity bit (Linux drops PARENB), so the client opens it 8N1.
    return serial.Serial(bus.port, bus.settings.baudrate, parity="N", timeout=0)


def read_for(client: serial.Serial, seconds: float, *, until: int | None = None) -> bytes:
    """Everything that arrives within `seconds` (or once `until` bytes are in)."""
    deadline = time.monotonic() + seconds
    data = bytearray()
    while (remaining := deadline - time.monotonic()) > 0:
        if until is not None and len(data) >= until:
            break
        if select.select([client.fileno()], [], [], remaining)[0]:
            data += client.read(client.in_waiting or 1)
    return bytes(data)


def read_request(address: str) -> bytes:
    return encode_frame(Frame(address, 0x11, DI_ENERGY))


@pytest.fixture
def fast_bus() -> Iterator[PtyBus]:
    with PtyBus(FAST, wire_timing=False) as bus:
        yield bus


def test_every_byte_value_passes_unchanged(fast_bus: PtyBus) -> None:
    everything = bytes(range(256))
    meter = EchoAll(reply=everything[::-1])
    fast_bus.attach(meter, name="echo")
    with open_client(fast_bus) as client:
        client.write(everything)
        got = read_for(client, 2.0, until=256)
    assert bytes(meter.heard) == everything  # no CR/LF mangling, no XON/XOFF eaten, no echo
    assert got == everything[::-1]


def test_port_is_a_pty_path(fast_bus: PtyBus) -> None:
    assert fast_bus.port.startswith("/dev/pts/")
    assert os.path.exists(fast_bus.port)


@pytest.mark.parametrize(
    ("settings", "bits"),
    [(SerialSettings(2400, "E"), 11), (SerialSettings(9600, "N"), 10)],
)
def test_byte_time_follows_baud_and_parity(settings: SerialSettings, bits: int) -> None:
    with PtyBus(settings) as bus:
        assert bus.byte_time == pytest.approx(bits / settings.baudrate)
    with PtyBus(settings, wire_timing=False) as bus:
        assert bus.byte_time == 0.0


def test_round_trip_takes_real_wire_time_at_2400_8e1() -> None:
    """Request + turnaround + reply at 4.58 ms a byte: never faster than the wire allows."""
    settings = SerialSettings(2400, "E")
    turnaround = 0.025
    with PtyBus(settings, turnaround=turnaround) as bus:
        bus.attach(TinyMeter(A), name=A)
        request = read_request(A)  # 20 bytes with the FE preamble
        reply_length = len(encode_frame(Frame(A, 0x91, DI_ENERGY + b"\0\0\0\0"), preamble=0))
        with open_client(bus) as client:
            started = time.monotonic()
            client.write(request)
            first = read_for(client, 1.0, until=1)
            first_byte_at = time.monotonic() - started
            rest = read_for(client, 1.0, until=reply_length - len(first))
            elapsed = time.monotonic() - started
    floor = (len(request) + reply_length) * settings.byte_time + turnaround
    assert len(first + rest) == reply_length
    # The first byte arrives once the request, the turnaround and the byte itself took place.
    assert first_byte_at >= (len(request) + 1) * settings.byte_time + turnaround - 0.002
    assert floor - 0.002 <= elapsed < floor + 0.040


def test_overlapping_replies_collide_into_garbage(fast_bus: PtyBus) -> None:
    fast_bus.attach(TinyMeter(A), name=A)
    fast_bus.attach(TinyMeter(B), name=B)
    with open_client(fast_bus) as client:
        client.write(read_request("AAAAAAAAAAAA"))  # both meters match the wildcard
        got = read_for(client, 0.3)
    decoder = Decoder()
    decoder.feed(got)
    frames = decoder.frames()
    assert fast_bus.stats.collisions == 1
    assert fast_bus.stats.replies == 2
    # One garbled transmission, not two clean replies: the addresses differ in a bit, so
    # either the checksum fails or the frame is one meter's, never both meters' frames.
    assert len(got) == 20  # 12 bytes of frame + DI + 4 value bytes
    assert len(frames) <= 1


def test_replies_at_different_turnarounds_do_not_collide(fast_bus: PtyBus) -> None:
    fast_bus.attach(TinyMeter(A), name=A, turnaround=0.0)
    fast_bus.attach(TinyMeter(B), name=B, turnaround=0.05)
    with open_client(fast_bus) as client:
        client.write(read_request("AAAAAAAAAAAA"))
        got = read_for(client, 0.3)
    decoder = Decoder()
    decoder.feed(got)
    assert [f.address for f in decoder.frames()] == [A, B]
    assert fast_bus.stats.collisions == 0


def test_every_meter_hears_every_request(fast_bus: PtyBus) -> None:
    meters = [TinyMeter(A), TinyMeter(B)]
    for m in meters:
        fast_bus.attach(m, name=m.address)
    with open_client(fast_bus) as client:
        client.write(read_request(A))
        read_for(client, 0.2)
    assert [len(m.heard) for m in meters] == [1, 1]  # B heard A's request and kept quiet


@pytest.mark.parametrize(
    ("faults", "counter"),
    [
        (LineFaults(loss=1.0), "lost"),
        (LineFaults(corrupt=1.0), "corrupted"),
        (LineFaults(noise=1.0), "noise_bursts"),
    ],
)
def test_faults(faults: LineFaults, counter: str) -> None:
    with PtyBus(FAST, wire_timing=False, faults=faults) as bus:
        bus.attach(TinyMeter(A), name=A)
        with open_client(bus) as client:
            client.write(read_request(A))
            got = read_for(client, 0.2)
        assert getattr(bus.stats, counter) == 1
    decoder = Decoder()
    decoder.feed(got)
    frames = decoder.frames()
    if counter == "lost":
        assert got == b""
    elif counter == "corrupted":
        # Wherever the bit flipped (header, address, L, data, checksum, end marker), the
        # frame no longer decodes; nothing was added or lost.
        assert frames == [] and len(got) == 20
    else:
        assert [f.address for f in frames] == [A]  # stray bytes first, then the clean reply
        assert len(got) > 20


@pytest.mark.slow  # three runs of twenty reads waiting out lost replies
def test_faults_are_reproducible_with_a_seed() -> None:
    def run(seed: int) -> tuple[int, int]:
        with PtyBus(FAST, wire_timing=False, faults=LineFaults(loss=0.5, seed=seed)) as bus:
            bus.attach(TinyMeter(A), name=A)
            with open_client(bus) as client:
                for _ in range(20):
                    client.write(read_request(A))
                    read_for(client, 0.02)
            return bus.stats.lost, bus.stats.replies

    assert run(7) == run(7)
    assert 0 < run(7)[0] < 20


def test_injected_bytes_reach_the_client(fast_bus: PtyBus) -> None:
    with open_client(fast_bus) as client:
        fast_bus.inject(b"\x01\x02\x03")
        assert read_for(client, 1.0, until=3) == b"\x01\x02\x03"


def test_periodic_callbacks_run_on_the_bus_thread() -> None:
    seen: list[str] = []
    done = threading.Event()

    def tick() -> None:
        seen.append(threading.current_thread().name)
        if len(seen) >= 2:
            done.set()

    with PtyBus(FAST, name="ticking-bus") as bus:
        bus.every(0.01, tick)
        assert done.wait(2.0)
    assert set(seen) == {"ticking-bus"}


def test_stop_closes_descriptors_and_thread() -> None:
    fds_before = set(os.listdir("/proc/self/fd"))
    threads_before = threading.active_count()
    bus = PtyBus(FAST).start()
    bus.attach(TinyMeter(A), name=A)
    with open_client(bus) as client:
        client.write(read_request(A))
        read_for(client, 0.1)
    bus.stop()
    bus.stop()  # twice is fine
    assert threading.active_count() == threads_before
    assert set(os.listdir("/proc/self/fd")) == fds_before


def test_a_client_may_reopen_the_port(fast_bus: PtyBus) -> None:
    fast_bus.attach(TinyMeter(A), name=A)
    for _ in range(3):
        with open_client(fast_bus) as client:
            client.write(read_request(A))
            assert len(read_for(client, 1.0, until=20)) == 20
