"""Table of `cloud.db.commissioning`: the signed commissioning reports concentrators upload
(the canonical body as signed, its signature, the registry's view of the node's meters then).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "commissioning_reports",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("node", sa.String(64), sa.ForeignKey("concentrators.node"), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        _time("taken_at"), _time("uploaded"),
        sa.Column("uploaded_by", sa.String(64), nullable=False),
        sa.Column("against_registry", sa.JSON(), nullable=False),
        sa.Column("clean", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("digest"),
    )  # fmt: skip
    op.create_index("commissioning_by_node", "commissioning_reports", ["node", "taken_at"])


def downgrade() -> None:
    op.drop_index("commissioning_by_node", "commissioning_reports")
    op.drop_table("commissioning_reports")
