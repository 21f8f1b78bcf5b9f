"""Engines, sessions and schema upgrades for the cloud database.

`make_engine(url)` takes a SQLAlchemy URL: `sqlite:///path/to/cloud.db` (the embedded default)
or `postgresql://…` / `postgresql+psycopg://…` (production; psycopg 3 either way), including
libpq's multi-host form `postgresql://u@h1:p1,h2:p2/db?target_session_attrs=read-write`
(`cloud.database_url`), with which every new connection goes to whichever node is the primary.

SQLite is set up for one busy process with several threads: WAL (readers never wait for the
writer), foreign keys on, a busy timeout, and every transaction opened with `BEGIN IMMEDIATE`, so
that two writers queue on the database lock at their first statement instead of failing with
"database is locked" when a read transaction later tries to write. That is SQLite's
`SELECT … FOR UPDATE`: the code that locks a row on PostgreSQL is serialised here by the
transaction itself. The price is that a session holds the write lock for as long as its
transaction is open, even if it only reads: close sessions promptly, and use
`session_factory(engine, read_only=True)` (plain deferred `BEGIN`, never blocks or is blocked
by a writer) for sessions that only read.

`upgrade(engine)` runs Alembic's `upgrade head` from `cloud/migrations` in-process, so no
`alembic.ini` is needed at runtime (the one at the repository root is for the `alembic` CLI).
On PostgreSQL it holds an advisory lock while doing so, so several processes starting at once
(API, ingest workers) upgrade one after the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from cloud.database_url import parse_database_url

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
_READ_ONLY = "voltbook_read_only"
TCP_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                  "keepalives_count": 3}  # fmt: skip
_UPGRADE_LOCK = 0x766F6C74  # "volt": pg_advisory_xact_lock key for schema upgrades


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`; extra keyword arguments go to `sqlalchemy.create_engine`."""
    parsed = parse_database_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, **kwargs)
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        kwargs.setdefault("pool_pre_ping", True)  # survive a database restart
        # A server that does not answer must fail the attempt, not hang the ingest worker.
        connect_args = kwargs.setdefault("connect_args", {})
        connect_args.setdefault("connect_timeout", 10)
        # A primary whose machine died answers nothing, not even a reset: TCP keepalives end a
        # connection waiting on it within about 25 s, and the hot standby's retry takes over.
        for name, value in TCP_KEEPALIVES.items():
            connect_args.setdefault(name, value)
        return create_engine(parsed, **kwargs)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///… or postgresql://…")


def _sqlite_engine(url: str, **kwargs: Any) -> Engine:
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("check_same_thread", False)
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode = WAL",
            "synchronous = NORMAL",  # durable at checkpoints; WAL makes it crash-safe
            "foreign_keys = ON",
            f"busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(_READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def session_factory(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (handy for returning them).

    `read_only=True` is for sessions that never write: on SQLite their transactions do not take
    the write lock (on PostgreSQL it changes nothing)."""
    if read_only:
        engine = engine.execution_options(**{_READ_ONLY: True})
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (Alembic `upgrade`), in one transaction."""
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
