"""Consumption per day and month, saved report templates (`cloud.db.rollups`); recharges
by time.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consumption_daily",
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("meter", sa.String(32), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("period", sa.String(32), primary_key=True),
        sa.Column("pocket", sa.String(16), primary_key=True),
        sa.Column("wh", sa.BigInteger(), nullable=False),
        sa.Column("fen", sa.BigInteger(), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
    )
    op.create_index("consumption_daily_by_day", "consumption_daily", ["day", "account"])
    op.create_index("consumption_daily_by_account", "consumption_daily", ["account", "day"])
    op.create_table(
        "consumption_monthly",
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("meter", sa.String(32), primary_key=True),
        sa.Column("month", sa.Date(), primary_key=True),
        sa.Column("period", sa.String(32), primary_key=True),
        sa.Column("pocket", sa.String(16), primary_key=True),
        sa.Column("wh", sa.BigInteger(), nullable=False),
        sa.Column("fen", sa.BigInteger(), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
    )
    op.create_index("consumption_monthly_by_month", "consumption_monthly", ["month", "account"])
    op.create_table(
        "report_templates",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("report", sa.String(32), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("recharges_by_created", "recharges", ["created"])


def downgrade() -> None:
    op.drop_index("recharges_by_created", "recharges")
    op.drop_table("report_templates")
    op.drop_table("consumption_monthly")
    op.drop_table("consumption_daily")
