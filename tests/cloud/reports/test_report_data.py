"""The report benchmarks' data generator (`bench.report_data`), smoke shape: every table it
fills agrees with the closed form it is generated from and with the others."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from bench import report_data
from tests.cloud.conftest import PostgresDatabases

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def expected_wh(shape: report_data.Shape, first: dt.date, after: dt.date) -> int:
    """The rollup's Wh over [first, after) from the generator's formula, in Python."""
    total, day = 0, first
    while day < after:
        offset = (day - dt.date(2000, 1, 1)).days
        for i in range(shape.shops):
            a = 1 + ((i * 7919 + offset * 104729) % 97) % 6
            total += 10 * a * report_data.DAY_WEIGHT
        day += dt.timedelta(days=1)
    return total


def test_smoke_shape_is_consistent(pg_databases: PostgresDatabases) -> None:
    url = pg_databases.create()
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    shape = report_data.SHAPES["smoke"]
    db = report_data.Database(url, dsn, "test")
    try:
        rows = report_data.generate(db, shape, progress=False)
        assert rows["accounts"] == shape.shops
        first, after = shape.readings_month
        from_readings, from_rollup = report_data.check_consistency(dsn, shape)
        assert from_readings == from_rollup == expected_wh(shape, first, after)
        with psycopg.connect(dsn) as conn:
            recharged = conn.execute("SELECT sum(fen), count(*) FROM recharges").fetchone()
            posted = conn.execute(
                "SELECT sum(amount), count(*) FROM ledger_entries "
                "WHERE code = 'recharge' AND kind = 'single'"
            ).fetchone()
            credited = conn.execute(
                "SELECT sum(credits_posted) FROM balances WHERE account LIKE '%:prepaid'"
            ).fetchone()
            spent = conn.execute(
                "SELECT (SELECT sum(debits_posted) FROM balances WHERE account LIKE '%:prepaid'), "
                "(SELECT sum(fen) FROM consumption_daily)"
            ).fetchone()
            readings = conn.execute("SELECT count(*) FROM readings").fetchone()
        assert recharged is not None and recharged[1] > shape.shops
        assert posted == recharged
        assert credited == (recharged[0],)
        assert spent is not None and spent[0] == spent[1] > 0
        days = (after - first).days
        assert readings == (shape.shops * (days * 96 + 1),)
        assert report_data.generate(db, shape, progress=False) == rows  # marked: not again
    finally:
        pg_databases.drop(url)
