"""Faults of one RS-485 bus stay on that bus: the runtime boots and bills with a port missing,
goes on billing the other bus when an adapter is unplugged mid-run, raises the bus's alarm once
and clears it when the port comes back.

Real everything: the demo site's store, key and rules; two serial buses opened through symlinks
(the udev names of USB adapters) to `PtyBus` lines with DL/T 645 meters; unplugging is stopping
a pty (its slave vanishes under the open port: EIO), re-plugging is a new pty under the link.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from demo.sim.dlt645_responder import Dlt645Responder
from demo.sim.pty_bus import PtyBus
from demo.sim.state import MeterState
from edge.drivers.base import SerialSettings
from edge.runtime.boot import Booted
from edge.runtime.clock import ManualClock
from edge.runtime.cycle import CycleReport
from edge.runtime.events import RuntimeKind
from edge.site import load_site
from edge.store import Category
from tests.edge.runtime.conftest import booted_at, demo

LINE = SerialSettings(2400, "E")  # the demo site's buses
EVERY = dt.timedelta(minutes=15)
ON_BUS = {"rs485-1": ("202611000001", "202611000003"), "rs485-2": ("202611000002", "202611000004")}


@dataclass
class Building:
    """Two buses' worth of meters on ptys behind symlinks; their registers live here."""

    directory: Path  # where the adapters' names (symlinks) live
    site_toml: Path
    states: dict[str, MeterState] = field(default_factory=dict)
    lines: dict[str, PtyBus] = field(default_factory=dict)

    def link(self, bus: str) -> Path:
        return self.directory / f"tty-{bus}"

    def plug(self, bus: str) -> None:
        """A (new) adapter for `bus` appears under its name, its meters on the line."""
        pty = PtyBus(LINE, wire_timing=False, name=bus)
        for address in ON_BUS[bus]:
            pty.attach(Dlt645Responder(self.states[address]), name=address)
        self.lines[bus] = pty.start()
        tmp = self.link(bus).with_suffix(".new")
        os.symlink(pty.port, tmp)
        os.replace(tmp, self.link(bus))

    def unplug(self, bus: str) -> None:
        self.lines.pop(bus).stop()

    def consume(self, kwh: int = 1) -> None:
        for state in self.states.values():
            state.energy_mwh += kwh * 1_000_000

    def close(self) -> None:
        for pty in self.lines.values():
            pty.stop()


@pytest.fixture
def building(tmp_path: Path) -> Iterator[Building]:
    site = demo(tmp_path, 4, tariff="flat")
    found = Building(tmp_path, site.site_toml)
    for i, address in enumerate(site.meters):
        found.states[address] = MeterState(
            address=address, protocol="dlt645", energy_mwh=(1000 + i) * 1_000_000
        )
    # Meters 2 and 4 move to a second bus; both buses become serial ports behind symlinks.
    config_path = site.directory / "config.json"
    config = json.loads(config_path.read_text())
    for meter in config["meters"].values():
        meter["bus"] = next(bus for bus, on in ON_BUS.items() if meter["id"] in on)
    config_path.write_text(json.dumps(config))
    toml = site.site_toml.read_text().split("[simulation]")[0]
    for bus in ON_BUS:
        toml += (
            f'[[buses]]\nname = "{bus}"\nkind = "serial"\nport = "{found.link(bus)}"\n'
            'protocol = "dlt645"\nbaud = 2400\nparity = "E"\n\n'
        )
    site.site_toml.write_text(toml)
    try:
        yield found
    finally:
        found.close()


Boot = Callable[[], tuple[Booted, ManualClock]]


@pytest.fixture
def boot_site(building: Building) -> Iterator[Boot]:
    """Boots the site when the test says so (after it has plugged what it wants)."""
    site_toml = building.site_toml
    started: list[Booted] = []

    def start() -> tuple[Booted, ManualClock]:
        booted, clock = booted_at(load_site(site_toml))
        started.append(booted)
        return booted, clock

    yield start
    for b in started:
        b.close()


def cycle(booted: Booted, clock: ManualClock, building: Building) -> CycleReport:
    building.consume()
    clock.advance(EVERY)
    return booted.runtime.run_cycle()


def billed_wh(booted: Booted, address: str) -> int | None:
    billing = booted.runtime.meters[address].billing
    return None if billing is None else billing.reg_wh


def kinds(report: CycleReport) -> list[str]:
    return [e.kind for e in report.alarms]


