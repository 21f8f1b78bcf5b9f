"""Bulk writes for ingest: what makes storing a batch cost little more than copying its rows.

PostgreSQL:
- rows that are new by construction (ledger entries past the verified head) go in with `COPY`;
- readings of a batch whose outbox ids are past the stored ones are new: copied straight
  into `readings` (should one be stored after all, `StoredBefore` makes the caller run the
  transaction again); others (a resent batch) are copied inside a savepoint, and only when
  that meets a row already stored inserted again with `ON CONFLICT DO NOTHING`;
- upserts (balances, events) and the meters' last state are one statement each over
  `unnest(array, …)`: constant SQL with one binary array parameter per column, whatever the
  number of rows, which the server prepares once per connection; the consumption rollups
  send theirs as one JSON text instead (`json_rows`), cheaper to make for many rows.

These run on the session's own connection, inside its transaction. On SQLite everything is an
`executemany` of one prepared statement (SQLite runs it in C).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.types.json import Json
from sqlalchemy import FromClause, insert, literal_column, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from cloud.db.models import LedgerEntry, MeterState, Reading
from cloud.db.sql import dialect_name, table_of, upsert

ENTRY_COLUMNS = tuple(c.name for c in LedgerEntry.__table__.columns if c.name != "id")
READING_COLUMNS = tuple(c.name for c in Reading.__table__.columns)
TIME = READING_COLUMNS.index("time")  # where a reading row (tuple) keeps its time
_REFS = ENTRY_COLUMNS.index("refs")
_statements: dict[tuple[Any, ...], str] = {}
_copy_types: dict[str, list[str]] = {}


@contextmanager
def _cursor(session: Session, statement: str) -> Iterator[psycopg.Cursor[Any]]:
    """A cursor on the psycopg connection under the session's (so in its transaction).

    The driver's errors come out as SQLAlchemy's (`DBAPIError` and its subclasses), as every
    other statement's do, so callers and `cloud.db.retry` see one kind; and a connection the
    error broke (a server that died) is invalidated, as SQLAlchemy does, never reused."""
    connection = session.connection()
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    try:
        with driver.cursor() as cursor:
            yield cursor
    except psycopg.Error as exc:
        broken = driver.broken or driver.closed
        if broken:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            statement, None, exc, psycopg.Error, connection_invalidated=broken
        ) from exc


def _copy(
    session: Session, model_table: FromClause, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Binary COPY (the server parses no text) of `rows` into the table."""
    table = table_of(model_table)
    types = _copy_types.get(table.name)
    if types is None:
        dialect = session.get_bind().dialect
        types = _copy_types[table.name] = [
            re.sub(r"\(.*\)", "", table.c[c].type.compile(dialect=dialect).lower()) for c in columns
        ]
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    with _cursor(session, statement) as cursor, cursor.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def execute(session: Session, statement: str, parameters: Mapping[str, Any]) -> int:
    """Run a PostgreSQL statement with binary parameters; returns the row count."""
    with _cursor(session, statement) as cursor:
        cursor.execute(statement, parameters, binary=True)
        return int(cursor.rowcount)


def insert_entries(session: Session, rows: Sequence[tuple[Any, ...]]) -> None:
    """Ledger entries (tuples in `ENTRY_COLUMNS` order, `refs` a dict) that are new: the
    caller checked them against the locked head."""
    if not rows:
        return
    if dialect_name(session) != "postgresql":
        session.execute(
            insert(LedgerEntry), [dict(zip(ENTRY_COLUMNS, r, strict=True)) for r in rows]
        )
        return
    _copy(
        session,
        LedgerEntry.__table__,
        ENTRY_COLUMNS,
        [(*r[:_REFS], Json(r[_REFS]), *r[_REFS + 1 :]) for r in rows],
    )


class StoredBefore(Exception):
    """Readings said to be new were in the table already (or twice in the rows): the
    transaction is aborted, the caller runs it again with `new=False`."""


def insert_readings(session: Session, rows: Sequence[tuple[Any, ...]], *, new: bool) -> None:
    """Readings (tuples in `READING_COLUMNS` order), skipping any already stored. `new` says
    that none can be (the batch's outbox ids lie past what was stored): on PostgreSQL they
    are then copied without a savepoint, and a row stored after all raises `StoredBefore`."""
    if not rows:
        return
    if dialect_name(session) == "postgresql":
        if new:
            try:
                _copy(session, Reading.__table__, READING_COLUMNS, rows)
            except IntegrityError as exc:
                if not _duplicate(exc):
                    raise
                raise StoredBefore from exc
            return
        savepoint = session.begin_nested()
        try:
            _copy(session, Reading.__table__, READING_COLUMNS, rows)
        except IntegrityError as exc:
            if not _duplicate(exc):
                raise
            savepoint.rollback()  # some were stored before: insert the others below
        else:
            savepoint.commit()
            return
    upsert_rows(
        session,
        Reading.__table__,
        [dict(zip(READING_COLUMNS, row, strict=True)) for row in rows],
        index=("node", "meter", "time"),
    )


def _duplicate(exc: IntegrityError) -> bool:
    return isinstance(exc.orig, psycopg.errors.UniqueViolation)


