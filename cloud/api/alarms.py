"""`/alarms`: the cloud's own alarms (a quarantined node, a forged batch, a wrong key …).

Who may: staff and installers (`READ_ALL`): alarms are about concentrators, the field's work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from cloud.api.auth import allow
from cloud.api.common import DbSession, Limit, Offset, Out, Page, StoredTime, page
from cloud.db import models
from cloud.people.auth import READ_ALL, Principal

router = APIRouter(prefix="/alarms", tags=["alarms"])


class AlarmOut(Out):
    id: int
    node: str | None
    kind: str
    detail: str
    time: StoredTime
    cleared: bool


def _out(rows: Sequence[models.Alarm]) -> list[AlarmOut]:
    return [AlarmOut.model_validate(a) for a in rows]


@router.get("", response_model=Page[AlarmOut], summary="List alarms, oldest first")
def list_alarms(
    *,
    who: Annotated[Principal, allow(*READ_ALL)],
    session: DbSession,
    node: Annotated[str | None, Query(description="concentrator")] = None,
    cleared: Annotated[bool | None, Query(description="true: only cleared; false: open")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    query = select(models.Alarm).order_by(models.Alarm.id)
    if node is not None:
        query = query.where(models.Alarm.node == node)
    if cleared is not None:
        query = query.where(models.Alarm.cleared.is_(cleared))
    return page(session, query, limit, offset, _out)
