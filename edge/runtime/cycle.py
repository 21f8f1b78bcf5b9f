"""One poll cycle, and the `Runtime` that runs them: billing that never stops.

    clock guard ─► read every meter (per bus, one request at a time) ─► per account: bill each
    meter, protect it, subsidy, arrears, settle relays ─► daily low-balance check
    ─► ONE store transaction: transfers (each linked chain one batch), readings, events and
       alarms, rule states, a signed checkpoint ─► after the commit only: relay commands,
       confirmed by read-back; their outcomes go into the next cycle's transaction

Crash safety comes from that shape. Rule states commit with the transfers they produced, so
after a crash the rules resume exactly where the ledger is; a cycle that dies before its
commit leaves nothing, and the next one bills the same energy again from the same register
(consumption ids derive from the register span: the book would say `exists` for a repeat).
A relay command is only sent once the decision is durable; if the process dies before sending
it, the next reading shows the relay where it was and the runtime sends it again.

The in-memory states are replaced only after a successful commit: a cycle that fails (a full
disk, a store error) leaves the runtime exactly as the store is, and the next cycle retries.
That is also what lets the transaction defer the book's lookups to one query before it writes
(`Store.transaction(defer_lookups=True)`): if a transfer it took for new was booked before,
nothing was written, and the cycle is decided again with a lookup per transfer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from edge.drivers.base import Bus, MeterDriver
from edge.drivers.reconnect import BusDown, ReconnectingBus
from edge.rules.clock_check import ClockVerdict
from edge.rules.decisions import RelayCommand, Severity
from edge.rules.low_balance import BalanceView, LowBalanceState, check_low_balance, render
from edge.rules.pockets import Pockets
from edge.rules.tariffs import reference_price
from edge.rules.times import stamp
from edge.runtime.accounting import AccountTurn, CycleWork
from edge.runtime.blocks import BlockReport, judge_block
from edge.runtime.clock import Clock, ClockGuard
from edge.runtime.events import RuntimeKind, alarm_event, runtime_event
from edge.runtime.meter_windows import (
    MeterWindowState,
    load_states,
    save_states,
    with_meter_trips,
    write_windows,
)
from edge.runtime.operator import OperatorRelay, operator_relay
from edge.runtime.polling import MeterRead, read_meter_clocks, read_meters
from edge.runtime.read_success import (
    BlockTally,
    BusReads,
    bus_reads,
    low_rate_events,
    merged_reads,
    quantisation_events,
    round_event,
)
from edge.runtime.reconfigure import CONFIG_KEY, Documents, carry_states, write_documents
from edge.runtime.relays import RelayOrder, RelayOutcome, execute
from edge.runtime.state import (
    CLOCK_KEY,
    LOW_BALANCE_KEY,
    RAISED_KEY,
    AccountRuntime,
    ClockState,
    MeterRuntime,
    RaisedAlarms,
    StateTable,
    account_key,
    meter_key,
)
from edge.runtime.trusted_time import trust_installer_time
from edge.site.model import MeterConfig, Site
from edge.store import (
    BookedBefore,
    Category,
    Event,
    Store,
    StoreError,
    TimedReading,
    Transaction,
)
from ledger import entry_ids
from ledger.accounts import Pocket, System, Unit, pocket_id, system_id
from ledger.chain import NodeKey
from ledger.transfers import Code, Transfer

log = logging.getLogger("edge.runtime")


@dataclass(slots=True)
class _Staged:
    """What a `Runtime.transaction()` applies to the runtime once it has committed."""

    meters: dict[str, MeterRuntime] = field(default_factory=dict)
    accounts: dict[str, AccountRuntime] = field(default_factory=dict)
    site: Site | None = None
    documents: Documents | None = None


@dataclass(frozen=True, slots=True)
class _Round:
    """A cycle's read round, as its transaction decides on it (`Runtime._decide`)."""

    report: CycleReport
    verdict: ClockVerdict
    reads: dict[str, MeterRead]
    tallies: dict[str, BlockTally]
    buses_down: dict[str, str]
    windows: dict[str, MeterWindowState]
    window_events: list[Event]


@dataclass(frozen=True, slots=True)
class _Decided:
    """What a cycle's transaction decided and committed (`Runtime._decide`)."""

    tx: Transaction
    work: CycleWork
    meters: dict[str, MeterRuntime]
    accounts: dict[str, AccountRuntime]
    low_balance: LowBalanceState
    raised: RaisedAlarms
    events: list[Event]
    checkpoint: int


