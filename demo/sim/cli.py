"""`voltbook-demo sim`: virtual meters on virtual RS-485 buses (pty serial ports).

Starts one or more simulated buses, prints the port of each and the addresses of its meters
(one line per bus; `--json`: one JSON object per line), advances the meters' loads in real time
(or faster, `--speed`) and serves requests until Ctrl-C, SIGTERM or `--duration` runs out.
Then it prints what each line did (requests, replies, faults, collisions) on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from types import FrameType

from demo.sim.pty_bus import LineFaults
from demo.sim.site import BusSpec, SimulatedBus, SimulatedSite
from edge.drivers.errors import DriverUsageError
from edge.drivers.registry import PROTOCOLS


def _bus_spec(text: str) -> tuple[str, int]:
    name, _, count = text.partition(":")
    if name not in PROTOCOLS or not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: want PROTOCOL:COUNT, e.g. dlt645:8 (protocols: {', '.join(PROTOCOLS)})"
        )
    return name, int(count)


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability in 0..1")
    return value


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = commands.add_parser(
        "sim",
        help="serve simulated meters on virtual serial ports (for the demo, tests, benches)",
        description=(
            "Start simulated meters on one or more virtual RS-485 buses (pty pairs) with real "
            "wire timing: every byte takes its bit time at the configured baud rate and parity, "
            "meters answer after a realistic turnaround, and replies that overlap collide. "
            "Prints one line per bus: its port and its meters' addresses (--json: one JSON "
            "object per line with port, protocol, baudrate, parity, wire_timing, meters). "
            "Runs until Ctrl-C or SIGTERM."
        ),
        epilog=(
            "examples:\n"
            "  voltbook-demo sim --meters 8 --protocol dlt645\n"
            "  voltbook-demo sim --bus dlt645:16 --bus cjt188:4 --bus sdm120:2 --json\n"
            "  voltbook-demo sim --meters 4 --noise 0.1 --loss 0.05 --seed 7"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim.add_argument("--meters", type=int, default=4, help="meters per bus (default 4)")
    sim.add_argument(
        "--protocol", choices=tuple(PROTOCOLS), default="dlt645", help="protocol (default dlt645)"
    )
    sim.add_argument("--buses", type=int, default=1, help="buses of --meters --protocol each")
    sim.add_argument(
        "--bus",
        type=_bus_spec,
        action="append",
        metavar="PROTOCOL:COUNT",
        help="a bus of COUNT meters of PROTOCOL (repeat for a mixed site; replaces --buses)",
    )
    sim.add_argument("--baud", type=int, help="baud rate (default: each protocol's)")
    sim.add_argument("--parity", choices=("E", "N"), help="parity (default: each protocol's)")
    sim.add_argument(
        "--no-wire-timing",
        dest="wire_timing",
        action="store_false",
        help="answer at once, without byte times or turnaround (fast tests)",
    )
    sim.add_argument(
        "--turnaround",
        type=float,
        help="seconds from the end of a request to the reply (default 0.025; Modbus 0.010)",
    )
    sim.add_argument(
        "--noise", type=_probability, default=0.0, help="chance of stray bytes before a reply"
    )
    sim.add_argument(
        "--corrupt", type=_probability, default=0.0, help="chance of a flipped bit in a reply"
    )
    sim.add_argument("--loss", type=_probability, default=0.0, help="chance a reply is lost")
    sim.add_argument("--over-voltage", action="store_true", help="supply at 264 V instead of 220 V")
    sim.add_argument(
        "--addresses",
        choices=("random", "sequential"),
        default="random",
        help="meter serial numbers: random (default) or consecutive",
    )
    sim.add_argument("--seed", type=int, default=0, help="seed for everything random")
    sim.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per real second for loads"
    )
    sim.add_argument("--duration", type=float, help="stop after this many seconds")
    sim.add_argument("--json", action="store_true", help="one JSON object per bus and line")
    sim.set_defaults(func=run_sim)


def specs_from_args(args: argparse.Namespace) -> list[BusSpec]:
    buses: list[tuple[str, int]] = args.bus or [(args.protocol, args.meters)] * args.buses
    faults = LineFaults(noise=args.noise, corrupt=args.corrupt, loss=args.loss, seed=args.seed)
    return [
        BusSpec(
            protocol=name,
            meters=count,
            baudrate=args.baud,
            parity=args.parity,
            wire_timing=args.wire_timing,
            turnaround=args.turnaround,
            faults=faults,
            addressing=args.addresses,
            over_voltage=args.over_voltage,
        )
        for name, count in buses
    ]


def _announce(number: int, bus: SimulatedBus, *, as_json: bool) -> None:
    """One line for a bus: its port and its meters (flushed: scripts read it while we run)."""
    if as_json:
        print(json.dumps({"bus": number, **bus.describe()}), flush=True)
        return
    s = bus.settings
    timing = "wire timing" if bus.spec.wire_timing else "no wire timing"
    print(
        f"bus {number}: {bus.port} {bus.spec.protocol} {s.baudrate} "
        f"{s.bytesize}{s.parity}{s.stopbits} ({timing}) meters: " + " ".join(bus.addresses),
        flush=True,
    )


def run_sim(args: argparse.Namespace) -> int:
    try:
        site = SimulatedSite(specs_from_args(args), seed=args.seed, speed=args.speed)
    except (DriverUsageError, ValueError) as exc:
        print(f"error: cannot build the simulated site: {exc}.", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        # Ctrl-C is the normal way out: the site stops, then the interrupt is swallowed.
        with contextlib.suppress(KeyboardInterrupt), site:
            for number, bus in enumerate(site.buses, start=1):
                _announce(number, bus, as_json=args.json)
            stop.wait(args.duration)
    finally:
        signal.signal(signal.SIGTERM, previous)
    for number, bus in enumerate(site.buses, start=1):
        st = bus.pty.stats
        print(
            f"sim bus {number} ({bus.port}): {st.requests_heard} requests, {st.replies} replies, "
            f"{st.collisions} collisions, {st.lost} lost, {st.corrupted} corrupted, "
            f"{st.noise_bursts} noise bursts",
            file=sys.stderr,
        )
    return 0
