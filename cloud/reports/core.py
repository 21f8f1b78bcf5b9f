"""What every report shares: columns, the date window, filters, sorting, paging and totals.

A report is a `Spec`: its columns (each with a Chinese label and a kind that the Excel and PDF
writers format by), a SQLAlchemy `Select` whose labelled columns are those keys, the columns
it may be sorted by and the default order. `fetch` answers one page with the row count and the
totals over every matching row; `stream` yields all rows in order (exports) as tuples of values,
`yield_per` so a year of rows never sits in memory.

Windows are whole days in the site's zone, `from` and `to` inclusive: the rollup's days and the
ledger's times then cut at the same instants.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from cloud.chains.rollups import SITE_ZONE
from cloud.errors import Invalid

MAX_DAYS = 400  # a year and a bit: longer windows belong to an export per year
EXPORT_ROWS = 1_000_000  # an Excel sheet holds 1 048 576 rows
_SORT = re.compile(r"^-?[a-z_]{1,40}$")


class Kind(StrEnum):
    TEXT = "text"
    INT = "int"  # counts, registers
    WH = "wh"  # energy, integer Wh (printed as kWh)
    FEN = "fen"  # integer fen, shown as yuan
    TIME = "time"
    DATE = "date"
    RATE = "rate"  # a fraction 0..1, shown as a percentage


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str  # Chinese, for exports and print
    kind: Kind = Kind.TEXT
    total: bool = False  # summed in the totals row

    @property
    def numeric(self) -> bool:
        return self.kind in {Kind.INT, Kind.WH, Kind.FEN}


@dataclass(frozen=True, slots=True)
class Window:
    """Days `first` … `last` (inclusive) in the site's zone."""

    first: dt.date
    last: dt.date

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.first, dt.time(), SITE_ZONE).astimezone(dt.UTC)

    @property
    def end(self) -> dt.datetime:
        """The instant after the last day."""
        after = self.last + dt.timedelta(days=1)
        return dt.datetime.combine(after, dt.time(), SITE_ZONE).astimezone(dt.UTC)

    def text(self) -> str:
        return f"{self.first.isoformat()} ~ {self.last.isoformat()}"


def window(first: dt.date | None, last: dt.date | None, now: dt.datetime) -> Window:
    """The window asked for; by default from the first of this month to today."""
    today = now.astimezone(SITE_ZONE).date()
    last = last or today
    first = first or last.replace(day=1)
    if first > last:
        raise Invalid(f"from ({first}) is after to ({last})")
    if (last - first).days >= MAX_DAYS:
        raise Invalid(f"the window is {(last - first).days + 1} days; at most {MAX_DAYS}")
    return Window(first, last)


def month_window(month: str) -> Window:
    """`YYYY-MM` as a window of days."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", month)
    if match is None or not 1 <= int(match[2]) <= 12 or not 2000 <= int(match[1]) <= 9000:
        raise Invalid(f"month must be YYYY-MM (like 2026-11), got {month!r}")
    first = dt.date(int(match[1]), int(match[2]), 1)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return Window(first, following - dt.timedelta(days=1))


def choose(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise Invalid(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")
    return value


@dataclass(frozen=True, slots=True)
class Spec:
    """A report before paging: see the module docstring."""

    name: str
    title: str  # Chinese
    columns: tuple[Column, ...]
    query: Select[Any]
    default_sort: tuple[str, ...]
    filters: Mapping[str, str] = field(default_factory=dict)  # shown on exports

    @property
    def keys(self) -> tuple[str, ...]:
        """The columns shown (rows are cut to these)."""
        return tuple(c.key for c in self.columns)

    @property
    def sortable(self) -> tuple[str, ...]:
        """Every column the query selects, shown or not."""
        return tuple(str(c.key) for c in self.query.selected_columns)

    def shown(self, row: Mapping[Any, Any]) -> dict[str, Any]:
        return {k: row[k] for k in self.keys}

    def order(self, sort: str | None, columns: Any = None) -> list[ColumnElement[Any]]:
        """ORDER BY for `sort` ("-fen,account": '-' descending) from the report's columns
        (or the same-named `columns` of a subquery of it), then the default order as the
        tie-breaker, so pages never overlap."""
        wanted = [s.strip() for s in (sort or "").split(",") if s.strip()]
        keys = self.sortable
        for item in wanted:
            if not _SORT.match(item) or item.lstrip("-") not in keys:
                raise Invalid(f"cannot sort by {item!r}; allowed: {', '.join(keys)} "
                              "(prefix - for descending)")  # fmt: skip
        columns = self.query.selected_columns if columns is None else columns
        order: list[ColumnElement[Any]] = []
        seen: set[str] = set()
        for item in [*wanted, *self.default_sort, *keys]:
            key = item.lstrip("-")
            if key in seen:
                continue
            seen.add(key)
            column = columns[key]
            order.append(column.desc() if item.startswith("-") else column.asc())
        return order


@dataclass(frozen=True, slots=True)
class Result:
    spec: Spec
    rows: list[dict[str, Any]]
    total: int
    totals: dict[str, int]
    limit: int
    offset: int


def totals(session: Session, spec: Spec) -> tuple[int, dict[str, int]]:
    """(rows, {column: sum}) over every row the report matches."""
    inner = spec.query.order_by(None).subquery()
    summed = [c for c in spec.columns if c.total]
    found = session.execute(
        select(func.count(), *(func.coalesce(func.sum(inner.c[c.key]), 0) for c in summed))
    ).one()
    return int(found[0]), {c.key: int(v) for c, v in zip(summed, found[1:], strict=True)}


def fetch(session: Session, spec: Spec, *, sort: str | None, limit: int, offset: int) -> Result:
    """One page of the report, its row count and its totals — in one statement: the count and
    the sums are window functions over the same grouped rows the page is cut from, so the
    aggregate runs once (a page past the end asks `totals` separately). `OFFSET 0` keeps
    PostgreSQL from flattening the report into the page: flattened, it plans for the LIMIT
    (a nested loop in time order) although the window sums need every row anyway; fenced, it
    joins by hash first, then counts and sorts (deposits of one building: 47 → 10 ms)."""
    inner = spec.query.offset(0).subquery()
    summed = [c for c in spec.columns if c.total]
    over = [func.count().over().label("_rows")] + [
        func.coalesce(func.sum(inner.c[c.key]).over(), 0).label(f"_sum_{c.key}") for c in summed
    ]
    query = select(inner, *over).order_by(*spec.order(sort, inner.c)).limit(limit).offset(offset)
    rows = session.execute(query).mappings().all()
    if not rows:
        count, sums = totals(session, spec)
        return Result(spec, [], count, sums, limit, offset)
    first = rows[0]
    sums = {c.key: int(first[f"_sum_{c.key}"]) for c in summed}
    return Result(spec, [spec.shown(r) for r in rows], int(first["_rows"]), sums, limit, offset)


def stream(session: Session, spec: Spec, *, sort: str | None) -> Iterator[Sequence[Any]]:
    """Every row in order (at most `EXPORT_ROWS`) as its values in the columns' order, fetched
    from a server-side cursor in chunks: the driver's rows as they come, no mapping per row."""
    query = spec.query.order_by(*spec.order(sort)).limit(EXPORT_ROWS)
    selected = spec.sortable
    picked = [selected.index(k) for k in spec.keys]
    result = session.execute(query.execution_options(yield_per=2000))
    if picked == list(range(len(selected))):
        yield from result
        return
    for row in result:
        yield [row[i] for i in picked]
