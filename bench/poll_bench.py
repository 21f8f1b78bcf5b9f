"""Poll benchmark: one round of the `basic` block over DL/T 645 meters on one RS-485 bus.

32 simulated meters on one pty bus at 2400 8E1 with real wire timing (every byte 4.58 ms,
meters answering 25 ms after a request), read one after the other through `SerialBus` with
the real DL/T 645 driver. The wire sets a floor no software can beat:

    floor = Σ over transactions (request bytes + reply bytes) × 11 bits / 2400 + turnaround

The ratio floor / measured shows what the software costs on top (goal ≥ 0.95: under 5 %).

Each run reads the bus twice, in the same run: the old way (one DI an exchange) and through
the block DIs the meters answer (`--blocks`, a capability of `edge.drivers.dlt645_blocks`;
the simulated meters are model `voltbook-sim`). It prints the block round ÷ the per-DI round
against the goal (≤ 0.5), the exchanges one `basic` read took in the block round against
its limit (≤ 3 where the meter supports block reads), and the exchanges a meter each capability
would need.
`--smoke` reads 4 meters to finish in a few seconds. Missing a goal is reported, not fatal;
a read that fails is (the number would mean nothing).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

from demo.sim.pty_bus import DEFAULT_TURNAROUND
from demo.sim.site import BusSpec, SimulatedBus
from edge.drivers.base import SerialSettings
from edge.drivers.bus import SerialBus
from edge.drivers.dlt645_blocks import BLOCK_SUPPORT, NO_BLOCKS, plan_reads
from edge.drivers.dlt645_items import BLOCKS_2007
from edge.drivers.dlt645_meter import DLT645_2007, Dlt645Driver
from edge.drivers.errors import MeterError
from edge.drivers.reading import Reading

GOAL = 0.95  # wire-time floor / measured
BLOCK_GOAL = 0.5  # block round / per-DI round
EXCHANGES_GOAL = 3  # request/reply exchanges of one read, where the meter supports block reads


@dataclass(frozen=True, slots=True)
class Round:
    label: str
    measured: float
    floor: float
    exchanges: int
    retries: int
    wire_bytes: int
    readings: tuple[Reading, ...]


def read_round(
    sim: SimulatedBus, settings: SerialSettings, driver: Dlt645Driver, block: str, label: str
) -> Round:
    readings: list[Reading] = []
    with SerialBus(sim.port, settings) as bus:
        bus.start_round()
        started = time.perf_counter()
        for address in sim.addresses:
            readings.append(bus.run(driver.read(address, block), address=address))
        measured = time.perf_counter() - started
        report = bus.end_round()
    total = report.stats.total
    wire_bytes = total.bytes_sent + total.bytes_received
    floor = wire_bytes * settings.byte_time + total.replies * sim.pty.turnaround
    return Round(label, measured, floor, total.requests, total.retries, wire_bytes, tuple(readings))


def print_round(r: Round, meters: int) -> None:
    ratio = r.floor / r.measured
    overhead_ms = (r.measured - r.floor) / max(r.exchanges, 1) * 1000
    print(
        f"  {r.label:<22} exchanges {r.exchanges} ({r.exchanges / meters:g} a meter), "
        f"retries {r.retries}, bytes {r.wire_bytes}, "
        f"round {r.measured:7.3f} s, floor {r.floor:7.3f} s, "
        f"floor/measured {ratio:.3f} (goal >= {GOAL}: {'met' if ratio >= GOAL else 'MISSED'}; "
        f"software adds {overhead_ms:.2f} ms an exchange), {r.measured / meters:.3f} s a meter"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="4 meters, a few seconds")
    parser.add_argument("--meters", type=int, help="meters on the bus (default 32)")
    parser.add_argument("--baud", type=int, default=2400, help="baud rate (default 2400)")
    parser.add_argument("--turnaround", type=float, default=DEFAULT_TURNAROUND)
    parser.add_argument("--block", default="basic")
    parser.add_argument(
        "--blocks",
        default="voltbook-sim",
        choices=sorted(BLOCK_SUPPORT),
        help="block capability of the meters for the second round ('none': per-DI only)",
    )
    args = parser.parse_args()
    count = args.meters or (4 if args.smoke else 32)

    spec = BusSpec(
        protocol="dlt645",
        meters=count,
        baudrate=args.baud,
        parity="E",
        wire_timing=True,
        turnaround=args.turnaround,
    )
    sim = SimulatedBus(spec, seed=2026, name="bench-bus")
    settings = sim.settings
    per_di = DLT645_2007.with_settings(settings)
    print(
        f"poll bench: {count} DL/T 645 meters, block {args.block!r}, one bus at "
        f"{settings.baudrate} {settings.bytesize}{settings.parity}{settings.stopbits} "
        f"({settings.bits_per_byte} bits a byte, {settings.byte_time * 1000:.2f} ms), "
        f"turnaround {args.turnaround * 1000:.0f} ms, wire timing on"
    )
    wanted = BLOCKS_2007[args.block].items if args.block in BLOCKS_2007 else ()
    for capability in BLOCK_SUPPORT:
        planned = plan_reads(wanted, per_di.with_block_reads(capability).block_support)
        print(f"  plan: {capability:<14} {len(planned)} exchanges a meter")
    rounds: list[Round] = []
    # Loads held still: both rounds must then read the very same values.
    sim.start(advance_loads=False)
    try:
        rounds.append(read_round(sim, settings, per_di, args.block, "per DI (old way)"))
        if args.blocks != NO_BLOCKS:
            blocks = per_di.with_block_reads(args.blocks)
            rounds.append(read_round(sim, settings, blocks, args.block, f"blocks {args.blocks}"))
    except MeterError as exc:
        print(f"poll bench FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        sim.stop()
    for r in rounds:
        print_round(r, count)
    if len(rounds) == 2:
        old, new = rounds
        ratio = new.measured / old.measured
        verdict = "met" if ratio <= BLOCK_GOAL else "MISSED"
        print(f"  block round / per-DI round {ratio:.3f}   (goal <= {BLOCK_GOAL}: {verdict})")
        per_read = new.exchanges / count
        verdict = "met" if per_read <= EXCHANGES_GOAL else "MISSED"
        print(
            f"  exchanges per {args.block} read {per_read:g} (per DI {old.exchanges / count:g}): "
            f"{per_read / EXCHANGES_GOAL:.2f} of the limit (goal <= {EXCHANGES_GOAL}: {verdict})"
        )
        if old.readings != new.readings:
            print("poll bench FAILED: block reads differ from per-DI reads", file=sys.stderr)
            return 1
        print(f"  readings identical in both rounds for all {count} meters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
