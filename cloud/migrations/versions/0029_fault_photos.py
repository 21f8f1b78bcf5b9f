"""Table of `cloud.db.faults.FaultPhoto`: photos taken on site for a fault ticket.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "fault_photos",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("fault_id", ROW_ID, sa.ForeignKey("faults.id"), nullable=False),
        sa.Column("content_type", sa.String(16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sent_sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("by", sa.String(64), nullable=False),
        _time("taken", nullable=True),
        _time("created"),
        sa.Column("client_key", sa.String(64), nullable=True),
        sa.UniqueConstraint("client_key", name="fault_photos_by_client_key"),
    )  # fmt: skip
    op.create_index("fault_photos_by_fault", "fault_photos", ["fault_id", "id"])


def downgrade() -> None:
    op.drop_index("fault_photos_by_fault", "fault_photos")
    op.drop_table("fault_photos")
