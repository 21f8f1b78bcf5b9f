"""Users, login tokens and attempts, and the operator log (`cloud.db.auth`).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("account", sa.String(64), nullable=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        _time("locked_until", nullable=True),
        _time("created"),
    )
    op.create_table(
        "tokens",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("user", sa.String(64), sa.ForeignKey("users.name"), nullable=False),
        _time("created"),
        _time("expires"),
        sa.Column("revoked", sa.Boolean(), nullable=False),
    )
    op.create_index("tokens_by_user", "tokens", ["user"])
    op.create_table(
        "login_attempts",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        _time("time"),
        sa.Column("ok", sa.Boolean(), nullable=False),
    )
    op.create_index("login_attempts_by_address", "login_attempts", ["address", "time"])
    op.create_index("login_attempts_by_user", "login_attempts", ["user", "time"])
    op.create_table(
        "operator_log",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        _time("time"),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_index("operator_log_by_time", "operator_log", ["time"])
    op.create_index("operator_log_by_user", "operator_log", ["user", "time"])
    op.create_table(
        "operator_log_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )


def downgrade() -> None:
    for table in ("operator_log_head", "operator_log", "login_attempts", "tokens", "users"):
        op.drop_table(table)
