"""Fault tickets: the field's work on a site, a concentrator or a meter (`cloud.operations.
faults`, `/faults`, the field app `/field/`).

- `faults`: one ticket: its kind (meter offline, read failures, relay fault …), where (the
  registry's site name, a concentrator, a meter address: any of them), the alarm it was opened
  from (if any), its status (open → in_progress → fixed → closed, `cloud.operations.faults.
  TRANSITIONS`), who opened it and who it is assigned to, and the last change.
- `fault_steps`: the ticket's history: one row per change of status (the opening included),
  with who, when and the note, and the key a phone made for it offline (a move sent twice
  with one key is applied once).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base
from cloud.db.operations import ROW_ID


class Fault(Base):
    __tablename__ = "faults"
    __table_args__ = (
        Index("faults_by_status", "status", "updated"),
        Index("faults_by_alarm", "alarm_id"),
    )

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    site: Mapped[str | None] = mapped_column(String(200))
    node: Mapped[str | None] = mapped_column(String(64))
    meter: Mapped[str | None] = mapped_column(String(32))
    alarm_id: Mapped[int | None] = mapped_column(ForeignKey("alarms.id"))
    status: Mapped[str] = mapped_column(String(16))  # open | in_progress | fixed | closed
    note: Mapped[str] = mapped_column(Text, default="")  # the opening note
    opened_by: Mapped[str] = mapped_column(String(64))
    assignee: Mapped[str | None] = mapped_column(String(64))
    opened: Mapped[dt.datetime]
    updated: Mapped[dt.datetime]


class FaultStep(Base):
    __tablename__ = "fault_steps"
    __table_args__ = (
        Index("fault_steps_by_fault", "fault_id", "id"),
        UniqueConstraint("client_key", name="fault_steps_by_client_key"),
    )

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    fault_id: Mapped[int] = mapped_column(ForeignKey("faults.id"))
    before: Mapped[str | None] = mapped_column(String(16))  # None: the opening
    after: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    by: Mapped[str] = mapped_column(String(64))
    time: Mapped[dt.datetime]
    client_key: Mapped[str | None] = mapped_column(String(64))  # a phone's idempotency key
