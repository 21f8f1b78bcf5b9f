"""A simulated month of 30 meters on a virtual clock, checked against an independent oracle.

The runtime runs in-process (real store, real DL/T 645 frames over a `DirectBus`, simulated
meters with steady loads) from 1 November to 6 December at 2-hour polls. The oracle knows only
the simulator's registers at a few moments, the tariff and the subsidy table; it never asks
the rules. It checks:

- subsidies: issued once per account and period, on the set day (the 5th, 06:00), never early;
  November's cleared at the month end; the free energy used is exactly min(subsidy, energy
  used from the issue to the month end);
- consumption: per meter, billed (paid or booked as debt) + still unbilled energy = the
  simulator's register delta; per account, fen charged = the flat price × the energy not paid
  by subsidy, rounded once, and what is still unbilled costs less than a fen;
- relays: night kettles trip the malicious-load protection and reclose; accounts that run out
  trip (never in friendly hours) and their registers stand still while tripped; a top-up
  closes them; at the end every simulated relay stands where the rules want it;
- the ledger invariants and the signed chain (`ledger verify --config`) after the scenario.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from pathlib import Path

import pytest

from demo.sim.simulation import building_of
from edge.rules.decisions import AlarmKind
from edge.rules.tariffs import energy_of
from edge.runtime.audit import audit_store
from edge.runtime.boot import read_node_key
from edge.runtime.codec import decode
from edge.runtime.state import MeterRuntime, meter_key
from edge.site import load_site
from edge.store import Category, Store
from edge.store.config_db import ConfigDB, ConfigKind
from ledger.accounts import Pocket, System, owner_of, pocket_id, system_id
from ledger.invariants import ledger_violations
from ledger.transfers import Code
from ledger.units import EXACT_PER_FEN, ExactCost, fen_rounded
from tests.edge.runtime.conftest import START, ZONE, booted_at, demo

PRICE = 8_365  # the demo's flat tariff, 0.0001 CNY/kWh
POLL = dt.timedelta(hours=2)
END = dt.datetime(2026, 12, 6, 0, 0, tzinfo=ZONE)
ISSUE_NOV = dt.datetime(2026, 11, 5, 6, 0, tzinfo=ZONE)
MONTH_END = dt.datetime(2026, 12, 1, 0, 0, tzinfo=ZONE)
ISSUE_DEC = dt.datetime(2026, 12, 5, 6, 0, tzinfo=ZONE)
TOP_UP = dt.datetime(2026, 11, 20, 10, 0, tzinfo=ZONE)
TOP_UP_ACCOUNT, TOP_UP_FEN = "A0004", 100_000
STILL = (dt.datetime(2026, 11, 2, 8, 0, tzinfo=ZONE), dt.datetime(2026, 11, 4, 20, 0, tzinfo=ZONE))
PROFILES = ("steady_shop", "night_kettle", "constant", "steady_shop", "idle")
SUBSIDY = {"merchant": 20_000, "office": 30_000}
SUBSIDY_BY_CATEGORY = {"restaurant": 50_000}


def _configure(config: Path) -> None:
    with ConfigDB.open(config) as db:
        db.put(
            ConfigKind.RULES,
            {"id": "billing", "tariff": "commercial_flat", "max_power_w": 11_000},
        )
        db.put(
            ConfigKind.RULES,
            {
                "id": "subsidy",
                "issue_day": 5,
                "issue_at": "06:00",
                "month_end": "clear",
                "by_type": SUBSIDY,
                "by_category": SUBSIDY_BY_CATEGORY,
            },
        )
        db.put(
            ConfigKind.RULES,
            {
                "id": "protection",
                # A kettle (2 kW at PF 0.97) left on all night.
                "windows": [{"min_w": 1_900, "max_w": 2_600, "min_pf": 0.95, "max_pf": 1.0}],
                "debounce_readings": 2,
                "reclose_after_s": 300,
                "lockout_trips": 5,
                "lockout_window_s": 3_600,
            },
        )


@pytest.mark.slow
def test_a_month_of_thirty_meters_matches_the_oracle(tmp_path: Path) -> None:
    site_files = demo(tmp_path, 30, tariff="flat", poll_interval_s=7_200, profiles=PROFILES)
    _configure(site_files.directory / "config.json")
    site = load_site(site_files.site_toml)
    booted, clock = booted_at(site, START)
    runtime, building = booted.runtime, building_of(booted)
    initial = building.registers_wh()
    registers: dict[dt.datetime, dict[str, int]] = {}
    relays_seen: dict[str, set[bool]] = defaultdict(set)
    try:
        while clock.true_now() <= END:
            now = clock.true_now()
            runtime.run_cycle()
            registers[now] = building.registers_wh()
            for address, meter in building.meters.items():
                relays_seen[address].add(meter.state.relay_closed)
            if now == TOP_UP:
                assert runtime.recharge(TOP_UP_ACCOUNT, TOP_UP_FEN, "wx-topup-1", method="wechat")
            clock.advance(POLL)
    finally:
        booted.close()

    key = read_node_key(site.settings.node_key)
    audit = audit_store(site, key.public_key)
    assert audit.ok, audit.problem
    final = registers[END]
    with Store.open(site.settings.store_path, read_only=True) as store:
        transfers = [e.transfer for e in store.entries()]
        assert ledger_violations(transfers, store.book.balances()) == []
        states = {
            m.address: decode(MeterRuntime, store.get_state(meter_key(m.address)))
            for m in site.meters
        }
        alarms = store.events(category=Category.ALARM)
        balances = store.book

    # -- consumption: per meter, billed + unbilled = the simulator's register delta ----------
    billed: dict[str, int] = defaultdict(int)
    for t in transfers:
        if t.code is Code.CONSUME:
            billed[str(t.refs["meter"])] += int(t.refs["energy_wh"])
    for address, state in states.items():
        assert state.billing is not None and state.first_reg_wh == initial[address]
        assert state.billing.reg_wh == final[address]
        assert (
            billed[address] + energy_of(state.billing.unbilled) == final[address] - initial[address]
        )

    # -- subsidy: once per account and period, on the set day, cleared at month end ----------
    issues = [t for t in transfers if t.code is Code.SUBSIDY_ISSUE]
    assert {t.time for t in issues} == {ISSUE_NOV.isoformat(), ISSUE_DEC.isoformat()}
    periods = defaultdict(list)
    for t in issues:
        periods[t.credit].append(t.refs["period"])
    for owner, account in site.accounts.items():
        shop = site.shop_of(owner)
        amount = SUBSIDY_BY_CATEGORY.get(
            shop.category if shop else "", SUBSIDY.get(account.type, 0)
        )
        assert sorted(periods[pocket_id(owner, Pocket.SUBSIDY)]) == ["2026-11", "2026-12"]
        used = _energy(site, owner, registers, ISSUE_NOV, MONTH_END)
        expired = [
            t.amount for t in transfers
            if t.code is Code.SUBSIDY_EXPIRE and t.debit == pocket_id(owner, Pocket.SUBSIDY)
        ]  # fmt: skip
        assert sum(expired) == max(0, amount - used), owner
        left = balances.balance(pocket_id(owner, Pocket.SUBSIDY)).posted
        used_dec = _energy(site, owner, registers, ISSUE_DEC, END)
        # Only energy a fen could not yet pay (≤ one register step) may take it: energy used
        # with no money left was booked as debt, which free energy does not pay.
        assert 0 <= max(0, amount - used_dec) - left <= 10, owner

    # -- money: per account, fen (paid or owed) = price × energy not paid by subsidy, rounded
    # once; every Wh is in the book: the debt is what was charged and not paid back ----------
    for owner in site.accounts:
        meters = [m.address for m in site.meters_of(owner)]
        energy = sum(final[a] - initial[a] for a in meters)
        unbilled = sum(energy_of(states[a].billing.unbilled) for a in meters)  # type: ignore[union-attr]
        from_subsidy = sum(
            t.amount for t in transfers
            if t.code is Code.CONSUME and t.debit == pocket_id(owner, Pocket.SUBSIDY)
        )  # fmt: skip
        charged = sum(
            t.amount for t in transfers
            if t.code is Code.CONSUME and t.unit == "fen" and owner_of(t.debit) == owner
        )  # fmt: skip
        paid_wh = energy - unbilled - from_subsidy
        assert charged == fen_rounded(ExactCost(paid_wh * PRICE)), owner
        assert unbilled * PRICE < 2 * EXACT_PER_FEN, owner  # what waits costs less than a fen
        owed = sum(t.amount for t in transfers if t.debit == pocket_id(owner, Pocket.DEBT))
        repaid = sum(t.amount for t in transfers if t.credit == pocket_id(owner, Pocket.DEBT))
        assert -balances.balance(pocket_id(owner, Pocket.DEBT)).posted == owed - repaid >= 0
    sales = balances.balance(system_id(System.ENERGY_SALES)).posted
    assert sales == sum(t.amount for t in transfers if t.code is Code.CONSUME and t.unit == "fen")

    # -- relays: protection trips and recloses, arrears trips and closes ---------------------
    kinds = defaultdict(set)
    for stored in alarms:
        kinds[stored.event.kind].add(stored.event.meter or stored.event.account)
    profile = {m.address: building.meters[m.address].profile for m in site.meters}
    night = {a for a, p in profile.items() if p == "night_kettle"}
    kettles = {a for a, p in profile.items() if p in ("night_kettle", "constant")}
    assert night <= kinds[AlarmKind.MALICIOUS_LOAD.value] <= kettles
    assert night <= kinds[AlarmKind.RECLOSE.value]
    seed = json.loads((site_files.directory / "seed.json").read_text())["recharges"]
    poor = {r["account"] for r in seed if r["fen"] < 1_000}
    tripped = kinds[AlarmKind.ARREARS_TRIP.value]
    idle = {m.account for m in site.meters if profile[m.address] == "idle"}
    keep_power = {o for o, a in site.accounts.items() if a.keep_power}
    assert poor - idle - keep_power <= tripped  # every poor tenant who uses power runs out
    assert not tripped & keep_power
    assert TOP_UP_ACCOUNT in kinds[AlarmKind.ARREARS_CLOSE.value]
    for stored in alarms:
        if stored.event.kind == AlarmKind.ARREARS_TRIP.value:
            local = stored.event.time.astimezone(ZONE)
            assert 8 <= local.hour < 20, f"a trip in friendly hours at {local}"
    # A poor tenant, tripped for arrears before the subsidy came, used no energy meanwhile.
    stopped = [
        m.address for m in site.meters
        if m.account in poor & tripped and profile[m.address] in ("steady_shop", "constant")
    ]  # fmt: skip
    assert stopped
    for address in stopped:
        assert registers[STILL[0]][address] == registers[STILL[1]][address], address
    for meter in site.meters:
        wanted_open = bool(states[meter.address].relay.held)
        assert building.meters[meter.address].state.relay_closed is not wanted_open


def _energy(
    site: object, owner: str, registers: dict[dt.datetime, dict[str, int]],
    start: dt.datetime, end: dt.datetime,
) -> int:  # fmt: skip
    meters = [m.address for m in site.meters_of(owner)]  # type: ignore[attr-defined]
    return sum(registers[end][a] - registers[start][a] for a in meters)
