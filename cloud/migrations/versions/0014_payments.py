"""Payment orders, their transitions, refunds to the original payment and the notifications
received (`cloud.db.payments`).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)
_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "payment_orders",
        sa.Column("out_trade_no", sa.String(32), primary_key=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("fen", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("payer", sa.String(128), nullable=True),
        sa.Column("pay", sa.JSON(), nullable=False),
        sa.Column("transaction_id", sa.String(64), nullable=True),
        sa.Column("paid_fen", sa.BigInteger(), nullable=True),
        sa.Column("refunded_fen", sa.BigInteger(), nullable=False),
        sa.Column("created", _TIME, nullable=False),
        sa.Column("expires", _TIME, nullable=False),
        sa.Column("paid_at", _TIME, nullable=True),
        sa.Column("credited_at", _TIME, nullable=True),
        sa.Column("closed_at", _TIME, nullable=True),
        sa.UniqueConstraint("provider", "transaction_id", name="uq_payment_orders_transaction"),
    )
    op.create_index("ix_payment_orders_account", "payment_orders", ["account", "created"])
    op.create_index("ix_payment_orders_state", "payment_orders", ["state", "expires"])
    op.create_table(
        "payment_transitions",
        sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("out_trade_no", sa.String(32), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("cause", sa.String(32), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
    )
    op.create_index("ix_payment_transitions_order", "payment_transitions", ["out_trade_no", "id"])
    op.create_table(
        "payment_refunds",
        sa.Column("out_refund_no", sa.String(64), primary_key=True),
        sa.Column("out_trade_no", sa.String(32), nullable=False),
        sa.Column("refund", sa.String(64), nullable=True),
        sa.Column("fen", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(80), nullable=False),
        sa.Column("provider_refund_id", sa.String(64), nullable=True),
        sa.Column("created", _TIME, nullable=False),
        sa.Column("finished", _TIME, nullable=True),
    )
    op.create_index("ix_payment_refunds_order", "payment_refunds", ["out_trade_no"])
    op.create_table(
        "payment_notices",
        sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("received", _TIME, nullable=False),
        sa.Column("notice_id", sa.String(64), nullable=True),
        sa.Column("out_trade_no", sa.String(64), nullable=True),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
    )
    op.create_index("ix_payment_notices_order", "payment_notices", ["out_trade_no", "id"])


def downgrade() -> None:
    for table in ("payment_notices", "payment_refunds", "payment_transitions", "payment_orders"):
        op.drop_table(table)
