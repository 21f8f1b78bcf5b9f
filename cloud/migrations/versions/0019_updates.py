"""Tables of `cloud.db.updates`: fleet updates (a signed bundle offered in waves) and each
node's state in one.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "update_rollouts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("wave_size", sa.Integer(), nullable=False),
        sa.Column("wave_every_s", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(400), nullable=False),
        _time("created"),
        sa.Column("created_by", sa.String(64), nullable=False),
        _time("updated"),
    )  # fmt: skip
    op.create_table(
        "update_nodes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("rollout_id", sa.Integer(), sa.ForeignKey("update_rollouts.id"), nullable=False),
        sa.Column("node", sa.String(64), sa.ForeignKey("concentrators.node"), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(400), nullable=False),
        sa.Column("command_id", sa.String(32), nullable=True),
        _time("offered", nullable=True),
        _time("updated"),
        sa.UniqueConstraint("rollout_id", "node"),
    )  # fmt: skip
    op.create_index("update_nodes_by_node", "update_nodes", ["node", "rollout_id"])


def downgrade() -> None:
    op.drop_index("update_nodes_by_node", "update_nodes")
    op.drop_table("update_nodes")
    op.drop_table("update_rollouts")
