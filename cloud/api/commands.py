"""`/commands`: the signed commands sent to concentrators, and what became of them.

Who may: staff and installers (`READ_ALL`: an installer checks what a concentrator was sent);
merchants do not (a command names accounts and amounts of many tenants). Commands are issued
by the endpoints that need them (`/recharges`, `/relays`), never here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import Field
from sqlalchemy import select

from cloud.api.auth import allow
from cloud.api.common import DbSession, Limit, Offset, Out, Page, StoredTime, answers, page
from cloud.db import models
from cloud.errors import NotFound
from cloud.people.auth import READ_ALL, Principal

router = APIRouter(prefix="/commands", tags=["commands"])

Reader = Annotated[Principal, allow(*READ_ALL)]


class CommandOut(Out):
    id: str
    node: str
    seq: int = Field(description="its number among the commands sent to this node")
    kind: str = Field(description="recharge, relay, time")
    args: dict[str, Any]
    status: models.CommandStatus
    result: dict[str, Any] | None = Field(description="what the edge reported")
    operator: str
    issued: StoredTime
    expires: StoredTime
    updated: StoredTime


def commands_out(rows: Sequence[models.Command]) -> list[CommandOut]:
    return [CommandOut.model_validate(c) for c in rows]


@router.get("", response_model=Page[CommandOut], summary="List commands (by node, seq)")
def list_commands(
    *,
    who: Reader,
    session: DbSession,
    node: Annotated[str | None, Query(description="target concentrator")] = None,
    status: Annotated[models.CommandStatus | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    query = select(models.Command).order_by(models.Command.node, models.Command.seq)
    if node is not None:
        query = query.where(models.Command.node == node)
    if status is not None:
        query = query.where(models.Command.status == status.value)
    return page(session, query, limit, offset, commands_out)


@router.get(
    "/{command_id}",
    response_model=CommandOut,
    summary="One command",
    responses=answers(e404="no such command"),
)
def get_command(
    command_id: Annotated[str, Path(description="32 hex digits")], who: Reader, session: DbSession
) -> CommandOut:
    found = session.get(models.Command, command_id)
    if found is None:
        raise NotFound(f"no command {command_id!r}")
    return CommandOut.model_validate(found)
