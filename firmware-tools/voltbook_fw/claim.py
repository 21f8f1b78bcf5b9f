"""`voltbook-fw claim --site S [--node N] --valid 2h --cloud URL`: a one-time claim token for a
concentrator (with `--node`, bound to the node an operator pre-assigned to the site: the box
takes that node id and its meters).

The installer logs in (`--user NAME`, the password from `VOLTBOOK_PASSWORD` or asked for; or
`--token-file F` holding a bearer token from an earlier login), asks the cloud's `POST /claims`
for a token bound to the site and to them, and gets it printed with its expiry and the exact
command to run on the box (`voltbook-edge provision --cloud URL --token T`). The token is
shown once: the cloud keeps only its hash. Nothing secret is written to disk here.

The standard library only (`urllib.request`): this runs on an installer's laptop.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

FAILED = 2
TIMEOUT_S = 30.0
PASSWORD_VARIABLE = "VOLTBOOK_PASSWORD"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION = re.compile(r"^\s*([0-9]{1,7})\s*([smhd]?)\s*$")


class ClaimError(Exception):
    """Something the installer must fix; the message says what."""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "claim",
        help="get a one-time claim token that provisions a concentrator of a site",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--site", required=True, help="the site: its registry id or its name")
    parser.add_argument(
        "--node", help="a node id pre-assigned to the site: the box takes it and its meters"
    )
    parser.add_argument(
        "--valid", default="2h", type=duration, help="how long the token works: 90s, 30m, 2h, 7d"
    )
    parser.add_argument("--cloud", required=True, help="the cloud's URL, e.g. https://vb.example")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help=f"log in as this user (password: ${PASSWORD_VARIABLE} or ask)")
    who.add_argument("--token-file", type=Path, help="a file holding a bearer token")
    parser.add_argument("--json", action="store_true", help="print the cloud's answer as JSON")
    parser.set_defaults(run=run)


def duration(text: str) -> int:
    """Seconds from `90s`, `30m`, `2h`, `7d` or plain seconds."""
    match = DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 30m, 2h or 7d")
    return int(match[1]) * UNITS[match[2] or "s"]


def run(args: argparse.Namespace) -> int:
    cloud = str(args.cloud).rstrip("/")
    try:
        if not cloud.startswith(("http://", "https://")):
            raise ClaimError(f"--cloud {args.cloud!r} must be an http:// or https:// URL")
        bearer = _bearer(cloud, args)
        site: int | str = int(args.site) if str(args.site).isdigit() else str(args.site)
        body: dict[str, Any] = {"site": site, "valid_s": args.valid}
        if args.node:
            body["node"] = str(args.node)
        answer = call(cloud, "/claims", body, bearer)
    except ClaimError as exc:
        print(f"voltbook-fw claim: {exc}", file=sys.stderr)
        return FAILED
    if args.json:
        print(json.dumps(answer, ensure_ascii=False, indent=2))
        return 0
    token = answer["token"]
    bound = f", node {answer['node']}" if answer.get("node") else ""
    print(f"claim token for site {answer['site_name']} (#{answer['site']}){bound}, "
          f"valid until {answer['expires']}, usable once:")  # fmt: skip
    print(f"  {token}")
    print("on the concentrator, run:")
    print(f"  voltbook-edge provision --cloud {cloud} --token {token}")
    return 0


def _bearer(cloud: str, args: argparse.Namespace) -> str:
    if args.token_file is not None:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ClaimError(f"cannot read the token file {args.token_file}: {exc}") from None
        if not token:
            raise ClaimError(f"the token file {args.token_file} is empty")
        return token
    password = os.environ.get(PASSWORD_VARIABLE) or getpass.getpass(f"password of {args.user}: ")
    answer = call(cloud, "/auth/login", {"user": args.user, "password": password})
    return str(answer["token"])


def call(cloud: str, path: str, body: dict[str, Any], bearer: str | None = None) -> Any:
    """POST `body` as JSON; the decoded answer, or `ClaimError` with the cloud's words."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    request = urllib.request.Request(
        cloud + path, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ClaimError(f"the cloud refused ({exc.code}): {_detail(exc)}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ClaimError(f"cannot reach the cloud at {cloud} ({reason}): check the URL") from None
    except ValueError:
        problem = f"the cloud at {cloud} did not answer JSON: is it the Voltbook API?"
        raise ClaimError(problem) from None


def _detail(error: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(error.read()).get("detail")
    except (ValueError, AttributeError, OSError):
        detail = None
    return str(detail) if detail else str(error.reason)
