"""Every Wh in the ledger: a keep-power account that runs out keeps its power, and the energy it
uses with no money left is booked as debt, so billed (paid or owed) energy = the simulator's
register delta; a top-up pays the debt back first (`edge.rules.debt`)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from demo.sim.simulation import building_of
from edge.rules.decisions import AlarmKind
from edge.rules.pockets import Pockets
from edge.rules.tariffs import energy_of
from edge.site import load_site
from edge.store import Category
from ledger.accounts import Pocket, owner_of, pocket_id
from ledger.invariants import ledger_violations
from ledger.transfers import Code
from tests.edge.runtime.conftest import booted_at, demo, transfers_of
from tests.edge.runtime.test_cycle import _audit

HOUR = dt.timedelta(hours=1)
CLINIC = "A0006"  # the demo's keep-power account


def test_a_keep_power_account_runs_into_debt_keeps_power_and_pays_it_back(
    tmp_path: Path,
) -> None:
    site_files = demo(tmp_path, 6, tariff="flat", profiles=("steady_shop",))
    seed = site_files.directory / "seed.json"
    recharges = json.loads(seed.read_text())["recharges"]
    for row in recharges:
        if row["account"] == CLINIC:
            row["fen"] = 300  # 3 yuan: spent within the first day
    seed.write_text(json.dumps({"recharges": recharges}))
    site = load_site(site_files.site_toml)
    assert site.accounts[CLINIC].keep_power
    booted, clock = booted_at(site)
    runtime = booted.runtime
    [meter] = [m.address for m in runtime.site.meters_of(CLINIC)]
    building = building_of(booted)
    debt = pocket_id(CLINIC, Pocket.DEBT)
    try:
        first = building.registers_wh()[meter]  # the register as the meter shows it
        closed_throughout = True
        for _ in range(4 * 24):  # four days of hourly polls
            runtime.run_cycle()
            last = building.registers_wh()[meter]
            closed_throughout &= building.meters[meter].state.relay_closed
            clock.advance(HOUR)
        book = runtime.store.book
        owed = -book.balance(debt).posted
        assert owed > 0 and closed_throughout  # in debt, never cut off
        transfers = transfers_of(runtime.store)
        billed = sum(
            int(t.refs["energy_wh"])
            for t in transfers
            if t.code is Code.CONSUME and t.refs["meter"] == meter
        )
        billing = runtime.meters[meter].billing
        assert billing is not None
        # Every Wh the meter counted is in the book, paid or owed, but for less than a fen.
        assert billed + energy_of(billing.unbilled) == last - first
        assert billing.reg_wh == last
        charged_to_debt = sum(t.amount for t in transfers if t.debit == debt)
        assert charged_to_debt == owed
        alarms = [e.event.kind for e in runtime.store.events(category=Category.ALARM)]
        assert AlarmKind.UNPAID_ENERGY.value in alarms
        assert AlarmKind.ARREARS_TRIP.value not in {
            e.event.kind
            for e in runtime.store.events(category=Category.ALARM)
            if e.event.account == CLINIC
        }

        # A top-up: the next cycle pays the debt back in full before it bills anything new.
        assert runtime.recharge(CLINIC, 100_000, "wx-clinic-1", method="wechat")
        runtime.run_cycle()
        after = transfers_of(runtime.store)[len(transfers) :]
        repaid = [t for t in after if t.code is Code.DEBT_REPAY]
        assert [(t.debit, t.credit, t.amount) for t in repaid] == [
            (pocket_id(CLINIC, Pocket.PREPAID), debt, owed)
        ]
        new_energy = sum(
            t.amount
            for t in after
            if t.code is Code.CONSUME and t.unit == "fen" and owner_of(t.debit) == CLINIC
        )
        pockets = Pockets.from_book(runtime.store.book, CLINIC)
        assert pockets.debt_fen == 0
        assert pockets.prepaid_fen == 100_000 - owed - new_energy
        assert ledger_violations(transfers_of(runtime.store), book.balances()) == []
    finally:
        booted.close()
    _audit(site_files.site_toml)
