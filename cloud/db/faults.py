"""Fault tickets: the field's work on a site, a concentrator or a meter (`cloud.operations.
faults`, `/faults`, the field app `/field/`).

- `faults`: one ticket: its kind (meter offline, read failures, relay fault …), where (the
  registry's site name, a concentrator, a meter address: any of them), the alarm it was opened
  from (if any), its status (open → in_progress → fixed → closed, `cloud.operations.faults.
  TRANSITIONS`), who opened it and who it is assigned to, and the last change.
- `fault_steps`: the ticket's history: one row per change of status (the opening included),
  with who, when and the note, and the key a phone made for it offline (a move sent twice
  with one key is applied once).
- `fault_photos`: photos taken on site for a ticket, or of a meter's register beside a reading
  typed on site (`ir_reading_id`; exactly one owner; migration 0033) (`cloud.operations.
  photos`): the image as
  we re-encoded it (JPEG, PNG or WebP, no metadata), in the row itself so a backup of the
  database holds them, with its type, size and dimensions, the SHA-256 of the bytes the phone
  sent (a resend with one key must be the same photo), who sent it and when, and the key.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
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


class FaultPhoto(Base):
    __tablename__ = "fault_photos"
    __table_args__ = (
        Index("fault_photos_by_fault", "fault_id", "id"),
        Index("fault_photos_by_reading", "ir_reading_id", "id"),
        UniqueConstraint("client_key", name="fault_photos_by_client_key"),
        CheckConstraint(
            "(fault_id IS NULL) <> (ir_reading_id IS NULL)", name="fault_photos_one_owner"
        ),
    )

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    fault_id: Mapped[int | None] = mapped_column(ForeignKey("faults.id"))
    ir_reading_id: Mapped[int | None] = mapped_column(ForeignKey("ir_readings.id"))
    content_type: Mapped[str] = mapped_column(String(16))  # image/jpeg | image/png | image/webp
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)  # of `data`, the stored image
    sent_sha256: Mapped[str] = mapped_column(String(64))  # of the bytes as they arrived
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    by: Mapped[str] = mapped_column(String(64))
    taken: Mapped[dt.datetime | None]  # the phone's word for when; None: not said
    created: Mapped[dt.datetime]
    client_key: Mapped[str | None] = mapped_column(String(64))  # a phone's idempotency key
