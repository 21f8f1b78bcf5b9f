"""Finding meters on a bus: one meter by the wildcard, several by the address-suffix search
(through real collisions on a simulated line), the time bound, and broadcast time sync."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from demo.sim.dlt645_responder import Dlt645Responder
from demo.sim.pty_bus import PtyBus
from demo.sim.state import MeterState
from edge.drivers.base import SerialSettings
from edge.drivers.bus import SerialBus
from edge.drivers.discovery import discover, read_single_address, sync_time
from edge.drivers.dlt645_meter import DLT645_1997, DLT645_2007

FAST = SerialSettings(baudrate=115200, parity="E")
WINDOW = 0.02  # the sim answers at once; a real bus needs the standard's 500 ms


@contextmanager
def bus_with(addresses: list[str], version: int = 2007) -> Iterator[tuple[SerialBus, PtyBus]]:
    with PtyBus(FAST, wire_timing=False) as pty:
        for address in addresses:
            state = MeterState(address=address, protocol="dlt645")
            pty.attach(Dlt645Responder(state, version), name=address)
        with SerialBus(pty.port, FAST, byte_gap=WINDOW) as bus:
            yield bus, pty


def test_one_meter_answers_the_wildcard() -> None:
    with bus_with(["202611000101"]) as (bus, _):
        found = discover(bus, DLT645_2007.with_settings(FAST), window=WINDOW)
        assert read_single_address(bus, DLT645_2007.with_settings(FAST)) == "202611000101"
    assert found.addresses == ("202611000101",)
    assert found.probes == 1 and found.complete


def test_an_empty_bus() -> None:
    with bus_with([]) as (bus, _):
        found = discover(bus, DLT645_2007.with_settings(FAST), window=WINDOW)
    assert found.addresses == () and found.complete
    assert found.probes == 2  # the wildcard, asked twice in case a reply was lost


@pytest.mark.slow  # some two hundred probes on a pty
def test_several_meters_are_found_through_collisions() -> None:
    # Two meters end in 01 and collide at the first level; the search narrows to 1201/3401.
    meters = ["000000001201", "202611003401", "111111111103"]
    progress: list[str] = []
    with bus_with(meters) as (bus, pty):
        found = discover(
            bus, DLT645_2007.with_settings(FAST), window=WINDOW, progress=progress.append
        )
    assert found.addresses == tuple(sorted(meters))
    assert found.complete
    assert found.collisions == 1  # the suffix 01
    assert pty.stats.collisions >= 2  # the wildcard and the suffix 01 garbled on the line
    # Wildcard + 100 one-byte suffixes + 100 two-byte suffixes under 01 + one confirmation
    # per meter.
    assert found.probes == 1 + 100 + 100 + 3
    assert any("several meters end in 01" in line for line in progress)


@pytest.mark.slow  # some two hundred probes on a pty
def test_dlt645_1997_meters_are_found_by_suffix_alone() -> None:
    meters = ["000000000042", "000000000077"]
    with bus_with(meters, version=1997) as (bus, _):
        found = discover(bus, DLT645_1997.with_settings(FAST), window=WINDOW)
    assert found.addresses == tuple(meters)
    assert found.probes == 100 + 2  # 1997 has no read-address: straight to the suffixes


def test_the_search_stops_at_its_time_limit() -> None:
    with bus_with(["000000000101", "000000000201"]) as (bus, _):
        found = discover(bus, DLT645_2007.with_settings(FAST), window=WINDOW, time_limit=0.2)
    assert not found.complete
    assert found.elapsed_s < 1.0


def test_broadcast_time_sets_every_meter_clock() -> None:
    states = [MeterState(address=a, protocol="dlt645") for a in ("000000000001", "000000000002")]
    with PtyBus(FAST, wire_timing=False) as pty:
        for state in states:
            pty.attach(Dlt645Responder(state), name=state.address)
        with SerialBus(pty.port, FAST) as bus:
            when = dt.datetime(2026, 11, 23, 8, 30, 15)
            sync_time(bus, DLT645_2007.with_settings(FAST), when)
            # A read afterwards proves the broadcast was on the wire before it.
            bus.run(DLT645_2007.with_settings(FAST).read("000000000001", "energy"), address="1")
    assert [s.clock for s in states] == [when, when]
    assert pty.stats.replies == 1  # nobody answered the broadcast
