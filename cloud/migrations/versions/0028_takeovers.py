"""Table of `cloud.db.operations.Takeover`: dead concentrators replaced (docs §7.6).

Revision ID: 0028
Revises: 0024
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "takeovers",
        sa.Column("old_node", sa.String(64), primary_key=True),
        sa.Column("reference", sa.String(64), nullable=False, unique=True),
        sa.Column("new_node", sa.String(64), nullable=False),
        sa.Column("head_seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("command_id", sa.String(32), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("voided", sa.JSON(), nullable=False),
        sa.Column("operator", sa.String(64), nullable=False),
        _time("created"),
        sa.Column("recovered", sa.JSON(), nullable=True),
        _time("recovered_at", nullable=True),
        sa.Column("recovered_by", sa.String(64), nullable=True),
    )  # fmt: skip
    op.create_index("takeovers_by_new", "takeovers", ["new_node"])


def downgrade() -> None:
    op.drop_index("takeovers_by_new", "takeovers")
    op.drop_table("takeovers")
