"""Table of `cloud.db.claims`: installers' one-time claim tokens (only their SHA-256), each
bound to a site and an installer, redeemed once by the concentrator it provisions.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "claims",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("registry_sites.id"), nullable=False),
        sa.Column("installer", sa.String(64), nullable=False),
        _time("created"), _time("expires"), _time("redeemed", nullable=True),
        sa.Column("node", sa.String(64), nullable=True),
        sa.Column("certificate_serial", sa.String(40), nullable=True),
        sa.UniqueConstraint("token_hash"),
        sa.UniqueConstraint("node"),
    )  # fmt: skip
    op.create_index("claims_by_site", "claims", ["site_id", "created"])


def downgrade() -> None:
    op.drop_index("claims_by_site", "claims")
    op.drop_table("claims")
