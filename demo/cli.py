"""`voltbook-demo`: the simulator's command line (kept out of the concentrator's).

    voltbook-demo site --dir DIR [--meters N] [--lora N]   write a complete simulated site
    voltbook-demo sim [--meters N] [--bus P:N …]   simulated meters on virtual serial ports

A site written by `voltbook-demo site` runs on the concentrator's own command line
(`voltbook-edge run|accounts|ledger --config DIR/site.toml`), which finds the simulator through
its entry point. Exit codes: 0 done; 2 the arguments or the directory are unusable.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from demo.sim import cli as cli_sim
from edge.cli import command_line, run
from edge.cli_runtime import moment

DESCRIPTION = """\
Voltbook's simulator: complete simulated sites for the concentrator, and simulated meters on
virtual RS-485 buses (pty serial ports) with real wire timing, for the demo, tests and benches.
"""

EPILOG = """\
examples:
  voltbook-demo site --dir /tmp/site --meters 30      then: voltbook-edge run --config …
  voltbook-demo sim --meters 8 --protocol dlt645      virtual meters on a pty bus
  voltbook-demo COMMAND --help      more about one command
"""


def register_site(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    site = commands.add_parser(
        "site",
        help="write a complete simulated site (config, key, meters) to a directory",
        description=(
            "Write site.toml, the configuration documents, opening balances, a node key and "
            "the simulated DL/T 645 meters (registers, relays, clock on disk) into DIR. "
            "Then: voltbook-edge run --config DIR/site.toml --speed 3600"
        ),
    )
    site.add_argument("--dir", required=True, type=Path, help="directory to write (new)")
    site.add_argument("--meters", type=int, default=30, help="simulated meters (default 30)")
    site.add_argument(
        "--lora",
        type=int,
        default=0,
        metavar="N",
        help="put N of the meters on a simulated LoRa radio bus (default 0)",
    )
    site.add_argument("--tariff", choices=("tou", "flat"), default="tou", help="default tou")
    site.add_argument("--seed", type=int, default=7, help="seed of the simulated site")
    site.add_argument(
        "--start", type=moment, help="simulated start time (default 2026-11-01T00:00+08:00)"
    )
    site.set_defaults(func=run_site)


def run_site(args: argparse.Namespace) -> int:
    from demo.site import DEFAULT_START, write_demo_site
    from edge.site import SiteConfigError
    from edge.store import StoreError

    try:
        demo = write_demo_site(
            args.dir, args.meters, seed=args.seed, start=args.start or DEFAULT_START,
            tariff=args.tariff, lora=args.lora,
        )  # fmt: skip
    except (SiteConfigError, ValueError, OSError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    said: dict[str, object] = {
        "site": str(demo.site_toml),
        "meters": len(demo.meters),
        "accounts": len(demo.accounts),
        "next": f"voltbook-edge run --config {demo.site_toml} --speed 3600",
    }
    if args.lora:
        said["lora_meters"] = args.lora  # on the simulated radio bus
    print(json.dumps(said))
    return 0


def build_parser() -> argparse.ArgumentParser:
    return command_line("voltbook-demo", DESCRIPTION, EPILOG, [register_site, cli_sim.register])


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
