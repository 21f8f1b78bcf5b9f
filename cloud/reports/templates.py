"""Saved report templates: an admin names a choice of columns (and a title) for a report, and
the report is then asked for with `template=<name>`. Saving and deleting are logged in the
operator log (`template.save`, `template.delete`) with the template before and after.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db.rollups import ReportTemplate
from cloud.errors import Invalid, NotFound
from cloud.people import oplog
from cloud.reports.queries import REFUND_COLUMNS

# The reports a template may be saved for, and the columns each may show.
COLUMNS: dict[str, tuple[str, ...]] = {"refunds": REFUND_COLUMNS}


def view(template: ReportTemplate) -> dict[str, Any]:
    return {
        "name": template.name,
        "report": template.report,
        "title": template.title,
        "columns": list(template.columns),
    }


def get(session: Session, name: str, report: str | None = None) -> ReportTemplate:
    found = session.get(ReportTemplate, name)
    if found is None or (report is not None and found.report != report):
        raise NotFound(f"no {report or 'report'} template named {name!r}")
    return found


def listing(session: Session) -> Sequence[ReportTemplate]:
    return session.scalars(select(ReportTemplate).order_by(ReportTemplate.name)).all()


def save(
    session: Session,
    actor: oplog.Actor,
    name: str,
    *,
    report: str,
    columns: Sequence[str],
    title: str,
    now: dt.datetime,
) -> ReportTemplate:
    """Create or replace a template (columns checked against the report's)."""
    allowed = COLUMNS.get(report)
    if allowed is None:
        raise Invalid(f"no templates for report {report!r}; allowed: {', '.join(COLUMNS)}")
    unknown = [c for c in columns if c not in allowed]
    if unknown or not columns or len(set(columns)) != len(columns):
        raise Invalid(
            f"columns must be distinct; allowed: {', '.join(allowed)}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    found = session.get(ReportTemplate, name)
    before = None if found is None else view(found)
    if found is None:
        found = ReportTemplate(name=name)
        session.add(found)
    found.report, found.columns, found.title = report, list(columns), title
    found.updated_by, found.updated = actor.user, now
    session.flush()
    oplog.record(session, actor, "template.save", name, before, view(found), now)
    return found


def delete(session: Session, actor: oplog.Actor, name: str, now: dt.datetime) -> None:
    found = get(session, name)
    before = view(found)
    session.delete(found)
    session.flush()
    oplog.record(session, actor, "template.delete", name, before, None, now)
