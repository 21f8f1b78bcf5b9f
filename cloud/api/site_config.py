"""A concentrator's configuration: preview it, and push it as a signed CONFIG command.

    GET  /concentrators/{node}/config   the documents the registry gives now, what keeps them
                                        from being usable, the version last sent, and whether
                                        the registry changed since
    POST /concentrators/{node}/config   send them as the node's next version (201)
    POST /registry/push                 send every node the registry marked changed

Registry writes only mark nodes; pushing is an operator's explicit step
(`cloud.registry.site_config` says why).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Path, status
from pydantic import Field

from cloud.api.auth import allow
from cloud.api.common import CloudKey, DbSession, Now, Out, StoredTime, answers
from cloud.db.models import NodeStatus
from cloud.db.registry import NodeConfig
from cloud.ingest import concentrators
from cloud.people.auth import FIELD, READ_ALL, Principal
from cloud.registry import site_config

router = APIRouter(tags=["registry"])

NodePath = Annotated[str, Path(min_length=1, max_length=64, description="node id, e.g. edge-0001")]


class ConfigOut(Out):
    node: str
    version: int = Field(description="the last version sent (0: never)")
    changed_since: bool = Field(description="the registry changed since that version")
    pushed: StoredTime | None
    command_id: str | None = Field(description="the command that carried that version")
    problems: list[str] = Field(description="what keeps these documents from being sent")
    documents: dict[str, list[dict[str, Any]]] = Field(
        description="meters, shops, accounts, tariffs, rules: as `edge/site/documents.py` reads"
    )


class PushOut(Out):
    node: str
    version: int
    command_id: str


class SkippedOut(Out):
    node: str
    problem: str


class PushAllOut(Out):
    pushed: list[PushOut]
    skipped: list[SkippedOut] = Field(description="marked nodes not sent, and why")


@router.get(
    "/concentrators/{node}/config",
    response_model=ConfigOut,
    summary="Preview a concentrator's configuration as the registry has it",
    responses=answers(e404="no such concentrator"),
)
def preview_config(
    node: NodePath, session: DbSession, who: Annotated[Principal, allow(*READ_ALL)]
) -> ConfigOut:
    concentrators.get(session, node)
    built = site_config.build(session, node)
    record = session.get(NodeConfig, node)
    return ConfigOut(
        node=node,
        version=record.version if record else 0,
        changed_since=record.dirty if record else True,
        pushed=record.pushed if record else None,
        command_id=record.command_id if record else None,
        problems=[str(p) for p in built.problems],
        documents=dict(built.documents),
    )


@router.post(
    "/concentrators/{node}/config",
    response_model=PushOut,
    status_code=status.HTTP_201_CREATED,
    summary="Send a concentrator its configuration (a signed config command, next version)",
    responses=answers(
        e404="no such concentrator",
        e409="the concentrator is quarantined",
        e422="the configuration is not usable (the problems are named)",
    ),
)
def push_config(
    node: NodePath,
    session: DbSession,
    now: Now,
    key: CloudKey,
    who: Annotated[Principal, allow(*FIELD)],
) -> PushOut:
    concentrators.get(session, node)
    done = site_config.push(session, node, key=key, now=now, actor=who.actor)
    return PushOut(node=node, version=done.version, command_id=done.command.id)


@router.post(
    "/registry/push",
    response_model=PushAllOut,
    summary="Send every concentrator whose configuration changed its new version",
)
def push_marked(
    session: DbSession, now: Now, key: CloudKey, who: Annotated[Principal, allow(*FIELD)]
) -> PushAllOut:
    pushed, skipped = [], []
    for node in site_config.marked(session):
        # Checked before anything is written, so one unusable node leaves the others' pushes.
        problems = [str(p) for p in site_config.build(session, node).problems]
        found = concentrators.get(session, node)
        if found.status == NodeStatus.RESERVED.value:  # its claim's box gets it when it comes
            problems.append(f"{node} is pre-assigned and waits for its box")
        elif found.status != NodeStatus.ACTIVE.value:
            problems.append(f"{node} is quarantined: {found.quarantine_reason}")
        if problems:
            skipped.append(SkippedOut(node=node, problem="; ".join(problems)))
            continue
        done = site_config.push(session, node, key=key, now=now, actor=who.actor)
        pushed.append(PushOut(node=node, version=done.version, command_id=done.command.id))
    return PushAllOut(pushed=pushed, skipped=skipped)
