"""Edge runtime benchmark: 256 simulated meters, 24 hours of 15-minute poll cycles.

The whole concentrator path of a reading, in one process: the DL/T 645 driver encodes each
request and decodes each reply (the `basic` block over an in-process `DirectBus`, no wire
timing: one exchange per meter through the simulated model's vendor block, `--blocks none` for
the 7 single-DI exchanges of a meter without blocks), the rules bill, protect and judge every
account, and the cycle
commits readings, transfers, events, rule states and a signed checkpoint to the SQLite store
(WAL, synchronous=FULL). Measured: CPU time (`time.process_time`) per reading from decode to
durable commit (`Runtime.commit_cycle`), and split by phase, each exclusive of the others
(`phases_timed`): reads (the driver's requests and decoding), rules (each account's turn and
the low-balance check), state (rule states encoded and held for the commit), commit (the book
applying transfers, ledger entries encoded, the one query looking their ids up, readings,
events, the checkpoint, the held entries and states written, BEGIN and the fsynced COMMIT;
`edge.store.writes` holds rows until they are written together); other is the rest (clock
guard, events built, malicious-load windows). The relay commands sent after each commit
(`send_relays`) and the simulated meters' own work (their responders answering, their loads
advancing) are measured separately and not counted: a real meter does its part on its own chip.

The peer, in the same run: bare SQLite inserts of the same reading rows (one `executemany` and
one fsynced commit per cycle, same pragmas) — what any design that stores every reading pays.
Also peak RSS (`resource.getrusage`).

Second figure, the poll interval holding: cycle start drift over N cycles against the grid
(`edge.runtime.grid`). The real `Runner` loop runs the same kind of site on a `SimulatedClock`
at `--speed` (900: a 15-minute interval in one real second), so every cycle takes its real
time, multiplied into site time; each cycle's start (its stamped site time) is compared with
the grid point it belongs to. Goal: 0, i.e. no more than the loop's wake-up jitter (≤ 20 ms
real) and no growth from cycle to cycle. For comparison the drift that rescheduling from the end
of each cycle (what the `schedule` library did) would have reached: the sum of the durations.

Goals: ≤ 0.2 ms CPU per reading (each phase printed as its share of that), peak RSS ≤ 60 MB,
start drift ≤ 20 ms real. Missing a goal is reported, not fatal.

    python bench/edge_bench.py            # 256 meters × 96 cycles; drift over 16 cycles
    python bench/edge_bench.py --smoke    # 32 meters × 8 cycles; drift over 8; a few seconds
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import logging
import resource
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

from demo.sim.direct_bus import DirectBus
from demo.sim.simulation import building_of
from demo.site import write_demo_site
from edge.drivers.base import Responder
from edge.drivers.dlt645_blocks import BLOCK_SUPPORT, NO_BLOCKS
from edge.drivers.dlt645_vendor import SIMULATED_MODEL
from edge.runtime.accounting import AccountTurn
from edge.runtime.boot import boot
from edge.runtime.clock import ManualClock
from edge.runtime.cycle import CycleReport, Runtime
from edge.runtime.grid import drift
from edge.runtime.notify import Notifier
from edge.runtime.runner import RunLimits, Runner
from edge.site import load_site
from edge.store import Store, Transaction
from edge.store.records import TableRow, reading_row, table_row
from edge.store.schema import migrate

GOAL_MS_PER_READING = 0.2
GOAL_RSS_MB = 60.0
GOAL_DRIFT_REAL_S = 0.020  # wake-up jitter of the runner's loop, in real seconds
PHASES = ("reads", "rules", "state", "commit")  # of the commit, as `phases_timed` splits it
POLL = dt.timedelta(minutes=15)
MS = dt.timedelta(milliseconds=1)
P = ParamSpec("P")
R = TypeVar("R")


class PhaseClock:
    """CPU time per phase of the commit, each phase exclusive of those called inside it (a
    ledger append inside a rule's turn counts as commit, the simulated meters answering inside
    a read count as neither). Phases are entered through wrapped functions (`timed`)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self._nested: list[float] = []  # per open phase: time spent in phases inside it

    def timed(self, phase: str, function: Callable[P, R]) -> Callable[P, R]:
        self.spent.setdefault(phase, 0.0)

        @functools.wraps(function)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            start = time.process_time()
            self._nested.append(0.0)
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.process_time() - start
                self.spent[phase] += elapsed - self._nested.pop()
                if self._nested:
                    self._nested[-1] += elapsed

        return run

    def take(self, phase: str) -> float:
        """The time spent in `phase` since the last `take`."""
        spent, self.spent[phase] = self.spent[phase], 0.0
        return spent


