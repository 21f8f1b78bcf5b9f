"""`voltbook-cloud`: the server side — ingest of edge ledgers, API, payments, reports."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

DESCRIPTION = """\
Voltbook cloud: takes merchants' WeChat Pay and Alipay payments, ingests and verifies every
concentrator's signed ledger over MQTT, sends signed commands (top-ups, relay trips, tariffs)
back, and serves the operator API, reports and the audit log.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voltbook-cloud",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The server (`serve`) arrives with the cloud core; see README.md.",
    )
    parser.add_argument("--version", action="version", version="voltbook-cloud 0.1.0")
    parser.add_subparsers(title="commands", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
