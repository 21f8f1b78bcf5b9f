"""The restore drill's record (`cloud.backups.drills`).

restore_drills   one row per drill: which backup was restored, when, how long the restore
                 and the books check took, and whether the books held (`problems` if not)
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base


class RestoreDrill(Base):
    __tablename__ = "restore_drills"
    __table_args__ = (Index("restore_drills_by_finished", "finished"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    started: Mapped[dt.datetime]
    finished: Mapped[dt.datetime]
    kind: Mapped[str] = mapped_column(String(16))  # sqlite | postgres
    backup: Mapped[str] = mapped_column(String(200), default="")  # file name or pgBackRest label
    ok: Mapped[bool]
    restore_seconds: Mapped[float | None] = mapped_column(Float)
    check_seconds: Mapped[float | None] = mapped_column(Float)
    database_bytes: Mapped[int | None] = mapped_column(BigInteger)
    summary: Mapped[str] = mapped_column(Text, default="")
    problems: Mapped[list[Any]] = mapped_column(JSON, default=list)
