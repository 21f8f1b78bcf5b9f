"""The RS-485 bus worker against simulated meters on real ptys: replies, deadlines, retries,
statistics, serial access and clear errors. No mocks: the line is a `PtyBus`, the meters are
the project's DL/T 645 responders (or a tiny one where the line itself is under test).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from demo.sim.dlt645_responder import Dlt645Responder
from demo.sim.pty_bus import LineFaults, PtyBus
from demo.sim.state import MeterState
from edge.drivers.base import SerialSettings
from edge.drivers.bus import SerialBus
from edge.drivers.dlt645_meter import DLT645_2007
from edge.drivers.errors import ChecksumError, MeterTimeout, PortError
from tests.edge.drivers.tiny_meter import TinyMeter, tiny_read

FAST = SerialSettings(baudrate=115200, parity="E")
METERS = ("202611000101", "202611000102", "202611000103")
DRIVER = DLT645_2007.with_settings(FAST)


def dlt645_meter(address: str, energy_wh: int) -> tuple[MeterState, Dlt645Responder]:
    state = MeterState(address=address, protocol="dlt645", energy_mwh=energy_wh * 1000)
    state.voltage_v, state.current_a, state.power_w = 221.3, 4.5, 980.0
    return state, Dlt645Responder(state)


@pytest.fixture
def line() -> Iterator[tuple[PtyBus, list[MeterState]]]:
    with PtyBus(FAST, wire_timing=False) as pty:
        states = []
        for i, address in enumerate(METERS):
            state, responder = dlt645_meter(address, 1000 * (i + 1))
            pty.attach(responder, name=address)
            states.append(state)
        yield pty, states


def test_reads_every_meter_with_the_real_driver(line: tuple[PtyBus, list[MeterState]]) -> None:
    pty, states = line
    with SerialBus(pty.port, FAST) as bus:
        readings = [bus.run(DRIVER.read(s.address, "basic"), address=s.address) for s in states]
    assert [r.address for r in readings] == list(METERS)
    assert [r.energy_wh for r in readings] == [1000, 2000, 3000]
    assert readings[0].voltage_v == pytest.approx(221.3)
    assert readings[0].power_w == pytest.approx(980.0)
    assert bus.stats.total.failures == 0
    assert bus.stats.total.replies == bus.stats.total.requests > len(METERS)


def test_relay_trip_is_confirmed_by_read_back(line: tuple[PtyBus, list[MeterState]]) -> None:
    pty, states = line
    with SerialBus(pty.port, FAST) as bus:
        state = bus.run(DRIVER.relay(METERS[1], "trip"), address=METERS[1])
    assert state.value == "open"
    assert states[1].relay_closed is False
    assert states[0].relay_closed is True


def test_a_reply_from_another_meter_is_never_taken() -> None:
    """A rogue device answers first, claiming to be another meter: the bus keeps listening
    and takes the addressed meter's own reply, which comes later."""
    target, other = METERS[0], METERS[1]
    with PtyBus(FAST, wire_timing=False) as pty:
        _, responder = dlt645_meter(target, 4320)
        pty.attach(TinyMeter("AAAAAAAAAAAA", reply_as=other), name="rogue", turnaround=0.0)
        pty.attach(responder, name=target, turnaround=0.03)
        with SerialBus(pty.port, FAST) as bus:
            reading = bus.run(DRIVER.read(target, "energy"), address=target)
    assert reading.address == target
    assert reading.energy_wh == 4320
    assert bus.stats.total.retries == 0


def test_stray_bytes_before_a_request_are_discarded() -> None:
    with PtyBus(FAST, wire_timing=False) as pty:
        _, responder = dlt645_meter(METERS[0], 70)
        pty.attach(responder, name=METERS[0])
        # A stale but valid reply of this very meter to this very read (from before its
        # energy moved on) sits in the input buffer when the bus starts the read.
        _, earlier = dlt645_meter(METERS[0], 12340)
        request = next(DRIVER.read(METERS[0], "energy")).request
        (stale,) = earlier.feed(request)
        with SerialBus(pty.port, FAST) as bus:
            pty.inject(stale)
            time.sleep(0.05)  # let it arrive before the request
            reading = bus.run(DRIVER.read(METERS[0], "energy"), address=METERS[0])
    assert reading.energy_wh == 70


@pytest.mark.slow  # twenty reads through lost and garbled replies
def test_noise_and_loss_are_retried_and_counted() -> None:
    faults = LineFaults(noise=0.3, corrupt=0.3, loss=0.3, seed=11)
    with PtyBus(FAST, wire_timing=False, faults=faults) as pty:
        pty.attach(TinyMeter(METERS[0]), name=METERS[0])
        with SerialBus(pty.port, FAST, retries=8, backoff=0.001, byte_gap=0.02) as bus:
            bus.start_round()
            replies = [bus.run(tiny_read(METERS[0], 0.02), address=METERS[0]) for _ in range(20)]
            report = bus.end_round()
    assert {r.address for r in replies} == {METERS[0]}
    meter = report.stats.meters[METERS[0]]
    assert meter.retries > 0
    assert meter.timeouts > 0  # lost replies
    assert meter.checksum_errors > 0  # corrupted replies
    assert meter.replies == 20 and meter.failures == 0
    assert meter.requests == meter.replies + meter.timeouts + meter.checksum_errors + (
        meter.frame_errors
    )
    assert report.success_rate == pytest.approx(20 / meter.requests)
    assert report.stats.total.requests == meter.requests  # one meter: bus total == meter
    assert pty.stats.lost > 0 and pty.stats.corrupted > 0 and pty.stats.noise_bursts > 0


