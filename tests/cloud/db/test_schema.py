"""The migrations build exactly the models' schema, on every backend; partitions; the key."""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from cloud import keys
from cloud.db.engine import current_revision, make_engine, upgrade
from cloud.db.models import Base
from cloud.db.partitions import ensure_month_partitions, forget_known_partitions
from cloud.errors import Invalid

ROOT = Path(__file__).resolve().parents[3]
PARTITION = re.compile(r"^readings_\d{4}_\d{2}$")


def _differences(engine) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "include_name": lambda name, type_, parents: (
                    not (type_ == "table" and name and PARTITION.match(name))
                ),
            },
        )
        return compare_metadata(context, Base.metadata)


# The newest migration: versions/NNNN_name.py, numbered in order.
HEAD = max(p.name[:4] for p in (ROOT / "cloud" / "migrations" / "versions").glob("[0-9]*.py"))


def test_the_migrated_schema_is_the_models_schema(engine) -> None:
    with engine.begin() as connection:  # a partition must not count as a difference
        ensure_month_partitions(connection, [dt.datetime(2026, 11, 5, tzinfo=dt.UTC)])
    assert _differences(engine) == []
    assert current_revision(engine) == HEAD
    upgrade(engine)  # idempotent
    assert current_revision(engine) == HEAD


def test_readings_are_partitioned_by_month_on_postgresql(engine) -> None:
    if engine.dialect.name != "postgresql":
        with engine.begin() as connection:
            assert ensure_month_partitions(connection, [dt.datetime.now(dt.UTC)]) == []
        return
    forget_known_partitions()
    with engine.connect() as connection:
        kind = connection.scalar(text("SELECT relkind FROM pg_class WHERE relname = 'readings'"))
    assert kind == "p"
    times = [dt.datetime(2026, 12, 31, 23, 59, tzinfo=dt.UTC),
             dt.datetime(2027, 1, 1, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))]  # fmt: skip
    errors: list[BaseException] = []

    def create() -> None:
        try:
            with engine.begin() as connection:
                ensure_month_partitions(connection, times)
        except BaseException as exc:
            errors.append(exc)

    racers = [threading.Thread(target=create) for _ in range(4)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert errors == []
    tables = set(inspect(engine).get_table_names())
    # 2027-01-01 00:00 +08:00 is still December in UTC.
    assert {"readings_2026_12"} <= tables and "readings_2027_01" not in tables
    forget_known_partitions()
    with engine.begin() as connection:
        assert ensure_month_partitions(connection, times) == ["readings_2026_12"]  # exists


def test_downgrade_and_upgrade_again(engine) -> None:
    from alembic import command

    from cloud.db.engine import alembic_config

    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert "concentrators" not in inspect(engine).get_table_names()
    upgrade(engine)
    assert _differences(engine) == []


@pytest.mark.slow  # the alembic CLI in a subprocess
def test_the_alembic_cli_uses_the_repository_ini(tmp_path: Path) -> None:
    database = tmp_path / "cli.db"
    environment = {**os.environ, "VOLTBOOK_DATABASE_URL": f"sqlite:///{database}"}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    engine = make_engine(f"sqlite:///{database}")
    assert current_revision(engine) == HEAD
    assert _differences(engine) == []
    engine.dispose()


def test_sqlite_is_set_up_for_concurrency(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    engine.dispose()
    with pytest.raises(ValueError, match="unsupported"):
        make_engine("mysql://x/y")


def test_the_cloud_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "cloud.pem"
    key = keys.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.load_or_create(path).key_id == key.key_id
    assert list(path.parent.iterdir()) == [path], "no temporary file left behind"
    path.write_bytes(b"not a key")
    with pytest.raises(Invalid):
        keys.load_or_create(path)
