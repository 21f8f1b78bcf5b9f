"""Recharges the concentrator refused: when the cloud voided the pending, and the edge's reason
(`cloud.operations.recharges.on_verdicts`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("recharges", sa.Column("voided", sa.DateTime(timezone=True), nullable=True))
    # Rows from before have no reason: the server default fills them in.
    op.add_column("recharges", sa.Column("reason", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("recharges") as batch:  # SQLite rebuilds the table
        batch.drop_column("reason")
        batch.drop_column("voided")
