"""`/concentrators/{node}/takeover`: a dead concentrator replaced by a new box
(`cloud.operations.takeovers`; docs/architecture.md §7.6).

    POST /concentrators/{node}/takeover          {new_node}          admin, operator
    GET  /concentrators/{node}/takeover                              staff, installers
    POST /concentrators/{node}/takeover/recover  {lines: [...]}      admin, operator

The takeover retires the node (its uploads are refused from then on), fails its open commands
(a pending recharge is voided: its payer is owed it back), closes its pockets in the cloud chain
at the acknowledged head and sends the new box a signed `takeover` command. Asking again for the
same new box returns the same takeover. `recover` takes the old store's chain export (`voltbook-edge
ledger export`, one JSON record a line) if the store was found later, verifies it against the
acknowledged head with the old node's key and keeps the reconciliation; it books nothing.
Both changes are in the operator log.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, status
from pydantic import Field, StrictStr

from cloud.api.auth import allow
from cloud.api.common import CloudKey, DbSession, NodeId, Now, Out, StoredTime, StrictBody, answers
from cloud.db.operations import Takeover
from cloud.operations import takeovers
from cloud.people.auth import OPERATIONS, READ_ALL, Principal

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
    head_seq: int = Field(description="the old node's acknowledged head the new box starts from")
    head_hash: str
    command_id: str = Field(description="the signed takeover command sent to the new box")
    plan: dict[str, Any] = Field(description="openings, meter baselines, carried accounts")
    voided: list[str] = Field(description="the old node's open commands failed at the takeover")
    operator: str
    created: StoredTime
    recovered: dict[str, Any] | None = Field(description="the recovered store's reconciliation")
    recovered_at: StoredTime | None


def _out(row: Takeover) -> TakeoverOut:
    return TakeoverOut(
        old_node=row.old_node, new_node=row.new_node, reference=row.reference,
        head_seq=row.head_seq, head_hash=row.head_hash, command_id=row.command_id, plan=row.plan,
        voided=list(row.voided), operator=row.operator, created=row.created,
        recovered=row.recovered, recovered_at=row.recovered_at,
    )  # fmt: skip


@router.post(
    "/{node}/takeover",
    response_model=TakeoverOut,
    status_code=status.HTTP_201_CREATED,
    summary="A new box takes over a dead concentrator's accounts",
    responses=answers(
        e404="no such concentrator",
        e409="taken over by another box already, or the new box is not active",
        e422="the old node's configuration or accounts cannot be taken over as they stand",
    ),
)
def take_over(  # noqa: PLR0917 (FastAPI dependencies)
    node: OldPath,
    body: TakeoverIn,
    who: Annotated[Principal, allow(*OPERATIONS)],
    session: DbSession,
    key: CloudKey,
    now: Now,
) -> TakeoverOut:
    row, _ = takeovers.take_over(session, node, body.new_node, key=key, now=now, actor=who.actor)
    return _out(row)


@router.get(
    "/{node}/takeover",
    response_model=TakeoverOut,
    summary="The takeover of a dead concentrator",
    responses=answers(e404="not taken over"),
)
def get_takeover(
    node: OldPath, who: Annotated[Principal, allow(*READ_ALL)], session: DbSession
) -> TakeoverOut:
    return _out(takeovers.get(session, node))


@router.post(
    "/{node}/takeover/recover",
    response_model=TakeoverOut,
    summary="Reconcile the dead concentrator's store, recovered after its takeover",
    responses=answers(e404="not taken over", e422="the export does not verify or reconcile"),
)
def recover(
    node: OldPath,
    body: RecoverIn,
    who: Annotated[Principal, allow(*OPERATIONS)],
    session: DbSession,
    now: Now,
) -> TakeoverOut:
    return _out(takeovers.recover(session, node, body.lines, now=now, actor=who.actor))
