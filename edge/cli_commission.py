"""`voltbook-edge commission`: check a building's buses before handover and sign the report.

Runs on the box with the runtime stopped (it takes the store's writer lock: the meters are on
the runtime's ports). For each bus of site.toml: find the meters, compare them with those the
site declares, read each one's `basic` block `--reads` times, with `--relay-test` trip and
close each relay confirmed by read-back, then write the report signed with the node's key
(`ledger.commissioning`). `voltbook-fw commission` wraps it and uploads the report.
Exit 0: every declared meter found and read every time, nothing extra, every relay tested
obeyed; 1: the report was written and names something to fix; 2: the command was wrong.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Final

from edge import version
from edge.commissioning.buses import open_buses
from edge.commissioning.engine import Options, commission
from edge.commissioning.finding import MODBUS_UNITS
from edge.drivers.discovery import DEFAULT_TIME_LIMIT
from edge.drivers.dlt645_meter import REPLY_WINDOW
from edge.runtime.boot import read_node_key
from edge.site import SiteConfigError, load_site
from edge.site.simulation import SimulationError
from edge.store.config_db import atomic_write
from edge.store.db import writer_lock
from edge.store.errors import StoreBusy
from ledger.commissioning import sign_report
from ledger.encoding import canonical_json
from ledger.errors import DecodeError

EXIT_FINDINGS: Final = 1
EXIT_USAGE: Final = 2


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "commission",
        help="check every bus before handover: find, read and test meters; signed report",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: voltbook-edge commission --config /etc/voltbook/site.toml "
        "--relay-test --out report.json",
    )
    parser.add_argument("--config", required=True, type=Path, help="the site's site.toml")
    parser.add_argument(
        "--relay-test", action="store_true", help="trip and close every relay (power is cut!)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write the signed report (default: DATA_DIR/commissioning-TIME.json)",
    )
    parser.add_argument("--reads", type=int, default=3, help="reads per meter (default 3)")
    parser.add_argument(
        "--window",
        type=float,
        default=REPLY_WINDOW,
        help="DL/T 645 search: seconds each probe listens (default 0.5)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=DEFAULT_TIME_LIMIT,
        help="DL/T 645 search: give up on a bus after this many seconds (default 900)",
    )
    parser.add_argument(
        "--modbus-units",
        type=int,
        default=MODBUS_UNITS,
        help=f"Modbus: scan unit ids 1..N (default {MODBUS_UNITS}; declared ones always)",
    )
    parser.add_argument("--json", action="store_true", help="print the signed report as JSON")
    parser.set_defaults(func=run_commission)


def run_commission(args: argparse.Namespace) -> int:
    if not 1 <= args.reads <= 20 or args.window <= 0 or args.time_limit <= 0:
        print("error: --reads is 1..20, --window and --time-limit positive.", file=sys.stderr)
        return EXIT_USAGE
    if not 1 <= args.modbus_units <= 247:
        print("error: --modbus-units is 1..247.", file=sys.stderr)
        return EXIT_USAGE
    try:
        site = load_site(args.config)
        key = read_node_key(site.settings.node_key)
    except SiteConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    options = Options(
        reads=args.reads,
        relay_test=args.relay_test,
        window=args.window,
        time_limit=args.time_limit,
        modbus_units=args.modbus_units,
    )

    def progress(message: str) -> None:
        print(f"commission: {message}", file=sys.stderr, flush=True)

    site.settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        with writer_lock(site.settings.store_path), ExitStack() as stack:
            buses, _ = open_buses(site, stack, byte_gap=min(args.window, 0.5))
            now = dt.datetime.now(site.zone)
            report = commission(
                site,
                buses,
                now=now,
                version=version.package_version()[:300],
                options=options,
                progress=progress,
            )
    except StoreBusy:
        print(
            "error: the runtime is running (it holds the store): stop it first "
            "(systemctl stop voltbook-edge); commissioning talks to the meters on its ports.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except SimulationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        signed = sign_report(report, key)
    except DecodeError as exc:  # a value of this site the report format cannot carry
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    stamp = now.strftime("%Y%m%dT%H%M%S")
    out = args.out or site.settings.data_dir / f"commissioning-{stamp}.json"
    atomic_write(out, canonical_json(signed) + b"\n")
    if args.json:
        print(json.dumps(signed, ensure_ascii=False))
    else:
        print(summary(report))
    progress(f"signed report written to {out}")
    return 0 if clean(report) else EXIT_FINDINGS


def clean(report: dict[str, Any]) -> bool:
    """Nothing to fix: every meter declared, found and read every time; relays obeyed."""
    return all(
        m["status"] == "found"
        and m["reads_ok"] == m["reads_tried"]
        and m["relay"] in ("ok", "not_tested", "no_relay")
        for m in report["meters"]
    ) and all(b["complete"] for b in report["buses"])


def summary(report: dict[str, Any]) -> str:
    lines = [f"site {report['site']} (node {report['node']}) at {report['taken_at']}"]
    for bus in report["buses"]:
        lines.append(
            f"bus {bus['bus']} ({bus['protocol']}, {bus['discovery']}): found {bus['found']}, "
            f"missing {bus['missing']}, extra {bus['extra']}, reads "
            f"{bus['reads_ok']}/{bus['reads_tried']}"
            + ("" if bus["complete"] else " (search incomplete)")
            + (f"; {bus['error']}" if bus["error"] else "")
        )
        for m in (m for m in report["meters"] if m["bus"] == bus["bus"]):
            register = "-" if m["register"] is None else f"{m['register']} {m['unit']}"
            relay = m["relay"] + (f" ({m['relay_detail']})" if m["relay"] == "failed" else "")
            lines.append(
                f"  {m['address']:>14} {m['status']:<7} read {m['reads_ok']}/{m['reads_tried']}"
                f"  register {register}  relay {relay}  shop {m['shop'] or '-'}"
            )
    return "\n".join(lines)
