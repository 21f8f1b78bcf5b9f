"""Room for in-place updates in the tables every ingested batch updates row by row: the three
consumption rollups (`cloud.chains.rollups`), `balances` (`cloud.chains.projection`) and
`meters` (`cloud.db.bulk.update_meter_states`). With 30 % of each page free, PostgreSQL writes
a row's new version beside the old one and leaves the indexes alone (a HOT update): the
rollup upsert of a 600-entry batch costs the server about a third less. Pages written before
keep no room until rows move off them; SQLite has no fill factor.

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0034"
down_revision: str | None = "0033"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("consumption_daily", "consumption_monthly", "consumption_account_monthly", "balances",
          "meters")  # fmt: skip
FILLFACTOR = 70


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
