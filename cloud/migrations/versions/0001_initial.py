"""The initial cloud schema: every table of `cloud.db.models`, written out.

On PostgreSQL `readings` is `PARTITION BY RANGE (time)`; its monthly partitions are made at run
time by `cloud.db.partitions`. On SQLite it is a plain table.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "concentrators",
        sa.Column("node", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("quarantine_reason", sa.Text(), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        _time("last_seen", nullable=True),
        sa.Column("head_seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("upto", sa.BigInteger(), nullable=False),
        sa.Column("commands_applied", sa.BigInteger(), nullable=False),
        sa.Column("next_command_seq", sa.BigInteger(), nullable=False),
        _time("created"),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("transfer_id", sa.String(32), nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("debit", sa.String(96), nullable=False),
        sa.Column("credit", sa.String(96), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("unit", sa.String(8), nullable=False),
        sa.Column("pending_id", sa.String(32), nullable=True),
        _time("time"),
        sa.Column("refs", sa.JSON(), nullable=False),
        sa.UniqueConstraint("node", "seq"),
    )
    op.create_index("ledger_by_transfer", "ledger_entries", ["transfer_id"])
    op.create_index("ledger_by_debit", "ledger_entries", ["debit", "id"])
    op.create_index("ledger_by_credit", "ledger_entries", ["credit", "id"])
    op.create_index("ledger_by_code_time", "ledger_entries", ["code", "time"])
    op.create_table(
        "checkpoints",
        sa.Column("node", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True),
        sa.Column("head", sa.LargeBinary(32), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("signature", sa.LargeBinary(64), nullable=False),
    )
    op.create_table(
        "balances",
        sa.Column("account", sa.String(96), primary_key=True),
        sa.Column("unit", sa.String(8), nullable=False),
        sa.Column("debits_pending", sa.BigInteger(), nullable=False),
        sa.Column("debits_posted", sa.BigInteger(), nullable=False),
        sa.Column("credits_pending", sa.BigInteger(), nullable=False),
        sa.Column("credits_posted", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "accounts",
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("node", sa.String(64), sa.ForeignKey("concentrators.node"), nullable=False),
        sa.Column("shop", sa.String(64), nullable=False),
        sa.Column("building", sa.String(64), nullable=False),
        sa.Column("floor", sa.String(32), nullable=False),
    )
    op.create_table(
        "meters",
        sa.Column("node", sa.String(64), sa.ForeignKey("concentrators.node"), primary_key=True),
        sa.Column("address", sa.String(32), primary_key=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("protocol", sa.String(32), nullable=False),
        sa.Column("relay", sa.Integer(), nullable=True),
        sa.Column("energy_wh", sa.BigInteger(), nullable=True),
        _time("last_reading", nullable=True),
    )
    op.create_table(
        "readings",
        sa.Column("node", sa.String(64), primary_key=True),
        sa.Column("meter", sa.String(32), primary_key=True),
        sa.Column("time", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("energy_wh", sa.BigInteger(), nullable=True),
        sa.Column("tariff_wh", sa.String(80), nullable=True),
        sa.Column("voltage", sa.Double(), nullable=True),
        sa.Column("current", sa.Double(), nullable=True),
        sa.Column("power", sa.Double(), nullable=True),
        sa.Column("pf", sa.Double(), nullable=True),
        sa.Column("relay", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(80), nullable=True),
        sa.Column("extra", sa.Text(), nullable=True),
        postgresql_partition_by="RANGE (time)",
    )
    op.create_index("readings_by_meter_time", "readings", ["meter", "time"])
    op.create_table(
        "events",
        sa.Column("node", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.BigInteger(), primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("meter", sa.String(32), nullable=True),
        sa.Column("shop", sa.String(64), nullable=True),
        sa.Column("account", sa.String(64), nullable=True),
        _time("time"),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("events_by_time", "events", ["time"])
    op.create_table(
        "commands",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("node", sa.String(64), sa.ForeignKey("concentrators.node"), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        _time("issued"),
        _time("expires"),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("operator", sa.String(64), nullable=False),
        _time("updated"),
        sa.UniqueConstraint("node", "seq"),
    )
    op.create_index("commands_by_status", "commands", ["status"])
    op.create_table(
        "recharges",
        sa.Column("payment", sa.String(64), primary_key=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("fen", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("operator", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("pending_transfer", sa.String(32), nullable=False),
        sa.Column("command_id", sa.String(32), nullable=True),
        _time("created"),
        _time("posted", nullable=True),
    )
    op.create_table(
        "alarms",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("node", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        _time("time"),
        sa.Column("cleared", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "alarms",
        "recharges",
        "commands",
        "events",
        "readings",  # on PostgreSQL this drops its partitions too
        "meters",
        "accounts",
        "balances",
        "checkpoints",
        "ledger_entries",
        "concentrators",
    ):
        op.drop_table(table)
