"""`/relays`: trip or close meters' relays by a signed `relay` command to each concentrator
they hang off. An unknown meter refuses the whole request (404) and sends nothing."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, status
from pydantic import Field

from cloud import money
from cloud.api.commands import CommandOut, commands_out
from cloud.api.common import (
    CloudKey,
    DbSession,
    MeterAddress,
    Now,
    Operator,
    Out,
    StrictBody,
    answers,
)

router = APIRouter(prefix="/relays", tags=["relays"])


class RelayIn(StrictBody):
    meters: Annotated[list[MeterAddress], Field(min_length=1, max_length=1000)]
    action: Literal["trip", "close"]
    operator: Operator


class RelayOut(Out):
    commands: list[CommandOut] = Field(description="one per concentrator the meters hang off")


@router.post(
    "",
    response_model=RelayOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Trip or close the relays of meters (a signed command to each concentrator)",
    responses=answers(
        e404="a meter is unknown: nothing is sent", e409="a concentrator is quarantined"
    ),
)
def switch_relays(body: RelayIn, session: DbSession, key: CloudKey, now: Now) -> RelayOut:
    commands = money.relay(session, list(body.meters), body.action, body.operator, key, now)
    session.flush()
    return RelayOut(commands=commands_out(commands))
