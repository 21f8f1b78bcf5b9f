"""`/updates`: offer a signed runtime bundle to concentrators in waves, and follow each box.

- `POST /updates {version, url, sha256, size, nodes | site, wave_size, wave_every_s}` (admin,
  operator): a rollout; its first wave gets a signed `update` command at once, each later wave
  only when the one before is healthy and `wave_every_s` has passed; a node that fails or
  rolls back stops it (`cloud.operations.updates`). Logged (`update.start`).
- `GET /updates/bundles/{sha256}` (no login: boxes have none; the bundle is signed by the
  release key and checked by the box): `<[updates] bundles>/<sha256>.tar`, 404 when the cloud
  serves no bundles or has none by that hash.
- `GET /updates`, `GET /updates/{id}` (staff, installer): rollouts, newest first; one with
  every node's state (waiting, offered, downloading, verified, switched, healthy, rolled_back,
  failed), the box's reason and when it last changed.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import FileResponse
from pydantic import Field, StrictInt, StrictStr
from sqlalchemy import func, select

from cloud.api.auth import allow
from cloud.api.common import DbSession, Now, Out, StoredTime, StrictBody, answers
from cloud.api.guards import client_address
from cloud.db.updates import UpdateNode, UpdateRollout
from cloud.errors import NotFound
from cloud.operations import updates
from cloud.people import oplog
from cloud.people.auth import FIELD, OPERATIONS, STAFF, Principal
from ledger.chain import NodeKey

router = APIRouter(tags=["updates"])
NodeName = Annotated[StrictStr, Field(min_length=1, max_length=64)]


class UpdateIn(StrictBody):
    version: Annotated[StrictInt, Field(ge=1, le=2**53 - 1, description="the bundle's version")]
    url: Annotated[
        StrictStr, Field(min_length=8, max_length=updates.MAX_URL, description="http(s) URL")
    ]
    sha256: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$", description="of the file")]
    size: Annotated[StrictInt, Field(ge=1, le=updates.MAX_BUNDLE_BYTES, description="bytes")]
    nodes: Annotated[list[NodeName], Field(min_length=1, max_length=updates.MAX_NODES)] | None = (
        None
    )
    site: StrictInt | None = Field(default=None, description="every concentrator of the site")
    wave_size: Annotated[StrictInt, Field(ge=1, le=updates.MAX_NODES)] = 10
    wave_every_s: Annotated[StrictInt, Field(ge=0, le=7 * 86_400)] = 600


class NodeOut(Out):
    node: str
    wave: int
    state: str
    reason: str
    command_id: str | None
    offered: StoredTime | None
    updated: StoredTime


class RolloutOut(Out):
    id: int
    version: int
    url: str
    sha256: str
    size: int
    wave_size: int
    wave_every_s: int
    state: str = Field(description="running, done or stopped")
    reason: str
    created: StoredTime
    created_by: str
    updated: StoredTime
    counts: dict[str, int] = Field(description="nodes by state")
    nodes: list[NodeOut] | None = Field(default=None, description="with GET /updates/{id}")


def _out(row: UpdateRollout, counts: dict[str, int], nodes: list[NodeOut] | None) -> RolloutOut:
    return RolloutOut(
        id=row.id, version=row.version, url=row.url, sha256=row.sha256, size=row.size,
        wave_size=row.wave_size, wave_every_s=row.wave_every_s, state=row.state,
        reason=row.reason, created=row.created, created_by=row.created_by, updated=row.updated,
        counts=counts, nodes=nodes,
    )  # fmt: skip


def _node(row: UpdateNode) -> NodeOut:
    return NodeOut(
        node=row.node, wave=row.wave, state=row.state, reason=row.reason,
        command_id=row.command_id, offered=row.offered, updated=row.updated,
    )  # fmt: skip


@router.post(
    "/updates",
    response_model=RolloutOut,
    status_code=status.HTTP_201_CREATED,
    summary="Offer a signed runtime bundle to concentrators, in waves",
    responses=answers(
        e403="not admin or operator",
        e404="no such concentrator",
        e422="a wrong argument, no node named, or a node not active",
    ),
)
def create_update(
    body: UpdateIn,
    request: Request,
    who: Annotated[Principal, allow(*OPERATIONS)],
    session: DbSession,
    now: Now,
) -> RolloutOut:
    key: NodeKey = request.app.state.key
    actor = oplog.Actor(who.user, who.role.value, client_address(request))
    rollout = updates.start(
        session,
        updates.Offer(body.version, body.url, body.sha256, body.size),
        nodes=body.nodes, site=body.site, wave_size=body.wave_size,
        wave_every_s=body.wave_every_s, key=key, actor=actor, now=now,
    )  # fmt: skip
    nodes = [_node(r) for r in updates.node_rows(session, rollout.id)]
    return _out(rollout, _count(nodes), nodes)


def _count(nodes: list[NodeOut]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node.state] = counts.get(node.state, 0) + 1
    return counts


@router.get(
    "/updates/bundles/{sha256}",
    response_class=FileResponse,
    summary="A bundle file by its SHA-256, for the boxes to download",
    responses=answers(e404="no such bundle here"),
)
def get_bundle(
    sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")], request: Request
) -> FileResponse:
    folder: FilePath | None = request.app.state.update_bundles
    if folder is None:
        raise NotFound("this cloud serves no bundles ([updates] bundles): offer another URL")
    file = folder / f"{sha256}.tar"
    if not file.is_file():
        raise NotFound(f"no bundle {sha256[:12]}… here")
    return FileResponse(file, media_type="application/x-tar")


@router.get("/updates", response_model=list[RolloutOut], summary="Fleet updates, newest first")
def list_updates(
    _: Annotated[Principal, allow(*STAFF, *FIELD)],
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[RolloutOut]:
    rows = list(
        session.scalars(select(UpdateRollout).order_by(UpdateRollout.id.desc()).limit(limit))
    )
    counted: dict[int, dict[str, int]] = {}
    if rows:
        for rollout_id, state, count in session.execute(
            select(UpdateNode.rollout_id, UpdateNode.state, func.count())
            .where(UpdateNode.rollout_id.in_([r.id for r in rows]))
            .group_by(UpdateNode.rollout_id, UpdateNode.state)
        ):
            counted.setdefault(rollout_id, {})[state] = count
    return [_out(r, counted.get(r.id, {}), None) for r in rows]


@router.get(
    "/updates/{rollout_id}",
    response_model=RolloutOut,
    summary="A fleet update with every node's state",
    responses=answers(e404="no such update"),
)
def get_update(
    rollout_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    _: Annotated[Principal, allow(*STAFF, *FIELD)],
    session: DbSession,
) -> RolloutOut:
    rollout = updates.get(session, rollout_id)
    nodes = [_node(r) for r in updates.node_rows(session, rollout.id)]
    return _out(rollout, _count(nodes), nodes)
