"""Reports on PostgreSQL against hand-written SQL over the same data, in the same run.

Data: `bench.report_data` (10 000 shops × 12 months on a throwaway PostgreSQL, or the server at
`--database-url`; the header prints the shape and row counts). The month reported is the last
one (the one that also has 15-minute readings). Three figures, each timed two ways:

- ours: the report code as the API runs it — `cloud.reports.queries` builds the `Spec`,
  `cloud.reports.core.fetch` answers a page with the row count and the totals over every row
  (what the JSON endpoint returns), `stream` + `cloud.reports.excel.workbook` writes the .xlsx —
  called as functions with a SQLAlchemy session (no HTTP);
- peer: one hand-written SQL statement per figure (psycopg, no ORM) producing the same numbers:
  the same rows, the same row count and the same totals (window functions for a page).

(a) consumption of the month grouped by shop: all 10 000 rows, and the first page of 50;
(b) deposits of the month in one building, sorted by time: the first page of 50 and the total;
(c) the Excel export of (a), all rows, against the SQL of (a). The SQL does not write a file, so
    this ratio also shows what writing the .xlsx costs. Two floors are printed too, the same
    rows written as plain values: `SQL + bare XlsxWriter` (constant-memory `write_row`: the
    floor of our export, which writes typed cells with XlsxWriter) and `SQL + bare openpyxl`
    (a write-only sheet's `append`: the writer we left), so the writers are compared in the
    same run.

Both answers are compared (rows, count, totals; the .xlsx read back) before anything is timed:
a fast wrong answer is not a result. Each is then run N times, alternating ours and peer, best
time kept. Prints ms and `ratio = sql / ours` (goal >= 0.5); never fails on a missed goal.
The endpoints are timed as well through `fastapi.testclient.TestClient` (in-process, with a
bearer token), for the page and the .xlsx figures, as `endpoint` lines.
Finally, informational: the month's consumption computed from the raw 15-minute readings
(max - min per meter, once) — what the rollup saves.

    .venv/bin/python bench/report_bench.py [--smoke] [--database-url postgresql://…]
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from openpyxl import Workbook, load_workbook
from xlsxwriter import Workbook as XlsxWriterBook

from cloud.app import create_app
from cloud.db.engine import make_engine, session_factory
from ledger.chain import NodeKey

try:
    from bench import report_data
except ModuleNotFoundError:  # run as `python bench/report_bench.py`: bench/ is sys.path[0]
    import report_data  # type: ignore[no-redef]

GOAL = 0.5
PAGE = 50

# The month is whole: the peer reads the per-account monthly rollup, as ours does; `verify`
# checks it against the daily rollup (every period and pocket of every day) too.
CONSUMPTION_SQL = """
    SELECT coalesce(a.shop, '') AS shop, sum(c.wh) AS wh, sum(c.subsidy_wh) AS subsidy_wh,
           sum(c.fen) AS fen
    FROM consumption_account_monthly c LEFT JOIN accounts a ON a.account = c.account
    WHERE c.month >= %(first)s AND c.month <= %(last)s
    GROUP BY 1
"""
CONSUMPTION_DAILY_SQL = """
    SELECT coalesce(a.shop, '') AS shop, sum(c.wh) AS wh,
           sum(CASE WHEN c.pocket = 'subsidy' THEN c.wh ELSE 0 END) AS subsidy_wh,
           sum(c.fen) AS fen
    FROM consumption_daily c LEFT JOIN accounts a ON a.account = c.account
    WHERE c.day >= %(first)s AND c.day <= %(last)s
    GROUP BY 1
"""
CONSUMPTION_PAGE_SQL = f"""
    SELECT shop, wh, subsidy_wh, fen, count(*) OVER (), sum(wh) OVER (),
           sum(subsidy_wh) OVER (), sum(fen) OVER ()
    FROM ({CONSUMPTION_SQL}) g ORDER BY shop LIMIT %(limit)s
