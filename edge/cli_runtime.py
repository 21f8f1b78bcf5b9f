"""`voltbook-edge run | accounts`: the concentrator runtime from the command line.

    voltbook-edge run --config DIR/site.toml [--speed X] [--until ISO] [--cycles N]
        (with `[metrics] listen` in site.toml: Prometheus metrics there, `edge/metrics.py`)
    voltbook-edge accounts --config DIR/site.toml [--json]
    voltbook-edge clock set --config DIR/site.toml --time ISO8601-with-offset --note WHY

Exit codes: 0 done; 1 the runtime stopped on a damaged store; 2 the configuration, the key or a
port is unusable (nothing was changed: the message says which file and what is wrong).
A simulated site to try it on: `voltbook-demo site --dir DIR` (the `demo` package).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edge.drivers.errors import MeterError
from edge.site import SiteConfigError, load_site

if TYPE_CHECKING:
    from edge.metrics import MetricsServer
    from edge.runtime.runner import Runner

log = logging.getLogger("edge.runtime")


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def moment(text: str) -> dt.datetime:
    """An ISO date-time with its UTC offset, as an argparse type."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date-time") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs its UTC offset, e.g. +08:00")
    return value


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run",
        help="run the concentrator: poll, bill, protect, trip and close relays",
        description=(
            "Poll every meter each poll interval, bill consumption, issue subsidies, trip and "
            "close relays and keep the signed ledger. Stops cleanly on SIGTERM or Ctrl-C "
            "(the cycle in progress is finished). Prints a one-line JSON summary at the end."
        ),
    )
    run.add_argument("--config", required=True, type=Path, help="the site.toml")
    run.add_argument(
        "--speed",
        type=_positive,
        default=1.0,
        help="simulated time per real second (simulated buses only; e.g. 3600: an hour a second)",
    )
    run.add_argument("--until", type=moment, help="stop once the site's time reaches this")
    run.add_argument("--cycles", type=int, help="stop after this many poll cycles")
    run.set_defaults(func=run_runtime)

    accounts = commands.add_parser(
        "accounts",
        help="balances, relay states and alarms of every account (works while run is up)",
    )
    accounts.add_argument("--config", required=True, type=Path, help="the site.toml")
    accounts.add_argument("--json", action="store_true", help="one JSON document")
    accounts.set_defaults(func=run_accounts)

    clock = commands.add_parser(
        "clock",
        help="the site's trusted time (an installer releasing a held clock)",
    )
    actions = clock.add_subparsers(title="actions", metavar="ACTION", required=True)
    clock_set = actions.add_parser(
        "set",
        help="record the right time, releasing a clock held as implausible",
        description=(
            "Record TIME as the site's trusted time now, with an operator event carrying the "
            "note. Stop the runtime first (it holds the store): the next `run` in this boot "
            "trusts TIME carried forward by the monotonic clock until the system clock agrees; "
            "after a reboot only the last known time remains, so fix the system clock too."
        ),
        epilog=(
            "example: voltbook-edge clock set --config /etc/voltbook/site.toml "
            "--time 2026-12-06T11:00+08:00 --note 'RTC-less boot at 2038, checked by phone'"
        ),
    )
    clock_set.add_argument("--config", required=True, type=Path, help="the site.toml")
    clock_set.add_argument(
        "--time", required=True, type=moment, help="the right time now, ISO 8601 with offset"
    )
    clock_set.add_argument("--note", required=True, help="who checked the time, and how")
    clock_set.set_defaults(func=run_clock_set)


def _refuse(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def run_runtime(args: argparse.Namespace) -> int:
    from edge.runtime.boot import BootError, boot
    from edge.runtime.runner import RunLimits, Runner
    from edge.store import CorruptStore, StoreError

    try:
        site = load_site(args.config)
        booted = boot(site, speed=args.speed)
    except (SiteConfigError, BootError, MeterError) as exc:
        return _refuse(str(exc))
    except CorruptStore as exc:
        return _refuse(str(exc), 1)
    except StoreError as exc:
        return _refuse(str(exc))
    runner = Runner(booted, RunLimits(until=args.until, cycles=args.cycles))
    try:
        server = _serve_metrics(runner)
    except OSError as exc:
        booted.close()
        return _refuse(f"the metrics endpoint cannot listen on {site.settings.metrics_listen}: "
                       f"{exc.strerror or exc}")  # fmt: skip
    try:
        summary = runner.run()
    except StoreError as exc:  # a damaged store, or a disk that fails other than by filling
        return _refuse(str(exc), 1)
    finally:
        if server is not None:
            server.stop()
    last = summary.last
    print(
        json.dumps(
            {
                "cycles": summary.cycles,
                "failed_cycles": summary.failed_cycles,
                "stopped": summary.reason,
                "time": None if last is None else last.now.isoformat(),
                "seq": None if last is None else last.seq,
            }
        )
    )
    return 0


def _serve_metrics(runner: Runner) -> MetricsServer | None:
    """`[metrics] listen`: serve the Prometheus metrics while `runner` runs (None: off)."""
    site = runner.runtime.site
    if site.settings.metrics_listen is None:
        return None
    from edge.metrics import REFRESH_S, EdgeMetrics, serve_metrics

    metrics = EdgeMetrics(site, runner.pace)
    store = runner.runtime.store
    metrics.refresh(store)
    runner.add_job(REFRESH_S, lambda: metrics.refresh(store))
    host, port = site.settings.metrics_listen
    server = serve_metrics(metrics, host, port)
    log.info("metrics on http://%s:%d/metrics", host, server.port)
    return server


def run_accounts(args: argparse.Namespace) -> int:
    from edge.runtime.boot import node_public_key
    from edge.runtime.view import accounts_table, accounts_view
    from edge.store import Store, StoreError

    try:
        site = load_site(args.config)
        key = node_public_key(site)
        with Store.open_readonly(site.settings.store_path, public_key=key) as store:  # one snapshot
            view = accounts_view(site, store)
            seq, unsigned = store.chain.seq, store.not_checkpointed()
    except SiteConfigError as exc:
        return _refuse(str(exc))
    except StoreError as exc:
        return _refuse(str(exc), 1)
    if args.json:
        document = {
            "node": site.settings.node,
            "seq": seq,
            "not_checkpointed": unsigned,
            "accounts": view,
        }
        print(json.dumps(document, ensure_ascii=False))
    else:
        print(accounts_table(view))
        if unsigned:
            print(f"(ledger at seq {seq}; {unsigned} entries not yet checkpointed)")
    return 0


def run_clock_set(args: argparse.Namespace) -> int:
    from edge.runtime.clock import SystemClock
    from edge.runtime.trusted_time import set_installer_time
    from edge.store import StoreBusy, StoreError

    if not args.note.strip():
        return _refuse("--note must say who checked the time, and how")
    try:
        site = load_site(args.config)
        record = set_installer_time(site, args.time, args.note, SystemClock(site.zone))
    except SiteConfigError as exc:
        return _refuse(str(exc))
    except StoreBusy as exc:
        return _refuse(f"{exc} (stop `voltbook-edge run` first: the runtime reads it at boot)")
    except StoreError as exc:
        return _refuse(str(exc), 1)
    print(
        json.dumps(
            {
                "time": record.time.isoformat(),
                "system": record.system.isoformat(),
                "note": record.note,
            }
        )
    )
    return 0
