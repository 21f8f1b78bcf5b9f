"""`/faults`: fault tickets (`cloud.operations.faults`), the field's work on a site, a
concentrator or a meter; opened by hand or from an alarm, moved open → in_progress → fixed →
closed by the table of `faults.TRANSITIONS`, each move logged in the operator log.

    GET  /faults?status=open&node=edge-0001&active=true   → a page of tickets, latest change first
    POST /faults {kind, site | node | meter, note}         → a new ticket (open; 201)
    POST /faults {alarm: 42, note}                         → a ticket for the alarm
         (Idempotency-Key: a key, optional)                  200: the key's ticket already
    GET  /faults/7                                         → the ticket and its history
    POST /faults/7/status {to: "in_progress", note}        → moved (409 if the table refuses)
    POST /faults/7/assignee {user: "installer-1" | null}   → given to a technician (logged)
    POST /faults/7/photos  (the image's bytes, Content-Type image/jpeg|png|webp,
                            Idempotency-Key: a key, ?taken=…)  → a photo on the ticket (201;
                                                                 200: the key's photo already)
    GET  /faults/7/photos/3                                → the photo's bytes, as re-encoded

A photo is the raw body, not a form: the bytes are checked by their magic and by decoding them
(`cloud.operations.photos`), whatever the declared type says; its body may be up to
`photos.MAX_BYTES` (`guards.BODY_LIMITS`), more than a JSON body.

Who may: staff and installers read (`READ_ALL`); the field opens and moves (`FIELD`: admin,
operator, installer), as it acknowledges alarms; the dispatchers (`OPERATIONS`: admin,
operator) assign a ticket to an active user of a field role (`?assignee=` lists theirs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import Field, StrictInt, StrictStr

from cloud.api.auth import allow
from cloud.api.common import (
    DbSession,
    Instant,
    Limit,
    MeterAddress,
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
from cloud.db.faults import Fault, FaultPhoto
from cloud.errors import Invalid
from cloud.operations import faults, photos
from cloud.people.auth import FIELD, OPERATIONS, READ_ALL, Principal

router = APIRouter(prefix="/faults", tags=["faults"])

Kind = Literal[faults.KINDS]  # type: ignore[valid-type]
Status = Literal[faults.STATUSES]  # type: ignore[valid-type]
Note = Annotated[StrictStr, Field(max_length=faults.MAX_NOTE)]
FaultId = Annotated[int, Path(ge=1, le=2**63 - 1)]
PhotoId = Annotated[int, Path(ge=1, le=2**63 - 1)]
KEY_PATTERN = r"^[A-Za-z0-9\-]{8,64}$"  # a client's `Idempotency-Key` (a UUID)
# The photo's answer: its own bytes only, never read as anything but the image it says it is.
PHOTO_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=86400",
                 "Content-Security-Policy": "default-src 'none'; sandbox",
                 "Content-Disposition": "inline"}  # fmt: skip
PHOTO_BODIES = {t: {"schema": {"type": "string", "format": "binary"}} for t in photos.MEDIA_TYPES}
PHOTO_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"content": {t: {} for t in photos.MEDIA_TYPES}},
    **answers(e404="no such ticket or photo"),
}


class FaultOut(Out):
    id: int
    kind: str
    site: str | None
    node: str | None
    meter: str | None
    alarm_id: int | None = Field(description="the alarm it was opened from")
    status: str = Field(description="open, in_progress, fixed or closed")
    note: str
    opened_by: str
    assignee: str | None
    opened: StoredTime
    updated: StoredTime


class StepOut(Out):
    before: str | None = Field(description="none: the opening")
    after: str
    note: str
    by: str
    time: StoredTime


class PhotoOut(Out):
    id: int
    fault_id: int
    content_type: str = Field(description="image/jpeg, image/png or image/webp")
    width: int
    height: int
    size: int = Field(description="bytes of the image as kept (re-encoded, no metadata)")
    sent_sha256: str = Field(description="SHA-256 of the bytes as they were sent")
    by: str
    taken: StoredTime | None = Field(description="when the phone says it was taken")
    created: StoredTime


class FaultDetailOut(FaultOut):
    history: list[StepOut]
    photos: list[PhotoOut]
    next: list[str] = Field(description="the statuses it may move to")


class FaultIn(StrictBody):
    kind: Kind | None = Field(None, description="required unless opened from an alarm")
    site: StrictStr | None = Field(None, min_length=1, max_length=200)
    node: NodeId | None = None
    meter: MeterAddress | None = None
    alarm: StrictInt | None = Field(None, ge=1, le=2**63 - 1, description="open from this alarm")
    note: Note = ""


class MoveIn(StrictBody):
    to: Status
    note: Note = ""


class AssignIn(StrictBody):
    user: StrictStr | None = Field(
        min_length=1,
        max_length=64,
        description="an active installer, operator or admin; null: nobody",
    )


def _out(rows: Sequence[Fault]) -> list[FaultOut]:
    return [FaultOut.model_validate(f) for f in rows]


def detail(session: DbSession, fault: Fault) -> FaultDetailOut:
    steps = [StepOut.model_validate(s) for s in faults.history(session, fault.id)]
    return FaultDetailOut.model_validate(
        FaultOut.model_validate(fault).model_dump()
        | {
            "history": steps,
            "next": sorted(faults.TRANSITIONS[fault.status]),
            "photos": [PhotoOut.model_validate(p) for p in photos.listed(session, fault.id)],
        }
    )


@router.get("", response_model=Page[FaultOut], summary="List fault tickets")
def list_faults(  # noqa: PLR0917 (the filters)
    who: Annotated[Principal, allow(*READ_ALL)],
    session: DbSession,
    status: Annotated[Status | None, Query()] = None,
    node: Annotated[str | None, Query(max_length=64)] = None,
    meter: Annotated[str | None, Query(max_length=32)] = None,
    active: Annotated[bool | None, Query(description="true: not closed")] = None,
    assignee: Annotated[str | None, Query(max_length=64, description="given to this user")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    query = faults.listed(status=status, node=node, meter=meter, active=active,
                          assignee=assignee)  # fmt: skip
    return page(session, query, limit, offset, _out)


@router.post(
    "",
    response_model=FaultDetailOut,
    status_code=201,
    summary="Open a fault ticket, by hand or from an alarm (logged)",
    responses=answers(e404="no such alarm",
                      e409="the alarm has a ticket open, or the key opened another ticket"),
)  # fmt: skip
def open_fault(  # noqa: PLR0917 (FastAPI's dependencies)
    body: FaultIn,
    who: Annotated[Principal, allow(*FIELD)],
    session: DbSession,
    now: Now,
    response: Response,
    idempotency_key: Annotated[str | None, Header(pattern=KEY_PATTERN)] = None,
) -> FaultDetailOut:
    if body.alarm is not None:
        if body.kind is not None or body.site or body.node or body.meter:
            raise Invalid("a ticket from an alarm takes its kind and place from the alarm")
        fault, new = faults.open_from_alarm(session, body.alarm, note=body.note, actor=who.actor,
                                            now=now, client_key=idempotency_key)  # fmt: skip
    else:
        if body.kind is None:
            raise Invalid("say the kind of fault (or the alarm it comes from)")
        place = faults.Place(body.site, body.node, body.meter)
        fault, new = faults.open_fault(session, body.kind, place, note=body.note,
                                       actor=who.actor, now=now,
                                       client_key=idempotency_key)  # fmt: skip
    if not new:
        response.status_code = 200
    return detail(session, fault)


@router.get(
    "/{fault_id}",
    response_model=FaultDetailOut,
    summary="A fault ticket and its history",
    responses=answers(e404="no such ticket"),
)
def get_fault(
    fault_id: FaultId, who: Annotated[Principal, allow(*READ_ALL)], session: DbSession
) -> FaultDetailOut:
    return detail(session, faults.one(session, fault_id))


@router.post(
    "/{fault_id}/status",
    response_model=FaultDetailOut,
    summary="Move a fault ticket to another status, with a note (logged)",
    responses=answers(e404="no such ticket", e409="the move is not allowed from its status"),
)
def move_fault(
    fault_id: FaultId,
    body: MoveIn,
    who: Annotated[Principal, allow(*FIELD)],
    session: DbSession,
    now: Now,
) -> FaultDetailOut:
    moved = faults.move(session, fault_id, body.to, note=body.note, actor=who.actor, now=now)
    return detail(session, moved)


@router.post(
    "/{fault_id}/assignee",
    response_model=FaultDetailOut,
    summary="Assign a fault ticket to a technician, or to nobody (logged)",
    responses=answers(
        e404="no such ticket",
        e409="the ticket is closed",
        e422="not an active installer, operator or admin",
    ),
)
def assign_fault(
    fault_id: FaultId,
    body: AssignIn,
    who: Annotated[Principal, allow(*OPERATIONS)],
    session: DbSession,
    now: Now,
) -> FaultDetailOut:
    return detail(session, faults.assign(session, fault_id, body.user, actor=who.actor, now=now))


async def raw_body(request: Request) -> bytes:
    """The request's bytes as they came (bounded by `guards.BodyGuard`)."""
    return await request.body()


