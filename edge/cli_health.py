"""`voltbook-edge health --config site.toml --since TIME`: is the running version healthy?

The updater (`voltbook-fw update`, docs/architecture.md §6.8) runs the *new* version's own
`voltbook-edge health` after it switched, until it passes or its bound runs out, and switches
back when it does not pass. Read-only, like `ledger verify --config` (works while `run` is up).
Healthy means all three, each after `--since` (the moment of the switch):

- store: the store opens and its ledger verifies (hashes, links, signatures, invariants), by
  the node's public key in node.pub (`edge.site.node_pub`): the updater's unit has no key
  passphrase, and needs none (the private key only on a box without node.pub yet);
- buses: a cycle ran since then (a `read_round` event) and every bus in it read a meter;
- sync: with a `[cloud]` section, the cloud acknowledged that cycle (the outbox holds nothing
  from before it: the uplink prunes only what a signed ack covers); without one, skipped.

Prints one JSON line (`ok`, and per check `ok` and `why`); exits 0 healthy, 1 not (yet), 2 when
it cannot tell (a wrong argument).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

HEALTHY, UNHEALTHY, USAGE = 0, 1, 2


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "health",
        help="check the store, the buses and the sync since a moment (the updater's check)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, required=True, help="the site.toml")
    parser.add_argument(
        "--since", required=True, help="ISO time with a zone: the checks need news after it"
    )
    parser.set_defaults(func=run_health)


def run_health(args: argparse.Namespace) -> int:
    try:
        since = dt.datetime.fromisoformat(args.since)
    except ValueError:
        since = None
    if since is None or since.tzinfo is None:
        print(
            f"error: --since must be an ISO time with a zone, got {args.since!r}", file=sys.stderr
        )
        return USAGE
    checks = health(args.config, since)
    ok = all(c["ok"] for c in checks.values())
    print(json.dumps({"ok": ok, **checks}, separators=(",", ":"), sort_keys=True))
    return HEALTHY if ok else UNHEALTHY


def health(config: Path, since: dt.datetime) -> dict[str, dict[str, Any]]:
    from edge.runtime.audit import audit_store
    from edge.runtime.boot import verifying_key
    from edge.site import SiteConfigError, load_site
    from edge.store import Store, StoreError

    def bad(why: str) -> dict[str, Any]:
        return {"ok": False, "why": why}

    try:
        site = load_site(config)
        verifying = verifying_key(site)
        key = verifying.key
        audit = audit_store(site, key)
    except (SiteConfigError, StoreError, OSError, ValueError) as exc:
        return {"store": bad(str(exc)), "buses": bad("no store"), "sync": bad("no store")}
    checks: dict[str, dict[str, Any]] = {
        "store": {"ok": True, "why": "the ledger verifies"}
        if audit.ok
        else bad(verifying.explain(audit.problem))
    }
    try:
        store = Store.open_readonly(site.settings.store_path, public_key=key)
    except StoreError:  # the audit named why: a signature the key does not verify, say
        return {**checks, "buses": bad("no store"), "sync": bad("no store")}
    with store:
        rounds = [e for e in store.events(since=since) if e.event.kind == "read_round"]
        if not rounds:
            checks["buses"] = bad(f"no cycle ran since {since.isoformat()}")
            checks["sync"] = bad("no cycle to sync yet")
            return checks
        last = rounds[-1].event
        buses = last.detail.get("buses")
        silent = [
            b.get("bus") for b in (buses if isinstance(buses, list) else []) if not b.get("read")
        ]
        if not isinstance(buses, list) or not buses:
            checks["buses"] = bad("the last cycle read no bus")
        elif silent:
            checks["buses"] = bad(f"no meter answered on {', '.join(map(str, silent))}")
        else:
            checks["buses"] = {"ok": True, "why": f"{len(buses)} bus(es) answered"}
        if site.settings.cloud is None:
            checks["sync"] = {"ok": True, "why": "skipped: no [cloud] in site.toml"}
            return checks
        oldest = store.outbox(0, 1)
        if oldest and dt.datetime.fromisoformat(oldest[0].created) <= last.time:
            checks["sync"] = bad("the cloud has not acknowledged the last cycle yet")
        else:
            checks["sync"] = {"ok": True, "why": "the cloud acknowledged the last cycle"}
    return checks
