"""Alembic environment for the cloud database.

Run in-process by `cloud.db.engine.upgrade` (which hands over an open connection in
`config.attributes["connection"]`) or by the `alembic` CLI with the repository's `alembic.ini`
(the database URL from `VOLTBOOK_DATABASE_URL`, else `sqlalchemy.url` in the ini file).
Monthly partitions of `readings` (`readings_YYYY_MM`) are created at run time, not by
migrations, so autogenerate ignores them.
"""

from __future__ import annotations

import os
import re
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Connection

from cloud.db.models import Base

PARTITION = re.compile(r"^readings_\d{4}_\d{2}$")
config = context.config
target_metadata = Base.metadata


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    return not (type_ == "table" and name is not None and PARTITION.match(name))


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        include_name=include_name,
        compare_type=True,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        **kwargs,
    )


def _url() -> str:
    url = os.environ.get("VOLTBOOK_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit(
            "no database URL: set VOLTBOOK_DATABASE_URL (sqlite:///cloud.db or postgresql://…)"
        )
    return url


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from cloud.db.engine import make_engine

    engine = make_engine(_url())
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
