"""Receipts that finance accepts and alarms that operators see.

Receipts: the site (its id, for the print setting, and its name) and the merchant as issued; no
stored balance (the balance after the operation is read from the ledger once the concentrator
booked it, `cloud.operations.receipt_status`). Alarms: the concentrators' alarms copied from
`events` (`event_id`, unique per node), their severity, meter, shop, account and facts, and the
operator's acknowledgement with a note.

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("receipts") as batch:  # SQLite rebuilds the table
        batch.add_column(sa.Column("site_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("site", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("merchant", sa.String(200), nullable=False, server_default=""))
        batch.drop_column("balance_fen")
    with op.batch_alter_table("alarms") as batch:
        batch.add_column(sa.Column("event_id", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("severity", sa.String(16), nullable=False, server_default="warning")
        )
        batch.add_column(sa.Column("meter", sa.String(32), nullable=True))
        batch.add_column(sa.Column("shop", sa.String(64), nullable=True))
        batch.add_column(sa.Column("account", sa.String(64), nullable=True))
        batch.add_column(sa.Column("facts", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("acknowledged", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("acknowledged_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("note", sa.Text(), nullable=False, server_default=""))
        batch.create_unique_constraint("alarms_by_edge_event", ["node", "event_id"])
    op.create_index("alarms_by_time", "alarms", ["time"])
    op.execute(_BACKFILL[op.get_bind().dialect.name == "postgresql"])


# The concentrators' alarms stored before this revision, copied as the ingest now copies them
# (`cloud.chains.alarms.edge_alarm_row`): open, not acknowledged.
_BACKFILL = {
    postgresql: f"""
        INSERT INTO alarms (node, event_id, kind, severity, meter, shop, account, detail, facts,
                            time, cleared, note)
        SELECT node, event_id, kind,
               CASE WHEN {severity} IN ('info', 'warning', 'critical') THEN {severity}
                    ELSE 'warning' END,
               meter, shop, account, CASE WHEN {is_text} THEN {message} ELSE '' END, detail,
               time, false, ''
        FROM events WHERE category = 'alarm' ORDER BY time, node, event_id
    """
    for postgresql, severity, message, is_text in (
        (True, "(detail::jsonb ->> 'severity')", "(detail::jsonb ->> 'message')",
         "jsonb_typeof(detail::jsonb -> 'message') = 'string'"),
        (False, "json_extract(detail, '$.severity')", "json_extract(detail, '$.message')",
         "json_type(detail, '$.message') = 'text'"),
    )
}  # fmt: skip


def downgrade() -> None:
    op.drop_index("alarms_by_time", "alarms")
    with op.batch_alter_table("alarms") as batch:
        batch.drop_constraint("alarms_by_edge_event", type_="unique")
        for column in ("note", "acknowledged_by", "acknowledged", "facts", "account", "shop",
                       "meter", "severity", "event_id"):  # fmt: skip
            batch.drop_column(column)
    with op.batch_alter_table("receipts") as batch:
        batch.add_column(sa.Column("balance_fen", sa.BigInteger(), nullable=True))
        for column in ("merchant", "site", "site_id"):
            batch.drop_column(column)
