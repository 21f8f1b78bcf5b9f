"""A concentrator gone silent is a stored alarm (`cloud.operations.silence`): at most one open
`node_silent` alarm per node (`alarms_one_open_silence`, a partial unique index), so cloud
services sweeping at once raise it once.

Revision ID: 0037
Revises: 0036
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0037"
down_revision: str | None = "0036"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_SILENCE = sa.text("kind = 'node_silent' AND NOT cleared")  # as `cloud.db.models` says


def upgrade() -> None:
    op.create_index("alarms_one_open_silence", "alarms", ["node"], unique=True,
                    postgresql_where=OPEN_SILENCE, sqlite_where=OPEN_SILENCE)  # fmt: skip


def downgrade() -> None:
    op.drop_index("alarms_one_open_silence", "alarms")