@pytest.mark.slow  # three 500 ms reply timeouts plus backoff
def test_silence_is_a_clear_timeout_naming_the_meter() -> None:
    with PtyBus(FAST, wire_timing=False) as pty, SerialBus(pty.port, FAST, retries=2) as bus:
        started = time.monotonic()
        with pytest.raises(MeterTimeout) as caught:
            bus.run(DRIVER.read("202699999999", "energy"), address="202699999999")
        elapsed = time.monotonic() - started
    message = str(caught.value)
    assert message.startswith("meter 202699999999")
    assert "no reply" in message and pty.port in message and "3 attempts" in message
    assert caught.value.address == "202699999999"
    assert bus.stats.meters["202699999999"].timeouts == 3
    assert bus.stats.meters["202699999999"].failures == 1
    # Three attempts of 500 ms (DL/T 645 Td) plus backoff; no more.
    assert 1.5 <= elapsed < 2.5


def test_only_bad_checksums_are_named_as_such() -> None:
    with PtyBus(FAST, wire_timing=False, faults=LineFaults(corrupt=1.0, seed=3)) as pty:
        pty.attach(TinyMeter(METERS[0]), name=METERS[0])
        with (
            SerialBus(pty.port, FAST, retries=1, byte_gap=0.05) as bus,
            pytest.raises((ChecksumError, MeterTimeout)) as caught,
        ):
            bus.run(tiny_read(METERS[0], 0.1), address=METERS[0])
    stats = bus.stats.meters[METERS[0]]
    assert stats.requests == 2 and stats.replies == 0
    if isinstance(caught.value, ChecksumError):
        assert "bad checksums" in str(caught.value)


def test_concurrent_callers_are_served_one_request_at_a_time(
    line: tuple[PtyBus, list[MeterState]],
) -> None:
    pty, _ = line
    errors: list[BaseException] = []
    with SerialBus(pty.port, FAST) as bus:

        def poll(address: str) -> None:
            try:
                for _ in range(5):
                    assert bus.run(DRIVER.read(address, "energy"), address=address).energy_wh
            except BaseException as exc:  # collected for the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=poll, args=(a,)) for a in METERS]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    # Interleaved requests would have collided on the line: every reply came back clean.
    assert bus.stats.total.retries == 0
    assert pty.stats.collisions == 0


def test_wire_timing_round_is_never_faster_than_the_wire() -> None:
    settings = SerialSettings(2400, "E")
    driver = DLT645_2007.with_settings(settings)
    with PtyBus(settings, turnaround=0.025) as pty:
        _, responder = dlt645_meter(METERS[0], 9)
        pty.attach(responder, name=METERS[0])
        with SerialBus(pty.port, settings) as bus:
            bus.start_round()
            started = time.monotonic()
            bus.run(driver.read(METERS[0], "energy"), address=METERS[0])
            elapsed = time.monotonic() - started
            report = bus.end_round()
    total = report.stats.total
    floor = (total.bytes_sent + total.bytes_received) * settings.byte_time + 0.025
    assert floor <= elapsed < floor * 1.2 + 0.02


def test_a_missing_port_is_a_port_error() -> None:
    with pytest.raises(PortError, match="cannot open serial port /dev/nonexistent"):
        SerialBus("/dev/nonexistent", FAST)


def test_a_closed_bus_refuses_work(line: tuple[PtyBus, list[MeterState]]) -> None:
    pty, _ = line
    bus = SerialBus(pty.port, FAST)
    bus.close()
    with pytest.raises(PortError, match="closed"):
        bus.run(DRIVER.read(METERS[0]), address=METERS[0])


def test_the_bus_leaves_no_thread_or_descriptor_behind(
    line: tuple[PtyBus, list[MeterState]],
) -> None:
    pty, _ = line
    fds = set(os.listdir("/proc/self/fd"))
    threads = threading.active_count()
    with SerialBus(pty.port, FAST) as bus:
        bus.run(DRIVER.read(METERS[0], "energy"), address=METERS[0])
        assert threading.active_count() == threads + 1  # exactly one worker for the port
    assert threading.active_count() == threads
    assert set(os.listdir("/proc/self/fd")) == fds


def test_one_bus_per_port() -> None:
    with (
        PtyBus(FAST, wire_timing=False) as pty,
        SerialBus(pty.port, FAST),
        pytest.raises(PortError, match="cannot open serial port"),
    ):
        SerialBus(pty.port, FAST)
