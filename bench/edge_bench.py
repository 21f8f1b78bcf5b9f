"""Edge runtime benchmark: 256 simulated meters, 24 hours of 15-minute poll cycles.

The whole concentrator path of a reading, in one process: the DL/T 645 driver encodes each
request and decodes each reply (the `basic` block: 7 round trips per meter over an in-process
`DirectBus`, no wire timing), the rules bill, protect and judge every account, and the cycle
commits readings, transfers, events, rule states and a signed checkpoint to the SQLite store
(WAL, synchronous=FULL). Measured: CPU seconds (`time.process_time`) per 1 000 readings from
decode to durable commit (`Runtime.commit_cycle`). The relay commands sent after each commit
(`send_relays`) and the simulated meters' own work (their responders answering, their loads
advancing) are measured separately and not counted: a real meter does its part on its own chip.

The peer, in the same run: bare SQLite inserts of the same reading rows (one `executemany` and
one fsynced commit per cycle, same pragmas) — what any design that stores every reading pays.
Also peak RSS (`resource.getrusage`).

Goals: ≤ 0.3 ms CPU per reading, peak RSS ≤ 60 MB. Missing a goal is reported, not fatal.

    python bench/edge_bench.py            # 256 meters × 96 cycles
    python bench/edge_bench.py --smoke    # 32 meters × 8 cycles, a few seconds
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import resource
import sqlite3
import tempfile
import time
from pathlib import Path

from demo.sim.direct_bus import DirectBus
from demo.sim.simulation import building_of
from demo.site import write_demo_site
from edge.drivers.base import Responder
from edge.runtime.boot import boot
from edge.runtime.clock import ManualClock
from edge.site import load_site
from edge.store.records import TableRow, reading_row, table_row
from edge.store.schema import migrate

GOAL_MS_PER_READING = 0.3
GOAL_RSS_MB = 60.0
POLL = dt.timedelta(minutes=15)
MS = dt.timedelta(milliseconds=1)


class TimedResponder:
    """A simulated meter's responder whose CPU time is counted (to take it out)."""

    spent = 0.0

    def __init__(self, inner: Responder) -> None:
        self.inner = inner

    def feed(self, data: bytes) -> list[bytes]:
        start = time.process_time()
        try:
            return self.inner.feed(data)
        finally:
            TimedResponder.spent += time.process_time() - start


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="32 meters × 8 cycles")
    parser.add_argument("--meters", type=int, help="simulated meters (default 256)")
    parser.add_argument("--cycles", type=int, help="poll cycles (default 96: 24 hours)")
    args = parser.parse_args()
    meters = args.meters or (32 if args.smoke else 256)
    cycles = args.cycles or (8 if args.smoke else 96)
    logging.disable(logging.WARNING)  # alarms are part of the work, printing them is not

    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        made = write_demo_site(Path(tmp) / "site", meters)
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
        readings = commands = 0
        wall = time.perf_counter()
        for _ in range(cycles):
            start = time.process_time()
            building.advance_to(clock.true_now())
            simulated += time.process_time() - start
            TimedResponder.spent = 0.0
            start = time.process_time()
            report = runtime.commit_cycle()  # decode → rules → durable commit
            ours += time.process_time() - start - TimedResponder.spent
            simulated += TimedResponder.spent
            TimedResponder.spent = 0.0
            start = time.process_time()
            runtime.send_relays(report)  # after the commit: trips and closes, confirmed
            relays += time.process_time() - start - TimedResponder.spent
            simulated += TimedResponder.spent
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

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ours_ms = ours / readings * 1000
    bare_ms = bare.spent / readings * 1000
    print(f"{meters} meters × {cycles} cycles of 15 min: {readings} readings, {entries} entries")
    print(f"  ours  decode → rules → durable commit: {ours_ms:.3f} ms CPU per reading "
          f"({ours / readings * 1e6:.0f} ms per 1 000)")  # fmt: skip
    print(f"  peer  bare SQLite inserts, same rows:  {bare_ms:.3f} ms CPU per reading")
    print(f"  ratio ours / bare SQLite:              {ours / bare.spent:.1f}×")
    print(f"  relay commands after the commits:      {commands}, {relays:.2f} s CPU (not counted)")
    print(f"  simulated meters (not counted):        {simulated:.2f} s CPU; wall {wall:.1f} s")
    print(f"  peak RSS:                              {rss_mb:.1f} MB")
    cpu_ok, rss_ok = ours_ms <= GOAL_MS_PER_READING, rss_mb <= GOAL_RSS_MB
    print(
        f"goal ≤ {GOAL_MS_PER_READING} ms CPU per reading: {'met' if cpu_ok else 'MISSED'}; "
        f"goal RSS ≤ {GOAL_RSS_MB:.0f} MB: {'met' if rss_ok else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
