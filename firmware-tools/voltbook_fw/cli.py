"""`voltbook-fw`: the installer's laptop tool."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from voltbook_fw import bundle, claim, commission, image, install, ir_import, update

DESCRIPTION = """\
Voltbook installer tools: give a concentrator its identity (node id and Ed25519 key), build the
install bundle for a Raspberry Pi and an SD card image that installs it on first boot,
commission its RS-485 buses and LoRa radio, and import readings taken from a dead meter with an
infrared handheld.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voltbook-fw",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="See README.md (installing a real site) for the whole path.",
    )
    parser.add_argument("--version", action="version", version="voltbook-fw 0.1.0")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    claim.register(commands)
    commission.register(commands)
    ir_import.register(commands)
    bundle.register(commands)
    install.register(commands)
    update.register(commands)
    image.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 0
    return int(run(args))


if __name__ == "__main__":
    sys.exit(main())