CLOCK = PhaseClock()
SIMULATED = "simulated"  # the meters' own work: not counted in any phase, nor in the total


class TimedResponder:
    """A simulated meter's responder whose CPU time is counted (to take it out)."""

    def __init__(self, inner: Responder) -> None:
        self.feed = CLOCK.timed(SIMULATED, inner.feed)


@contextmanager
def phases_timed(runtime: Runtime) -> Iterator[None]:
    """Time `runtime`'s commit by phase (`PHASES`) while inside; the classes restored after."""
    patched = [
        (runtime, "_read_round", "reads"),
        (AccountTurn, "run", "rules"),
        (runtime, "_low_balance", "rules"),
        (runtime, "_save_states", "state"),
        (Transaction, "append_transfers", "commit"),
        (Transaction, "insert_readings", "commit"),
        (Transaction, "add_events", "commit"),
        (Transaction, "add_checkpoint", "commit"),
        (Transaction, "flush", "commit"),  # the held entries and states, written at once
        (Store, "_run", "commit"),  # BEGIN IMMEDIATE and the fsynced COMMIT
    ]
    saved = [
        (owner, name, owner.__dict__[name]) for owner, name, _ in patched if isinstance(owner, type)
    ]
    for owner, name, phase in patched:
        setattr(owner, name, CLOCK.timed(phase, getattr(owner, name)))
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