"""
DEPOSITS_PAGE_SQL = f"""
    SELECT *, count(*) OVER (), sum(net) OVER ()
    FROM (SELECT r.created, r.payment, r.account, a.shop, a.building, a.floor, r.fen,
                 r.method, r.operator, r.status,
                 CASE WHEN r.status = 'posted'
                      THEN r.fen + coalesce((SELECT sum(c.fen) FROM corrections c
                                             WHERE c.payment = r.payment
                                               AND c.status = 'posted'), 0)
                      ELSE 0 END AS net  -- the net booked: a voided or pending one counts 0
          FROM recharges r JOIN accounts a ON a.account = r.account
          WHERE r.created >= (%(first)s::date)::timestamp AT TIME ZONE '{report_data.ZONE}'
            AND r.created < (%(last)s::date + 1)::timestamp AT TIME ZONE '{report_data.ZONE}'
            AND a.building = %(building)s
          OFFSET 0) d  -- join first (hash), then count and sort the building's rows
    ORDER BY created, payment LIMIT %(limit)s
"""


@dataclass
class Figure:
    name: str
    ours: Callable[[], Any]
    peer: Callable[[], Any]
    peer_name: str = "SQL"
    best_ours: float = float("inf")
    best_peer: float = float("inf")


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    value = run()
    return time.perf_counter() - began, value


def measure(figure: Figure, runs: int) -> None:
    """Best of `runs`, ours and peer alternating so that other load hits both alike."""
    for _ in range(runs):
        figure.best_ours = min(figure.best_ours, timed(figure.ours)[0])
        figure.best_peer = min(figure.best_peer, timed(figure.peer)[0])


def report(figure: Figure, *, goal: bool = True) -> None:
    ratio = figure.best_peer / figure.best_ours
    verdict = ("ok" if ratio >= GOAL else "MISSED") if goal else "informational"
    print(f"{figure.name:<46} ours {figure.best_ours * 1000:8.1f} ms   {figure.peer_name} "
          f"{figure.best_peer * 1000:8.1f} ms   ratio {ratio:5.2f} (goal >= {GOAL}): {verdict}",
          flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="50 shops × 2 months, for CI")
    parser.add_argument("--runs", type=int, help="runs per figure (best kept)")
    report_data.add_database_argument(parser)
    args = parser.parse_args()
    shape = report_data.SHAPES["smoke" if args.smoke else "full"]
    runs = args.runs or (3 if args.smoke else 5)
    try:
        from cloud.reports import core, excel, queries
    except ImportError as exc:
        print(f"skipped: the report code is missing ({exc})")
        return
    print(f"report bench ({'smoke' if args.smoke else 'full'}), best of {runs} runs per figure")
    with report_data.open_database(args.database_url) as db:
        began = time.monotonic()
        report_data.generate(db, shape)
        print(f"data ready in {time.monotonic() - began:.0f} s")
        print("\n".join(report_data.describe(db, shape)), flush=True)
        run_figures(db, shape, runs=runs, core=core, excel=excel, queries=queries)


def run_figures(
    db: report_data.Database,
    shape: report_data.Shape,
    *,
    runs: int,
    core: Any,
    excel: Any,
    queries: Any,
) -> None:
    first, _ = shape.readings_month
    window = core.month_window(f"{first:%Y-%m}")
    building = f"B{(shape.buildings + 1) // 2:02d}"
    params = {"first": window.first, "last": window.last, "building": building}
    engine = make_engine(db.url)
    sessions = session_factory(engine, read_only=True)
    peer = psycopg.connect(db.dsn, autocommit=True)
    user, password = report_data.ensure_bench_user(db.url)
    client = TestClient(create_app(engine, NodeKey.generate()))
    token = client.post("/auth/login", json={"user": user, "password": password}).json()["token"]
    client.headers["Authorization"] = f"Bearer {token}"
    span = f"from={window.first}&to={window.last}"

    def consumption_spec() -> Any:
        return queries.consumption(queries.Filters(window), ("shop",))

    def deposits_spec() -> Any:
        return queries.deposits(queries.Filters(window, building=building))

    def ours_fetch(spec: Callable[[], Any], limit: int) -> Callable[[], Any]:
        def run() -> Any:
            with sessions() as session:
                return core.fetch(session, spec(), sort=None, limit=limit, offset=0)

        return run

    def ours_xlsx() -> bytes:
        with sessions() as session:
            spec = consumption_spec()
            body: bytes = excel.workbook(spec, core.stream(session, spec, sort=None))
            return body

    def sql(statement: str, **extra: Any) -> Callable[[], list[tuple[Any, ...]]]:
        def run() -> list[tuple[Any, ...]]:
            return peer.execute(statement, {**params, **extra}).fetchall()  # type: ignore[arg-type]

        return run

    def sql_all_rows() -> tuple[list[tuple[Any, ...]], tuple[int, int, int]]:
        rows = peer.execute(CONSUMPTION_SQL + " ORDER BY 1", params).fetchall()  # type: ignore[arg-type]
        sums = (sum(r[1] for r in rows), sum(r[2] for r in rows), sum(r[3] for r in rows))
        return rows, sums

    def sql_bare_xlsx() -> bytes:
        rows, sums = sql_all_rows()
        book = Workbook(write_only=True)
        sheet = book.create_sheet("consumption")
        sheet.append(["shop", "wh", "subsidy_wh", "fen"])
        for row in rows:
            sheet.append(row)
        sheet.append(["total", *sums])
        out = io.BytesIO()
        book.save(out)
        return out.getvalue()

    def sql_bare_xlsxwriter() -> bytes:
        rows, sums = sql_all_rows()
        out = io.BytesIO()
        book = XlsxWriterBook(out, {"constant_memory": True})
        sheet = book.add_worksheet("consumption")
        sheet.write_row(0, 0, ["shop", "wh", "subsidy_wh", "fen"])
        for number, row in enumerate(rows, start=1):
            sheet.write_row(number, 0, row)
        sheet.write_row(len(rows) + 1, 0, ["total", *sums])
        book.close()
        return out.getvalue()

    def endpoint(path: str) -> Callable[[], bytes]:
        def run() -> bytes:
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
            return answer.content

        return run

    consumption_page = f"/reports/consumption?{span}&group=shop&limit={PAGE}"
    deposits_page = f"/reports/deposits?{span}&building={building}&limit={PAGE}"
    figures = [
        Figure(f"(a) consumption by shop, all {shape.shops} rows",
               ours_fetch(consumption_spec, shape.shops), sql_all_rows),
        Figure(f"(a) consumption by shop, first page of {PAGE}",
               ours_fetch(consumption_spec, PAGE), sql(CONSUMPTION_PAGE_SQL, limit=PAGE)),
        Figure("    endpoint GET /reports/consumption page",
               endpoint(consumption_page), sql(CONSUMPTION_PAGE_SQL, limit=PAGE)),
        Figure(f"(b) deposits, {building}, first page + total",
               ours_fetch(deposits_spec, PAGE), sql(DEPOSITS_PAGE_SQL, limit=PAGE)),
        Figure("    endpoint GET /reports/deposits page",
               endpoint(deposits_page), sql(DEPOSITS_PAGE_SQL, limit=PAGE)),
        Figure(f"(c) Excel export, all {shape.shops} rows", ours_xlsx, sql_all_rows),
        Figure("    endpoint GET /reports/consumption xlsx",
               endpoint(f"/reports/consumption?{span}&group=shop&format=xlsx"), sql_all_rows),
    ]  # fmt: skip
    floors = [Figure("    (c) against SQL + bare XlsxWriter", ours_xlsx, sql_bare_xlsxwriter,
                     "SQL+xlsx"),
              Figure("    (c) against SQL + bare openpyxl", ours_xlsx, sql_bare_xlsx,
                     "SQL+xlsx")]  # fmt: skip

    daily = sql(CONSUMPTION_DAILY_SQL + " ORDER BY 1")
    verify(figures, client, consumption_page, deposits_page, daily)
    print(
        f"month {window.first:%Y-%m}: answers of ours and SQL agree (rows, counts, totals, "
        ".xlsx read back)",
        flush=True,
    )
    for figure in figures:
        measure(figure, runs)
        report(figure)
    for floor in floors:
        measure(floor, runs)
        report(floor, goal=False)

    began = time.perf_counter()
    from_readings, from_rollup = report_data.check_consistency(db.dsn, shape)
    raw_s = time.perf_counter() - began
    assert from_readings == from_rollup, (from_readings, from_rollup)
    print(
        f"informational: the month's Wh from raw 15-minute readings (max - min per meter, "
        f"once) {raw_s * 1000:.0f} ms; equals the rollup's ({from_rollup:,} Wh)"
    )
    client.close()
    peer.close()
    engine.dispose()


def verify(figures: list[Figure], client: TestClient, consumption_page: str,
           deposits_page: str, daily_rows: Callable[[], Any]) -> None:  # fmt: skip
    """Ours and the SQL give the same numbers (AssertionError if not)."""
    all_rows, page, _, deposits, _, xlsx, xlsx_endpoint = figures
    ours, (rows, sums) = all_rows.ours(), all_rows.peer()
    assert [(r["shop"], r["wh"], r["subsidy_wh"], r["fen"]) for r in ours.rows] == rows
    assert ours.total == len(rows)
    assert (ours.totals["wh"], ours.totals["subsidy_wh"], ours.totals["fen"]) == sums
    assert sums[0] > 0
    assert rows == daily_rows(), "the per-account monthly rollup differs from the daily one"

    ours, peer = page.ours(), page.peer()
    assert [(r["shop"], r["wh"], r["subsidy_wh"], r["fen"]) for r in ours.rows] == [
        p[:4] for p in peer
    ]
    assert (ours.total, *ours.totals.values()) == tuple(peer[0][4:])
    answer = client.get(consumption_page).json()
    assert answer["total"] == ours.total and answer["totals"] == ours.totals
    assert [r["shop"] for r in answer["items"]] == [p[0] for p in peer]

    ours, peer = deposits.ours(), deposits.peer()
    assert peer, "no deposits in the building that month"
    assert [r["payment"] for r in ours.rows] == [p[1] for p in peer]
    assert [r["fen"] for r in ours.rows] == [p[6] for p in peer]
    assert [r["net_fen"] for r in ours.rows] == [p[10] for p in peer]
    assert (ours.total, ours.totals["net_fen"]) == (peer[0][11], peer[0][12])
    answer = client.get(deposits_page).json()
    assert answer["total"] == ours.total and answer["totals"] == ours.totals
    assert [r["payment"] for r in answer["items"]] == [p[1] for p in peer]

    for body in (xlsx.ours(), xlsx_endpoint.ours()):
        check_workbook(body, rows, sums)


def check_workbook(body: bytes, rows: list[tuple[Any, ...]], sums: tuple[int, int, int]) -> None:
    """The .xlsx holds the SQL's rows (shop, Wh, fen as yuan) and a totals row that matches."""
    sheet = load_workbook(io.BytesIO(body), read_only=True).worksheets[0]
    cells = list(sheet.iter_rows(values_only=True))
    header, body_rows, total_row = cells[0], cells[1:-1], cells[-1]
    shop, wh, fen = header.index("商铺"), header.index("用电量(Wh)"), header.index("电费(元)")
    assert len(body_rows) == len(rows)
    assert [(r[shop], r[wh]) for r in body_rows] == [(r[0], r[1]) for r in rows]
    assert sum(round(r[fen] * 100) for r in body_rows) == sums[2]
    assert (total_row[wh], round(total_row[fen] * 100)) == (sums[0], sums[2])


if __name__ == "__main__":
    main()