def bus_events(booted: Booted) -> list[tuple[str, str, object]]:
    return [
        (e.kind, e.category.value, e.detail.get("bus"))
        for e in (stored.event for stored in booted.runtime.store.events())
        if e.kind in (RuntimeKind.BUS_DOWN.value, RuntimeKind.BUS_UP.value)
    ]


def test_an_adapter_unplugged_mid_run_stops_only_its_bus(
    building: Building, boot_site: Boot
) -> None:
    building.plug("rs485-1")
    building.plug("rs485-2")
    runtime, clock = boot_site()
    first = runtime.runtime.run_cycle()
    assert first.read == 4 and not first.buses_down
    assert cycle(runtime, clock, building).read == 4

    building.unplug("rs485-2")
    down = cycle(runtime, clock, building)
    assert down.read == 2 and down.buses_down == ["rs485-2"]
    assert kinds(down) == [RuntimeKind.BUS_DOWN.value]  # one bus alarm, no per-meter ones
    assert down.transfers > 0  # the other bus is billed
    for address in ON_BUS["rs485-1"]:
        assert billed_wh(runtime, address) == building.states[address].energy_mwh // 1000
    held = {a: billed_wh(runtime, a) for a in ON_BUS["rs485-2"]}

    still = cycle(runtime, clock, building)  # down, and said once
    assert still.read == 2 and still.buses_down == ["rs485-2"] and still.alarms == []
    assert {a: billed_wh(runtime, a) for a in ON_BUS["rs485-2"]} == held

    building.plug("rs485-2")  # a new adapter under the same name
    back = cycle(runtime, clock, building)
    assert back.read == 4 and back.buses_down == [] and back.failed == 0
    for address in building.states:  # the energy of the downtime is billed now
        assert billed_wh(runtime, address) == building.states[address].energy_mwh // 1000
    assert bus_events(runtime) == [
        ("bus_down", "alarm", "rs485-2"),
        ("bus_up_again", "event", "rs485-2"),
    ]
    assert runtime.runtime.meters["202611000002"].read_failures == 0


def test_a_port_missing_at_boot_leaves_the_runtime_billing_the_other_bus(
    building: Building, boot_site: Boot
) -> None:
    building.plug("rs485-1")  # rs485-2's adapter is not plugged in
    runtime, clock = boot_site()
    first = runtime.runtime.run_cycle()
    assert first.read == 2 and first.buses_down == ["rs485-2"]
    assert kinds(first) == [RuntimeKind.BUS_DOWN.value]
    assert "BUS DOWN: rs485-2" in first.summary()
    second = cycle(runtime, clock, building)
    assert second.transfers > 0 and second.alarms == []
    (alarm,) = [stored.event for stored in runtime.runtime.store.events(category=Category.ALARM)]
    assert str(building.link("rs485-2")) in str(alarm.detail["reason"])
    # Time-driven actions never wait for a bus: the down bus's tenants get their subsidy, and
    # the month end runs for them.
    down_accounts = ("A0002", "A0004")
    for owner in down_accounts:
        assert runtime.runtime.accounts[owner].subsidy.issued == {"2026-11"}
    clock.set(dt.datetime(2026, 12, 1, 0, 15, tzinfo=clock.start.tzinfo))
    december = cycle(runtime, clock, building)
    assert december.buses_down == ["rs485-2"] and december.read == 2
    for owner in down_accounts:
        subsidy = runtime.runtime.accounts[owner].subsidy
        assert subsidy.issued == {"2026-11", "2026-12"} and subsidy.closed == {"2026-11"}

    building.plug("rs485-2")
    back = cycle(runtime, clock, building)
    assert back.read == 4 and back.buses_down == []
    assert [k for k, _, _ in bus_events(runtime)] == ["bus_down", "bus_up_again"]


def test_a_restart_while_a_bus_is_down_does_not_raise_its_alarm_again(
    building: Building, boot_site: Boot
) -> None:
    building.plug("rs485-1")  # rs485-2's adapter is not plugged in
    runtime, clock = boot_site()
    assert kinds(runtime.runtime.run_cycle()) == [RuntimeKind.BUS_DOWN.value]
    runtime.close()  # systemd restarts the concentrator; the adapter is still missing
    again, clock = boot_site()
    clock.advance(EVERY)
    restarted = again.runtime.run_cycle()
    assert restarted.buses_down == ["rs485-2"] and restarted.alarms == []
    building.plug("rs485-2")
    assert cycle(again, clock, building).buses_down == []
    assert [k for k, _, _ in bus_events(again)] == ["bus_down", "bus_up_again"]
