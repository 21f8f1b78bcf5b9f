"""Generated data for the report and API benchmarks: a mall of shops on PostgreSQL, a year of
daily consumption, deposits and their ledger entries, and a month of 15-minute readings.

Everything is generated inside the database (`generate_series`, `INSERT … SELECT`), so the full
shape loads in minutes, not hours. The numbers are a closed form, so every table agrees with
every other one:

- A shop `i` (0-based) sits on floor `i // shops_per_floor`; each floor has its own
  concentrator (`edge-0001` …), each shop one account (`A00001` …) and one meter.
- On day `d` meter `i` uses `10 * a(i, d) * w(k)` Wh in 15-minute slot `k` of the day, where
  `a(i, d)` is 1…6 (a fixed hash) and `w(k)` is 1 at night (valley, 00-08), 4 at the peaks
  (10-12, 18-21) and 3 otherwise (flat): 244 weight units a day, 2.4 … 14.6 kWh.
- `consumption_daily` (the rollup the reports read; `consumption_monthly` is its sum per
  month, for windows of whole months, and `consumption_account_monthly` that per account,
  for the pages grouped by account or area) holds per account, meter and day: on days
  1-3 of a month one `subsidy` row (period '', no fen, the whole day); on the other days one
  `prepaid` row per tariff period (valley, flat, peak) with the fen at 3120 / 8365 / 12000
  units of 0.0001 CNY/kWh, rounded per row.
- `readings` hold every 15-minute register of every meter over the last month (plus the
  register at the instant the month ends), so per meter `max - min` over the month equals the
  month's Wh in the rollup (`check_consistency`).
- `recharges`: 1-4 deposits per shop and month (cash, card, wechat, alipay, transfer; twelve
  operators at the desk, none for mobile payments), each with its three ledger entries (the
  cloud's pending and post, the concentrator's single), plus a monthly `subsidy_issue` entry per
  account. The ledger holds no `consume` entries: a year of 15-minute billing is 350 M entries,
  and the reports read the rollup, which is what the ingest folds those entries into.
- `balances` per pocket, the registry (site, buildings, floors, shops, merchants, accounts,
  meters) and the inventory (`concentrators`, `accounts`, `meters`) the reports join.

`SHAPES["full"]` is 10 000 shops × 12 months (readings: the 12th month only, ≈ 29 M rows, the
disk and time a whole year's 350 M would take are not worth it: the reports never read
readings but for the meter status); `SHAPES["smoke"]` is 50 shops × 2 months, same code path.

A database generated once is marked (`bench_shape`); `generate` on a database already holding
the same shape does nothing, so `--database-url` lets a second bench reuse the first's data.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

from cloud.db.engine import make_engine, upgrade
from cloud.db.partitions import ensure_month_partitions
from cloud.services.postgres import ThrowawayPostgres, find_postgres
from ledger.accounts import System, system_id

ZONE = "Asia/Shanghai"
PRICES = {"valley": 3120, "flat": 8365, "peak": 12000}  # 0.0001 CNY/kWh
SUBSIDY_DAYS = 3  # days 1..3 of a month are paid from subsidy
SUBSIDY_ISSUE_WH = 50_000
METHODS = ("cash", "card", "wechat", "alipay", "transfer")
# The small server's settings (docs/architecture.md §4), which the throwaway cluster runs with.
SERVER_CONF = (
    Path(__file__).resolve().parent.parent / "deploy" / "postgresql" / "voltbook-small.conf"
)


def server_settings(path: Path = SERVER_CONF) -> dict[str, str]:
    """The `name = value` lines of a postgresql.conf snippet (comments and blanks skipped)."""
    settings = {}
    for line in path.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            name, _, value = text.partition("=")
            settings[name.strip()] = value.strip().strip("'")
    return settings


SERVER_SETTINGS = server_settings()


@dataclass(frozen=True, slots=True)
class Shape:
    buildings: int
    floors: int  # per building; one concentrator per floor
    shops_per_floor: int
    first_month: dt.date  # the first of the first month
    months: int  # the readings cover the last of them

    @property
    def shops(self) -> int:
        return self.buildings * self.floors * self.shops_per_floor

    @property
    def nodes(self) -> int:
        return self.buildings * self.floors

    def month(self, index: int) -> dt.date:
        """The first day of month `index` (0-based)."""
        total = self.first_month.year * 12 + self.first_month.month - 1 + index
        return dt.date(total // 12, total % 12 + 1, 1)

    @property
    def end(self) -> dt.date:
        """The day after the last day."""
        return self.month(self.months)

    @property
    def readings_month(self) -> tuple[dt.date, dt.date]:
        """First day, and the day after the last, of the month that has readings."""
        return self.month(self.months - 1), self.end

    def describe(self) -> str:
        first, after = self.readings_month
        days = (after - first).days
        return (
            f"{self.shops} shops ({self.buildings} buildings × {self.floors} floors × "
            f"{self.shops_per_floor} shops, one meter and account each, {self.nodes} "
            f"concentrators) × {self.months} months from {self.first_month:%Y-%m}; 15-minute "
            f"readings for {first:%Y-%m} only ({self.shops} × {days} days × 96 = "
            f"{self.shops * days * 96:,} rows)"
        )


SHAPES = {
    "full": Shape(20, 10, 50, dt.date(2025, 12, 1), 12),
    "smoke": Shape(1, 5, 10, dt.date(2026, 10, 1), 2),
}

# The 96 slots of a day: weight and tariff period.
_PEAK = set(range(40, 48)) | set(range(72, 84))


def slot_period(k: int) -> str:
    return "valley" if k < 32 else "peak" if k in _PEAK else "flat"


SLOT_WEIGHT = {"valley": 1, "flat": 3, "peak": 4}
PERIOD_WEIGHT = {p: sum(SLOT_WEIGHT[p] for k in range(96) if slot_period(k) == p) for p in PRICES}
PERIOD_SLOTS = {p: sum(1 for k in range(96) if slot_period(k) == p) for p in PRICES}
DAY_WEIGHT = sum(PERIOD_WEIGHT.values())


@dataclass(frozen=True, slots=True)
class Database:
    """Where the generated data lives: `url` for SQLAlchemy, `dsn` for psycopg."""

    url: str
    dsn: str
    note: str


@contextlib.contextmanager
def open_database(database_url: str | None) -> Iterator[Database]:
    """A throwaway PostgreSQL with the small server's settings (`SERVER_CONF`), or the server
    at `database_url` (its settings are printed)."""
    if database_url:
        dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
        yield Database(database_url, dsn, f"PostgreSQL at {database_url} ({_settings(dsn)})")
        return
    if find_postgres() is None:
        raise SystemExit("skipped: PostgreSQL (initdb, pg_ctl) is not installed")
    with tempfile.TemporaryDirectory() as workdir, ThrowawayPostgres(Path(workdir)) as pg:
        with psycopg.connect(pg.dsn, autocommit=True) as admin:
            for name, value in SERVER_SETTINGS.items():
                admin.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        pg.restart()
        yield Database(pg.url, pg.dsn, f"throwaway PostgreSQL, fsync off ({_settings(pg.dsn)})")


def _settings(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        shown = [f"version {conn.execute('SHOW server_version').fetchone()[0]}"]  # type: ignore[index]
        for name in SERVER_SETTINGS:
            shown.append(f"{name}={conn.execute(f'SHOW {name}').fetchone()[0]}")  # type: ignore[index]
    return ", ".join(shown)


def add_database_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        help="use this PostgreSQL (postgresql://…) instead of a throwaway one; data is "
        "generated into it unless it already holds the same shape",
    )


# -- generation ---------------------------------------------------------------------------------


def generate(db: Database, shape: Shape, *, progress: bool = True) -> dict[str, int]:
    """Migrate and fill the database (unless it already holds `shape`); returns row counts."""
    engine = make_engine(db.url)
    try:
        upgrade(engine)
        first, after = shape.readings_month
        edges = [_local_midnight(first), _local_midnight(after)]
        with engine.begin() as connection:
            ensure_month_partitions(connection, edges)
    finally:
        engine.dispose()
    with psycopg.connect(db.dsn) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_shape (shape json NOT NULL)")
        found = conn.execute("SELECT shape::text FROM bench_shape").fetchone()
        wanted = json.dumps(asdict(shape), default=str, sort_keys=True)
        if found is not None:
            if found[0] != wanted:
                raise SystemExit(f"the database holds another generated shape: {found[0]}")
            return counts(conn)
        if conn.execute("SELECT EXISTS (SELECT 1 FROM accounts)").fetchone() == (True,):
            raise SystemExit("the database has accounts that are not ours: use an empty one")
        conn.execute("SET work_mem = '256MB'")
        steps = (
            ("registry and inventory", _registry),
            ("consumption_daily", _consumption),
            ("recharges and ledger", _recharges),
            ("balances", _balances),
            ("readings", _readings),
        )
        for name, step in steps:
            began = time.monotonic()
            step(conn, shape)
            conn.commit()
            if progress:
                print(f"  generated {name} in {time.monotonic() - began:.1f} s", flush=True)
        conn.execute("INSERT INTO bench_shape VALUES (%s)", (wanted,))
        conn.commit()
        began = time.monotonic()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        if progress:
            print(f"  vacuum analyze in {time.monotonic() - began:.1f} s", flush=True)
        return counts(conn)


def _local_midnight(day: dt.date) -> dt.datetime:
    from zoneinfo import ZoneInfo

    return dt.datetime.combine(day, dt.time(), ZoneInfo(ZONE)).astimezone(dt.UTC)


def _shops_sql(shape: Shape) -> str:
    """A temp table of the shops with every name they go by."""
    per_floor, floors = shape.shops_per_floor, shape.floors
    return f"""
        CREATE TEMP TABLE bench_shops AS
        SELECT i,
               'A' || lpad((i + 1)::text, 5, '0') AS account,
               lpad((i + 1)::text, 12, '0') AS meter,
               'edge-' || lpad((i / {per_floor} + 1)::text, 4, '0') AS node,
               'B' || lpad((i / ({per_floor} * {floors}) + 1)::text, 2, '0') AS building,
               'F' || lpad((i / {per_floor} % {floors} + 1)::text, 2, '0') AS floor,
               'B' || lpad((i / ({per_floor} * {floors}) + 1)::text, 2, '0')
                 || '-F' || lpad((i / {per_floor} % {floors} + 1)::text, 2, '0')
                 || '-' || lpad((i % {per_floor} + 1)::text, 3, '0') AS shop
        FROM generate_series(0, {shape.shops - 1}) AS i
    """


def _registry(conn: psycopg.Connection[Any], shape: Shape) -> None:
    t0 = _local_midnight(shape.first_month)
    tariff = {"prices": PRICES, "ranges": [["00:00", "08:00", "valley"]]}
    statements = [
        _shops_sql(shape),
        "CREATE INDEX ON bench_shops (account)",
        (
            "INSERT INTO registry_tariffs VALUES ('bench-tou', '分时电价', 'tou', %s)",
            (json.dumps(tariff),),
        ),
        "INSERT INTO registry_sites (id, name, time_zone, print_receipts, tariff) "
        f"VALUES (1, 'Bench Mall', '{ZONE}', false, 'bench-tou')",
        "INSERT INTO registry_buildings (id, site_id, name) "
        "SELECT DISTINCT ON (building) i + 1, 1, building FROM bench_shops ORDER BY building, i",
        "INSERT INTO registry_floors (id, building_id, name) "
        "SELECT DISTINCT ON (node) s.i + 1, b.id, s.floor FROM bench_shops s "
        "JOIN registry_buildings b ON b.name = s.building ORDER BY node, s.i",
        (
            "INSERT INTO concentrators (node, name, public_key, key_id, status, quarantine_reason, "
            "online, last_seen, head_seq, head_hash, upto, commands_applied, next_command_seq, "
            "created) SELECT node, node, encode(sha256(convert_to(node, 'UTF8')), 'hex'), "
            "left(encode(sha256(convert_to(node, 'UTF8')), 'hex'), 16), 'active', '', true, %s, "
            "0, '\\x00'::bytea, 0, 0, 1, %s FROM (SELECT DISTINCT node FROM bench_shops) n",
            (_local_midnight(shape.end), t0),
        ),
        "INSERT INTO registry_shops (id, site_id, floor_id, number, category, area_m2, node) "
        "SELECT s.i + 1, 1, f.id, s.shop, CASE WHEN s.i % 5 = 0 THEN 'food' ELSE 'general' END, "
        "(20 + s.i % 40)::text || '.5', s.node FROM bench_shops s "
        "JOIN registry_buildings b ON b.name = s.building "
        "JOIN registry_floors f ON f.building_id = b.id AND f.name = s.floor",
        "INSERT INTO registry_merchants (id, name, phone) "
        "SELECT i + 1, '商户' || (i + 1), '138' || lpad(i::text, 8, '0') FROM bench_shops",
        "INSERT INTO registry_account_types VALUES ('standard', '普通'), ('food', '餐饮')",
        "INSERT INTO registry_accounts (id, merchant_id, shop_id, account_type, tariff, "
        "credit_limit_fen, keep_power) SELECT account, i + 1, i + 1, "
        "CASE WHEN i % 5 = 0 THEN 'food' ELSE 'standard' END, 'bench-tou', 0, false "
        "FROM bench_shops",
        "INSERT INTO registry_meters (id, address, protocol, kind, bus, node, shop_id, "
        "multiplier) SELECT i + 1, meter, 'dlt645', 'electricity', 'rs485-1', node, i + 1, 1 "
        "FROM bench_shops",
        "INSERT INTO accounts (account, node, shop, building, floor) "
        "SELECT account, node, shop, building, floor FROM bench_shops",
        "INSERT INTO meters (node, address, account, protocol, relay, energy_wh, last_reading) "
        "SELECT node, meter, account, 'dlt645', 1, NULL, NULL FROM bench_shops",
    ]
    for statement in statements:
        if isinstance(statement, tuple):
            conn.execute(statement[0], statement[1])  # type: ignore[arg-type]
        else:
            conn.execute(statement)  # type: ignore[arg-type]
    for table in ("registry_sites", "registry_buildings", "registry_floors", "registry_shops",
                  "registry_merchants", "registry_meters"):  # fmt: skip
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # type: ignore[arg-type]
            f"(SELECT max(id) FROM {table}))"
        )


def _days_sql(shape: Shape) -> str:
    """A temp table of (shop, day, a, Wh used before that day since the first month)."""
    return f"""
        CREATE TEMP TABLE bench_days AS
        SELECT s.i, s.account, s.meter, s.node, d.day, x.a,
               sum(10 * x.a * {DAY_WEIGHT}) OVER w - 10 * x.a * {DAY_WEIGHT} AS used_before
        FROM bench_shops s
        CROSS JOIN (SELECT g::date AS day FROM generate_series(
            '{shape.first_month}'::date, '{shape.end}'::date - 1, interval '1 day') g) d
        CROSS JOIN LATERAL (SELECT 1 + ((s.i * 7919 + (d.day - date '2000-01-01') * 104729)
                                        % 97) % 6 AS a) x
        WINDOW w AS (PARTITION BY s.i ORDER BY d.day)
    """


def _consumption(conn: psycopg.Connection[Any], shape: Shape) -> None:
    conn.execute(_days_sql(shape))  # type: ignore[arg-type]
    periods = [("", "subsidy", DAY_WEIGHT, 0, 96, True)] + [
        (p, "prepaid", PERIOD_WEIGHT[p], PRICES[p], PERIOD_SLOTS[p], False) for p in PRICES
    ]
    conn.execute(
        "CREATE TEMP TABLE bench_periods (period text, pocket text, weight int, price int, "
        "entries int, subsidy bool)"
    )
    with conn.cursor().copy("COPY bench_periods FROM STDIN") as copy:
        for row in periods:
            copy.write_row(row)
    # Bulk load: the secondary indexes are dropped and built again (as the migration has them).
    conn.execute("DROP INDEX consumption_daily_by_day, consumption_daily_by_account")
    conn.execute(f"""
        INSERT INTO consumption_daily (account, meter, day, period, pocket, wh, fen, entries)
        SELECT d.account, d.meter, d.day, p.period, p.pocket, 10 * d.a * p.weight,
               (10 * d.a * p.weight * p.price::bigint + 50000) / 100000, p.entries
        FROM bench_days d
        JOIN bench_periods p ON p.subsidy = (extract(day FROM d.day) <= {SUBSIDY_DAYS})
        ORDER BY d.account, d.meter, d.day, p.period, p.pocket
    """)  # type: ignore[arg-type]
    conn.execute("CREATE INDEX consumption_daily_by_day ON consumption_daily (day, account)")
    conn.execute("CREATE INDEX consumption_daily_by_account ON consumption_daily (account, day)")
    fill_monthly(conn)


def fill_monthly(conn: psycopg.Connection[Any]) -> None:
    """`consumption_monthly` and `consumption_account_monthly` (when the schema has them): the
    daily rollup summed per month, and per account and month."""
    found = conn.execute("SELECT to_regclass('consumption_monthly') IS NOT NULL").fetchone()
    if found != (True,):
        return
    conn.execute("""
        INSERT INTO consumption_monthly (account, meter, month, period, pocket, wh, fen, entries)
        SELECT account, meter, date_trunc('month', day)::date, period, pocket, sum(wh), sum(fen),
               sum(entries)
        FROM consumption_daily GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
    """)
    found = conn.execute("SELECT to_regclass('consumption_account_monthly') IS NOT NULL").fetchone()
    if found != (True,):
        return
    conn.execute("""
        INSERT INTO consumption_account_monthly (account, month, wh, subsidy_wh, fen, entries)
        SELECT account, month, sum(wh), sum(CASE WHEN pocket = 'subsidy' THEN wh ELSE 0 END),
               sum(fen), sum(entries)
        FROM consumption_monthly GROUP BY 1, 2 ORDER BY 1, 2
    """)


def _recharges(conn: psycopg.Connection[Any], shape: Shape) -> None:
    months = ", ".join(f"('{shape.month(m)}'::date, {m})" for m in range(shape.months))
    methods = "ARRAY[" + ", ".join(f"'{m}'" for m in METHODS) + "]"
    conn.execute(f"""
        CREATE TEMP TABLE bench_recharges AS
        SELECT s.account, s.node,
               'P' || s.account || '-' || to_char(m.first, 'YYYYMM') || '-' || k AS payment,
               100 * (50 + (h % 20) * 25) AS fen,
               ({methods})[1 + h % 5] AS method,
               CASE WHEN h % 5 IN (2, 3) THEN ''
                    ELSE 'op-' || lpad((1 + (h / 7) % 12)::text, 2, '0') END AS operator,
               ((m.first + ((h / 11) % days.n) * interval '1 day'
                 + (8 * 3600 + (h / 13) % (12 * 3600)) * interval '1 second')::timestamp
                 AT TIME ZONE '{ZONE}') AS created
        FROM bench_shops s
        CROSS JOIN (VALUES {months}) AS m(first, idx)
        CROSS JOIN LATERAL (SELECT ((m.first + interval '1 month')::date - m.first) AS n) days
        CROSS JOIN LATERAL generate_series(1, 1 + (s.i * 31 + m.idx * 17) % 4) AS k
        CROSS JOIN LATERAL (SELECT abs(hashtext(s.account || m.idx || k)) AS h) hh
    """)  # type: ignore[arg-type]
    conn.execute("""
        INSERT INTO recharges (payment, account, fen, method, operator, status,
                               pending_transfer, command_id, created, posted)
        SELECT payment, account, fen, method, operator, 'posted',
               md5('recharge-pending' || payment), md5('command' || payment), created,
               created + interval '90 seconds'
        FROM bench_recharges ORDER BY created
    """)
    received, transit = system_id(System.PAYMENTS_RECEIVED), system_id(System.CASH_IN_TRANSIT)
    issued = system_id(System.SUBSIDY_ISSUED)
    issues = ", ".join(f"('{shape.month(m)}'::date)" for m in range(shape.months))
    conn.execute(f"""
        CREATE TEMP TABLE bench_entries AS
        SELECT 'cloud' AS node, md5('recharge-pending' || payment) AS transfer_id,
               'recharge' AS code, 'pending' AS kind, '{received}' AS debit,
               '{transit}' AS credit, fen AS amount, 'fen' AS unit, NULL AS pending_id,
               created AS time,
               json_build_object('payment', payment, 'method', method, 'account', account,
                                 'operator', operator) AS refs
        FROM bench_recharges
        UNION ALL
        SELECT node, md5('recharge' || payment), 'recharge', 'single', '{transit}',
               account || ':prepaid', fen, 'fen', NULL, created + interval '60 seconds',
               json_build_object('payment', payment, 'command', md5('command' || payment))
        FROM bench_recharges
        UNION ALL
        SELECT 'cloud', md5('recharge-post' || payment), 'recharge', 'post', '{received}',
               '{transit}', fen, 'fen', md5('recharge-pending' || payment),
               created + interval '90 seconds',
               json_build_object('payment', payment, 'node', node)
        FROM bench_recharges
        UNION ALL
        SELECT s.node, md5('subsidy-issue' || s.account || m.first), 'subsidy_issue', 'single',
               '{issued}', s.account || ':subsidy', {SUBSIDY_ISSUE_WH}, 'Wh', NULL,
               m.first::timestamp AT TIME ZONE '{ZONE}',
               json_build_object('period', to_char(m.first, 'YYYY-MM'))
        FROM bench_shops s CROSS JOIN (VALUES {issues}) AS m(first)
    """)  # type: ignore[arg-type]
    conn.execute("""
        INSERT INTO ledger_entries (node, seq, transfer_id, prev_hash, hash, body, code, kind,
                                    debit, credit, amount, unit, pending_id, time, refs)
        SELECT node, row_number() OVER (PARTITION BY node ORDER BY time, transfer_id),
               transfer_id, sha256(convert_to('prev' || transfer_id, 'UTF8')),
               sha256(convert_to(transfer_id, 'UTF8')),
               convert_to(refs::text || debit || credit || amount, 'UTF8'),
               code, kind, debit, credit, amount, unit, pending_id, time, refs
        FROM bench_entries ORDER BY time, transfer_id
    """)
    conn.execute("""
        UPDATE concentrators c SET head_seq = h.seq, upto = h.seq
        FROM (SELECT node, max(seq) AS seq FROM ledger_entries GROUP BY node) h
        WHERE h.node = c.node
    """)


def _balances(conn: psycopg.Connection[Any], shape: Shape) -> None:
    conn.execute("""
        INSERT INTO balances (account, unit, debits_pending, debits_posted, credits_pending,
                              credits_posted)
        SELECT s.account || ':' || p.pocket, p.unit, 0, coalesce(used.amount, 0), 0,
               coalesce(got.amount, 0)
        FROM bench_shops s
        CROSS JOIN (VALUES ('prepaid', 'fen'), ('subsidy', 'Wh'), ('grace', 'Wh')) p(pocket, unit)
        LEFT JOIN (SELECT account, pocket,
                          sum(CASE WHEN pocket = 'prepaid' THEN fen ELSE wh END) AS amount
                   FROM consumption_daily GROUP BY account, pocket) used
          ON used.account = s.account AND used.pocket = p.pocket
        LEFT JOIN (SELECT credit, sum(amount) AS amount FROM ledger_entries
                   WHERE kind = 'single' GROUP BY credit) got
          ON got.credit = s.account || ':' || p.pocket
    """)


def _readings(conn: psycopg.Connection[Any], shape: Shape) -> None:
    first, after = shape.readings_month
    weights = ", ".join(f"({k}, {SLOT_WEIGHT[slot_period(k)]})" for k in range(96))
    conn.execute(f"""
        CREATE TEMP TABLE bench_slots AS
        SELECT k, w, coalesce(sum(w) OVER (ORDER BY k ROWS BETWEEN UNBOUNDED PRECEDING
                                            AND 1 PRECEDING), 0) AS before
        FROM (VALUES {weights}) AS v(k, w)
    """)  # type: ignore[arg-type]
    # Register at the start of each slot; sorted by (node, meter, time), the primary key and
    # the (meter, time) index of each partition fill in order.
    conn.execute(f"""
        INSERT INTO readings (node, meter, time, energy_wh, voltage, current, power, pf, relay)
        SELECT node, meter, time, energy_wh, voltage, round((power / voltage / 0.95)::numeric,
               3)::float8, power, 0.95, 1
        FROM (
            SELECT d.node, d.meter,
                   (d.day + s.k * interval '15 minutes')::timestamp AT TIME ZONE '{ZONE}' AS time,
                   1000000 + d.i * 1000 + d.used_before + 10 * d.a * s.before AS energy_wh,
                   220 + ((d.i + s.k) % 15) * 0.5 AS voltage,
                   (40 * d.a * s.w)::float8 AS power
            FROM bench_days d CROSS JOIN bench_slots s
            WHERE d.day >= '{first}' AND d.day < '{after}'
            UNION ALL
            SELECT d.node, d.meter, '{after}'::timestamp AT TIME ZONE '{ZONE}',
                   1000000 + d.i * 1000 + d.used_before + 10 * d.a * {DAY_WEIGHT}, 220, 0
            FROM bench_days d WHERE d.day = '{after}'::date - 1
        ) r
        ORDER BY node, meter, time
    """)  # type: ignore[arg-type]
    conn.execute(f"""
        UPDATE meters m SET energy_wh = r.energy_wh, last_reading = r.time
        FROM readings r
        WHERE r.node = m.node AND r.meter = m.address
          AND r.time = '{after}'::timestamp AT TIME ZONE '{ZONE}'
    """)  # type: ignore[arg-type]


# -- what was generated ---------------------------------------------------------------------------

TABLES = ("accounts", "meters", "consumption_daily", "consumption_monthly", "recharges",
          "ledger_entries", "balances", "readings")  # fmt: skip


def counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Rows per table (estimates from the statistics: exact counts of 29 M rows take long)."""
    found = {}
    for table in TABLES:
        if conn.execute("SELECT to_regclass(%s) IS NULL", (table,)).fetchone() == (True,):
            continue
        row = conn.execute(
            "SELECT coalesce(sum(c.reltuples), 0)::bigint FROM pg_class c "
            "WHERE c.relkind = 'r' AND (c.oid = %s::regclass OR c.oid IN "
            "(SELECT inhrelid FROM pg_inherits WHERE inhparent = %s::regclass))",
            (table, table),
        ).fetchone()
        found[table] = int(row[0]) if row else 0
    return found


