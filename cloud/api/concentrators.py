"""`/concentrators`: the registry of edge nodes, their chain heads, presence and quarantine.

Who may (roles in `cloud.people.auth`): reading is for every staff role and installers (`READ_ALL`);
registering a concentrator is field work (`FIELD`: admin, operator, installer); clearing a
quarantine is for an admin alone — a quarantine means a forked chain or a batch signed by the
wrong key, and clearing it trusts the node's uplink again. Both changes go to the operator log
with the values before and after, in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, status
from pydantic import Field, StrictStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.api.auth import allow
from cloud.api.common import (
    DbSession,
    HeardSince,
    Limit,
    NodeId,
    Now,
    Offset,
    Out,
    Page,
    StoredTime,
    StrictBody,
    answers,
    page,
)
from cloud.db import models
from cloud.db.presence import Presence, presence
from cloud.errors import Invalid
from cloud.ingest import concentrators
from cloud.keys import CLOUD_NODE
from cloud.people import oplog
from cloud.people.auth import FIELD, READ_ALL, Principal, Role
from ledger.chain import load_public_key
from ledger.errors import DecodeError

router = APIRouter(prefix="/concentrators", tags=["concentrators"])

OUTSTANDING = (models.CommandStatus.PENDING.value, models.CommandStatus.DELIVERED.value)
NodePath = Annotated[str, Path(description="node id, e.g. edge-0001")]


class ConcentratorOut(Out):
    node: str
    name: str
    key_id: str
    public_key: str = Field(description="raw Ed25519 public key, hex")
    status: Literal["active", "quarantined", "reserved", "retired"]
    reason: str = Field(description="why it is quarantined (empty when active)")
    online: bool = Field(description="what its retained MQTT status says")
    presence: Presence = Field(
        description="online; silent: its status says online but nothing came for `[ingest] "
        "silent_after_min` (45 minutes by default); offline: its status says offline"
    )
    last_seen: StoredTime | None
    head_seq: int = Field(description="the last ledger seq of this node the cloud holds")
    head_hash: str = Field(description="its hash, hex (zeros before the first entry)")
    upto: int = Field(description="the highest edge outbox id stored")
    commands_applied: int = Field(description="the highest command seq the edge reports applied")
    pending_commands: int = Field(description="commands issued, not yet applied/failed/expired")
    created: StoredTime


class RegisterConcentrator(StrictBody):
    node: NodeId
    public_key: Annotated[
        StrictStr,
        Field(min_length=64, max_length=2000, description="Ed25519 public key: PEM or 64 hex"),
    ]
    name: Annotated[StrictStr, Field(max_length=200)] = ""


class ClearQuarantine(StrictBody):
    note: Annotated[StrictStr, Field(max_length=200, description="why (kept in the log)")] = ""


Reader = Annotated[Principal, allow(*READ_ALL)]


def _view(row: models.Concentrator | None) -> dict[str, str] | None:
    """What the operator log keeps of a concentrator."""
    if row is None:
        return None
    return {"node": row.node, "name": row.name, "key_id": row.key_id, "status": row.status,
            "reason": row.quarantine_reason}  # fmt: skip


def _pending_counts(session: Session, nodes: Sequence[str]) -> dict[str, int]:
    if not nodes:
        return {}
    rows = session.execute(
        select(models.Command.node, func.count())
        .where(models.Command.node.in_(nodes), models.Command.status.in_(OUTSTANDING))
        .group_by(models.Command.node)
    )
    return {node: count for node, count in rows}


def _out(
    rows: Sequence[models.Concentrator], counts: dict[str, int], heard_since: dt.datetime
) -> list[ConcentratorOut]:
    return [
        ConcentratorOut(
            node=c.node,
            name=c.name,
            key_id=c.key_id,
            public_key=c.public_key,
            status=c.status,  # type: ignore[arg-type]
            reason=c.quarantine_reason,
            online=c.online,
            presence=presence(c.online, c.last_seen, heard_since),
            last_seen=c.last_seen,
            head_seq=c.head_seq,
            head_hash=c.head_hash.hex(),
            upto=c.upto,
            commands_applied=c.commands_applied,
            pending_commands=counts.get(c.node, 0),
            created=c.created,
        )
        for c in rows
    ]


def _one(session: Session, node: str, heard_since: dt.datetime) -> ConcentratorOut:
    found = concentrators.get(session, node)
    return _out([found], _pending_counts(session, [node]), heard_since)[0]


@router.get("", response_model=Page[ConcentratorOut], summary="List concentrators")
def list_concentrators(
    *,
    who: Reader,
    session: DbSession,
    heard_since: HeardSince,
    status_: Annotated[
        Literal["active", "quarantined", "reserved", "retired"] | None, Query(alias="status")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    query = (
        select(models.Concentrator)
        .where(models.Concentrator.node != CLOUD_NODE)  # the cloud's own chain is no node
        .order_by(models.Concentrator.node)
    )
    if status_ is not None:
        query = query.where(models.Concentrator.status == status_)

    def convert(rows: Sequence[models.Concentrator]) -> list[ConcentratorOut]:
        return _out(rows, _pending_counts(session, [c.node for c in rows]), heard_since)

    return page(session, query, limit, offset, convert)


@router.get(
    "/{node}",
    response_model=ConcentratorOut,
    summary="One concentrator",
    responses=answers(e404="no such concentrator"),
)
def get_concentrator(
    node: NodePath, who: Reader, session: DbSession, heard_since: HeardSince
) -> ConcentratorOut:
    return _one(session, node, heard_since)


@router.post(
    "",
    response_model=ConcentratorOut,
    status_code=status.HTTP_201_CREATED,
    summary="Register a concentrator and the public key its ledger is signed with",
    responses=answers(e409="the node is registered with another key", e422="not a usable key"),
)
def register_concentrator(
    body: RegisterConcentrator,
    who: Annotated[Principal, allow(*FIELD)],
    session: DbSession,
    now: Now,
    heard_since: HeardSince,
) -> ConcentratorOut:
    try:
        public_key = load_public_key(body.public_key.encode())
    except DecodeError as exc:
        raise Invalid(f"public_key: {exc}") from None
    known = session.get(models.Concentrator, body.node) if body.node != CLOUD_NODE else None
    before = _view(known)
    row = concentrators.register(session, body.node, public_key, name=body.name, now=now)
    after = _view(row)
    if after != before:  # registering again with the same key and name changes nothing
        oplog.record(session, who.actor, "concentrator.register", f"node:{body.node}",
                     before, after, now)  # fmt: skip
    return _one(session, body.node, heard_since)


@router.post(
    "/{node}/clear-quarantine",
    response_model=ConcentratorOut,
    summary="Accept a quarantined concentrator's uplink again (an admin's decision)",
    responses=answers(e404="no such concentrator"),
)
def clear_quarantine(
    *,
    node: NodePath,
    who: Annotated[Principal, allow(Role.ADMIN)],
    session: DbSession,
    now: Now,
    heard_since: HeardSince,
    body: ClearQuarantine | None = None,
) -> ConcentratorOut:
    before = _view(concentrators.get(session, node))
    row = concentrators.clear_quarantine(session, node, who.user, now)
    after = _view(row)
    if after != before:
        note = {"note": body.note} if body is not None and body.note else {}
        oplog.record(session, who.actor, "concentrator.clear_quarantine", f"node:{node}",
                     before, {**(after or {}), **note}, now)  # fmt: skip
    return _one(session, node, heard_since)
