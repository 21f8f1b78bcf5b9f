"""The field app's photos of a fault ticket (issue 16 §7): taken with the phone's camera on the
ticket's page, kept in IndexedDB while offline and sent, in order with the other queued
records, when the phone is back online (`static/field.js`).

    POST /field/faults/{id}/photos        the image's bytes as the body (Content-Type the
                                          image's), `X-CSRF-Token`, `X-Idempotency-Key` (the
                                          phone's key), `?taken=` the phone's time of the shot;
                                          or a form without script (`multipart/form-data`:
                                          `csrf`, `key` the page made, the file `photo`),
                                          answered with the ticket's page
    GET  /field/faults/{id}/photos/{p}    the photo, for the ticket's history (the session's)
    POST /field/readings/{key}/photos     a photo of the register beside the reading the phone
                                          recorded under `key` (the same two ways)
    GET  /field/readings/photos/{p}       a reading's photo

The photo goes through the API's service (`cloud.operations.photos.attach`): checked by its
magic bytes and by decoding it, re-encoded without metadata, kept once per key — whichever
way it came.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import select

from cloud.api.common import DbSession, Now
from cloud.api.faults import photo_response, raw_body
from cloud.db.operations import IrReading
from cloud.errors import Conflict, Invalid, NotFound
from cloud.operations import photos
from cloud.web import field, multipart, sessions
from cloud.web.field import FaultId, Technician
from cloud.web.i18n import Lang
from cloud.web.page_errors import PageError

router = APIRouter(prefix="/field", include_in_schema=False)

PhotoId = Annotated[int, Path(ge=1, le=2**63 - 1)]
ReadingKey = Annotated[str, Path(pattern=r"^[A-Za-z0-9\-]{8,64}$")]  # `field.KEY`
STATUS = {Invalid: 422, photos.PhotoRefused: 422, NotFound: 404, Conflict: 409}


def _taken(text: str, now: dt.datetime) -> dt.datetime | None:
    """The phone's time of the shot; None when it says none or nonsense (it is a hint)."""
    try:
        taken = dt.datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    if taken is None or taken.utcoffset() is None or taken > now + field.FUTURE:
        return None
    return taken if taken.year >= 2000 else None


@dataclass(frozen=True, slots=True)
class Sent:
    """A photo as the queue (its bytes, headers) or a form without script (multipart) sent it."""

    key: str
    data: bytes
    declared: str
    taken: dt.datetime | None
    as_form: bool
    refused: Invalid | None = None  # what is wrong with it, to answer the way it came

    def checked(self) -> Sent:
        if self.refused is not None:
            raise self.refused
        return self


def _sent(  # noqa: PLR0917 (FastAPI's dependencies; sync: run on the thread pool)
    request: Request,
    body: Annotated[bytes, Depends(raw_body)],
    content_type: Annotated[str, Header(max_length=200)] = "",
    x_csrf_token: Annotated[str | None, Header(max_length=200)] = None,
    x_idempotency_key: Annotated[str | None, Header(max_length=100)] = None,
    taken: Annotated[str, Query(max_length=40)] = "",
) -> Sent:
    """What was sent, its CSRF token checked (else 403); `refused` says what is wrong."""
    now: dt.datetime = request.app.state.now()
    as_form = content_type.split(";", 1)[0].strip().lower() == multipart.MEDIA_TYPE
    try:
        if as_form:  # a form without script: the page's key; the time is the server's
            fields, upload = multipart.parse_multipart(body, content_type, "photo")
            sessions.check_csrf(request, fields.get("csrf"))
            key, data, declared, when = fields.get("key"), upload.data, upload.content_type, None
        else:
            sessions.check_csrf(request, x_csrf_token)
            key, data, declared, when = x_idempotency_key, body, content_type, _taken(taken, now)
        if key is None or not field.KEY.fullmatch(key):
            raise Invalid("a photo carries its key, 8-64 letters, digits or dashes")
    except Invalid as exc:
        return Sent("", b"", "", None, as_form, exc)
    return Sent(key, data, declared, when, as_form)


Photo = Annotated[Sent, Depends(_sent)]


@router.post("/faults/{fault_id}/photos")
def add_photo(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Technician, sent: Photo, session: DbSession, now: Now,
    fault_id: FaultId,
) -> Response:  # fmt: skip
    try:
        ok = sent.checked()
        photo, new = photos.attach(session, fault_id, ok.data, ok.declared, actor=who.actor,
                                   now=now, client_key=ok.key, taken=ok.taken)  # fmt: skip
    except (Invalid, NotFound, Conflict) as exc:
        session.rollback()
        if sent.as_form:
            return field.ticket_page(request, lang, who, session, fault_id,
                                     error="field_photo_refused",
                                     status=STATUS[type(exc)])  # fmt: skip
        return JSONResponse({"error": str(exc)}, status_code=STATUS[type(exc)])
    if sent.as_form:
        return RedirectResponse(f"/field/faults/{fault_id}", status_code=303)
    return JSONResponse({"id": photo.id, "fault": fault_id, "new": new,
                         "url": f"/field/faults/{fault_id}/photos/{photo.id}"},
                        status_code=201 if new else 200)  # fmt: skip


@router.post("/readings/{reading_key}/photos")
def add_reading_photo(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Technician, sent: Photo, session: DbSession, now: Now,
    reading_key: ReadingKey,
) -> Response:  # fmt: skip
    """A photo of the register beside the reading the phone recorded under `reading_key` (the
    queue sends the reading first)."""
    try:
        ok = sent.checked()
        source = f"field:{reading_key}"
        reading = session.scalars(select(IrReading).where(IrReading.source == source)).first()
        if reading is None:
            raise NotFound(f"no reading recorded under key {reading_key}")
        photo, new = photos.attach_to_reading(
            session, reading, ok.data, ok.declared, actor=who.actor, now=now,
            client_key=ok.key, taken=ok.taken,
        )  # fmt: skip
    except (Invalid, NotFound, Conflict) as exc:
        session.rollback()
        if sent.as_form:
            return field.home_page(request, lang, who, session, error="field_photo_refused",
                                   status=STATUS[type(exc)])  # fmt: skip
        return JSONResponse({"error": str(exc)}, status_code=STATUS[type(exc)])
    if sent.as_form:
        return RedirectResponse("/field/", status_code=303)
    return JSONResponse({"id": photo.id, "reading": reading.id, "new": new,
                         "url": f"/field/readings/photos/{photo.id}"},
                        status_code=201 if new else 200)  # fmt: skip


@router.get("/readings/photos/{photo_id}")
def reading_photo(who: Technician, session: DbSession, photo_id: PhotoId) -> Response:
    try:
        kept = photos.of_reading(session, photo_id)
    except NotFound:
        raise PageError("fault_photo_not_found", 404) from None
    return photo_response(kept)


@router.get("/faults/{fault_id}/photos/{photo_id}")
def photo(who: Technician, session: DbSession, fault_id: FaultId, photo_id: PhotoId) -> Response:
    try:
        kept = photos.one(session, fault_id, photo_id)
    except NotFound:
        raise PageError("fault_photo_not_found", 404) from None
    return photo_response(kept)
