"""The console's own state: each staff user's alarm pop-up preferences.

- `console_alarm_prefs`: one row per user who changed them (no row: the defaults, pop-up and
  sound on, every kind); `muted` lists the alarm kinds the user does not want to pop up, so a
  kind added later pops up until muted.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base


class AlarmPrefs(Base):
    __tablename__ = "console_alarm_prefs"

    user: Mapped[str] = mapped_column(ForeignKey("users.name"), primary_key=True)
    popup: Mapped[bool] = mapped_column(Boolean, default=True)
    sound: Mapped[bool] = mapped_column(Boolean, default=True)
    muted: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated: Mapped[dt.datetime]
