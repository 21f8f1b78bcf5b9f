"""Tables of `cloud.db.notices`: the outbox of notices to merchants and their deliveries by
channel (WeChat Official Account, SMS), sent and retried by `cloud.notices`.

The merchant's WeChat binding the notices are sent to is `registry_merchants.wechat_openid`
(revision 0003); nothing changes there.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, width: int, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.String(width), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "notices",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        _text("kind", 32), _text("dedupe", 200), _text("account", 64, nullable=True),
        sa.Column("merchant_id", sa.Integer(), nullable=True), _text("shop", 64),
        sa.Column("facts", sa.JSON(), nullable=False), _text("state", 16),
        _text("operator", 64), _time("created"),
        sa.UniqueConstraint("dedupe"),
    )  # fmt: skip
    op.create_index("notices_by_account", "notices", ["account", "created"])
    op.create_index("notices_by_merchant", "notices", ["merchant_id", "created"])
    op.create_index("notices_by_created", "notices", ["created"])
    op.create_table(
        "notice_deliveries",
        sa.Column("notice_id", ROW_ID, sa.ForeignKey("notices.id"), nullable=False),
        _text("channel", 16), _text("recipient", 64), _text("state", 16),
        sa.Column("attempts", sa.Integer(), nullable=False), _time("next_attempt"),
        _text("claim", 32, nullable=True), _time("claimed_until", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        _text("provider_id", 64, nullable=True), _time("sent", nullable=True), _time("updated"),
        sa.PrimaryKeyConstraint("notice_id", "channel"),
    )  # fmt: skip
    op.create_index("notice_deliveries_due", "notice_deliveries", ["state", "next_attempt"])


def downgrade() -> None:
    op.drop_index("notice_deliveries_due", "notice_deliveries")
    op.drop_table("notice_deliveries")
    for index in ("notices_by_created", "notices_by_merchant", "notices_by_account"):
        op.drop_index(index, "notices")
    op.drop_table("notices")
