"""`ReconnectingBus` against real ptys: a port missing, busy or unplugged is that bus down, with
backoff on an injected clock, and back up when the port returns. No mocks: the port is a
`PtyBus` reached through a symlink (the path the bus opens), re-pointed to a new pty the way a
re-plugged USB adapter reappears under its udev name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.sim.dlt645_responder import Dlt645Responder
from demo.sim.pty_bus import PtyBus
from demo.sim.state import MeterState
from edge.drivers.base import SerialSettings
from edge.drivers.bus import SerialBus
from edge.drivers.dlt645_meter import DLT645_2007
from edge.drivers.errors import MeterTimeout, PortError
from edge.drivers.reconnect import BusDown, ReconnectingBus

FAST = SerialSettings(baudrate=115200, parity="E")
DRIVER = DLT645_2007.with_settings(FAST)
METER = "202611000101"


class Clock:
    """The runtime's monotonic count, moved by the test."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def meter_line() -> PtyBus:
    state = MeterState(address=METER, protocol="dlt645", energy_mwh=1_230_000)
    pty = PtyBus(FAST, wire_timing=False)
    pty.attach(Dlt645Responder(state), name=METER)
    return pty.start()


def point(link: Path, target: str) -> None:
    """Atomically re-point `link` at `target` (a udev symlink following a re-plugged adapter)."""
    tmp = link.with_suffix(".new")
    os.symlink(target, tmp)
    os.replace(tmp, link)


def read(bus: ReconnectingBus) -> int | None:
    return bus.run(DRIVER.read(METER, "energy"), address=METER).energy_wh


@pytest.fixture
def link(tmp_path: Path) -> Path:
    return tmp_path / "ttyRS485-1"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lines() -> Iterator[list[PtyBus]]:
    made: list[PtyBus] = []
    yield made
    for pty in made:
        pty.stop()


def test_a_port_missing_at_start_is_a_bus_down_that_backs_off(link: Path, clock: Clock) -> None:
    bus = ReconnectingBus(str(link), FAST, monotonic=clock, first_retry=1, max_retry=8)
    health = bus.health()
    assert not health.up and "cannot open serial port" in health.reason
    assert health.retry_at == 101.0
    with pytest.raises(BusDown, match="is down"):
        read(bus)  # at once, nothing sent
    delays = []
    for _ in range(6):
        assert bus.reconnect_if_due().retry_at == health.retry_at  # not due: no attempt
        assert health.retry_at is not None
        clock.now = health.retry_at
        health = bus.reconnect_if_due()
        assert health.retry_at is not None
        delays.append(health.retry_at - clock.now)
    assert delays == [2, 4, 8, 8, 8, 8]  # doubling, capped
    assert health.since == 100.0 and health.failed_opens == 6
    bus.close()


def test_unplugged_mid_run_then_plugged_back(link: Path, clock: Clock, lines: list[PtyBus]) -> None:
    lines.append(meter_line())
    point(link, lines[0].port)
    bus = ReconnectingBus(str(link), FAST, monotonic=clock)
    try:
        assert bus.health().up
        assert read(bus) == 1230
        lines[0].stop()  # the adapter is gone: the pty slave vanishes under the open port
        with pytest.raises(BusDown, match="went down") as caught:
            read(bus)
        assert isinstance(caught.value.__cause__, PortError)
        health = bus.health()
        assert not health.up and "Input/output error" in health.reason
        assert health.retry_at == clock.now + 1
        with pytest.raises(BusDown, match="is down"):
            read(bus)
        lines.append(meter_line())  # plugged back: a new device under the same name
        point(link, lines[1].port)
        assert not bus.reconnect_if_due().up  # the retry is not due yet
        clock.now += 1
        assert bus.reconnect_if_due().up
        assert read(bus) == 1230
    finally:
        bus.close()


def test_a_busy_port_says_it_is_held_by_another_process(
    link: Path, clock: Clock, lines: list[PtyBus]
) -> None:
    lines.append(meter_line())
    point(link, lines[0].port)
    with SerialBus(lines[0].port, FAST):  # another process holds the adapter (flock)
        bus = ReconnectingBus(str(link), FAST, monotonic=clock)
        assert not bus.health().up
        assert "busy: held by another process" in bus.health().reason
    clock.now += 1
    assert bus.reconnect_if_due().up  # the other holder let go
    assert read(bus) == 1230
    bus.close()


def test_a_meter_that_is_silent_leaves_the_bus_up(
    link: Path, clock: Clock, lines: list[PtyBus]
) -> None:
    lines.append(meter_line())
    point(link, lines[0].port)
    bus = ReconnectingBus(str(link), FAST, monotonic=clock)
    try:
        with pytest.raises(MeterTimeout):
            bus.run(DRIVER.read("202699999999", "energy"), address="202699999999", retries=0)
        assert bus.health().up
    finally:
        bus.close()
