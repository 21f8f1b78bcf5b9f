"""`/moves`: a tenant changing shop (`cloud.operations.moves`). On the same concentrator it is
recorded (`settled` at once: no money moves); to another concentrator the prepaid balance travels as
a two-phase move the cloud drives as each side's entries arrive (requested → in_transit → arrived →
settled; failed or voided on a refusal).

When the registry knows the account, the move names a registry shop on `to_node` (404 when it has
none numbered `to_shop` there, 409 when that shop holds another account) and the registry puts the
account there at once, marking both concentrators' configuration changed; across concentrators the
move_in then waits for the destination's configuration push (`cloud.operations.moves`).

Who may: `OPERATIONS` move tenants; staff read. One open move per account (409).
"""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from pydantic import Field, StrictStr
from sqlalchemy.orm import Session

from cloud.api.common import (
    NodeId,
    Out,
    Owner,
    StoredTime,
    StrictBody,
    answers,
)
from cloud.api.operation_lists import Reference
from cloud.api.operation_routes import add_create, add_reads
from cloud.db.operations import Move
from cloud.operations import moves
from cloud.people.auth import OPERATIONS, STAFF, Principal
from ledger.chain import NodeKey

router = APIRouter(prefix="/moves", tags=["operations"])


class MoveIn(StrictBody):
    account: Owner
    to_shop: StrictStr = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$", examples=["S201"])
    to_node: NodeId
    move: Reference | None = Field(None, description="the move's id; made up when absent")


class MoveOut(Out):
    id: str
    account: str
    from_node: str
    from_shop: str
    to_node: str
    to_shop: str
    status: str = Field(description="requested, in_transit, arrived, settled, failed, voided")
    fen: int | None = Field(description="the prepaid carried, once the source booked it")
    out_transfer: str | None
    in_transfer: str | None
    out_command_id: str | None
    in_command_id: str | None
    settle_command_id: str | None
    operator: str
    created: StoredTime
    updated: StoredTime


def _book(
    body: MoveIn, who: Principal, session: Session, key: NodeKey, now: dt.datetime
) -> tuple[Move, bool]:
    return moves.request(
        session, account=body.account, to_shop=body.to_shop, to_node=body.to_node,
        actor=who.actor, move=body.move, key=key, now=now,
    )  # fmt: skip


add_create(
    router, "request_move", MoveIn, MoveOut, OPERATIONS,
    summary="Move a tenant to another shop (and concentrator)",
    again="the same move id again",
    refusals=answers(
        e404="unknown account or concentrator, or no such shop in the registry",
        e409="a move or refund is open, or the shop holds another account",
    ),
    book=_book, action="move.request", target=lambda row: f"account:{row.account}",
)  # fmt: skip


add_reads(router, Move, MoveOut, STAFF, param="move", noun="move",
          shop=(Move.from_shop, Move.to_shop))  # fmt: skip
