"""Poll benchmark: one round of the `basic` block over DL/T 645 meters on one RS-485 bus.

32 simulated meters on one pty bus at 2400 8E1 with real wire timing (every byte 4.58 ms,
meters answering 25 ms after a request), read one after the other through `SerialBus` with
the real DL/T 645 driver. The wire sets a floor no software can beat:

    floor = Σ over transactions (request bytes + reply bytes) × 11 bits / 2400 + turnaround

The ratio floor / measured shows what the software costs on top (goal ≥ 0.95: under 5 %).
`--smoke` reads 4 meters to finish in a few seconds. Missing the goal is reported, not fatal;
a read that fails is (the number would mean nothing).
"""

from __future__ import annotations

import argparse
import sys
import time

from demo.sim.pty_bus import DEFAULT_TURNAROUND
from demo.sim.site import BusSpec, SimulatedBus
from edge.drivers.bus import SerialBus
from edge.drivers.dlt645_meter import DLT645_2007
from edge.drivers.errors import MeterError
from edge.drivers.reading import Reading

GOAL = 0.95


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="4 meters, a few seconds")
    parser.add_argument("--meters", type=int, help="meters on the bus (default 32)")
    parser.add_argument("--baud", type=int, default=2400, help="baud rate (default 2400)")
    parser.add_argument("--turnaround", type=float, default=DEFAULT_TURNAROUND)
    parser.add_argument("--block", default="basic")
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
    driver = DLT645_2007.with_settings(settings)
    print(
        f"poll bench: {count} DL/T 645 meters, block {args.block!r}, one bus at "
        f"{settings.baudrate} {settings.bytesize}{settings.parity}{settings.stopbits} "
        f"({settings.bits_per_byte} bits a byte, {settings.byte_time * 1000:.2f} ms), "
        f"turnaround {args.turnaround * 1000:.0f} ms, wire timing on"
    )
    readings: list[Reading] = []
    with sim, SerialBus(sim.port, settings) as bus:
        bus.start_round()
        started = time.perf_counter()
        try:
            for address in sim.addresses:
                readings.append(bus.run(driver.read(address, args.block), address=address))
        except MeterError as exc:
            print(f"poll bench FAILED: {exc}", file=sys.stderr)
            return 1
        measured = time.perf_counter() - started
        report = bus.end_round()

    total = report.stats.total
    wire_bytes = total.bytes_sent + total.bytes_received
    floor = wire_bytes * settings.byte_time + total.replies * args.turnaround
    ratio = floor / measured
    overhead_ms = (measured - floor) / max(total.requests, 1) * 1000
    print(
        f"  transactions {total.requests} ({total.requests // count} a meter), "
        f"bytes on the wire {wire_bytes} ({total.bytes_sent} out, {total.bytes_received} in), "
        f"retries {total.retries}, success rate {report.success_rate:.0%}"
    )
    print(f"  measured round      {measured:8.3f} s")
    print(f"  wire-time floor     {floor:8.3f} s")
    print(
        f"  floor / measured    {ratio:8.3f}   (goal >= {GOAL}: "
        f"{'met' if ratio >= GOAL else 'MISSED'}; software adds {overhead_ms:.2f} ms "
        f"a transaction)"
    )
    print(f"  per meter           {measured / count:8.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
