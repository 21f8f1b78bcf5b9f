"""`/concentrators/{node}/takeover`: a dead concentrator replaced by a new box
(`cloud.operations.takeovers`; docs/architecture.md §7.6).

    POST /concentrators/{node}/takeover          {new_node}          admin, operator
    POST /concentrators/{node}/takeover/approve                      admin (not the asker)
    POST /concentrators/{node}/takeover/reject                       admin (not the asker)
    POST /concentrators/{node}/takeover/reissue                      admin, operator
    GET  /concentrators/{node}/takeover                              staff, installers
    POST /concentrators/{node}/takeover/recover  {lines: [...]}      admin, operator

Asking stores the takeover `requested` with its plan, nothing booked; asking again for the same
new box returns it. A second user, an admin, approves it: the takeover retires the node (its
uploads are refused from then on), fails its open commands (a pending recharge is voided: its
payer is owed it back), closes its pockets in the cloud chain at the acknowledged head and sends
the new box a signed `takeover` command — or rejects it. Refused by the box, or expired, it is
issued again with the same plan. `recover` takes the old store's chain export (`voltbook-edge
ledger export`, one JSON record a line) if the store was found later, verifies it against the
acknowledged head with the old node's key and keeps the reconciliation; it books nothing.
Every change is in the operator log.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response, status
from pydantic import Field, StrictStr
from sqlalchemy.orm import Session

from cloud.api.auth import allow
from cloud.api.common import CloudKey, DbSession, NodeId, Now, Out, StoredTime, StrictBody, answers
from cloud.db.operations import Takeover
from cloud.operations import takeovers
from cloud.people.auth import OPERATIONS, READ_ALL, Principal, Role

router = APIRouter(prefix="/concentrators", tags=["concentrators"])

OldPath = Annotated[str, Path(description="the dead concentrator's node id")]
MAX_LINES = 1_000_000


class TakeoverIn(StrictBody):
    new_node: NodeId


class RecoverIn(StrictBody):
    lines: Annotated[
        list[Annotated[StrictStr, Field(max_length=100_000)]],
        Field(max_length=MAX_LINES, description="the old store's `ledger export`, a record a line"),
    ]


class TakeoverOut(Out):
    old_node: str
    new_node: str
    reference: str
    status: str = Field(description="requested, rejected, issued, applied or refused")
    state: str = Field(
        description="as the console shows it: the status, and while issued where its command is "
        "(approved: not yet handed to the box, issued, expired)"
    )
    head_seq: int = Field(description="the old node's acknowledged head the new box starts from")
    head_hash: str
    command_id: str | None = Field(description="the last takeover command sent (none while asked)")
    commands: list[str] = Field(description="every takeover command sent, oldest first")
    plan: dict[str, Any] = Field(description="openings, meter baselines, carried accounts")
    voided: list[str] = Field(description="the old node's open commands failed at the approval")
    operator: str = Field(description="who asked for it")
    approved_by: str | None = Field(description="the second user who approved or rejected it")
    created: StoredTime
    resolved: StoredTime | None
    recovered: dict[str, Any] | None = Field(description="the recovered store's reconciliation")
    recovered_at: StoredTime | None


def _out(session: Session, row: Takeover) -> TakeoverOut:
    state = takeovers.state(row.status, takeovers.command_status(session, row))
    return TakeoverOut(
        old_node=row.old_node, new_node=row.new_node, reference=row.reference, status=row.status,
        state=state, head_seq=row.head_seq, head_hash=row.head_hash, command_id=row.command_id,
        commands=list(row.commands or ([row.command_id] if row.command_id else [])),
        plan=row.plan, voided=list(row.voided), operator=row.operator,
        approved_by=row.approved_by, created=row.created, resolved=row.resolved,
        recovered=row.recovered, recovered_at=row.recovered_at,
    )  # fmt: skip


@router.post(
    "/{node}/takeover",
    response_model=TakeoverOut,
    status_code=status.HTTP_201_CREATED,
    summary="Ask for a new box to take over a dead concentrator's accounts (an admin approves)",
    responses={
        200: {"description": "asked for already, for the same box"},
        **answers(
            e404="no such concentrator",
            e409="taken over by another box already, or the new box is not active",
            e422="the old node's configuration or accounts cannot be taken over as they stand",
        ),
    },
)
def take_over(  # noqa: PLR0917 (FastAPI dependencies)
    node: OldPath,
    body: TakeoverIn,
    who: Annotated[Principal, allow(*OPERATIONS)],
    response: Response,
    session: DbSession,
    now: Now,
) -> TakeoverOut:
    row, created = takeovers.request(session, node, body.new_node, now=now, actor=who.actor)
    if not created:
        response.status_code = status.HTTP_200_OK
    return _out(session, row)


@router.post(
    "/{node}/takeover/approve",
    response_model=TakeoverOut,
    summary="Approve a takeover: booked, the old node retired, the command sent to the new box",
    responses=answers(
        e403="the user who asked for it",
        e404="not asked for",
        e409="not waiting, the new box not active, or the old node's head moved since",
    ),
)
def approve(
    node: OldPath,
    who: Annotated[Principal, allow(Role.ADMIN)],
    session: DbSession,
    key: CloudKey,
    now: Now,
) -> TakeoverOut:
    row, _ = takeovers.approve(session, node, key=key, now=now, actor=who.actor)
    return _out(session, row)


@router.post(
    "/{node}/takeover/reject",
    response_model=TakeoverOut,
    summary="Turn a takeover down: nothing booked",
    responses=answers(e403="the user who asked for it", e404="not asked for", e409="not waiting"),
)
def reject(
    node: OldPath, who: Annotated[Principal, allow(Role.ADMIN)], session: DbSession, now: Now
) -> TakeoverOut:
    row, _ = takeovers.reject(session, node, now=now, actor=who.actor)
    return _out(session, row)


@router.post(
    "/{node}/takeover/reissue",
    response_model=TakeoverOut,
    summary="Send a refused or expired takeover's command again, with the same plan",
    responses=answers(e404="not asked for", e409="not refused, nor its command expired"),
)
def reissue(
    node: OldPath,
    who: Annotated[Principal, allow(*OPERATIONS)],
    session: DbSession,
    key: CloudKey,
    now: Now,
) -> TakeoverOut:
    return _out(session, takeovers.reissue(session, node, key=key, now=now, actor=who.actor))


@router.get(
    "/{node}/takeover",
    response_model=TakeoverOut,
    summary="The takeover of a dead concentrator",
    responses=answers(e404="not taken over"),
)
def get_takeover(
    node: OldPath, who: Annotated[Principal, allow(*READ_ALL)], session: DbSession
) -> TakeoverOut:
    return _out(session, takeovers.get(session, node))


@router.post(
    "/{node}/takeover/recover",
    response_model=TakeoverOut,
    summary="Reconcile the dead concentrator's store, recovered after its takeover",
    responses=answers(
        e404="not taken over", e409="not approved yet", e422="the export does not verify"
    ),
)
def recover(
    node: OldPath,
    body: RecoverIn,
    who: Annotated[Principal, allow(*OPERATIONS)],
    session: DbSession,
    now: Now,
) -> TakeoverOut:
    return _out(session, takeovers.recover(session, node, body.lines, now=now, actor=who.actor))
