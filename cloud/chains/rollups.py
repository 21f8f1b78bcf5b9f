"""Consumption rolled up per account, meter, day and tariff period as the entries arrive, so
reports over a year of 10 000 shops read days, not 15-minute entries.

Called by the ingest inside its transaction with a batch's new entries (`fresh`: the ingest
never passes an entry twice, so adding is exact). Each `consume` / `meter_settle` leg
(`edge.rules.consumption`) is one row's worth:

| leg     | debit       | amount | wh                 | fen    | period                     |
|---------|-------------|--------|--------------------|--------|----------------------------|
| subsidy | A:subsidy   | Wh     | amount             | 0      | ''                         |
| grace   | A:grace     | Wh     | amount             | 0      | ''                         |
| prepaid | A:prepaid   | fen    | refs `energy_wh`   | amount | each part of refs `tariff` |
| credit  | A:prepaid   | fen    | refs `energy_wh`   | amount | each part of refs `tariff` |
| debt    | A:debt      | fen    | refs `energy_wh`   | amount | each part of refs `tariff` |

A water meter's legs (refs `volume_l`, litres: `edge.rules.commodities`) are not rolled up
here: these tables count Wh, and litres must never be summed as Wh. Their money is in the
ledger (`sys:water_sales`, the prepaid and debt pockets); a water rollup is a table of its own.

A fen leg priced in several periods (`"peak:1200@8365;valley:300@3120"`) is split: each
period gets its Wh, and the leg's fen are shared in proportion to each part's exact cost by
largest remainder, so the parts' fen always add up to the leg's. The credit leg is told from
the prepaid leg by its derived id. The day is the entry's wall time in the site's zone.

The batch is summed in memory first (one row per key), then added to three tables: per day;
per month for windows of whole months; per account and month, summed over meters, periods and
pockets, for the report pages and their totals. On PostgreSQL that is one statement
(`_ADD_ALL`): the daily rows go as JSON and the server sums the months from them; on SQLite
one upsert per table (`cloud.db.bulk.upsert_rows`), the months summed here (`by_month`,
`account_months`, which `books.verify` also uses). All three are written in the transaction
that stores the entries, so they can never drift from the ledger (`books.verify` checks it).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from functools import lru_cache
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from cloud.chains.projection import VerifiedEntry, parse_stamp, transfer_time
from cloud.db.bulk import execute, json_rows, upsert_rows
from cloud.db.rollups import ConsumptionAccountMonthly, ConsumptionDaily, ConsumptionMonthly
from cloud.db.sql import dialect_name, table_of
from ledger import entry_ids
from ledger.accounts import Pocket, Unit
from ledger.transfers import Code, Kind, Transfer

SITE_ZONE = ZoneInfo("Asia/Shanghai")  # docs/architecture.md §4: the sites' default zone
CONSUMPTION_CODES = frozenset({Code.CONSUME, Code.METER_SETTLE})
CREDIT = "credit"
WATER_REF = "volume_l"  # a water meter's leg (edge.rules.commodities.WATER.ref)

Key = tuple[str, str, dt.date, str, str]  # account, meter, day, period, pocket
POCKETS = frozenset(p.value for p in Pocket)


def site_day(transfer: Transfer, zone: ZoneInfo = SITE_ZONE) -> dt.date:
    """The calendar day of a transfer's wall time in the site's zone (as `ledger_entries.time`
    holds it: a stamp that does not parse is the time it arrived, about now)."""
    day = _stamp_day(transfer.time, zone)
    if day is None:
        return transfer_time(transfer, dt.datetime.now(dt.UTC)).astimezone(zone).date()
    return day


@lru_cache(maxsize=4096)
def _stamp_day(stamp: str, zone: ZoneInfo) -> dt.date | None:
    """The site day of a parseable stamp (a batch's entries share a few stamps: parsed once)."""
    when = parse_stamp(stamp)
    return None if when is None else when.astimezone(zone).date()


def split_tariff(text: str, fen: int) -> list[tuple[str, int, int]]:
    """(period, wh, fen) per period of a fen leg's `tariff` ref; the fen add up to `fen`."""
    parts: list[tuple[str, int, int]] = []
    for item in text.split(";"):
        label, _, rest = item.rpartition(":")
        energy, _, price = rest.partition("@")
        if not label or not energy.isdigit() or not price.isdigit():
            return []
        parts.append((label[:32], int(energy), int(energy) * int(price)))
    cost = sum(c for _, _, c in parts)
    if not parts or cost <= 0:
        return []
    shares = [fen * c // cost for _, _, c in parts]
    remainders = sorted(range(len(parts)), key=lambda i: (-(fen * parts[i][2] % cost), i))
    for i in remainders[: fen - sum(shares)]:
        shares[i] += 1
    merged: dict[str, list[int]] = {}
    for (label, period_wh, _cost), share in zip(parts, shares, strict=True):
        slot = merged.setdefault(label, [0, 0])
        slot[0] += period_wh
        slot[1] += share
    return [(label, wh, fen_part) for label, (wh, fen_part) in merged.items()]


def _pocket(transfer: Transfer, pocket: str) -> str:
    if pocket != Pocket.PREPAID.value:
        return pocket
    refs = transfer.refs
    if transfer.code is Code.METER_SETTLE:
        credit_id = entry_ids.meter_settle(str(refs.get("swap", "")), CREDIT)
    else:
        reg_from, reg_to = refs.get("reg_from"), refs.get("reg_to")
        if not isinstance(reg_from, int) or not isinstance(reg_to, int):
            return pocket
        credit_id = entry_ids.consume(str(refs.get("meter", "")), reg_from, reg_to, CREDIT)
    return CREDIT if transfer.id == credit_id else pocket


def legs(transfer: Transfer, day: dt.date | None = None) -> Iterable[tuple[Key, int, int]]:
    """The rollup rows (key, wh, fen) of one ledger transfer; none if it is no consumption.
    `day` is its site day (by default `site_day`; the books give the stored entry's)."""
    if transfer.code not in CONSUMPTION_CODES or transfer.kind is not Kind.SINGLE:
        return ()
    if WATER_REF in transfer.refs:
        return ()  # litres, not Wh
    account, _, pocket = transfer.debit.partition(":")
    if pocket not in POCKETS:
        return ()
    refs = transfer.refs
    meter = str(refs.get("meter", ""))[:32]
    day = day or site_day(transfer)
    if transfer.unit is Unit.WH:
        return [((account, meter, day, "", pocket), transfer.amount, 0)]
    pocket = _pocket(transfer, pocket)
    energy = refs.get("energy_wh")
    wh = energy if isinstance(energy, int) else 0
    tariff = refs.get("tariff")
    split = split_tariff(tariff, transfer.amount) if isinstance(tariff, str) and tariff else []
    if not split or sum(w for _, w, _ in split) != wh:
        return [((account, meter, day, "", pocket), wh, transfer.amount)]
    return [((account, meter, day, period, pocket), w, f) for period, w, f in split]


def fold(dated: Iterable[tuple[Transfer, dt.date | None]]) -> dict[Key, list[int]]:
    """Sum the rollup rows of transfers, each with its site day (None: `site_day`):
    key → [wh, fen, entries]."""
    sums: dict[Key, list[int]] = {}
    for transfer, day in dated:
        for key, wh, fen in legs(transfer, day):
            slot = sums.setdefault(key, [0, 0, 0])
            slot[0] += wh
            slot[1] += fen
            slot[2] += 1
    return sums


def _add(table: str) -> dict[str, str]:
    return {c: f"{table}.{c} + excluded.{c}" for c in ("wh", "fen", "entries")}


_KEY = ("account", "meter", "day", "period", "pocket")


def add_transfers(session: Session, transfers: Iterable[Transfer]) -> int:
    """Add the consumption among `transfers` to `consumption_daily`, `consumption_monthly` and
    `consumption_account_monthly`; returns the daily rows written."""
    sums = fold((t, None) for t in transfers)
    if not sums:
        return 0
    if dialect_name(session) == "postgresql":
        # One statement: the daily rows go as JSON, the server sums the months from them (and
        # orders the rows, so that concurrent writers lock them in one order).
        rows = json.dumps([[a, m, d.isoformat(), p, k, *values]
                           for (a, m, d, p, k), values in sums.items()])  # fmt: skip
        days = json_rows(session, ConsumptionDaily.__table__, _COLUMNS)
        execute(session, _ADD_ALL.format(days=days),
                {"rows": rows, "subsidy": Pocket.SUBSIDY.value})  # fmt: skip
        return len(sums)
    months = by_month(sums)
    for table, rows_of, day_column in (
        (ConsumptionDaily.__table__, sums, "day"),
        (ConsumptionMonthly.__table__, months, "month"),
    ):
        index = (*_KEY[:2], day_column, *_KEY[3:])
        dicts = [
            {**dict(zip(index, key, strict=True)), "wh": wh, "fen": fen, "entries": n}
            for key, (wh, fen, n) in sorted(rows_of.items())
        ]  # (sorted: concurrent writers lock rows in one order)
        upsert_rows(session, table, dicts, index=index, update=_add(table_of(table).name))
    add_account_months(session, months)
    return len(sums)


_COLUMNS = (*_KEY, "wh", "fen", "entries")
_DAYS_KEY = ", ".join(_KEY)
_MONTHS_KEY = "account, meter, month, period, pocket"


# The daily rows of a batch (`{days}`: a subquery of `_COLUMNS`) and what
# `by_month` and `account_months` make of them, added to the three tables by one statement.
_ADD_ALL = f"""
WITH days AS (
    SELECT * FROM {{days}} AS d
), daily AS (
    INSERT INTO consumption_daily AS t ({_DAYS_KEY}, wh, fen, entries)
    SELECT * FROM days ORDER BY {_DAYS_KEY}
    ON CONFLICT ({_DAYS_KEY}) DO UPDATE SET
        wh = t.wh + excluded.wh, fen = t.fen + excluded.fen,
        entries = t.entries + excluded.entries
), months AS (
    SELECT account, meter, date_trunc('month', day)::date AS month, period, pocket, wh, fen,
        entries
    FROM days
), monthly AS (
    INSERT INTO consumption_monthly AS t ({_MONTHS_KEY}, wh, fen, entries)
    SELECT {_MONTHS_KEY}, sum(wh), sum(fen), sum(entries)
    FROM months GROUP BY {_MONTHS_KEY} ORDER BY {_MONTHS_KEY}
    ON CONFLICT ({_MONTHS_KEY}) DO UPDATE SET
        wh = t.wh + excluded.wh, fen = t.fen + excluded.fen,
        entries = t.entries + excluded.entries
)
INSERT INTO consumption_account_monthly AS t (account, month, wh, subsidy_wh, fen, entries)
SELECT account, month, sum(wh), coalesce(sum(wh) FILTER (WHERE pocket = %(subsidy)s), 0),
    sum(fen), sum(entries)
FROM months GROUP BY account, month ORDER BY account, month
ON CONFLICT (account, month) DO UPDATE SET
    wh = t.wh + excluded.wh, subsidy_wh = t.subsidy_wh + excluded.subsidy_wh,
    fen = t.fen + excluded.fen, entries = t.entries + excluded.entries
"""


def by_month(days: dict[Key, list[int]]) -> dict[Key, list[int]]:
    """Daily rollup rows summed per calendar month (the key's day is the month's first)."""
    months: dict[Key, list[int]] = {}
    for (a, m, d, p, k), values in days.items():
        slot = months.setdefault((a, m, d.replace(day=1), p, k), [0, 0, 0])
        for i, value in enumerate(values):
            slot[i] += value
    return months


def account_months(months: dict[Key, list[int]]) -> dict[tuple[str, dt.date], list[int]]:
    """Monthly rollup rows summed per (account, month): [wh, subsidy_wh, fen, entries]."""
    totals: dict[tuple[str, dt.date], list[int]] = {}
    for (account, _meter, month, _period, pocket), (wh, fen, n) in months.items():
        slot = totals.setdefault((account, month), [0, 0, 0, 0])
        slot[0] += wh
        slot[1] += wh if pocket == Pocket.SUBSIDY.value else 0
        slot[2] += fen
        slot[3] += n
    return totals


def add_account_months(session: Session, months: dict[Key, list[int]]) -> None:
    """Add `months` (monthly rollup rows of new entries) to `consumption_account_monthly`."""
    table = ConsumptionAccountMonthly.__table__
    columns = ("wh", "subsidy_wh", "fen", "entries")
    rows = [
        {"account": account, "month": month, **dict(zip(columns, values, strict=True))}
        for (account, month), values in sorted(account_months(months).items())
    ]
    name = table_of(table).name
    update = {c: f"{name}.{c} + excluded.{c}" for c in columns}
    upsert_rows(session, table, rows, index=("account", "month"), update=update)


def add_entries(session: Session, node: str, entries: Sequence[VerifiedEntry]) -> None:
    """Fold the consumption among `entries` (new entries of `node`'s chain) into the rollup."""
    add_transfers(session, (e.transfer for e in entries))
