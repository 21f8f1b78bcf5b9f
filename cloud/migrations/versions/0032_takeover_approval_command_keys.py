"""Takeovers are asked for and approved by a second user (`cloud.operations.takeovers`): a
status, who approved it and when it was decided; the command is issued at approval (none while
it waits) and may be issued again (`commands`, every command sent, oldest first). The cloud's
staged next and retired command keys (`command_keys`), pushed to the nodes with their
configuration (`cloud.chains.command_keys`).

Revision ID: 0032
Revises: 0030
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0032"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("takeovers") as table:
        # a takeover stored before this revision was issued at once: its state follows its command
        table.add_column(
            sa.Column("status", sa.String(16), nullable=False, server_default="issued")
        )
        table.add_column(sa.Column("approved_by", sa.String(64), nullable=True))
        table.add_column(sa.Column("resolved", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("commands", sa.JSON(), nullable=True))
        table.alter_column("command_id", existing_type=sa.String(32), nullable=True)
    op.execute(
        "UPDATE takeovers SET status = CASE (SELECT status FROM commands"
        " WHERE commands.id = takeovers.command_id) WHEN 'applied' THEN 'applied'"
        " WHEN 'failed' THEN 'refused' ELSE 'issued' END"
    )

    op.create_table(
        "command_keys",
        sa.Column("public_key", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("command_keys")
    op.execute("DELETE FROM takeovers WHERE command_id IS NULL")
    with op.batch_alter_table("takeovers") as table:
        table.alter_column("command_id", existing_type=sa.String(32), nullable=False)
        table.drop_column("commands")
        table.drop_column("resolved")
        table.drop_column("approved_by")
        table.drop_column("status")
