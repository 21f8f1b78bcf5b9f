"""Alarms say when they were cleared: `cleared_at`, the time of the concentrator's event that
said the condition was over (`cloud.chains.alarms.CLEARED_BY`), or of the operator's clearing
of a quarantine. The concentrators' alarms still open whose end is already stored in `events`
are cleared as the ingest now clears them; the cloud's alarms cleared before keep no time.

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# `cloud.chains.alarms.CLEARED_BY` as it stands at this revision (a migration imports no chain).
_CLEARED_BY = {
    "bus_up_again": ("bus_down", "bus"),
    "read_success_ok_again": ("read_success_low", "bus"),
    "meter_readable_again": ("meter_unreadable", "meter"),
    "relay_confirmed": ("relay_failed", "meter"),
    "clock_plausible_again": ("clock_implausible", "node"),
    "arrears_close": ("arrears_trip", "account"),
}
_COLUMNS = ("node", "event_id", "kind", "meter", "account")
_EVENTS = sa.table("events", *map(sa.column, _COLUMNS), sa.column("detail", sa.JSON()),
                   sa.column("time"))  # fmt: skip
_ALARMS = sa.table("alarms", sa.column("id"), *map(sa.column, _COLUMNS),
                   sa.column("facts", sa.JSON()), sa.column("cleared", sa.Boolean()),
                   sa.column("cleared_at"))  # fmt: skip


def upgrade() -> None:
    with op.batch_alter_table("alarms") as batch:
        batch.add_column(sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True))
    _clear_ended(op.get_bind())


def _key(key: str, row: Any, facts: Any) -> str | None:
    if key == "node":
        return ""
    if key == "bus":
        value = facts.get("bus") if isinstance(facts, dict) else None
    else:
        value = getattr(row, key)
    return value if isinstance(value, str) else None


def _clear_ended(connection: sa.Connection) -> None:
    """Each open alarm of the edge's with a stored end after it: cleared at that end's time."""
    alarms: dict[tuple[str, str], list[Any]] = {}
    for alarm in connection.execute(
        sa.select(_ALARMS)
        .where(_ALARMS.c.event_id.is_not(None), _ALARMS.c.cleared.is_(False),
               _ALARMS.c.kind.in_(sorted({k for k, _ in _CLEARED_BY.values()})))
        .order_by(_ALARMS.c.event_id)
    ):  # fmt: skip
        alarms.setdefault((alarm.node, alarm.kind), []).append(alarm)
    ends = connection.execute(
        sa.select(_EVENTS)
        .where(_EVENTS.c.kind.in_(sorted(_CLEARED_BY)))
        .order_by(_EVENTS.c.node, _EVENTS.c.event_id)
    ).all()
    cleared: dict[int, tuple[str, int]] = {}
    for end in ends:
        kind, key = _CLEARED_BY[end.kind]
        wanted = _key(key, end, end.detail)
        for alarm in alarms.get((end.node, kind), []):
            if (wanted is not None and alarm.id not in cleared and alarm.event_id < end.event_id
                    and _key(key, alarm, alarm.facts) == wanted):  # fmt: skip
                cleared[alarm.id] = (end.node, end.event_id)
    for alarm_id, (node, event_id) in cleared.items():
        time = sa.select(_EVENTS.c.time).where(_EVENTS.c.node == node,
                                               _EVENTS.c.event_id == event_id)  # fmt: skip
        connection.execute(
            sa.update(_ALARMS)
            .where(_ALARMS.c.id == alarm_id)
            .values(cleared=True, cleared_at=time.scalar_subquery())
        )


def downgrade() -> None:
    with op.batch_alter_table("alarms") as batch:
        batch.drop_column("cleared_at")
