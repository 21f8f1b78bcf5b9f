"""`voltbook-edge status`: the box's own status from its store, with no cloud (`edge.status`).

Reads one snapshot of the store read-only (no writer lock), so it runs beside the runtime.
`--serve` serves the same as a page on the LAN (`edge.status_page`), only when site.toml sets
`[status] listen`. Exit 0; 1 when the store cannot be read; 2 when the site cannot be loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge.runtime.boot import node_public_key
from edge.site import SiteConfigError, load_site
from edge.site.model import Site
from edge.status import site_status, status_text
from edge.store import Store, StoreError

DEFAULT_CONFIG = Path("/etc/voltbook/site.toml")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "status",
        help="per bus and meter: last read, read success, errors, relays; clock, sync, alarms",
        description=(
            "Print the concentrator's status from its store: per bus and meter the last "
            "reading, the read success of the last 24 h, errors and relay states; the clock, "
            "the sync position and outbox backlog, and the alarms. Read-only: safe while the "
            "runtime runs."
        ),
    )
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help=f"site.toml (default {DEFAULT_CONFIG})"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--serve",
        action="store_true",
        help='serve the read-only status page on [status] listen = "HOST:PORT" of site.toml '
        "(off unless set; no login: LAN only)",
    )
    parser.set_defaults(func=run_status)


def run_status(args: argparse.Namespace) -> int:
    try:
        site = load_site(args.config)
    except SiteConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.serve:
        return serve(site)
    path = site.settings.store_path
    if not path.exists():
        print(f"error: no store at {path} yet: the runtime has not run.", file=sys.stderr)
        return 1
    try:
        key = node_public_key(site)
        with Store.open_readonly(path, public_key=key) as store:  # one snapshot, no lock
            status = site_status(site, store)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, ensure_ascii=False) if args.json else status_text(status))
    return 0


def serve(site: Site) -> int:
    from edge.status_page import make_server

    if site.settings.status_listen is None:
        print(
            f'error: the status page is off: set [status] listen = "HOST:PORT" in '
            f"{site.settings.path} to serve it.",
            file=sys.stderr,
        )
        return 2
    try:
        server = make_server(site)
    except OSError as exc:
        print(f"error: cannot listen on {site.settings.status_listen}: {exc}", file=sys.stderr)
        return 1
    host, port = site.settings.status_listen
    print(f"status page on http://{host}:{port}/ (read-only, no login)", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
