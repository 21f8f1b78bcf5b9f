"""Nodes pre-assigned before their box is provisioned: a concentrator's site (`site_id`, set
when an operator pre-assigns it, and when a claim provisions it) and a claim's pre-assigned node
(`for_node`: the box redeeming the claim takes that node id and its registry configuration).

Revision ID: 0026
Revises: 0024
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("concentrators") as table:
        table.add_column(sa.Column("site_id", sa.Integer(), nullable=True))
        table.create_foreign_key(
            "concentrators_site_id_fkey", "registry_sites", ["site_id"], ["id"]
        )
    with op.batch_alter_table("claims") as table:
        table.add_column(sa.Column("for_node", sa.String(64), nullable=True))
        table.create_foreign_key("claims_for_node_fkey", "concentrators", ["for_node"], ["node"])


def downgrade() -> None:
    with op.batch_alter_table("claims") as table:
        table.drop_constraint("claims_for_node_fkey", type_="foreignkey")
        table.drop_column("for_node")
    with op.batch_alter_table("concentrators") as table:
        table.drop_constraint("concentrators_site_id_fkey", type_="foreignkey")
        table.drop_column("site_id")