def update_meter_states(
    session: Session,
    node: str,
    states: Sequence[dict[str, Any]],
    readings: Sequence[tuple[Any, ...]],
) -> None:
    """Each meter's newest relay state, energy register and reading time, unless the stored
    one is newer (an older batch arriving late); meters not yet known are added. `states` are
    the batch's newest state per meter, `readings` its rows (already inserted)."""
    if not states:
        return
    if dialect_name(session) != "postgresql":
        update = {
            "relay": "coalesce(excluded.relay, meters.relay)",
            "energy_wh": "coalesce(excluded.energy_wh, meters.energy_wh)",
            "last_reading": "excluded.last_reading",
        }
        upsert_rows(
            session, MeterState.__table__, states, index=("node", "address"), update=update,
            where="meters.last_reading IS NULL OR meters.last_reading < excluded.last_reading",
        )  # fmt: skip
        return
    # On PostgreSQL the newest reading of each meter is read back from `readings` (the batch's
    # rows are there now): an UPDATE … FROM over them costs far less than sending every
    # meter's state as parameters.
    times = [row[TIME] for row in readings]
    parameters = {
        "node": node,
        "meters": [state["address"] for state in states],
        "first": min(times),
        "last": max(times),
    }
    updated = execute(session, _UPDATE_METERS, parameters)
    if updated < len(states):
        execute(session, _INSERT_METERS, parameters)


# Each meter's newest reading in the batch's time span: one backward probe of the primary key
# (node, meter, time) per meter, whatever the number of readings stored before.
_NEWEST_READINGS = (
    "WITH newest AS (SELECT r.node, r.meter, r.relay, r.energy_wh, r.time "
    "FROM unnest(%(meters)s::text[]) AS m(meter) CROSS JOIN LATERAL ("
    "SELECT node, meter, relay, energy_wh, time FROM readings WHERE node = %(node)s "
    "AND meter = m.meter AND time BETWEEN %(first)s AND %(last)s ORDER BY time DESC LIMIT 1"
    ") AS r) "
)
_UPDATE_METERS = _NEWEST_READINGS + (
    "UPDATE meters SET relay = coalesce(newest.relay, meters.relay), "
    "energy_wh = coalesce(newest.energy_wh, meters.energy_wh), last_reading = newest.time "
    "FROM newest WHERE meters.node = newest.node AND meters.address = newest.meter "
    "AND (meters.last_reading IS NULL OR meters.last_reading < newest.time)"
)
_INSERT_METERS = _NEWEST_READINGS + (
    "INSERT INTO meters (node, address, account, protocol, relay, energy_wh, last_reading) "
    "SELECT node, meter, '', '', relay, energy_wh, time FROM newest ON CONFLICT DO NOTHING"
)


def upsert_rows(
    session: Session,
    model_table: FromClause,
    rows: Sequence[dict[str, Any]],
    *,
    index: Sequence[str],
    update: Mapping[str, str] | None = None,
    where: str | None = None,
) -> None:
    """Insert `rows` (dicts with the same keys); on a conflict on `index` do nothing, or set
    each column of `update` to its SQL expression (which may use `excluded.<column>` and
    `<table>.<column>`) where `where` holds."""
    if not rows:
        return
    table = table_of(model_table)
    if dialect_name(session) != "postgresql":
        statement = upsert(session, table)
        if update is None:
            statement = statement.on_conflict_do_nothing(index_elements=list(index))
        else:
            statement = statement.on_conflict_do_update(
                index_elements=list(index),
                set_={c: literal_column(expression) for c, expression in update.items()},
                where=None if where is None else text(where),
            )
        session.execute(statement, list(rows))
        return
    columns = tuple(rows[0])
    key = (table.name, columns, tuple(index), tuple((update or {}).items()), where)
    statement_text = _statements.get(key)
    if statement_text is None:
        conflict = f"ON CONFLICT ({', '.join(index)}) "
        if update is None:
            conflict += "DO NOTHING"
        else:
            conflict += "DO UPDATE SET " + ", ".join(f"{c} = {e}" for c, e in update.items())
            if where is not None:
                conflict += f" WHERE {where}"
        statement_text = _statements[key] = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) "
            f"SELECT * FROM {_unnest(session, table, columns)} {conflict}"
        )
    execute(session, statement_text, _arrays(rows, columns))


def _unnest(session: Session, model_table: FromClause, columns: Sequence[str]) -> str:
    dialect = session.get_bind().dialect
    table = table_of(model_table)
    arrays = (f"CAST(%({c})s AS {table.c[c].type.compile(dialect=dialect)}[])" for c in columns)
    return f"unnest({', '.join(arrays)})"


def json_rows(session: Session, model_table: FromClause, columns: Sequence[str]) -> str:
    """A subquery of the rows in parameter `rows`, a JSON array of arrays (values in `columns`
    order, dates as ISO text), typed as the table's columns: one `json.dumps` costs the client
    a third of what binary arrays do."""
    dialect = session.get_bind().dialect
    table = table_of(model_table)
    values = (
        f"CAST(r->>{i} AS {table.c[c].type.compile(dialect=dialect)}) AS {c}"
        for i, c in enumerate(columns)
    )
    return f"(SELECT {', '.join(values)} FROM jsonb_array_elements(CAST(%(rows)s AS jsonb)) AS r)"


def _arrays(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> dict[str, list[Any]]:
    return {c: [_plain(row[c]) for row in rows] for c in columns}


def _plain(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict) else value
