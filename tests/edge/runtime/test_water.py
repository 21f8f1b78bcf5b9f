"""Water billed by the runtime: a demo site with CJ/T 188 water meters on a simulated bus (real
frames), billed by volume from the account's one money after its free water; the valve closed
in arrears and opened after a top-up, confirmed by reading it back; water in `accounts`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from demo.sim.simulation import building_of
from edge.drivers.reading import ValveState
from edge.rules.tariffs import energy_of
from edge.runtime.view import accounts_view
from edge.site import load_site
from edge.store import Store
from ledger.accounts import Pocket, System, pocket_id, system_id
from ledger.invariants import ledger_violations
from ledger.transfers import Code
from tests.edge.runtime.conftest import booted_at, demo, transfers_of

POLL = dt.timedelta(hours=2)
DRY = "A0001"  # a water account that starts with no money: its free water, then debt
PAID = "A0002"  # a water account with money


def test_water_is_billed_the_valve_closes_in_arrears_and_opens_after_a_top_up(
    tmp_path: Path,
) -> None:
    files = demo(tmp_path, 6, tariff="flat", profiles=("steady_shop",), water=2)
    seed = files.directory / "seed.json"
    recharges = [r for r in json.loads(seed.read_text())["recharges"] if r["account"] != DRY]
    seed.write_text(json.dumps({"recharges": recharges}))
    site = load_site(files.site_toml)
    taps = {m.account: m.address for m in site.meters if site.is_water(m)}
    assert set(taps) == {DRY, PAID}
    booted, clock = booted_at(site)
    runtime = booted.runtime
    building = building_of(booted)
    tap = taps[DRY]
    first = {a: building.meters[a].state.volume_ml // 10_000 * 10 for a in taps.values()}
    try:
        for _ in range(12 * 14):  # up to two weeks of polls, until the valve is closed
            runtime.run_cycle()
            clock.advance(POLL)
            if runtime.accounts[DRY].water_arrears.tripped and not (
                building.meters[tap].state.valve_open
            ):
                break
        assert not building.meters[tap].state.valve_open, "the valve never closed"
        runtime.run_cycle()  # reads the valve back: where the rules want it, nothing resent
        clock.advance(POLL)
        read = runtime.store.latest_reading(tap)
        assert read is not None and read.reading.valve is ValveState.CLOSED

        transfers = transfers_of(runtime.store)
        issued = [
            t
            for t in transfers
            if t.code is Code.SUBSIDY_ISSUE and t.credit == pocket_id(DRY, Pocket.WATER_SUBSIDY)
        ]
        assert [t.amount for t in issued] == [1_000]  # litres, the demo's merchant allowance
        water = [t for t in transfers if t.code is Code.CONSUME and "volume_l" in t.refs]
        sinks = {t.credit for t in water}
        assert system_id(System.WATER_SUBSIDY_USED) in sinks
        assert system_id(System.WATER_SALES) in sinks
        assert any(t.debit == pocket_id(DRY, Pocket.DEBT) for t in water)  # owed, then closed
        # Billed litres (free, paid or owed) + unbilled = the register's rise, per meter.
        for address in taps.values():
            billing = runtime.meters[address].billing
            assert billing is not None
            billed = sum(int(t.refs["volume_l"]) for t in water if t.refs["meter"] == address)
            assert billed + energy_of(billing.unbilled) == billing.reg_wh - first[address]

        view = {row["id"]: row for row in accounts_view(site, runtime.store)}
        dry = view[DRY]
        assert dry["water_in_arrears"] and dry["debt_fen"] > 0
        [meter] = [m for m in dry["meters"] if m["kind"] == "water"]
        assert (meter["valve"], meter["relay"], meter["relay_seen"]) == ("closed", "open", "open")
        assert meter["register_l"] == runtime.meters[tap].billing.reg_wh  # type: ignore[union-attr]
        assert view[PAID]["water_subsidy_periods"] == ["2026-11"]

        # A top-up: the debt is paid back first, the valve opens and reads back open.
        assert runtime.recharge(DRY, 100_000, "wx-water-1", method="wechat")
        runtime.run_cycle()
        clock.advance(POLL)
        runtime.run_cycle()
        assert building.meters[tap].state.valve_open
        read = runtime.store.latest_reading(tap)
        assert read is not None and read.reading.valve is ValveState.OPEN
        assert not runtime.accounts[DRY].water_arrears.tripped
        assert runtime.store.book.balance(pocket_id(DRY, Pocket.DEBT)).posted == 0
        transfers = transfers_of(runtime.store)
        assert ledger_violations(transfers, runtime.store.book.balances()) == []
    finally:
        booted.close()
    with Store.open_readonly(site.settings.store_path) as store:
        row = {r["id"]: r for r in accounts_view(site, store)}[DRY]
    assert row["water_in_arrears"] is False and "water_subsidy_l" in row


def test_water_meters_of_a_make_site_toml_declares_are_read_as_that_make(tmp_path: Path) -> None:
    """Hot-water meters that only answer requests for their type and send DI 901F high byte
    first: declared on the bus (`meter_type`, `di_order`), read; the simulated meters are made
    as declared, so a wrong declaration would fail the read."""
    files = demo(tmp_path, 3, tariff="flat", profiles=("steady_shop",), water=2)
    toml = files.site_toml.read_text().replace(
        'protocol = "cjt188"', 'protocol = "cjt188"\nmeter_type = 0x11\ndi_order = "901F"'
    )
    files.site_toml.write_text(toml)
    site = load_site(files.site_toml)
    taps = [m.address for m in site.meters if site.is_water(m)]
    booted, _ = booted_at(site)
    try:
        report = booted.runtime.run_cycle()
        assert report.failed == 0
        for tap in taps:
            read = booted.runtime.store.latest_reading(tap)
            assert read is not None and read.reading.volume_l is not None
        responder = building_of(booted).meters[taps[0]].responder
        assert (responder.meter_type, responder.di_order) == (0x11, "901F")  # type: ignore[attr-defined]
    finally:
        booted.close()