@router.post(
    "/{fault_id}/photos",
    response_model=PhotoOut,
    status_code=201,
    summary="Add a photo to a fault ticket: the image's bytes as the body (logged)",
    responses=answers(
        e404="no such ticket",
        e409="the key was used for another photo",
        e413="larger than the body limit",
        e422="not a JPEG, PNG or WebP that decodes, or more than 5 MB",
    ),
    openapi_extra={"requestBody": {"required": True, "content": PHOTO_BODIES}},
)
def add_photo(  # noqa: PLR0917 (FastAPI's dependencies)
    fault_id: FaultId,
    who: Annotated[Principal, allow(*FIELD)],
    body: Annotated[bytes, Depends(raw_body)],
    session: DbSession,
    now: Now,
    response: Response,
    content_type: Annotated[str, Header(max_length=100)] = "",
    idempotency_key: Annotated[str | None, Header(pattern=KEY_PATTERN)] = None,
    taken: Annotated[Instant | None, Query(description="when it was taken")] = None,
) -> FaultPhoto:
    photo, new = photos.attach(session, fault_id, body, content_type, actor=who.actor, now=now,
                               client_key=idempotency_key, taken=taken)  # fmt: skip
    if not new:
        response.status_code = 200
    return photo


@router.get(
    "/{fault_id}/photos/{photo_id}",
    response_class=Response,
    summary="A photo of a fault ticket: its bytes, as kept",
    responses=PHOTO_ANSWERS,
)
def get_photo(
    fault_id: FaultId,
    photo_id: PhotoId,
    who: Annotated[Principal, allow(*READ_ALL)],
    session: DbSession,
) -> Response:
    return photo_response(photos.one(session, fault_id, photo_id))


def photo_response(photo: FaultPhoto) -> Response:
    return Response(photo.data, media_type=photo.content_type, headers=PHOTO_HEADERS)
