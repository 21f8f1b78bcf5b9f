"""Revision 0030 on a database with data, on every backend: `consumption_account_monthly` is
filled from `consumption_monthly`, per account and month (every meter, period and pocket
summed; the subsidy pocket's Wh apart), so the report pages read what they read before."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from cloud.db.engine import alembic_config, upgrade

# account, meter, month, period, pocket, wh, fen, entries
MONTHLY = [
    ("A0001", "M1", "2026-10-01", "", "subsidy", 700, 0, 3),
    ("A0001", "M1", "2026-10-01", "peak", "prepaid", 1_000, 83, 4),
    ("A0001", "M2", "2026-10-01", "valley", "credit", 250, 20, 1),
    ("A0001", "M1", "2026-11-01", "", "grace", 40, 0, 1),
    ("A0002", "M3", "2026-11-01", "", "subsidy", 90, 0, 2),
    ("A0002", "M3", "2026-11-01", "flat", "debt", 60, 5, 1),
]


def test_account_months_are_filled_from_the_monthly_rollup(engine) -> None:
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0029")
    with engine.begin() as connection:
        for row in MONTHLY:
            connection.execute(
                text("INSERT INTO consumption_monthly (account, meter, month, period, pocket, "
                     "wh, fen, entries) VALUES (:a, :m, :month, :p, :k, :wh, :fen, :n)"),
                dict(zip(("a", "m", "month", "p", "k", "wh", "fen", "n"), row, strict=True)),
            )  # fmt: skip
    upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT account, month, wh, subsidy_wh, fen, entries "
                 "FROM consumption_account_monthly ORDER BY account, month")
        ).all()  # fmt: skip
    assert [(a, str(m)[:10], wh, s, fen, n) for a, m, wh, s, fen, n in rows] == [
        ("A0001", "2026-10-01", 1_950, 700, 103, 8),
        ("A0001", "2026-11-01", 40, 0, 0, 1),
        ("A0002", "2026-11-01", 150, 90, 5, 3),
    ]
