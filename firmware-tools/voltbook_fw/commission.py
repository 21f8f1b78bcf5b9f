"""`voltbook-fw commission`: commission a building from the box, upload the signed report, and
fetch the PDF the building manager signs.

    voltbook-fw commission --config site.toml [--relay-test] [--out report.json]
        [--upload URL --token-file F] [--pdf report.pdf [--lang zh|en]]

A thin wrapper: the check itself is `voltbook-edge commission` (`edge/commissioning/`), run
as a program because it drives the concentrator's own drivers and this tool imports no edge
code (tests/test_layers.py). The box's report is signed with the node's key; the cloud takes
it only if the key it registered for that node signed it (`POST
/concentrators/{node}/commissioning`, an installer's token) and renders the PDF (`GET
…/commissioning/latest?format=pdf`): the cloud has the CJK font, the box does not. Standard
library only (`urllib.request`). Exit 0: clean; 1: the report names something to fix, or the
upload failed; 2: the command was wrong or the check could not run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Final

from voltbook_fw.claim import ClaimError, call

TIMEOUT_S: Final = 60
FINDINGS: Final = 1
USAGE: Final = 2


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "commission",
        help="check a building's buses (on the box), upload the signed report, get its PDF",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, type=Path, help="the box's site.toml")
    parser.add_argument(
        "--relay-test", action="store_true", help="trip and close every relay (power is cut!)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="keep the signed report here (JSON; default commissioning-TIME.json in this folder)",
    )
    parser.add_argument("--reads", type=int, default=3, help="reads per meter (default 3)")
    parser.add_argument("--upload", metavar="URL", help="the cloud's URL: upload the report")
    parser.add_argument("--token-file", type=Path, help="a file holding an installer's token")
    parser.add_argument("--pdf", type=Path, help="write the cloud's PDF of the report here")
    parser.add_argument("--lang", choices=("zh", "en"), default="zh", help="the PDF's language")
    parser.add_argument(
        "--edge",
        help="the voltbook-edge program (default: voltbook-edge on PATH, else this Python's "
        "`-m edge.cli`)",
    )
    parser.set_defaults(run=run)


def _edge(args: argparse.Namespace) -> list[str]:
    if args.edge:
        return [args.edge]
    found = shutil.which("voltbook-edge")
    return [found] if found else [sys.executable, "-m", "edge.cli"]


def _fail(message: str, code: int) -> int:
    print(f"voltbook-fw commission: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    if args.pdf is not None and args.upload is None:
        return _fail("--pdf needs --upload: the cloud prints the report", USAGE)
    if args.upload is not None and args.token_file is None:
        return _fail("--upload needs --token-file (an installer's token)", USAGE)
    cloud = None if args.upload is None else str(args.upload).rstrip("/")
    if cloud is not None and not cloud.startswith(("http://", "https://")):
        return _fail(f"--upload {args.upload!r} must be an http:// or https:// URL", USAGE)
    # The signed report is kept (the installer's copy of what the cloud holds): --out, or a
    # file named for the time in the current folder.
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path(f"commissioning-{stamp}.json")
    command = [*_edge(args), "commission", "--config", str(args.config), "--out", str(out)]
    command += ["--reads", str(args.reads)] + (["--relay-test"] if args.relay_test else [])
    done = subprocess.run(command, check=False)  # its summary and progress pass through
    if done.returncode not in (0, FINDINGS) or not out.exists():
        return _fail("the check did not run (see above)", USAGE)
    if cloud is None:
        return done.returncode
    try:
        signed = json.loads(out.read_bytes())
        answer = upload(cloud, signed, token=_token(args.token_file))
        verdict = _verdict(answer)
        print(verdict)
        if args.pdf is not None:
            node = urllib.parse.quote(answer["node"], safe="")
            path = f"/concentrators/{node}/commissioning/latest?format=pdf&lang={args.lang}"
            args.pdf.write_bytes(get(cloud, path, token=_token(args.token_file)))
            print(f"PDF for the building manager to sign: {args.pdf}")
    except (ClaimError, OSError, ValueError, KeyError) as exc:
        return _fail(str(exc), FINDINGS)
    return 0 if answer["clean"] else FINDINGS


def _token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClaimError(f"cannot read the token file {path}: {exc}") from None
    if not token:
        raise ClaimError(f"the token file {path} is empty")
    return token


def upload(cloud: str, signed: dict[str, Any], *, token: str) -> Any:
    node = urllib.parse.quote(str(signed["report"]["node"]), safe="")
    return call(cloud, f"/concentrators/{node}/commissioning", signed, token)


def get(cloud: str, path: str, *, token: str) -> bytes:
    request = urllib.request.Request(cloud + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        raise ClaimError(f"the cloud refused ({exc.code}): {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise ClaimError(f"cannot reach the cloud at {cloud}: {exc}") from None


def _verdict(answer: dict[str, Any]) -> str:
    registry = answer["registry"]
    lines = [
        f"uploaded: report {answer['digest'][:16]} of {answer['node']}"
        + ("" if answer["new"] else " (already there)")
        + (", clean" if answer["clean"] else ", items to fix")
    ]
    lines += [
        f"  in the registry, not found: {m['bus']} {m['address']}" for m in registry["missing"]
    ]
    lines += [
        f"  found, not in the registry: {m['bus']} {m['address']}" for m in registry["unknown"]
    ]
    return "\n".join(lines)
