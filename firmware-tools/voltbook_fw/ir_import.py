"""`voltbook-fw ir-import FILE`: check an infrared handheld's export before it leaves the site.

The file is the handheld's CSV (`address,read_at,energy_kwh`, format in
`cloud.operations.handheld`). A good file is printed (or written with `-o`) as the JSON body of the
cloud's `POST /meter-swaps/ir-import`, registers in integer Wh; a bad one names its first bad line
and exits 2, so the installer can read the meter again while still standing in front of it.

The parser is the cloud's own, imported when the command runs: a concentrator's install has no
`cloud` (`voltbook_fw.box_wheel`), and there the command says so and exits 2, while
`voltbook-fw --help` and the box's own commands work.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BAD_FILE = 2
NOT_HERE = 2


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "ir-import",
        help="check an IR handheld export and print the cloud's import body",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, help="the handheld's CSV export")
    parser.add_argument("--source", help="what to call it in the cloud (default: file name)")
    parser.add_argument("-o", "--output", type=Path, help="write the JSON here, not stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        from cloud.operations.handheld import HandheldError, parse
    except ImportError as exc:
        print(
            f"error: ir-import runs on the laptop with the full project ({exc}); "
            "this install is a concentrator's",
            file=sys.stderr,
        )
        return NOT_HERE
    path: Path = args.file
    try:
        text = path.read_text(encoding="utf-8")
        readings = parse(text)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{path}: cannot read: {exc}", file=sys.stderr)
        return BAD_FILE
    except HandheldError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return BAD_FILE
    body = {"source": args.source or path.name, "readings": [r.to_json() for r in readings]}
    out = json.dumps(body, indent=2, ensure_ascii=False) + "\n"
    if args.output is None:
        sys.stdout.write(out)
    else:
        args.output.write_text(out, encoding="utf-8")
    meters = len({r.address for r in readings})
    print(f"{path}: {len(readings)} reading(s) of {meters} meter(s) OK", file=sys.stderr)
    return 0
