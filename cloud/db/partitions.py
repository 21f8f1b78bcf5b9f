"""Monthly partitions of `readings` on PostgreSQL (`readings_YYYY_MM`, UTC months).

The migration makes `readings` a table `PARTITION BY RANGE (time)` with no partitions; before
rows for a month are inserted, `ensure_month_partitions` creates that month's partition. It is
idempotent (`CREATE TABLE IF NOT EXISTS`) and safe when two workers race to create the same
month: each attempt runs in a savepoint and a "already exists" error from the loser is ignored.

Creating a partition locks the parent table, so callers do it in a short transaction of its
own before the one that inserts, and the set of months known to exist is remembered per
engine so the DDL runs once per month, not once per batch. On SQLite this is a no-op.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import IntegrityError, ProgrammingError

_known: dict[str, set[tuple[int, int]]] = {}  # engine URL -> months known to exist


def partition_name(year: int, month: int) -> str:
    return f"readings_{year:04d}_{month:02d}"


def _bounds(year: int, month: int) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
    end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.UTC)
    return start, end


def ensure_month_partitions(conn: Connection, times: Iterable[dt.datetime]) -> list[str]:
    """Create the partitions the given (aware) times fall in; returns the names created."""
    if conn.dialect.name != "postgresql":
        return []
    known = _known.setdefault(conn.engine.url.render_as_string(hide_password=True), set())
    months = {(t.astimezone(dt.UTC).year, t.astimezone(dt.UTC).month) for t in times} - known
    if not months:
        return []
    created = []
    # Remembered only once the transaction that made them commits.
    event.listen(conn, "commit", lambda _conn: known.update(months), once=True)
    for year, month in sorted(months):
        start, end = _bounds(year, month)
        name = partition_name(year, month)
        statement = text(
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF readings "
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )
        savepoint = conn.begin_nested()
        try:
            conn.execute(statement)
        except (IntegrityError, ProgrammingError) as exc:
            # Another worker created it between our check and our CREATE (duplicate type or
            # table): what we wanted exists.
            savepoint.rollback()
            if getattr(exc.orig, "sqlstate", None) not in ("23505", "42P07"):
                raise
        else:
            savepoint.commit()
            created.append(name)
    return created


def ensure_partitions(engine: Engine, times: Iterable[dt.datetime]) -> list[str]:
    """`ensure_month_partitions` in a short transaction of its own, skipped (no connection at
    all) when every month is known to exist."""
    if engine.dialect.name != "postgresql":
        return []
    times = list(times)
    known = _known.get(engine.url.render_as_string(hide_password=True), set())
    if {(t.astimezone(dt.UTC).year, t.astimezone(dt.UTC).month) for t in times} <= known:
        return []
    with engine.begin() as connection:
        return ensure_month_partitions(connection, times)


def forget_known_partitions() -> None:
    """Forget which partitions exist (after a database error: one may have been dropped)."""
    _known.clear()
