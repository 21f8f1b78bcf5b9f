"""Tables of `cloud.db.faults`: fault tickets and their history.

Revision ID: 0023
Revises: 0020
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "faults",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("site", sa.String(200), nullable=True),
        sa.Column("node", sa.String(64), nullable=True),
        sa.Column("meter", sa.String(32), nullable=True),
        sa.Column("alarm_id", ROW_ID, sa.ForeignKey("alarms.id"), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("opened_by", sa.String(64), nullable=False),
        sa.Column("assignee", sa.String(64), nullable=True),
        _time("opened"),
        _time("updated"),
    )  # fmt: skip
    op.create_index("faults_by_status", "faults", ["status", "updated"])
    op.create_index("faults_by_alarm", "faults", ["alarm_id"])
    op.create_table(
        "fault_steps",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("fault_id", ROW_ID, sa.ForeignKey("faults.id"), nullable=False),
        sa.Column("before", sa.String(16), nullable=True),
        sa.Column("after", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("by", sa.String(64), nullable=False),
        _time("time"),
        sa.Column("client_key", sa.String(64), nullable=True),
        sa.UniqueConstraint("client_key", name="fault_steps_by_client_key"),
    )  # fmt: skip
    op.create_index("fault_steps_by_fault", "fault_steps", ["fault_id", "id"])


def downgrade() -> None:
    op.drop_index("fault_steps_by_fault", "fault_steps")
    op.drop_table("fault_steps")
    op.drop_index("faults_by_alarm", "faults")
    op.drop_index("faults_by_status", "faults")
    op.drop_table("faults")
