"""`voltbook-edge`: the concentrator's command line.

Each area registers its own subcommands (see `COMMAND_GROUPS`); this module only builds the
parser, sets up logging and turns our errors into a sentence and an exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from edge import (
    cli_commission,
    cli_health,
    cli_keys,
    cli_ledger,
    cli_meters,
    cli_provision,
    cli_runtime,
    cli_status,
    logs,
    version,
)

if TYPE_CHECKING:
    Register = Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]

# Modules that add subcommands: each has `register(subparsers)`; each subcommand sets `func`.
COMMAND_GROUPS: list[Register] = [
    cli_commission.register,
    cli_health.register,
    cli_keys.register,
    cli_ledger.register,
    cli_meters.register,
    cli_provision.register,
    cli_runtime.register,
    cli_status.register,
]

DESCRIPTION = """\
Voltbook concentrator: reads the meters of a building, bills consumption against prepaid
balances, issues monthly subsidies, trips and closes relays, and keeps a signed, hash-chained
ledger that syncs to the cloud. Works for days with no network.
"""

EPILOG = """\
examples:
  voltbook-edge provision --cloud https://vb.example --token T   (a claim: voltbook-fw claim)
  voltbook-edge run --config DIR/site.toml       (a simulated site: voltbook-demo site)
  voltbook-edge commission --config DIR/site.toml --relay-test --out report.json
  voltbook-edge status --config DIR/site.toml [--json]
  voltbook-edge ledger verify --chain chain.jsonl --key node.pub
  voltbook-edge read --port /dev/ttyUSB0 --protocol dlt645 --address 202611000101 --json
  voltbook-edge relay --port /dev/ttyUSB0 --protocol dlt645 --address 202611000101 trip
  voltbook-edge scan --port /dev/ttyUSB0 --protocol dlt645
  voltbook-edge COMMAND --help      more about one command
"""


def command_line(
    prog: str, description: str, epilog: str, groups: Sequence[Register]
) -> argparse.ArgumentParser:
    """A parser with `-v` and the subcommands `groups` register (`voltbook-demo` shares it)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="log lines as text (default) or one JSON object per line (default from "
        "VOLTBOOK_LOG_FORMAT)",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for register in groups:
        register(commands)
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse `argv`, set up logging to stderr and run the chosen subcommand."""
    args = parser.parse_args(argv)
    logs.configure(logging.DEBUG if args.verbose else logging.INFO,
                   logs.chosen_format(args.log_format))  # fmt: skip
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


def build_parser() -> argparse.ArgumentParser:
    parser = command_line("voltbook-edge", DESCRIPTION, EPILOG, COMMAND_GROUPS)
    parser.add_argument("--version", action="version", version=version.describe())
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
