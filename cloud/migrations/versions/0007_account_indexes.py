"""Indexes for `/accounts`: an account's recharges still in flight (by account and status) and
its meters (by account), which the page looks up for each of its accounts.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("recharges_by_account_status", "recharges", ["account", "status"])
    op.create_index("meters_by_account", "meters", ["account"])


def downgrade() -> None:
    op.drop_index("meters_by_account", "meters")
    op.drop_index("recharges_by_account_status", "recharges")
