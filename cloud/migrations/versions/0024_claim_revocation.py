"""Claims can be revoked before they are used (`POST /claims/{id}/revoke`): when and by whom.

Revision ID: 0024
Revises: 0020
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("claims") as table:
        table.add_column(sa.Column("revoked", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("revoked_by", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("claims") as table:
        table.drop_column("revoked_by")
        table.drop_column("revoked")
