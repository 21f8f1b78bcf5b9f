"""The operator console in headless Chromium over the generated PostgreSQL (`bench.report_data`:
10 000 shops × 12 months; smoke: 50 shops × 2 months): time to first paint of each screen,
against the API call behind it alone, and the time from a reading ingested to its value on the
monitoring screen, against the ingest alone, in the same run.

The cloud app is served by uvicorn in a thread of this process (`api_load_bench.serve`), as
`voltbook-cloud` runs it. A bench admin logs in to the console once in Debian's Chromium
(Playwright's client, never a downloaded browser); then each screen is opened `--rounds` times
(a fresh navigation each, cache off) and its first contentful paint is read from the browser's
own Performance API (`paint` entries: from the navigation's start to the first text drawn).
The peer is the JSON API's answer for the same data (same filters, same page size), timed from
request to the last byte over one keep-alive connection.

| screen           | page                                        | peer                           |
|------------------|---------------------------------------------|--------------------------------|
| monitoring       | /console/monitoring (first page, 50 meters) | /accounts?limit=50             |
| monitoring/floor | the same, one building's floor              | /accounts?limit=50&node= (its) |
| report/building  | /console/reports/consumption, by shop, one  | /reports/consumption, the same |
|                  | building, the month with readings           | filters, limit=50              |
| live value       | a reading handed to the ingest → its        | the same upload's ingest alone |
|                  | register in the monitoring table (first     | (commit and signed ack), with  |
|                  | page), through `/console/events`            | no page open                   |

The live row's concentrator is a real one (`bench.console_live`: its own Ed25519 key, signed
status and chain), and each upload goes through `Ingest.handle_batch`, the call the MQTT ingest
worker makes, from this process (the worker is another process in production). The value is on
screen when the page's script has written it (`data-live-at`, the browser's `Date.now()`; the
bench reads `time.time()`, the same clock). Before each upload the bench waits a random part of
the stream's poll interval, so the uploads land anywhere in it, as readings do; `--updates`
readings (default 30; smoke 5).

Prints p50/p95 per screen, `p95 / 1 s` (goal <= 1) and the page ÷ API ratio. Never fails on a
missed goal; it prints it. Without Chromium or Playwright it says so and stops (exit 0).

    .venv/bin/python bench/console_bench.py [--smoke] [--rounds 20] [--updates 30]
                                            [--database-url …]
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import psycopg

from cloud.db.engine import make_engine
from cloud.web.live import PACE
from ledger.chain import NodeKey

try:
    from bench import api_load_bench, console_live, report_data
except ModuleNotFoundError:  # run as `python bench/console_bench.py`: bench/ is sys.path[0]
    import api_load_bench  # type: ignore[no-redef]
    import console_live  # type: ignore[no-redef]
    import report_data  # type: ignore[no-redef]

CHROMIUM = os.environ.get("VOLTBOOK_CHROMIUM", "/usr/bin/chromium")
GOAL_S = 1.0
PAGE = 50


def screens(building: str, floor: str, node: str, span: str) -> list[tuple[str, str, str]]:
    """(name, console path, API peer path) for each screen measured; the generated data has
    one concentrator per floor, so the floor's accounts are its concentrator's. `span` is the
    month with readings (`from=…&to=…`)."""
    where = f"building={quote(building)}&floor={quote(floor)}"
    report = f"{span}&group=shop&building={quote(building)}"
    return [
        ("monitoring", f"/console/monitoring?size={PAGE}", f"/accounts?limit={PAGE}"),
        ("monitoring/floor", f"/console/monitoring?{where}&size={PAGE}",
         f"/accounts?limit={PAGE}&node={quote(node)}"),
        ("report/building", f"/console/reports/consumption?{report}",
         f"/reports/consumption?{report}&limit={PAGE}"),
    ]  # fmt: skip


def api_seconds(base: str, token: str, path: str, rounds: int) -> list[float]:
    where = urlsplit(base)
    connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=60)
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        answer = connection.getresponse()
        answer.read()
        times.append(time.perf_counter() - began)
        if answer.status != 200:
            raise SystemExit(f"{path} answered {answer.status}")
    connection.close()
    return times


def first_paint(page: Any, path: str) -> float:
    """Seconds from the navigation's start to the first contentful paint of `path`."""
    answer = page.goto(path)
    if answer is None or answer.status != 200:
        raise SystemExit(f"{path} answered {answer.status if answer else 'nothing'}")
    page.wait_for_function(
        "() => performance.getEntriesByName('first-contentful-paint').length > 0", timeout=30_000
    )
    ms = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime")
    return float(ms) / 1000


