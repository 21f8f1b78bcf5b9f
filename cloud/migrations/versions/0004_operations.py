"""Tables of `cloud.db.operations`: corrections, refunds, IR readings, meter swaps, moves,
receipts and their counters.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, width: int, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.String(width), nullable=nullable)


def _int(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "corrections",
        _text("id", 64), _text("account", 64), _text("node", 64), _text("shop", 64),
        _int("fen"), _text("original", 64), _text("original_transfer", 32),
        sa.Column("reason", sa.Text(), nullable=False), _text("operator", 64),
        _text("status", 16), _text("pending_transfer", 32), _text("edge_transfer", 32),
        _text("command_id", 32), _text("receipt", 16, nullable=True), _time("created"),
        _time("resolved", nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )  # fmt: skip
    op.create_index("corrections_by_account", "corrections", ["account", "created"])
    op.create_index("corrections_by_command", "corrections", ["command_id"])
    op.create_table(
        "refunds",
        _text("id", 64), _text("account", 64), _text("node", 64), _text("shop", 64),
        _text("method", 16), _int("grace_wh"), _time("grace_until"), _text("status", 16),
        _int("fen", nullable=True), _text("pending_transfer", 32),
        _text("settle_transfer", 32, nullable=True), _text("payout_transfer", 32, nullable=True),
        sa.Column("sources", sa.JSON(), nullable=False), _text("command_id", 32),
        _text("settle_command_id", 32, nullable=True), _text("operator", 64),
        _text("paid_by", 64, nullable=True), _text("receipt", 16, nullable=True),
        _time("created"), _time("reserved", nullable=True), _time("closed", nullable=True),
        _time("settled", nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )  # fmt: skip
    op.create_index("refunds_by_account", "refunds", ["account", "created"])
    op.create_index("refunds_by_command", "refunds", ["command_id"])
    op.create_index("refunds_by_pending", "refunds", ["pending_transfer"])
    op.create_table(
        "ir_readings",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        _text("address", 32), _time("read_at"), _int("energy_wh"), _text("source", 200),
        _text("operator", 64), _time("imported"),
        sa.UniqueConstraint("address", "read_at"),
    )  # fmt: skip
    op.create_table(
        "meter_swaps",
        _text("id", 64), _text("node", 64), _text("account", 64), _text("shop", 64),
        _text("old", 32), _int("final_wh"), _int("ir_reading", nullable=True),
        _text("new_address", 32), _text("protocol", 32),
        sa.Column("multiplier", sa.Integer(), nullable=False), _int("initial_wh"),
        _text("status", 16), _text("command_id", 32), _text("operator", 64),
        _text("receipt", 16, nullable=True), _time("created"), _time("resolved", nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )  # fmt: skip
    op.create_index("meter_swaps_by_old", "meter_swaps", ["old", "created"])
    op.create_index("meter_swaps_by_command", "meter_swaps", ["command_id"])
    op.create_table(
        "moves",
        _text("id", 64), _text("account", 64), _text("from_node", 64), _text("from_shop", 64),
        _text("to_node", 64), _text("to_shop", 64), _text("status", 16),
        _int("fen", nullable=True), _text("out_transfer", 32, nullable=True),
        _text("in_transfer", 32, nullable=True), _text("out_command_id", 32, nullable=True),
        _text("in_command_id", 32, nullable=True), _text("settle_command_id", 32, nullable=True),
        _text("operator", 64), _time("created"), _time("updated"),
        sa.PrimaryKeyConstraint("id"),
    )  # fmt: skip
    op.create_index("moves_by_account", "moves", ["account", "created"])
    op.create_index("moves_by_out", "moves", ["out_transfer"])
    op.create_index("moves_by_in", "moves", ["in_transfer"])
    op.create_table(
        "receipts",
        _text("number", 16), _text("kind", 16), _text("ref", 64), _text("account", 64),
        _text("shop", 64), _int("fen"), _text("method", 16), _text("operator", 64),
        _time("time"), _text("transfer", 32), _int("balance_fen", nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("number"),
        sa.UniqueConstraint("kind", "ref"),
    )  # fmt: skip
    op.create_index("receipts_by_account", "receipts", ["account", "time"])
    op.create_table(
        "receipt_counters",
        sa.Column("year", sa.Integer(), primary_key=True, autoincrement=False),
        _int("last"),
    )


def downgrade() -> None:
    for table in ("receipt_counters", "receipts", "moves", "meter_swaps", "ir_readings",
                  "refunds", "corrections"):  # fmt: skip
        op.drop_table(table)