class BareSqlite:
    """The peer: the same reading rows into a bare SQLite table, one fsynced commit per cycle."""

    SQL = (
        "INSERT INTO readings (meter, time, energy_wh, tariff_wh, voltage, current, power, pf, "
        "relay, status, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        migrate(self.conn)  # the same readings table, columns and indexes as the store's
        self.spent = 0.0

    def insert(self, rows: list[TableRow]) -> None:
        start = time.process_time()
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(self.SQL, rows)
        self.conn.execute("COMMIT")
        self.spent += time.process_time() - start


def start_drift(
    directory: Path, meters: int, cycles: int, speed: float, blocks: str | None
) -> bool:
    """The real runner loop for `cycles` grid cycles (after the catch-up one); prints the
    start drift against the grid, returns whether the goal was met."""
    site = load_site(write_demo_site(directory, meters, blocks=blocks).site_toml)
    booted = boot(site, speed=speed)
    clock, runtime = booted.clock, booted.runtime
    durations: list[float] = []
    run_cycle = runtime.run_cycle

    def timed_cycle() -> CycleReport:
        began = clock.monotonic()
        try:
            return run_cycle()
        finally:
            durations.append(clock.monotonic() - began)

    runtime.run_cycle = timed_cycle  # type: ignore[method-assign]
    runner = Runner(booted, RunLimits(cycles=cycles + 1), Notifier(None, None))
    runner.run()  # closes `booted`
    interval = site.settings.poll_interval
    drifts = [drift(start, interval).total_seconds() for start in list(runner.starts)[1:]]
    worst, mean = max(drifts), sum(drifts) / len(drifts)
    from_end = sum(durations[1:-1])  # start k would be late by the durations before it
    print(
        f"start drift over {len(drifts)} cycles of {interval} ({meters} meters, "
        f"speed {speed:g}: a cycle takes {sum(durations) / len(durations):.0f} s of site time)"
    )
    print(
        f"  on the grid:   max {worst:.2f} s, mean {mean:.2f} s of site time "
        f"(max {worst / speed * 1000:.1f} ms real); first {drifts[0]:.2f} s, "
        f"last {drifts[-1]:.2f} s; overruns {len(runner.overruns)}"
    )
    print(f"  from the end (as `schedule` did): {from_end:.0f} s of site time by the last cycle")
    return worst / speed <= GOAL_DRIFT_REAL_S


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="32 meters × 8 cycles")
    parser.add_argument("--meters", type=int, help="simulated meters (default 256)")
    parser.add_argument("--cycles", type=int, help="poll cycles (default 96: 24 hours)")
    parser.add_argument("--speed", type=float, default=900.0, help="drift run: site time ×")
    parser.add_argument("--drift-cycles", type=int, help="drift run: grid cycles (default 16)")
    parser.add_argument(
        "--blocks",
        default=SIMULATED_MODEL,
        choices=tuple(BLOCK_SUPPORT),
        help=f"the buses' block capability (default {SIMULATED_MODEL}: `basic` in one exchange)",
    )
    args = parser.parse_args()
    meters = args.meters or (32 if args.smoke else 256)
    cycles = args.cycles or (8 if args.smoke else 96)
    blocks = None if args.blocks == NO_BLOCKS else args.blocks
    logging.disable(logging.WARNING)  # alarms are part of the work, printing them is not

    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        made = write_demo_site(Path(tmp) / "site", meters, blocks=blocks)
        site = load_site(made.site_toml)
        assert site.simulation is not None and site.simulation.start is not None
        clock = ManualClock(site.simulation.start)
        booted = boot(site, clock=clock)
        runtime, building = booted.runtime, building_of(booted)
        for bus in site.buses:  # the same meters, with their CPU time counted
            addresses = [m.address for m in site.meters if m.bus == bus.name]
            runtime.buses[bus.name] = DirectBus(
                {a: TimedResponder(r) for a, r in building.responders(addresses).items()}
            )
        runtime.world = None  # advanced below, outside the measurement
        bare = BareSqlite(Path(tmp) / "bare.sqlite")
        ours = simulated = relays = 0.0
        spent = dict.fromkeys(PHASES, 0.0)
        readings = commands = 0
        wall = time.perf_counter()
        with phases_timed(runtime):
            for _ in range(cycles):
                start = time.process_time()
                building.advance_to(clock.true_now())
                simulated += time.process_time() - start
                for phase in PHASES:
                    CLOCK.take(phase)  # store reads between the cycles are no phase of one
                start = time.process_time()
                report = runtime.commit_cycle()  # decode → rules → durable commit
                answered = CLOCK.take(SIMULATED)
                ours += time.process_time() - start - answered
                simulated += answered
                for phase in PHASES:
                    spent[phase] += CLOCK.take(phase)
                start = time.process_time()
                runtime.send_relays(report)  # after the commit: trips and closes, confirmed
                answered = CLOCK.take(SIMULATED)
                relays += time.process_time() - start - answered
                simulated += answered
                commands += len(report.orders)
                readings += report.read
                # The same rows, fetched back (not timed), into the bare table (timed).
                stored = runtime.store.readings(since=report.now, until=report.now + MS)
                bare.insert([table_row(reading_row(item)) for item in stored])
                clock.advance(POLL)
        wall = time.perf_counter() - wall
        entries = runtime.store.chain.seq
        booted.close()
        bare.conn.close()
        # Measured before the drift run, which boots a second site in this process.
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        drift_cycles = args.drift_cycles or (8 if args.smoke else 16)
        drift_ok = start_drift(Path(tmp) / "drift", meters, drift_cycles, args.speed, blocks)

    ours_ms = ours / readings * 1000
    bare_ms = bare.spent / readings * 1000
    print(
        f"{meters} meters × {cycles} cycles of 15 min: {readings} readings, {entries} entries; "
        f"blocks {args.blocks}"
    )
    print(
        f"  ours  decode → rules → durable commit: {ours_ms:.3f} ms CPU per reading "
        f"({ours_ms / GOAL_MS_PER_READING:.2f} of the {GOAL_MS_PER_READING} ms limit)"
    )
    spent["other"] = ours - sum(spent.values())  # clock guard, events, meter windows
    for phase, seconds in spent.items():
        ms = seconds / readings * 1000
        print(
            f"    {phase:<8} {ms:.3f} ms per reading ({ms / GOAL_MS_PER_READING:.2f} of the limit)"
        )
    print(f"  peer  bare SQLite inserts, same rows:  {bare_ms:.3f} ms CPU per reading")
    print(f"  ratio ours / bare SQLite:              {ours / bare.spent:.1f}×")
    print(f"  relay commands after the commits:      {commands}, {relays:.2f} s CPU (not counted)")
    print(f"  simulated meters (not counted):        {simulated:.2f} s CPU; wall {wall:.1f} s")
    print(f"  peak RSS:                              {rss_mb:.1f} MB")
    cpu_ok, rss_ok = ours_ms <= GOAL_MS_PER_READING, rss_mb <= GOAL_RSS_MB
    print(
        f"goal ≤ {GOAL_MS_PER_READING} ms CPU per reading: {'met' if cpu_ok else 'MISSED'}; "
        f"goal RSS ≤ {GOAL_RSS_MB:.0f} MB: {'met' if rss_ok else 'MISSED'}; "
        f"goal start drift ≤ {GOAL_DRIFT_REAL_S * 1000:.0f} ms real: "
        f"{'met' if drift_ok else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
