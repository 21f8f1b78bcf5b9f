"""The daily reconciliation of online payments against the providers' bills
(`cloud.db.reconciliations`).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "payment_reconciliations",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("made", _TIME, nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("rows", sa.JSON(), nullable=False),
        sa.Column("totals", sa.JSON(), nullable=False),
        sa.Column("signed_off_by", sa.String(64), nullable=True),
        sa.Column("signed_off_at", _TIME, nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("payment_reconciliations")
