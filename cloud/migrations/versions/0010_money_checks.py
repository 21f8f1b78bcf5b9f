"""Money that adds up: a correction names the recharge it corrects (`payment`, so deposits and
`original` refunds follow each payment's net) and may wait for a second user's approval
(`approved_by`, no command until then); a meter swap keeps its plausibility limit (`limit_wh`)
and, when it passed it, who overrode it (`approved_by`).

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("corrections") as batch:  # SQLite rebuilds the table
        batch.add_column(sa.Column("payment", sa.String(64), nullable=True))
        batch.add_column(sa.Column("approved_by", sa.String(64), nullable=True))
        batch.alter_column("command_id", existing_type=sa.String(32), nullable=True)
    op.create_index("corrections_by_payment", "corrections", ["payment"])
    # Corrections from before that named a recharge by its payment id
    op.execute(
        "UPDATE corrections SET payment = original "
        "WHERE original IN (SELECT payment FROM recharges)"
    )
    with op.batch_alter_table("meter_swaps") as batch:
        batch.add_column(sa.Column("limit_wh", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("approved_by", sa.String(64), nullable=True))
        batch.alter_column("command_id", existing_type=sa.String(32), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("meter_swaps") as batch:
        batch.alter_column("command_id", existing_type=sa.String(32), nullable=False)
        batch.drop_column("approved_by")
        batch.drop_column("limit_wh")
    op.drop_index("corrections_by_payment", "corrections")
    with op.batch_alter_table("corrections") as batch:
        batch.alter_column("command_id", existing_type=sa.String(32), nullable=False)
        batch.drop_column("approved_by")
        batch.drop_column("payment")
