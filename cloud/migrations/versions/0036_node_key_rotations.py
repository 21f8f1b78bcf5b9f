"""The rotations of a concentrator's own node key (`node_key_rotations`), recorded in its
chain and followed by ingest (`ledger.key_rotation`, `cloud.chains.key_rotations`).

Revision ID: 0036
Revises: 0035
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0036"
down_revision: str | None = "0035"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "node_key_rotations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("node", sa.String(64), sa.ForeignKey("concentrators.node"), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("new_key_id", sa.String(16), nullable=False),
        sa.Column("record", sa.LargeBinary(), nullable=False),
        sa.Column("received", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("node", "new_key_id"),
    )


def downgrade() -> None:
    op.drop_table("node_key_rotations")
