"""`/operator-log`: every login, logout and operator action, and the check of its hash chain
(`cloud.people.oplog`). Staff read it (admin, operator, finance and the auditor, whose job it is);
installers and merchants do not.

    GET /operator-log?user=&action=&target=&from=&to=&sort=seq|-seq|time|-time&limit=&offset=
    GET /operator-log/verify   → {ok, rows, head, problem}

`action` ending in `*` matches a prefix (`user.*`). `verify` holds the log to the heads signed
with the cloud's key in the heads file too (`cloud.people.oplog_heads`), so a rewrite with
recomputed hashes, a head moved back or a wiped log is a problem, not only an edited row.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from cloud.api.auth import allow
from cloud.api.common import (
    CloudKey,
    DbSession,
    Instant,
    Limit,
    Offset,
    Out,
    Page,
    StoredTime,
    page,
)
from cloud.db.auth import OperatorLogEntry
from cloud.people import oplog, oplog_heads
from cloud.people.auth import STAFF, Principal
from ledger.chain import NodeKey
from ledger.signed import trusted

router = APIRouter(prefix="/operator-log", tags=["operator log"])

Staff = Annotated[Principal, allow(*STAFF)]
Sort = Literal["seq", "-seq", "time", "-time"]  # oplog.SORTS


class EntryOut(Out):
    seq: int
    time: StoredTime
    user: str
    role: str = Field(description="the user's role then (empty for a failed login)")
    action: str = Field(examples=["recharge.create", "login.failed", "user.update"])
    target: str = Field(examples=["account:A0001", "user:op-li"])
    before: dict[str, Any] | None = Field(description="the values the action changed, before")
    after: dict[str, Any] | None
    address: str = Field(description="the client's address")
    hash: str = Field(description="this row's chain hash, hex")


class VerifyOut(BaseModel):
    ok: bool
    rows: int = Field(description="rows that chain correctly from the first")
    head: str = Field(description="hash of the last good row, hex")
    problem: str = Field(description="the first break, naming its row (empty when ok)")


def _out(rows: Sequence[OperatorLogEntry]) -> list[EntryOut]:
    return [
        EntryOut(
            seq=e.seq,
            time=e.time,
            user=e.user,
            role=e.role,
            action=e.action,
            target=e.target,
            before=e.before,
            after=e.after,
            address=e.address,
            hash=bytes(e.hash).hex(),
        )
        for e in rows
    ]


@router.get("", response_model=Page[EntryOut], summary="Operator log entries")
def list_entries(
    *,
    who: Staff,
    session: DbSession,
    user: Annotated[str | None, Query(description="who did it")] = None,
    action: Annotated[str | None, Query(description="e.g. recharge.create, or user.*")] = None,
    target: Annotated[str | None, Query(description="e.g. account:A0001")] = None,
    since: Annotated[
        Instant | None, Query(alias="from", description="from this time on (ISO 8601)")
    ] = None,
    until: Annotated[
        Instant | None, Query(alias="to", description="before this time (ISO 8601)")
    ] = None,
    sort: Annotated[Sort, Query(description="-: newest first")] = "seq",
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    query = oplog.entries(
        user=user, action=action, target=target, since=since, until=until, sort=sort
    )
    return page(session, query, limit, offset, _out)


def chain_verdict(request: Request, session: Session, key: NodeKey) -> oplog.Verdict:
    """The log's chain held to the signed heads file (the console's operator log shows it too)."""
    path: Path | None = request.app.state.oplog_heads
    heads = oplog_heads.read_heads(path) if path is not None and path.exists() else []
    retired = getattr(request.app.state, "retired_keys", ())  # heads of keys before a rotation
    return oplog.verify(session, heads, trusted(key.public_key, *retired))


@router.get("/verify", response_model=VerifyOut, summary="Check the log's hash chain")
def verify(who: Staff, request: Request, session: DbSession, key: CloudKey) -> VerifyOut:
    verdict = chain_verdict(request, session, key)
    return VerifyOut(
        ok=verdict.ok, rows=verdict.rows, head=bytes(verdict.head).hex(), problem=verdict.problem
    )
