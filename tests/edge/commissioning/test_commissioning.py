"""Commissioning against a simulated building: a meter cut off the bus (missing), one nobody
declared (extra), one whose relay refuses to trip; the report signed, verified, and refused
once altered. Real frames on the simulator's in-process bus, a real Ed25519 key."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from demo.sim.direct_bus import DirectBus
from demo.sim.persist import MeterSpec, SimulatedBuilding
from demo.sim.pty_bus import PtyBus
from demo.sim.site import responder_for
from demo.sim.state import MeterState
from demo.site import DemoSite, write_demo_site
from edge.cli_commission import clean
from edge.commissioning.buses import open_buses
from edge.commissioning.engine import Options, commission
from edge.drivers.bus import SerialBus
from edge.drivers.modbus_maps import SIMULATED_RELAY
from edge.drivers.registry import DriverOptions
from edge.runtime.boot import read_node_key
from edge.site import load_site
from edge.site.model import BusConfig, BusKind
from edge.store.db import writer_lock
from ledger.chain import NodeKey, load_public_key
from ledger.commissioning import check_report, sign_report, verify_report
from ledger.errors import DecodeError
from tests.edge.runtime.conftest import START, ZONE, cli

EXTRA = "202699000042"


@pytest.fixture
def site(tmp_path: Path) -> DemoSite:
    """Four DL/T 645 meters; an undeclared fifth on the wire; meter 3 will not trip."""
    made = write_demo_site(tmp_path / "site", 4, tariff="flat", profiles=("constant",))
    building = SimulatedBuilding.open(made.directory / "sim", ZONE)
    building.add_meter(MeterSpec(EXTRA, "dlt645", "constant", 5_000_000))
    building.meters[made.meters[2]].state.keep_power = True  # refuses to trip
    building.save()
    return made


def _run(site: DemoSite, *, relay_test: bool, cut: str | None = None) -> dict[str, Any]:
    loaded = load_site(site.site_toml)
    with ExitStack() as stack:
        buses, _ = open_buses(loaded, stack, byte_gap=0.05)
        if cut is not None:
            bus = buses["rs485-1"]
            assert isinstance(bus, DirectBus)
            bus.detach(cut)  # a cut cable: the meter is declared and silent
        return commission(
            loaded, buses, now=START, version="test", options=Options(relay_test=relay_test)
        )


def test_missing_extra_and_a_relay_that_does_not_confirm(site: DemoSite) -> None:
    missing, stuck = site.meters[1], site.meters[2]
    report = _run(site, relay_test=True, cut=missing)
    check_report(report)
    meters = {m["address"]: m for m in report["meters"]}
    assert set(meters) == {*site.meters, EXTRA}
    assert meters[missing]["status"] == "missing"
    assert meters[missing]["reads_ok"] == 0 and meters[missing]["relay"] == "not_read"
    assert "no reply" in meters[missing]["error"] or meters[missing]["error"]
    assert meters[EXTRA]["status"] == "extra" and meters[EXTRA]["shop"] is None
    assert meters[EXTRA]["register"] == 5_000
    assert (
        meters[EXTRA]["relay"] == "not_tested" and "not declared" in meters[EXTRA]["relay_detail"]
    )
    assert meters[stuck]["relay"] == "failed" and "trip" in meters[stuck]["relay_detail"]
    for address in (site.meters[0], site.meters[3]):
        assert meters[address]["status"] == "found"
        assert (meters[address]["reads_ok"], meters[address]["reads_tried"]) == (3, 3)
        assert meters[address]["relay"] == "ok"
    (bus,) = report["buses"]
    assert (bus["found"], bus["missing"], bus["extra"]) == (3, 1, 1)
    assert (bus["reads_ok"], bus["reads_tried"]) == (12, 15)
    assert bus["discovery"] == "dlt645-search" and bus["complete"]
    assert not clean(report)
    # Every relay ends as it started: closed (the stuck one never opened).
    building = SimulatedBuilding.open(site.directory / "sim", ZONE)
    assert all(building.meters[a].state.relay_closed for a in site.meters)


def test_the_registers_are_the_meters_and_nothing_moves_without_relay_test(
    site: DemoSite,
) -> None:
    before = SimulatedBuilding.open(site.directory / "sim", ZONE).registers_wh()
    report = _run(site, relay_test=False)
    meters = {m["address"]: m for m in report["meters"]}
    assert {a: m["register"] for a, m in meters.items()} == before
    assert {m["relay"] for m in meters.values()} == {"not_tested"}


def test_the_signed_report_verifies_and_an_altered_one_does_not(site: DemoSite) -> None:
    report = _run(site, relay_test=False)
    key = read_node_key(site.directory / "node.key")
    signed = sign_report(report, key)
    assert verify_report(json.loads(json.dumps(signed)), key.public_key) == report
    tampered = copy.deepcopy(signed)
    tampered["report"]["meters"][0]["reads_ok"] = 0
    with pytest.raises(DecodeError, match="does not verify"):
        verify_report(tampered, key.public_key)
    with pytest.raises(DecodeError, match="not this node"):
        verify_report(signed, NodeKey.generate().public_key)
    bad = copy.deepcopy(signed)
    bad["report"]["meters"][0]["status"] = "maybe"
    with pytest.raises(DecodeError, match="status"):
        verify_report(bad, key.public_key)


def test_the_command_writes_a_signed_report(site: DemoSite, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    done = cli("commission", "--config", str(site.site_toml), "--relay-test", "--out", str(out))
    assert done.returncode == 1, done.stderr  # written, with things to fix
    signed = json.loads(out.read_bytes())
    public = load_public_key((site.directory / "node.pub").read_bytes())
    report = verify_report(signed, public)
    statuses = {m["address"]: (m["status"], m["relay"]) for m in report["meters"]}
    assert statuses[EXTRA][0] == "extra"
    assert statuses[site.meters[2]] == ("found", "failed")
    assert statuses[site.meters[0]] == ("found", "ok")
    assert "extra 1" in done.stdout and EXTRA in done.stdout
    assert dt.datetime.fromisoformat(report["taken_at"]).tzinfo is not None


def test_the_command_refuses_while_the_runtime_holds_the_store(site: DemoSite) -> None:
    loaded = load_site(site.site_toml)
    loaded.settings.data_dir.mkdir(parents=True, exist_ok=True)
    with writer_lock(loaded.settings.store_path):
        done = cli("commission", "--config", str(site.site_toml))
    assert done.returncode == 2 and "stop it first" in done.stderr


def test_a_modbus_bus_is_found_by_unit_scan(site: DemoSite) -> None:
    """Units 3 (declared, with the simulator's relay) and 7 (not declared) answer; 5 is silent."""
    loaded = load_site(site.site_toml)
    bus = BusConfig(
        "modbus-1",
        BusKind.SIMULATED,
        "sdm120",
        options=DriverOptions(relay=SIMULATED_RELAY),
    )
    template = loaded.meters[0]
    declared = tuple(
        dataclasses.replace(template, address=unit, bus="modbus-1", protocol="sdm120")
        for unit in ("3", "5")
    )
    modbus_site = dataclasses.replace(loaded, buses=(bus,), meters=declared)
    states = {unit: MeterState(unit, "sdm120", energy_mwh=2_000_000) for unit in ("3", "7")}
    direct = DirectBus({unit: responder_for(state) for unit, state in states.items()})
    report = commission(
        modbus_site,
        {"modbus-1": direct},
        now=START,
        version="test",
        options=Options(relay_test=True, modbus_units=8),
    )
    meters = {m["address"]: m for m in report["meters"]}
    assert {a: m["status"] for a, m in meters.items()} == {
        "3": "found",
        "5": "missing",
        "7": "extra",
    }
    assert meters["3"]["relay"] == "ok" and meters["3"]["register"] == 2_000
    assert states["3"].relay_closed
    assert meters["7"]["relay"] == "not_tested"
    assert report["buses"][0]["discovery"] == "modbus-unit-scan"
    assert report["buses"][0]["probes"] == 8


def test_a_water_bus_is_found_by_its_address_and_its_valve_tested(tmp_path: Path) -> None:
    made = write_demo_site(tmp_path / "water", 2, tariff="flat", profiles=("constant",), water=1)
    loaded = load_site(made.site_toml)
    with ExitStack() as stack:
        buses, _ = open_buses(loaded, stack, byte_gap=0.05)
        report = commission(
            loaded, buses, now=START, version="test", options=Options(relay_test=True)
        )
    check_report(report)
    water = [m for m in report["meters"] if m["protocol"] == "cjt188"]
    assert len(water) == 1
    assert (water[0]["status"], water[0]["unit"], water[0]["relay"]) == ("found", "L", "ok")
    bus = next(b for b in report["buses"] if b["protocol"] == "cjt188")
    assert bus["discovery"] == "cjt188-address" and (bus["found"], bus["extra"]) == (1, 0)
    assert clean(report)


@pytest.mark.slow  # a DL/T 645 address search over a serial port: a hundred-odd probe windows
def test_the_same_over_a_serial_port(site: DemoSite) -> None:
    """The search, reads and relay tests through `SerialBus` on a pty (real frames on a port,
    collisions where several meters answer one probe): meter 2 unplugged, one extra."""
    loaded = load_site(site.site_toml)
    config = loaded.buses[0]
    building = SimulatedBuilding.open(site.directory / "sim", ZONE)
    missing = site.meters[1]
    on_wire = [a for a in (*site.meters, EXTRA) if a != missing]
    with PtyBus(config.settings(), wire_timing=False) as pty:
        for address in on_wire:
            pty.attach(building.responders([address])[address], name=address)
        with SerialBus(pty.port, config.settings(), byte_gap=0.05) as serial:
            report = commission(
                loaded,
                {config.name: serial},
                now=START,
                version="test",
                options=Options(relay_test=True, window=0.1, time_limit=120),
            )
    statuses = {m["address"]: (m["status"], m["relay"]) for m in report["meters"]}
    assert statuses == {
        site.meters[0]: ("found", "ok"),
        missing: ("missing", "not_read"),
        site.meters[2]: ("found", "failed"),
        site.meters[3]: ("found", "ok"),
        EXTRA: ("extra", "not_tested"),
    }
    assert report["buses"][0]["complete"]
