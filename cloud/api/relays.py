"""`/relays`: trip or close meters' relays by a signed `relay` command to each concentrator
they hang off. An unknown meter refuses the whole request (404) and sends nothing.

Who may: `OPERATIONS` (admin, operator) — cutting a shop's power is an operator's act. The
commands name the logged-in user; the operator log gets one row per command (per
concentrator) with its meters.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, status
from pydantic import Field

from cloud.api.auth import allow
from cloud.api.commands import CommandOut, commands_out
from cloud.api.common import (
    CloudKey,
    DbSession,
    MeterAddress,
    Now,
    Out,
    StrictBody,
    answers,
)
from cloud.operations import relays
from cloud.people.auth import OPERATIONS, Principal

router = APIRouter(prefix="/relays", tags=["relays"])


class RelayIn(StrictBody):
    meters: Annotated[list[MeterAddress], Field(min_length=1, max_length=1000)]
    action: Literal["trip", "close"]


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
def switch_relays(
    body: RelayIn,
    who: Annotated[Principal, allow(*OPERATIONS)],
    session: DbSession,
    key: CloudKey,
    now: Now,
) -> RelayOut:
    commands = relays.order_and_log(session, list(body.meters), body.action, who.actor, key, now)
    return RelayOut(commands=commands_out(commands))
