"""Simulated buses through `edge.site.simulation`: the concentrator finds the simulator by its
entry point, only for a site that has simulated buses, and says what to do when there is none."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from importlib.metadata import EntryPoints

import pytest

from demo.sim.simulation import SIMULATOR, BuildingSimulation, building_of
from demo.site import DemoSite
from edge.runtime.boot import BootError, boot
from edge.site import SiteConfigError, load_site
from edge.site.model import BusKind
from edge.site.simulation import ENTRY_POINT_GROUP, find_simulator
from tests.edge.runtime.conftest import snapshot


@pytest.fixture
def no_simulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An installation without the demo package: no `voltbook.simulation` entry point."""
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: EntryPoints(()))
    find_simulator.cache_clear()
    yield
    find_simulator.cache_clear()


def test_the_installed_entry_point_is_the_demo_simulator() -> None:
    find_simulator.cache_clear()
    assert find_simulator() is SIMULATOR
    assert ENTRY_POINT_GROUP == "voltbook.simulation"


@pytest.mark.usefixtures("no_simulator")
def test_a_simulated_site_without_a_simulator_is_refused_saying_what_to_do(
    small_site: DemoSite,
) -> None:
    before = snapshot(small_site.directory)
    with pytest.raises(SiteConfigError) as refused:
        load_site(small_site.site_toml)
    message = str(refused.value)
    assert "site.toml" in message and "no meter simulator is installed" in message
    assert "voltbook.simulation" in message and "make every bus real" in message
    assert message.count(". ") == 0, "one sentence"
    assert snapshot(small_site.directory) == before


@pytest.mark.usefixtures("no_simulator")
def test_a_site_of_real_buses_needs_no_simulator(small_site: DemoSite) -> None:
    text = small_site.site_toml.read_text().replace(
        'kind = "simulated"', 'kind = "serial"\nport = "/dev/ttyUSB9"'
    )
    small_site.site_toml.write_text(text)
    site = load_site(small_site.site_toml)  # the entry points are never looked at
    assert [b.kind for b in site.buses] == [BusKind.SERIAL]


def test_boot_serves_the_simulated_meters_through_the_seam(small_site: DemoSite) -> None:
    booted = boot(load_site(small_site.site_toml), direct=True)
    try:
        assert isinstance(booted.simulation, BuildingSimulation)
        assert set(building_of(booted).meters) == {m.address for m in booted.runtime.site.meters}
        report = booted.runtime.run_cycle()
        assert report.read == 8 and report.failed == 0
    finally:
        booted.close()


def test_a_damaged_simulated_building_stops_the_boot_naming_its_file(
    small_site: DemoSite,
) -> None:
    state = small_site.directory / "sim" / "meters.json"
    state.write_bytes(state.read_bytes()[:30])
    with pytest.raises(BootError, match=r"meters\.json"):
        boot(load_site(small_site.site_toml), direct=True)
