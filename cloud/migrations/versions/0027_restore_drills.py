"""Table of `cloud.db.backups`: the restore drill's record.

Revision ID: 0027
Revises: 0024
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "restore_drills",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("started", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("backup", sa.String(200), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("restore_seconds", sa.Float(), nullable=True),
        sa.Column("check_seconds", sa.Float(), nullable=True),
        sa.Column("database_bytes", sa.BigInteger(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
    )  # fmt: skip
    op.create_index("restore_drills_by_finished", "restore_drills", ["finished"])


def downgrade() -> None:
    op.drop_index("restore_drills_by_finished", "restore_drills")
    op.drop_table("restore_drills")
