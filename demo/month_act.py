"""A demo act: a simulated month of a 30-shop market, billed by the concentrator runtime.

`act_month(workdir)` writes a demo site (`voltbook-demo site`), runs the real runtime on
it in-process on a virtual clock (two-hourly polls from 1 November to 2 December, so the month
end and December's subsidy are in it), tops up the first tenant cut off for arrears, and prints
what an operator would want to see: the month per building, the alarms by kind, the relays,
the meters read over LoRa (a couple of shops sit on a simulated radio bus: the real pyLoRa on
the simulator's SX127x stand-in, a lossy medium) and the ledger's verification. `make demo`
can call it; it takes about fifteen seconds.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from demo.site import LORA_BUS, write_demo_site
from edge.drivers.lora import RadioBus
from edge.runtime.audit import audit_store
from edge.runtime.boot import boot, read_node_key
from edge.runtime.clock import ManualClock
from edge.runtime.cycle import Runtime
from edge.site import Site, load_site
from edge.store import Category
from ledger.accounts import Pocket, Unit, pocket_id
from ledger.transfers import Code, Transfer
from ledger.units import Fen, fen_to_yuan

POLL = dt.timedelta(hours=2)
MONTH = dt.timedelta(days=31)
TOP_UP_FEN = 20_000
LORA_METERS = 2  # of the market's meters, on the simulated LoRa bus
WATER_METERS = 3  # the first shops also have a CJ/T 188 water meter, billed by volume


@dataclass(slots=True)
class MonthResult:
    cycles: int = 0
    relays: int = 0
    entries: int = 0
    subsidy_issued_wh: int = 0
    subsidy_expired_wh: int = 0
    per_building: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    alarms: Counter[str] = field(default_factory=Counter)
    tripped: list[str] = field(default_factory=list)
    lora_billed: Counter[str] = field(default_factory=Counter)  # meter → Wh billed over LoRa
    lora_entries: int = 0
    lora_attempts: int = 0
    lora_timeouts: int = 0
    lora_failed_reads: int = 0
    water: Counter[str] = field(default_factory=Counter)  # litres billed, free, fen charged
    valves_closed: list[str] = field(default_factory=list)  # accounts whose water was cut


def _run_month(runtime: Runtime, clock: ManualClock, start: dt.datetime) -> MonthResult:
    result = MonthResult()
    topped = False
    while clock.true_now() <= start + MONTH:
        report = runtime.run_cycle()
        result.cycles += 1
        result.relays += sum(o.confirmed for o in report.outcomes)
        dry = sorted(o for o, a in runtime.accounts.items() if a.arrears.tripped)
        for owner, account in runtime.accounts.items():
            if account.water_arrears.tripped and owner not in result.valves_closed:
                result.valves_closed.append(owner)
        if not topped and dry and report.now.hour >= 10:
            topped = True
            runtime.recharge(dry[0], TOP_UP_FEN, f"wx-demo-{dry[0]}", method="wechat")
            paid = fen_to_yuan(Fen(TOP_UP_FEN))
            print(f"  {report.now:%m-%d %H:%M} {dry[0]} was cut off, pays {paid} yuan by WeChat")
        clock.advance(POLL)
    result.tripped = sorted(o for o, a in runtime.accounts.items() if a.arrears.tripped)
    return result


def _tally(site: Site, runtime: Runtime, result: MonthResult) -> None:
    store = runtime.store
    transfers = [e.transfer for e in store.entries()]
    result.entries = len(transfers)
    result.alarms = Counter(e.event.kind for e in store.events(category=Category.ALARM))
    on_air = {m.address for m in site.meters if m.bus == LORA_BUS}
    radio = runtime.buses.get(LORA_BUS)
    if isinstance(radio, RadioBus):
        links = radio.stats.values()
        result.lora_attempts = sum(s.attempts for s in links)
        result.lora_timeouts = sum(s.timeouts for s in links)
        result.lora_failed_reads = sum(s.failures for s in links)
    for t in transfers:
        if t.code is Code.CONSUME and "volume_l" in t.refs:
            _tally_water(t, result)
            continue
        if t.code is Code.CONSUME and t.refs["meter"] in on_air:
            result.lora_entries += 1
            result.lora_billed[str(t.refs["meter"])] += int(t.refs["energy_wh"])
        if t.unit is Unit.L:
            continue  # free water issued and expired: litres, not Wh
        if t.code is Code.SUBSIDY_ISSUE:
            result.subsidy_issued_wh += t.amount
        elif t.code is Code.SUBSIDY_EXPIRE:
            result.subsidy_expired_wh += t.amount
        elif t.code is Code.CONSUME:
            owner = t.debit.partition(":")[0]
            sums = result.per_building[site.place(owner).building]
            sums["wh"] += int(t.refs["energy_wh"])
            if t.debit == pocket_id(owner, Pocket.PREPAID):
                sums["fen"] += t.amount
            else:
                sums["free_wh"] += t.amount


def _tally_water(t: Transfer, result: MonthResult) -> None:
    result.water["l"] += int(t.refs["volume_l"])
    if t.unit is Unit.L:
        result.water["free_l"] += t.amount
    else:
        result.water["fen"] += t.amount


def _print(result: MonthResult) -> None:
    print(
        f"  {result.cycles} poll cycles, {result.entries} ledger entries, "
        f"{result.relays} relay commands confirmed by read-back"
    )
    for building, sums in sorted(result.per_building.items()):
        kwh, free = sums["wh"] / 1000, sums["free_wh"] / 1000
        print(
            f"  {building}: {kwh:,.1f} kWh billed, {free:,.1f} kWh of it subsidy, "
            f"{fen_to_yuan(Fen(sums['fen']))} yuan charged"
        )
    meters = ", ".join(
        f"{meter} {wh / 1000:,.1f} kWh" for meter, wh in sorted(result.lora_billed.items())
    )
    print(
        f"  billed over LoRa ({LORA_BUS}, pyLoRa on the simulated SX127x): {meters}; "
        f"{result.lora_entries} consumption entries"
    )
    print(
        f"    the air: {result.lora_attempts} requests, {result.lora_timeouts} lost or garbled "
        f"and retried, {result.lora_failed_reads} reads failed"
    )
    water = result.water
    print(
        f"  water ({WATER_METERS} CJ/T 188 meters, tiered by the month's m³): "
        f"{water['l'] / 1000:,.2f} m³ billed, {water['free_l'] / 1000:,.2f} m³ of it free, "
        f"{fen_to_yuan(Fen(water['fen']))} yuan charged from the same prepaid pockets; "
        f"valves closed for arrears: {', '.join(result.valves_closed) or 'none'}"
    )
    issued, expired = result.subsidy_issued_wh / 1000, result.subsidy_expired_wh / 1000
    print(f"  subsidy: {issued:,.0f} kWh issued (1 Nov, 1 Dec), {expired:,.1f} kWh expired unused")
    print("  alarms: " + ", ".join(f"{kind} ×{n}" for kind, n in result.alarms.most_common()))
    print(f"  still cut off for arrears at the end: {', '.join(result.tripped) or 'nobody'}")


def act_month(workdir: Path) -> None:
    """Run and print a simulated month; raises RuntimeError if the ledger does not verify."""
    made = write_demo_site(workdir / "market", 30, lora=LORA_METERS, water=WATER_METERS)
    site = load_site(made.site_toml)
    assert site.simulation is not None and site.simulation.start is not None
    start = site.simulation.start
    print(
        f"A month of billing: {len(site.meters) - WATER_METERS} simulated DL/T 645 meters, "
        f"{LORA_METERS} of them on LoRa, and {WATER_METERS} CJ/T 188 water meters "
        f"({made.site_toml})"
    )
    print(f"  the runtime polls every {POLL}, from {start:%Y-%m-%d} for {MONTH.days} days")
    runtime_log = logging.getLogger("edge.runtime")
    level = runtime_log.level
    runtime_log.setLevel(logging.ERROR)  # the act prints a summary; the log would drown it
    clock = ManualClock(start)
    booted = boot(site, clock=clock)
    try:
        result = _run_month(booted.runtime, clock, start)
        _tally(site, booted.runtime, result)
    finally:
        booted.close()
        runtime_log.setLevel(level)
    _print(result)
    audit = audit_store(site, read_node_key(site.settings.node_key).public_key)
    if not audit.ok:
        raise RuntimeError(f"the month's ledger does not verify: {audit.problem}")
    summary = audit.summary
    print(
        f"  ledger verify: ok, {summary['entries']} entries signed through seq "
        f"{summary['signed_through']}, {len(summary['invariants'])} invariants hold, "
        f"per meter billed + unbilled = register delta ({summary['meters_checked']} meters)"
    )