@dataclass(slots=True)
class CycleReport:
    number: int
    now: dt.datetime
    plausible: bool
    clock_reason: str
    read: int = 0
    failed: int = 0
    transfers: int = 0
    alarms: list[Event] = field(default_factory=list)
    orders: list[RelayOrder] = field(default_factory=list)
    outcomes: list[RelayOutcome] = field(default_factory=list)
    seq: int = 0
    buses_down: list[str] = field(default_factory=list)
    buses: list[BusReads] = field(default_factory=list)  # each bus's read success

    def summary(self) -> str:
        confirmed = sum(o.confirmed for o in self.outcomes)
        return (
            f"cycle {self.number} at {self.now:%Y-%m-%d %H:%M}: {self.read} meters read, "
            f"{self.failed} failed, {self.transfers} transfers (head seq {self.seq}), "
            f"{len(self.alarms)} alarms, {len(self.orders)} relay commands "
            f"({confirmed} confirmed)"
            + ("" if self.plausible else f"; CLOCK HELD: {self.clock_reason}")
            + (f"; BUS DOWN: {', '.join(self.buses_down)}" if self.buses_down else "")
        )


class Runtime:
    """The concentrator's billing loop for one site; `run_cycle()` is one poll cycle.

    `world` is called at the start of every cycle, before the meters are read: a simulated
    building advances its loads to the true time and saves itself there (see
    `demo.sim.persist`); None for real meters. `progress` is called before each meter read and
    each relay command (the runner pings systemd's watchdog from it).
    """

    def __init__(
        self,
        site: Site,
        store: Store,
        key: NodeKey,
        buses: Mapping[str, Bus],
        clock: Clock,
        *,
        world: Callable[[], None] | None = None,
        parallel: bool = False,
        progress: Callable[[], None] | None = None,
        install: Callable[[MeterConfig, int], None] | None = None,
    ) -> None:
        self.site = site
        self.store = store
        self.key = key
        self.buses = dict(buses)
        self.drivers: dict[str, MeterDriver] = {
            bus.name: bus.driver().with_blocks(site.blocks_of(bus)) for bus in site.buses
        }
        self.policies = site.consumption_policies()
        self.guard = ClockGuard(clock, site.zone)
        self.world = world
        self.parallel = parallel
        self.progress = progress  # called as meters are read and relays commanded
        self.install = install  # a simulated building installs a meter a new site adds
        self.table = StateTable(store)
        self.clock_state = self.table.load(CLOCK_KEY, ClockState, ClockState())
        self.guard.last_known = self.clock_state.last_known
        trust_installer_time(self.guard, self.table)  # `clock set` earlier in this boot
        self.meters, self.accounts = carry_states(site, self.table, store, {}, {})
        self.windows = load_states(self.table, site)  # malicious-load windows meters hold
        self.low_balance = self.table.load(LOW_BALANCE_KEY, LowBalanceState, LowBalanceState())
        self.outcomes: list[RelayOutcome] = []  # to record in the next transaction
        self.checkpointed = max((cp.seq for cp in store.checkpoints()), default=0)
        # Buses whose port is down (and why), buses whose read success is below the site's
        # minimum, meters whose float energy register is too coarse: alarm raised as of the
        # last commit, not cleared yet (stored, so a restart does not raise them again).
        self.raised = self.table.load(RAISED_KEY, RaisedAlarms, RaisedAlarms())
        # Each site block's reads since the last cycle's commit (its `read_round` event).
        self.block_tallies: dict[str, BlockTally] = {}
        self._staged: _Staged | None = None  # what `transaction()` applies once committed

    # -- the cycle -------------------------------------------------------------------------------
    def run_cycle(self, *blocks: str) -> CycleReport:
        """One whole poll cycle: `commit_cycle()`, then `send_relays()` for what it decided.
        `blocks`: site blocks due at this point, read with the billing read."""
        report = self.commit_cycle(*blocks)
        self.send_relays(report)
        log.info("%s", report.summary())
        return report

    def commit_cycle(self, *blocks: str) -> CycleReport:
        """Read, decide and commit a cycle; its relay orders are durable but not yet sent."""
        verdict, mono = self.guard.judge()
        now = verdict.now.astimezone(self.site.zone)
        number = self.clock_state.cycles + 1
        report = CycleReport(number, now, verdict.plausible, verdict.reason)
        if self.world is not None:
            self.world()
        for bus in self._reconnecting().values():
            bus.reconnect_if_due()  # a port that came back is read this very cycle
        reads, tallies = self._read_round(blocks)
        reads, windows, window_events = self._meter_windows(reads, now)
        report.read = sum(r.reading is not None for r in reads.values())
        report.failed = len(reads) - report.read
        buses_down = {
            name: bus.health().reason
            for name, bus in self._reconnecting().items()
            if not bus.health().up
        }
        report.buses_down = sorted(buses_down)
        report.buses = bus_reads(reads.values(), buses_down)
        clock_state = ClockState(
            last_known=now,
            held_since=None if verdict.plausible else (self.clock_state.held_since or now),
            cycles=number,
        )
        round_ = _Round(report, verdict, reads, tallies, buses_down, windows, window_events)
        # The cycle's transfers are new but after a crash or a replay: the book takes them for
        # new and the store looks them all up at once before writing (one query, not one a
        # transfer); if one was booked before, nothing was written and the cycle is decided
        # again, the book looking each transfer up as it applies it.
        try:
            done = self._decide(round_, clock_state, defer_lookups=True)
        except BookedBefore as booked:
            log.info("cycle %d: %s; deciding it again", number, booked)
            done = self._decide(round_, clock_state, defer_lookups=False)
        self.table.committed()
        self.outcomes = []  # recorded in this transaction
        self.meters, self.accounts, self.low_balance = done.meters, done.accounts, done.low_balance
        self.clock_state, self.windows = clock_state, windows
        self.raised, self.block_tallies = done.raised, {}
        self.guard.known(now, mono)
        self.checkpointed = done.checkpoint
        report.transfers = done.work.transfers
        report.alarms = [e for e in done.events if e.category is Category.ALARM]
        report.orders = [o for o in done.tx.released() if isinstance(o, RelayOrder)]
        report.seq = self.store.chain.seq
        return report

    def _decide(self, round_: _Round, clock_state: ClockState, *, defer_lookups: bool) -> _Decided:
        """Decide a read round in ONE store transaction, and commit it."""
        report, now, reads = round_.report, round_.report.now, round_.reads
        verdict = round_.verdict
        work = CycleWork(now, verdict.source, verdict.plausible)
        meters = dict(self.meters)
        accounts = dict(self.accounts)
        self.table.begin()
        with self.store.transaction(defer_lookups=defer_lookups) as tx:
            events = self._outcome_events(now, meters)
            events += self._clock_events(now, verdict.plausible, verdict.reason)
            events += self._bus_events(now, round_.buses_down)
            events += self._read_events(now, reads, meters)
            events.append(round_event(self.site, now, report.buses, round_.tallies))
            low_events, low_read_buses = low_rate_events(
                self.site,
                now,
                report.buses,
                self.site.settings.read_success_min,
                self.raised.low_read_buses,
            )
            coarse_events, coarse_meters = quantisation_events(
                self.site, now, reads.values(), self.raised.coarse_meters
            )
            events += low_events + coarse_events + round_.window_events
            turn = AccountTurn(self.site, tx, self.store.book, work, self.policies)
            for owner in sorted(self.site.accounts):
                accounts[owner] = turn.run(
                    self.site.accounts[owner], accounts[owner], meters, reads
                )
            low_balance = self._low_balance(work, accounts, turn.pockets)
            events += [alarm_event(self.site, now, alarm) for alarm in work.alarms]
            tx.insert_readings(
                TimedReading(now, r.reading) for r in reads.values() if r.reading is not None
            )
            tx.add_events(events)
            raised = RaisedAlarms(round_.buses_down, low_read_buses, coarse_meters)
            self._save_states(
                tx,
                meters,
                accounts,
                low_balance,
                clock_state,
                windows=round_.windows,
                raised=raised,
            )
            checkpoint = self._checkpoint(tx)
            tx.defer(*work.orders)
        return _Decided(tx, work, meters, accounts, low_balance, raised, events, checkpoint)

    def _read_round(
        self, blocks: tuple[str, ...]
    ) -> tuple[dict[str, MeterRead], dict[str, BlockTally]]:
        """The billing read of every meter, with `blocks` where their buses run them; and the
        blocks' tallies since the last cycle, these reads included."""
        also: dict[str, list[str]] = {}
        for name in blocks:
            for bus in self.block_buses(name):
                also.setdefault(bus, []).append(name)
        reads = read_meters(
            self.buses,
            self.drivers,
            self.site.meters,
            parallel=self.parallel,
            progress=self.progress,
            also=also,
        )
        tallies = {name: t.copy() for name, t in self.block_tallies.items()}
        for name in blocks:
            merged = merged_reads(reads.values(), name, self.block_buses(name))
            tallies.setdefault(name, BlockTally()).add(merged)
        return reads, tallies

    # -- block rounds (edge.runtime.blocks) ------------------------------------------------------
    def block_buses(self, name: str) -> frozenset[str]:
        """The buses a site block is read on: those running one of its protocols."""
        block = next(b for b in self.site.settings.blocks if b.name == name)
        return frozenset(bus.name for bus in self.site.buses if bus.protocol in block.protocols)

    def run_block_round(self, name: str) -> BlockReport:
        """Read site block `name` and let protection judge it; commits only when it acts."""
        verdict, _ = self.guard.judge()
        now = verdict.now.astimezone(self.site.zone)
        if self.world is not None:
            self.world()
        buses = self.block_buses(name)
        reads = read_meters(
            self.buses,
            self.drivers,
            [m for m in self.site.meters if m.bus in buses],
            parallel=self.parallel,
            progress=self.progress,
            block=name,
        )
        self.block_tallies.setdefault(name, BlockTally()).add(bus_reads(reads.values(), ()))
        judged = judge_block(now, reads, self.meters, self.accounts, self.site.rules.protection)
        self.meters.update(judged.quiet)  # committed with the next cycle's states
        report = BlockReport(name, now, sum(r.reading is not None for r in reads.values()))
        report.failed = len(reads) - report.read
        if judged.acted:
            with self.transaction() as tx:
                for address, state in judged.acted.items():
                    self.stage_meter(tx, address, state)
                tx.add_events([alarm_event(self.site, now, a) for a in judged.alarms])
                tx.defer(*judged.orders)
            report.alarms = len(judged.alarms)
            report.outcomes = self.send_orders(
                order for order in tx.released() if isinstance(order, RelayOrder)
            )
            log.info("%s", report.summary())
        return report

    def send_relays(self, report: CycleReport) -> None:
        """Send the relay orders of a committed cycle; outcomes go into the next transaction."""
        report.outcomes = self.send_orders(report.orders)

    def send_orders(self, orders: Iterable[RelayOrder]) -> list[RelayOutcome]:
        """Send committed relay orders now; outcomes go into the next cycle's transaction."""
        return [self._send(order) for order in orders]

    def _send(self, order: RelayOrder) -> RelayOutcome:
        meter = order.meter
        if self.progress is not None:
            self.progress()
        outcome = execute(self.buses[meter.bus], self.drivers[meter.bus], order)
        state = self.meters[meter.address]
        relay = state.relay
        if outcome.confirmed:
            relay = dataclasses.replace(relay, failing_since=None, failures=0, no_relay=False)
        else:
            relay = dataclasses.replace(
                relay,
                failing_since=relay.failing_since or order.decided_at,
                failures=relay.failures + 1,
                no_relay=outcome.unsupported,
            )
        self.meters[meter.address] = dataclasses.replace(state, relay=relay)
        self.outcomes.append(outcome)
        return outcome

    def _meter_windows(
        self, reads: dict[str, MeterRead], now: dt.datetime
    ) -> tuple[dict[str, MeterRead], dict[str, MeterWindowState], list[Event]]:
        """Meters that judge malicious load themselves: their own trip counters read into
        `reads`, and the windows they lack written (`edge.runtime.meter_windows`)."""
        reads = with_meter_trips(self.buses, self.drivers, reads)
        windows, events = write_windows(
            self.site, self.buses, self.drivers, states=self.windows, reads=reads, now=now
        )
        return reads, windows, events

    # -- events ----------------------------------------------------------------------------------
    def _outcome_events(self, now: dt.datetime, meters: dict[str, MeterRuntime]) -> list[Event]:
        events = []
        for outcome in self.outcomes:
            order = outcome.order
            state = meters.get(order.meter.address)  # None: swapped out since it was sent
            detail = {
                "command": order.command.value,
                "cause": None if order.cause is None else order.cause.value,
                "reason": order.reason,
                "attempts": outcome.attempts,
            }
            if outcome.confirmed:
                kind, message, severity = (
                    RuntimeKind.RELAY_CONFIRMED,
                    f"relay {order.command.value} confirmed",
                    None,
                )
            elif state is None or state.relay.failures <= 1:
                kind, message, severity = (
                    RuntimeKind.RELAY_FAILED,
                    f"relay {order.command.value} failed: {outcome.error}",
                    Severity.CRITICAL,
                )
            else:
                kind, message, severity = (
                    RuntimeKind.RELAY_STILL_FAILING,
                    f"relay {order.command.value} still failing: {outcome.error}",
                    None,
                )
            events.append(
                runtime_event(
                    self.site, now, kind, message, meter=order.meter, alarm=severity, detail=detail
                )
            )
        return events

    def _clock_events(self, now: dt.datetime, plausible: bool, reason: str) -> list[Event]:
        held = self.clock_state.held_since is not None
        if not plausible and not held:
            message = f"{reason}; subsidies, cut-offs and alarm times are held"
            kind, severity = RuntimeKind.CLOCK_IMPLAUSIBLE, Severity.CRITICAL
        elif plausible and held:
            message, kind, severity = reason, RuntimeKind.CLOCK_PLAUSIBLE, None
        else:
            return []
        return [runtime_event(self.site, now, kind, message, alarm=severity)]

    def _reconnecting(self) -> dict[str, ReconnectingBus]:
        return {n: b for n, b in self.buses.items() if isinstance(b, ReconnectingBus)}

    def _bus_events(self, now: dt.datetime, down: Mapping[str, str]) -> list[Event]:
        """An alarm for each bus that went down since the last commit, an event for each
        that came back. Its meters' own alarms stay quiet: the bus is what failed."""
        events = []
        was_down = self.raised.buses_down
        for name in sorted(down.keys() - was_down.keys()):
            events.append(
                runtime_event(
                    self.site,
                    now,
                    RuntimeKind.BUS_DOWN,
                    f"bus {name} is down, its meters are not read: {down[name]}",
                    alarm=Severity.CRITICAL,
                    detail={"bus": name, "reason": down[name]},
                )
            )
        for name in sorted(was_down.keys() - down.keys()):
            events.append(
                runtime_event(
                    self.site,
                    now,
                    RuntimeKind.BUS_UP,
                    f"bus {name} is up again (was down: {was_down[name]})",
                    detail={"bus": name},
                )
            )
        return events

    def _read_events(
        self, now: dt.datetime, reads: Mapping[str, MeterRead], meters: dict[str, MeterRuntime]
    ) -> list[Event]:
        events = []
        for address, read in reads.items():
            state = meters[address]
            if isinstance(read.error, BusDown):
                continue  # not the meter's fault: the bus's alarm says it (`_bus_events`)
            if read.error is not None:
                failures = state.read_failures + 1
                meters[address] = dataclasses.replace(
                    state, read_failures=failures, last_error=str(read.error)
                )
                if failures == 1:
                    events.append(
                        runtime_event(
                            self.site,
                            now,
                            RuntimeKind.METER_UNREADABLE,
                            f"cannot read: {read.error}",
                            meter=self.site.meter(address),
                            alarm=Severity.WARNING,
                        )
                    )
            elif state.read_failures:
                meters[address] = dataclasses.replace(state, read_failures=0, last_error="")
                events.append(
                    runtime_event(
                        self.site,
                        now,
                        RuntimeKind.METER_READABLE,
                        f"read again after {state.read_failures} failed cycles",
                        meter=self.site.meter(address),
                    )
                )
        return events

    # -- low balance -----------------------------------------------------------------------------
    def _low_balance(
        self,
        work: CycleWork,
        accounts: Mapping[str, AccountRuntime],
        pockets: Callable[[str], Pockets],
    ) -> LowBalanceState:
        if not work.plausible:
            return self.low_balance  # the alarm time is time-driven: held
        if work.now.timetz().replace(tzinfo=None) < self.site.rules.low_balance.alarm_at:
            return self.low_balance  # not yet the day's alarm time: nothing to look at
        checked, today = self.low_balance.checked, work.now.date()
        views = [
            BalanceView(
                owner,
                self.site.place(owner),
                pockets(owner),
                reference_price(self.site.tariff_of(owner)),
                accounts[owner].daily_wh,
                self.site.water_price(owner),
            )
            for owner in sorted(self.site.accounts)
            if accounts[owner].moved_out is None  # a tenant who left has nothing to top up
            and checked.get(owner) != today  # the rule looks once a day: no view to build
        ]
        result = check_low_balance(work.now, views, self.low_balance, self.site.rules.low_balance)
        work.alarms += result.decisions.alarms
        if result.report:
            log.info("low balances by building, floor and shop:\n%s", render(result.report))
        return result.state

    # -- writing ---------------------------------------------------------------------------------
    def _save_states(
        self,
        tx: Transaction,
        meters: Mapping[str, MeterRuntime],
        accounts: Mapping[str, AccountRuntime],
        low_balance: LowBalanceState,
        clock_state: ClockState,
        *,
        windows: Mapping[str, MeterWindowState],
        raised: RaisedAlarms,
    ) -> None:
        save_states(self.table, tx, windows)
        self.table.save(tx, RAISED_KEY, raised)
        for address, meter in meters.items():
            self.table.save(tx, meter_key(address), meter)
        for owner, account in accounts.items():
            self.table.save(tx, account_key(owner), account)
        self.table.save(tx, LOW_BALANCE_KEY, low_balance)
        self.table.save(tx, CLOCK_KEY, clock_state)

    def _checkpoint(self, tx: Transaction) -> int:
        """Sign the chain's head if it moved; returns the seq signed so far."""
        chain = self.store.chain
        if chain.seq > self.checkpointed:
            tx.add_checkpoint(chain.checkpoint(self.key))
        return chain.seq

    def checkpoint(self) -> bool:
        """Sign the head now if it is not signed yet (the periodic job); True if it signed."""
        if self.store.chain.seq <= self.checkpointed:
            return False
        with self.store.transaction() as tx:
            seq = self._checkpoint(tx)
        self.checkpointed = seq
        return True

    def check_meter_clocks(self) -> int:
        """Read a few meters' clocks for the clock guard's next judgement; how many answered."""
        if self.world is not None:
            self.world()  # a simulated building catches up with the present before any read
        times = read_meter_clocks(self.buses, self.drivers, self.site.meters, self.site.zone)
        self.guard.meters_say(times)
        if times:
            log.info("meter clocks read: %d, median %s", len(times), sorted(times)[len(times) // 2])
        return len(times)

    # -- between cycles: cloud commands, acknowledgements ----------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A store transaction outside the poll cycle (the same thread, between cycles) that
        leaves the chain signed to its head, like every cycle's commit. States and a site
        staged in it (`stage_meter`, `stage_account`, `stage_site`, `operator_relay`) become
        the runtime's only once it has committed."""
        if self._staged is not None:
            raise RuntimeError("runtime transactions do not nest")
        staged = self._staged = _Staged()
        self.table.begin()
        try:
            with self.store.transaction() as tx:
                yield tx
                signed = self._checkpoint(tx)
        finally:
            self._staged = None
        self.table.committed()
        self.checkpointed = signed
        self.meters.update(staged.meters)
        self.accounts.update(staged.accounts)
        if staged.site is not None:
            self.use_site(staged.site, staged.documents)

    def _staging(self, what: str) -> _Staged:
        if self._staged is None:
            raise RuntimeError(f"{what} runs inside Runtime.transaction()")
        return self._staged

    def meter_state(self, address: str) -> MeterRuntime:
        """A meter's state, as staged in the open transaction or as committed."""
        staged = self._staged.meters.get(address) if self._staged is not None else None
        return staged or self.meters[address]

    def account_state(self, owner: str) -> AccountRuntime:
        """An account's state, as staged in the open transaction or as committed."""
        staged = self._staged.accounts.get(owner) if self._staged is not None else None
        return staged or self.accounts[owner]

    def stage_meter(self, tx: Transaction, address: str, state: MeterRuntime) -> None:
        """Store a meter's new state in `tx`; the runtime uses it once `tx` has committed."""
        self._staging("stage_meter").meters[address] = state
        self.table.save(tx, meter_key(address), state)

    def stage_account(self, tx: Transaction, owner: str, state: AccountRuntime) -> None:
        """Store an account's new state in `tx`; the runtime uses it once `tx` has committed."""
        self._staging("stage_account").accounts[owner] = state
        self.table.save(tx, account_key(owner), state)

    def stage_site(self, tx: Transaction, site: Site, version: int, documents: Documents) -> None:
        """Store configuration `documents` (already parsed into `site`) in `tx`; once it has
        committed they are written to the configuration file and the runtime uses `site`."""
        staged = self._staging("stage_site")
        tx.set_state(CONFIG_KEY, {"version": version, "documents": documents})
        staged.site, staged.documents = site, documents

    def use_site(self, site: Site, documents: Documents | None = None) -> None:
        """Run `site` from now on (its documents, if given, written to the configuration file
        first): new meters start polling and billing, removed ones stop, meters and accounts
        that stay keep their state. A file that cannot be written is logged, and written again
        at the next boot (`edge.runtime.reconfigure.reconcile`): the store holds the truth."""
        if documents is not None:
            try:
                write_documents(site, documents)
            except StoreError as exc:
                log.error("configuration file not updated (the next boot writes it): %s", exc)
        before = {m.address for m in self.site.meters}
        meters, accounts = carry_states(site, self.table, self.store, self.meters, self.accounts)
        self.store.set_accounts(site.ledger_accounts())
        for meter in site.meters:
            if meter.address not in before and self.install is not None:
                billing = meters[meter.address].billing
                self.install(meter, 0 if billing is None else billing.reg_wh)
        self.site = site
        self.policies = site.consumption_policies()
        self.meters, self.accounts = meters, accounts
        self.windows = load_states(self.table, site)  # a window written before stays known
        added = sorted({m.address for m in site.meters} - before)
        removed = sorted(before - {m.address for m in site.meters})
        log.info(
            "site reconfigured: %d meters, %d accounts; meters added %s, removed %s",
            len(site.meters),
            len(site.accounts),
            ", ".join(added) or "none",
            ", ".join(removed) or "none",
        )

    def operator_relay(
        self, tx: Transaction, addresses: Iterable[str], command: RelayCommand, reason: str
    ) -> tuple[list[RelayOrder], dict[str, OperatorRelay]]:
        """Record an operator's trip or close of these meters' relays (inside `transaction()`);
        returns the orders to send once it has committed (`send_orders`) and what it did to
        each meter. An operator trip holds the relay open until an operator closes it."""
        self._staging("operator_relay")
        now = self.guard.last_known or self.guard.clock.system_now()
        orders: list[RelayOrder] = []
        done: dict[str, OperatorRelay] = {}
        alarms = []
        for address in addresses:
            meter = self.site.meter(address)
            changed = operator_relay(address, self.meter_state(address), command, reason)
            self.stage_meter(tx, address, changed.state)
            orders += [
                RelayOrder(meter, c.command, c.cause, c.reason, now) for c in changed.commands
            ]
            alarms += [alarm_event(self.site, now, alarm) for alarm in changed.alarms]
            done[address] = changed
        tx.add_events(alarms)
        tx.defer(*orders)
        return orders, done

    # -- money from outside ----------------------------------------------------------------------
    def recharge_transfer(
        self, account: str, fen: int, payment: str, *, method: str = "cash"
    ) -> Transfer:
        """The prepaid recharge of `payment`: one transfer id per payment reference, whoever
        books it (the seed, the demo, or a signed cloud command)."""
        return Transfer(
            id=entry_ids.recharge(payment),
            debit=system_id(System.CASH_IN_TRANSIT),
            credit=pocket_id(account, Pocket.PREPAID),
            amount=fen,
            unit=Unit.FEN,
            code=Code.RECHARGE,
            time=stamp(self.guard.last_known or self.guard.clock.system_now()),
            time_source=self.guard.clock.source,
            refs={"payment": payment, "method": method},
        )

    def recharge(self, account: str, fen: int, payment: str, *, method: str = "cash") -> bool:
        """Book a prepaid recharge once per `payment` reference; False if it was booked before.

        (Payments reach a real concentrator as signed cloud commands, `edge.sync.commands`;
        this is for the seed balances of a new site, the demo and tests.)
        """
        if account not in self.site.accounts:
            raise KeyError(f"account {account!r} is not configured")
        transfer = self.recharge_transfer(account, fen, payment, method=method)
        if self.store.book.get(transfer.id) is not None:
            return False
        with self.transaction() as tx:
            tx.append_transfers([transfer])
        log.info("account %s: recharge %d fen booked (payment %s)", account, fen, payment)
        return True