def database_size(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
    return str(row[0]) if row else "?"


def describe(db: Database, shape: Shape) -> list[str]:
    """Header lines: the shape, the rows and size generated, the server."""
    with psycopg.connect(db.dsn) as conn:
        rows, size = counts(conn), database_size(conn)
    listed = ", ".join(f"{t} {n:,}" for t, n in rows.items())
    load = os.getloadavg()[0]
    machine = f"machine: {os.cpu_count()} CPUs, load average {load:.1f} (other jobs share them)"
    return [f"data: {shape.describe()}", f"rows: {listed} ({size})", f"server: {db.note}", machine]


def check_consistency(dsn: str, shape: Shape) -> tuple[int, int]:
    """(Wh of the readings month from readings, the same from the rollup): equal when the data
    is consistent."""
    first, after = shape.readings_month
    with psycopg.connect(dsn) as conn:
        from_readings = conn.execute(
            "SELECT sum(used) FROM (SELECT max(energy_wh) - min(energy_wh) AS used "
            "FROM readings WHERE time >= %s AND time <= %s GROUP BY node, meter) m",
            (_local_midnight(first), _local_midnight(after)),
        ).fetchone()
        from_rollup = conn.execute(
            "SELECT sum(wh) FROM consumption_daily WHERE day >= %s AND day < %s", (first, after)
        ).fetchone()
    return int(from_readings[0] if from_readings else 0), int(from_rollup[0] if from_rollup else 0)


BENCH_USER = "bench-admin"
BENCH_PASSWORD = "bench-password-0001"


def ensure_bench_user(url: str) -> tuple[str, str]:
    """An admin user for the benches to log in as (created once); returns (name, password)."""
    from cloud.db.auth import User
    from cloud.db.engine import session_factory
    from cloud.people.auth import Role, create_user

    engine = make_engine(url)
    try:
        with session_factory(engine).begin() as session:
            if session.get(User, BENCH_USER) is None:
                now = dt.datetime.now(dt.UTC)
                create_user(session, BENCH_USER, Role.ADMIN, BENCH_PASSWORD, now=now)
    finally:
        engine.dispose()
    return BENCH_USER, BENCH_PASSWORD


def main() -> None:
    parser = argparse.ArgumentParser(description="generate the report benchmarks' data")
    parser.add_argument("--smoke", action="store_true")
    add_database_argument(parser)
    args = parser.parse_args()
    shape = SHAPES["smoke" if args.smoke else "full"]
    with open_database(args.database_url) as db:
        generate(db, shape)
        print("\n".join(describe(db, shape)))
        print("readings vs rollup Wh:", check_consistency(db.dsn, shape))


if __name__ == "__main__":
    main()
