"""Small helpers for statements whose spelling differs between PostgreSQL and SQLite."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import FromClause, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def dialect_name(session: Session) -> str:
    return session.get_bind().dialect.name


def table_of(table: FromClause) -> Table:
    """A model's `__table__` (typed as a FromClause) as the Table it is."""
    return cast(Table, table)


def upsert(session: Session, table: FromClause) -> Any:
    """`INSERT` with `.on_conflict_do_nothing()` / `.on_conflict_do_update()` for this backend
    (both spell it `INSERT … ON CONFLICT`, but SQLAlchemy has one construct per dialect)."""
    if dialect_name(session) == "postgresql":
        return postgresql.insert(table_of(table))
    return sqlite.insert(table_of(table))
