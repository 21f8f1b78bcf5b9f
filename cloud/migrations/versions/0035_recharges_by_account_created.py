"""`recharges_by_account_created`: a shop's, building's or floor's deposits of a window are read
account by account (the area's accounts from `accounts`, then each one's deposits by time)
instead of the whole window's deposits being read and filtered. On PostgreSQL the index also
carries every column the deposits report shows, so the planner reads it alone (an index-only
scan) and prefers it over `recharges_by_created`; SQLite has no INCLUDE and gets the two keys.

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0035"
down_revision: str | None = "0034"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHOWN = ["payment", "fen", "method", "operator", "status"]


def upgrade() -> None:
    op.create_index(
        "recharges_by_account_created",
        "recharges",
        ["account", "created"],
        postgresql_include=SHOWN,
    )


def downgrade() -> None:
    op.drop_index("recharges_by_account_created", "recharges")
