"""A photo's owner is a fault ticket or an on-site reading: `fault_photos.ir_reading_id`
(`cloud.db.faults.FaultPhoto`), `fault_id` nullable, exactly one of the two set.

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0033"
down_revision: str | None = "0032"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ONE_OWNER = "(fault_id IS NULL) <> (ir_reading_id IS NULL)"


def upgrade() -> None:
    with op.batch_alter_table("fault_photos") as table:
        table.alter_column("fault_id", existing_type=ROW_ID, nullable=True)
        table.add_column(sa.Column("ir_reading_id", ROW_ID, nullable=True))
        table.create_foreign_key(
            "fault_photos_ir_reading_id_fkey", "ir_readings", ["ir_reading_id"], ["id"]
        )
        table.create_check_constraint("fault_photos_one_owner", ONE_OWNER)
    op.create_index("fault_photos_by_reading", "fault_photos", ["ir_reading_id", "id"])


def downgrade() -> None:
    op.drop_index("fault_photos_by_reading", "fault_photos")
    op.execute("DELETE FROM fault_photos WHERE fault_id IS NULL")
    with op.batch_alter_table("fault_photos") as table:
        table.drop_constraint("fault_photos_one_owner", type_="check")
        table.drop_constraint("fault_photos_ir_reading_id_fkey", type_="foreignkey")
        table.drop_column("ir_reading_id")
        table.alter_column("fault_id", existing_type=ROW_ID, nullable=False)