def live_latency(
    page: Any, live: console_live.LiveNode, updates: int, rng: random.Random
) -> tuple[list[float], list[float], list[float]]:
    """Seconds from each reading handed to the ingest to its register on the monitoring
    screen, from its commit to the screen, and of the ingest alone (no page open)."""
    page.goto(f"/console/monitoring?size={PAGE}")
    page.wait_for_selector("body[data-live=open]", timeout=30_000)
    row = f"tr[data-node='{live.node}'][data-meter='{live.meter}']"
    if page.query_selector(row) is None:
        raise SystemExit(
            f"the live meter {live.meter} is not on the monitoring screen's first page "
            "(earlier runs' live meters in this database sort before it)"
        )
    shown, after_commit = [], []
    for _ in range(updates):
        time.sleep(rng.uniform(0, PACE.tick))
        upload = live.upload()
        cell = f"{row} td[data-col='register']:text-is('{upload.register}')"
        page.wait_for_selector(cell, timeout=10_000)
        at = int(page.get_attribute(row, "data-live-at") or 0) / 1000
        shown.append(at - upload.began)
        after_commit.append(at - upload.committed)
    page.goto("about:blank")  # the stream closes: the peer runs with no page watching
    alone = [live.upload().ingest_s for _ in range(updates)]
    return shown, after_commit, alone


def row_text(label: str, page: list[float], api: list[float]) -> str:
    p95, api95 = pct(page, 0.95), pct(api, 0.95)
    return (f"{label:<18} {statistics.median(page) * 1000:>7.0f}ms {p95 * 1000:>7.0f}ms "
            f"{api95 * 1000:>6.0f}ms {p95 / GOAL_S:>8.2f} {p95 / api95:>8.1f}×")  # fmt: skip


def open_browser() -> tuple[Any, Any] | None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("skipped: Playwright's Python client is not installed (pip install -e '.[dev]')")
        return None
    if not Path(CHROMIUM).exists():
        print(f"skipped: {CHROMIUM} is missing (apt-get install chromium)")
        return None
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--no-sandbox"])  # fmt: skip
    return playwright, browser


def log_in(page: Any, user: str, password: str) -> None:
    page.goto("/console/login")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", password)
    page.click("form button[type=submit]")
    page.wait_for_url("**/console/**")
    if "/login" in page.url:
        raise SystemExit("the console login failed")


def pct(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small data, seconds, for CI")
    parser.add_argument("--rounds", type=int, help="navigations per screen (default 20; smoke 3)")
    parser.add_argument("--updates", type=int, help="live readings (default 30; smoke 5)")
    report_data.add_database_argument(parser)
    args = parser.parse_args()
    name = "smoke" if args.smoke else "full"
    shape = report_data.SHAPES[name]
    rounds = args.rounds or (3 if args.smoke else 20)
    updates = args.updates or (5 if args.smoke else 30)
    opened = open_browser()
    if opened is None:
        return
    playwright, browser = opened
    print(f"console bench ({name}): {rounds} navigations per screen, headless {CHROMIUM}, "
          f"{os.cpu_count()} CPUs shared by the server, PostgreSQL and the browser; "
          f"{updates} live readings")  # fmt: skip
    try:
        with report_data.open_database(args.database_url) as db:
            began = time.monotonic()
            report_data.generate(db, shape)
            print(f"data ready in {time.monotonic() - began:.0f} s")
            print("\n".join(report_data.describe(db, shape)), flush=True)
            user, password = report_data.ensure_bench_user(db.url)
            with psycopg.connect(db.dsn) as conn:
                row = conn.execute("SELECT building, floor, node FROM accounts ORDER BY account "
                                   "LIMIT 1").fetchone()  # fmt: skip
            assert row is not None, "no accounts generated"
            first, after = shape.readings_month
            span = f"from={first}&to={after - dt.timedelta(days=1)}"
            cloud_key = NodeKey.generate()
            server, thread, base, engine = api_load_bench.serve(db.url, cloud_key)
            ingest_engine = make_engine(db.url)  # the ingest worker's own, as in production
            try:
                token = api_load_bench.login(base, user, password)
                context = browser.new_context(base_url=base, locale="zh-CN",
                                              viewport={"width": 1366, "height": 800})  # fmt: skip
                page = context.new_page()
                log_in(page, user, password)
                print(f"{'screen':<18} {'page p50':>9} {'page p95':>9} {'API p95':>8} "
                      f"{'p95/1 s':>8} {'page/API':>9}")  # fmt: skip
                for label, path, peer in screens(str(row[0]), str(row[1]), str(row[2]), span):
                    first_paint(page, path)  # warm: templates, statements, fonts
                    paints = [first_paint(page, path) for _ in range(rounds)]
                    answers = api_seconds(base, token, peer, rounds)
                    print(row_text(label, paints, answers), flush=True)
                live = console_live.LiveNode.register(ingest_engine, cloud_key, str(row[0]),
                                                      str(row[1]))  # fmt: skip
                shown, after_commit, alone = live_latency(page, live, updates, random.Random(15))
                print(row_text("live value", shown, alone), flush=True)
                print(f"  live value from the commit: p50 "
                      f"{statistics.median(after_commit) * 1000:.0f}ms, p95 "
                      f"{pct(after_commit, 0.95) * 1000:.0f}ms (the stream polls every "
                      f"{PACE.tick * 1000:.0f}ms)", flush=True)  # fmt: skip
                context.close()
            finally:
                server.should_exit = True
                thread.join(10)
                engine.dispose()
                ingest_engine.dispose()
    finally:
        browser.close()
        playwright.stop()
    print("goal: every screen's first paint and the live value's p95 / 1 s <= 1", file=sys.stderr)


if __name__ == "__main__":
    main()
