"""Alarms: what the cloud raises for its operators about a node (a refused batch, a quarantine,
an edge that refused a recharge, a settlement that did not match)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from cloud.db.models import Alarm


def raise_alarm(
    session: Session, node: str | None, kind: str, now: dt.datetime, detail: str
) -> None:
    """Add an open alarm of `kind` for `node` (None: no known node) to this transaction."""
    session.add(Alarm(node=(node or "")[:64] or None, kind=kind, detail=detail, time=now,
                      cleared=False))  # fmt: skip
